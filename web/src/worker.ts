/** The engine's worker: generation runs here, off the page's thread, so the page stays live while it runs. */
import { run } from './engine.js';
import type { EngineMessage, RunRequest } from './protocol.js';

const post = (m: EngineMessage, transfer: Transferable[] = []) => self.postMessage(m, { transfer });

// One request at a time, in order (the model and its sessions are reused).
let queue = Promise.resolve();
self.onmessage = (e: MessageEvent<RunRequest>) => {
  queue = queue.then(() => run(e.data, post));
};

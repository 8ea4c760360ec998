/**
 * The part-of-speech tagger (prompt/tagger.ts) loaded on a second thread, for a one-shot command: `s2i generate`
 * starts it before the rest of the CLI loads (cli/early.ts), so compromise unpacks its lexicon (~0.3 s of CPU, most
 * of the CLI's start-up) on the other core while this one loads the engine and the model; the subject finder's call,
 * which stays synchronous, then blocks only for whatever is left (docs/measurements.md#tagger-thread). Node only
 * (worker_threads); src/node.ts installs it as the tagger once started, else compromise on this thread, which
 * long-lived processes (the server, the benchmark) keep: they tag many prompts.
 *
 * The call is synchronous the way synckit makes it (a message, then Atomics.wait on a shared counter the thread
 * bumps when it has answered, then receiveMessageOnPort); written out here as it is twenty lines with no files to
 * resolve, where synckit would need its worker as a separate file (and a TypeScript runner under the tests).
 */
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { Tagger } from './prompt/tagger.js';

/**
 * require() takes compromise's package entry for CommonJS: its one-file bundle of the same release. (Its bundle of
 * the part-of-speech layer alone, `compromise/two`, tags alike but loads no faster: docs/measurements.md#tagger-load.)
 */
export const TAGGER_MODULE = 'compromise';

/** The tagger on this thread (loads it: ~0.3 s the first time). */
export function taggerHere(): Tagger {
  return createRequire(import.meta.url)(TAGGER_MODULE) as Tagger;
}

/** The thread: load compromise, warm its first call up (it compiles lazily), then answer texts with their terms. */
const THREAD = `
const { workerData } = require('node:worker_threads');
const { port, answered, path } = workerData;
let nlp = null, failure = null;
try {
  nlp = require(path);
  nlp('a red circle and a blue square').json();
} catch (e) {
  failure = String((e && e.message) || e);
}
port.on('message', (text) => {
  let reply;
  try {
    reply = failure ? { error: failure } : { json: nlp(text).json() };
  } catch (e) {
    reply = { error: String((e && e.message) || e) };
  }
  port.postMessage(reply);
  Atomics.add(answered, 0, 1);
  Atomics.notify(answered, 0);
});
`;

/** How long a call waits for the thread before giving up on it and loading the tagger here. */
const WAIT_MS = 60_000;

/**
 * A tagger whose calls are answered by a thread that loads `modulePath` (a CommonJS module exporting compromise's
 * `nlp`) from now on. A call blocks until the thread answers; if the thread cannot start, or has not answered within
 * `waitMs`, this call and every later one use `local()` on this thread instead. An error of the thread's tagger
 * (its module missing, say) is thrown here.
 */
export function threadTagger(modulePath: string, local: () => Tagger, waitMs = WAIT_MS): Tagger {
  const { port1, port2 } = new MessageChannel();
  const answered = new Int32Array(new SharedArrayBuffer(4));
  let worker: Worker | null;
  try {
    worker = new Worker(THREAD, {
      eval: true,
      workerData: { port: port2, answered, path: modulePath },
      transferList: [port2],
    });
    worker.unref(); // a run that never needs it exits without waiting for it
    port1.unref();
  } catch {
    worker = null;
  }
  let asked = 0;
  let here: Tagger | null = null;
  const tag = (text: string): unknown => {
    if (!worker) return (here ??= local())(text).json();
    port1.postMessage(text);
    asked++;
    const until = performance.now() + waitMs;
    let n: number;
    while ((n = Atomics.load(answered, 0)) < asked) {
      const left = until - performance.now();
      if (left <= 0 || Atomics.wait(answered, 0, n, left) === 'timed-out') {
        void worker.terminate();
        worker = null;
        return tag(text);
      }
    }
    const reply = receiveMessageOnPort(port1)?.message as { json?: unknown; error?: string } | undefined;
    if (!reply || reply.error !== undefined) throw new Error(`part-of-speech tagger: ${reply?.error ?? 'no answer'}`);
    return reply.json;
  };
  return (text: string) => ({ json: () => tag(text) });
}

let started: Tagger | null = null;

/** The tagger `startTaggerThread` started, if it ran. */
export function taggerThread(): Tagger | null {
  return started;
}

/** Start loading the tagger (TAGGER_MODULE) on its own thread now; once per process. */
export function startTaggerThread(): void {
  started ??= threadTagger(createRequire(import.meta.url).resolve(TAGGER_MODULE), taggerHere);
}

/**
 * The engine's Node bindings, installed as the defaults when this module is imported: files from the file system
 * (node:fs), sessions from onnxruntime-node, the machine's memory for the memory budget (node:os), and the
 * part-of-speech tagger (compromise's CommonJS bundle, loaded on first use: see prompt/tagger.ts). The
 * library's entry (index.ts), the CLI, the benchmark's processes and the test setup import it; a browser installs
 * its own (web/src/engine.ts).
 */
import './graph/ort-env.js'; // ONNX Runtime's environment, before anything loads it
import { totalmem } from 'node:os';
import { setDefaultRuntime } from './graph/runtime.js';
import { nodeRuntime } from './graph/runtime-node.js';
import { setDefaultFileSystem } from './io/files.js';
import { nodeFileSystem } from './io/node-files.js';
import { setTaggerLoader } from './prompt/tagger.js';
import { taggerHere, taggerThread } from './tagger-thread.js';
import { setMachineMemory } from './util/memory.js';

setDefaultFileSystem(nodeFileSystem);
setDefaultRuntime(nodeRuntime);
setMachineMemory(() => ({
  total: totalmem(),
  constrained: (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.(),
}));
// compromise on this thread, loaded on first use; a tagger thread started earlier (`s2i generate`: tagger-thread.ts)
// instead when there is one.
setTaggerLoader(() => taggerThread() ?? taggerHere());

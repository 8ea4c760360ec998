/**
 * The engine's Node bindings, installed as the defaults when this module is imported: files from the file system
 * (node:fs) and sessions from onnxruntime-node. The library's entry (index.ts), the CLI, the benchmark's processes
 * and the test setup import it; a browser installs its own (web/src/engine.ts).
 */
import { setDefaultRuntime } from './graph/runtime.js';
import { nodeRuntime } from './graph/runtime-node.js';
import { setDefaultFileSystem } from './io/files.js';
import { nodeFileSystem } from './io/node-files.js';

setDefaultFileSystem(nodeFileSystem);
setDefaultRuntime(nodeRuntime);

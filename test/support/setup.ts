/**
 * Many tests spawn the CLI synchronously. A file of such tests never lets the worker's event loop reach its poll
 * phase, so vitest's RPC replies sit unread and a file longer than 60 s ends in "Timeout calling onTaskUpdate"
 * (an unhandled error that fails the run although every test passed). One macrotask turn after each test reads them.
 */
import { afterEach } from 'vitest';
import '../../src/node.js'; // Node's file system and onnxruntime-node as the defaults

afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

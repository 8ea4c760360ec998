/**
 * The browser backend of graph/runtime.ts: sessions on onnxruntime-web, WebGPU where the browser has it and
 * WebAssembly (SIMD; multi-threaded where the page is cross-origin isolated) otherwise.
 *
 * The caller passes the onnxruntime-web bundle it loaded (`onnxruntime-web/wasm`, or `onnxruntime-web/webgpu`
 * when `navigator.gpu` exists; in Node `onnxruntime-web` runs the same WebAssembly build), so that a page only
 * downloads the WebAssembly binary it will use. This module imports none of it at run time.
 */
import type * as OrtWeb from 'onnxruntime-web';
import { UserError } from '../errors.js';
import type { Graph } from './graph.js';
import { serializeGraph } from './onnx.js';
import type { BackendSession, CompileOptions, RuntimeBackend } from './runtime.js';

type OrtWebModule = typeof OrtWeb;

export interface WebRuntimeOptions {
  /** Try WebGPU first (falling back to WebAssembly); default: whether the browser has `navigator.gpu`. */
  webgpu?: boolean;
  /**
   * WebAssembly threads. Default: up to 4 of the machine's cores when the page is cross-origin isolated (served
   * with COOP/COEP headers, so SharedArrayBuffer exists), else 1. Set once per page, before the first session.
   */
  threads?: number;
  /** Where ONNX Runtime's .wasm/.mjs files are served (`env.wasm.wasmPaths`); default: beside the bundle. */
  wasmPaths?: OrtWeb.Env.WasmPrefixOrFilePaths;
}

/** Protobuf's limit: a model larger than this cannot be passed as one buffer. */
const PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1;

function defaultThreads(): number {
  const g = globalThis as { crossOriginIsolated?: boolean; navigator?: { hardwareConcurrency?: number } };
  if (!g.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(4, g.navigator?.hardwareConcurrency ?? 1));
}

function hasWebGpu(): boolean {
  return typeof (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu === 'object';
}

/** A backend on the given onnxruntime-web bundle. */
export function webRuntime(ort: OrtWebModule, options: WebRuntimeOptions = {}): RuntimeBackend {
  const threads = options.threads ?? defaultThreads();
  ort.env.wasm.numThreads = threads;
  if (options.wasmPaths !== undefined) ort.env.wasm.wasmPaths = options.wasmPaths;
  const webgpu = options.webgpu ?? hasWebGpu();
  const providers: ('webgpu' | 'wasm')[] = webgpu ? ['webgpu', 'wasm'] : ['wasm'];
  let name = `onnxruntime-web (${providers[0]}, ${threads} thread${threads === 1 ? '' : 's'})`;

  async function createSession(graph: Graph, compileOptions: CompileOptions): Promise<BackendSession> {
    const t0 = performance.now();
    // WebGPU's com.microsoft.MultiHeadAttention kernel computed our self-attention wrongly (Chromium 150's software
    // adapter: off by 0.9 where values are ~1.8, every node before it equal to WebAssembly's to 1e-6); the plain
    // attention nodes are right on both. WebAssembly runs the fused kernel, as Node does (identical images).
    const bytes = serializeGraph(graph, { substitutions: !webgpu });
    if (bytes.length > PROTOBUF_LIMIT_BYTES)
      throw new UserError(
        `the graph with its weights is ${(bytes.length / 2 ** 30).toFixed(1)} GiB; the browser backend takes models under 2 GiB`,
      );
    const serializeMs = performance.now() - t0;
    const sessionOptions: OrtWeb.InferenceSession.SessionOptions = {
      graphOptimizationLevel: compileOptions.optimization ?? 'all',
      executionMode: 'sequential',
      // Idle threads that spin take the core the page's own JavaScript (or another tab) needs, as in Node.
      extra: { session: { 'intra_op.allow_spinning': compileOptions.spinning ? '1' : '0' } },
    };
    let session: OrtWeb.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, { ...sessionOptions, executionProviders: providers });
    } catch (e) {
      if (!webgpu) throw e;
      // No usable GPU adapter (or an operator WebGPU cannot take): WebAssembly does everything.
      session = await ort.InferenceSession.create(bytes, { ...sessionOptions, executionProviders: ['wasm'] });
      name = `onnxruntime-web (wasm, ${threads} thread${threads === 1 ? '' : 's'})`;
    }
    const sessionMs = performance.now() - t0 - serializeMs;
    return { session, timings: { serializeMs, sessionMs, nodes: graph.nodes.length } };
  }

  return {
    get name() {
      return name;
    },
    createSession,
    tensor: (type, data, dims) =>
      type === 'int64'
        ? new ort.Tensor('int64', data as BigInt64Array, [...dims])
        : new ort.Tensor('float32', data as Float32Array, [...dims]),
  };
}

/**
 * Running recorded graphs on ONNX Runtime. A `CompiledGraph` owns one inference session; build it once per model
 * and input shape and reuse it for every step.
 *
 * Sessions come from a backend: onnxruntime-node in Node (graph/runtime-node.ts: CPU, weights linked from their
 * files, a cache of optimized models) or onnxruntime-web in a browser (graph/runtime-web.ts: WebAssembly or
 * WebGPU). Both speak onnxruntime-common's API, so everything above this module runs unchanged on either. The
 * default backend is the one the platform's entry point installed (`src/node.ts` installs Node's).
 */
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-common';
import type { Int64Tensor, Tensor } from '../tensor.js';
import { shapeSize, type Graph, type Value } from './graph.js';

export interface CompileOptions {
  /** Run on this backend instead of the default one. */
  backend?: RuntimeBackend;
  /** Intra-op threads; default: $S2I_THREADS, else every core (Node; a browser sets threads once per page). */
  threads?: number;
  /**
   * Whether ONNX Runtime's idle intra-op threads spin (busy-wait) for work; default: $S2I_ORT_SPINNING ('1' / '0'),
   * else off: spinning threads take the core another process, or this process's own JavaScript, needs
   * (docs/measurements.md#spinning).
   */
  spinning?: boolean;
  /** ONNX Runtime's CPU memory arena (default: on; $S2I_ORT_ARENA=0 turns it off, slower: docs/measurements.md#arena). */
  memArena?: boolean;
  /**
   * ONNX Runtime's memory-pattern planning (default: off; $S2I_ORT_MEM_PATTERN=1 turns it on). On, the second run
   * allocates the planned block while the arena still holds the first run's buffers: a higher peak at the same
   * speed (docs/measurements.md#mem-pattern).
   */
  memPattern?: boolean;
  /** ONNX Runtime graph optimisation level; 'all' pre-packs conv weights (fastest). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Node: weights in an external-data file (true) or inside the protobuf (false). Default: external when some
   * weights can be linked (see linkWeights) or past 64 MB; always past 1.5 GB (protobuf's limit is 2 GB).
   */
  externalData?: boolean;
  /**
   * Node, with external data: let ONNX Runtime read float32 weights straight from their safetensors files (hard
   * links in the model's private folder) instead of copying them to a weights file first; default true. Falls
   * back to copying where a link cannot be made (another filesystem).
   */
  linkWeights?: boolean;
  /**
   * Node: half-precision weights (F16 / BF16 safetensors): 'keep' serialises them half with a Cast to float32 in
   * the graph (linked from their files like F32 weights); 'float32' converts them to a float32 weights file first.
   * Default 'float32', or $S2I_HALF_WEIGHTS. 'keep' creates the first session faster and writes no copy, but ONNX
   * Runtime folds the Casts into float32 initializers on its heap, so the peak is higher than with the converted
   * file it memory-maps (docs/measurements.md#half-weights, `npm run bench:half`).
   */
  halfWeights?: 'keep' | 'float32';
  /**
   * Node: folder of ONNX Runtime's optimized models, keyed by a hash of the serialised graph, the weight files'
   * identities, the ONNX Runtime version and the CPU: a later session of the same graph loads the optimized model
   * and skips graph optimisation. Default: $S2I_ORT_CACHE, else ~/.cache/s2i/ort; false (or S2I_ORT_CACHE=0)
   * turns it off. Its size is kept under $S2I_ORT_CACHE_MAX_GB (default 8) by removing the least recently used.
   */
  cache?: string | false;
  /**
   * Node: write ONNX Runtime's per-node profile to files starting with this path prefix (`endProfiling()` returns
   * the file). The S2I_ORT_PROFILE environment variable does the same for every session.
   */
  profile?: string;
}

export interface CompileTimings {
  serializeMs: number;
  sessionMs: number;
  nodes: number;
  /** 'hit': the session came from the optimized-model cache; 'stored': it was optimized and stored there. */
  cache?: 'hit' | 'stored' | 'off';
}

/** A session a backend created for one graph. */
export interface BackendSession {
  session: InferenceSession;
  timings: CompileTimings;
  /** Stop profiling and return the profile's file (sessions compiled with `profile`). */
  endProfiling?: () => string | null;
}

/** Where sessions come from: one build of ONNX Runtime. */
export interface RuntimeBackend {
  /** What it is, for messages and reports: 'onnxruntime-node (cpu)', 'onnxruntime-web (wasm, 1 thread)', ... */
  readonly name: string;
  createSession(graph: Graph, options: CompileOptions): Promise<BackendSession>;
  /** A tensor of this build's own Tensor class (each bundle of ONNX Runtime brings its own). */
  tensor(type: 'float32' | 'int64', data: Float32Array | BigInt64Array, dims: readonly number[]): OrtTensor;
}

let installed: RuntimeBackend | null = null;

/** Make `backend` the default of `compile` (done once by the platform's entry point). */
export function setDefaultRuntime(backend: RuntimeBackend): void {
  installed = backend;
}

export function defaultRuntime(): RuntimeBackend {
  if (!installed)
    throw new Error(
      "no ONNX Runtime backend installed: import 'suppress-to-impress' (or src/node.ts) in Node, or pass a backend",
    );
  return installed;
}

type Feed = Tensor | Int64Tensor;

function describe(v: { shape: readonly number[] }): string {
  return `[${v.shape.join(', ')}]`;
}

export class CompiledGraph {
  private readonly inputsByName: Map<string, Value>;
  private readonly paramFeeds = new Map<string, OrtTensor>();

  private constructor(
    private readonly backend: RuntimeBackend,
    private readonly compiled: BackendSession,
    readonly graph: Graph,
  ) {
    this.inputsByName = new Map(graph.inputs.map((v) => [v.name, v]));
    if (graph.paramMode === 'input') {
      for (const p of graph.params)
        this.paramFeeds.set(p.value.name, backend.tensor('float32', p.source.read(), p.value.shape));
    }
  }

  static async create(graph: Graph, options: CompileOptions = {}): Promise<CompiledGraph> {
    if (graph.outputs.length === 0) throw new Error('compile: the graph has no outputs');
    const backend = options.backend ?? defaultRuntime();
    return new CompiledGraph(backend, await backend.createSession(graph, options), graph);
  }

  get timings(): CompileTimings {
    return this.compiled.timings;
  }

  /** The backend that runs it. */
  get runtime(): string {
    return this.backend.name;
  }

  get inputNames(): string[] {
    return this.graph.inputs.map((v) => v.name);
  }

  get outputNames(): string[] {
    return this.graph.outputs.map((o) => o.name);
  }

  /** Replace parameter values (graphs built with paramMode 'input', e.g. during training). */
  setParam(name: string, data: Float32Array): void {
    const current = this.paramFeeds.get(name);
    if (!current) throw new Error(`setParam: no parameter input '${name}'`);
    if (current.size !== data.length)
      throw new Error(`setParam: ${name} expects ${current.size} values, got ${data.length}`);
    this.paramFeeds.set(name, this.backend.tensor('float32', data, current.dims));
  }

  /** Run the graph. Every graph input must be fed with exactly its recorded shape. */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, OrtTensor> = {};
    for (const [name, v] of this.inputsByName) {
      const f = feeds[name];
      if (!f) throw new Error(`run: missing input '${name}' ${describe(v)}`);
      if (f.shape.length !== v.shape.length || f.shape.some((d, i) => d !== v.shape[i])) {
        throw new Error(`run: input '${name}' has shape ${describe(f)}, the graph was built for ${describe(v)}`);
      }
      if (f.data.length !== shapeSize(v.shape))
        throw new Error(`run: input '${name}' has ${f.data.length} values for shape ${describe(v)}`);
      const isInt = f.data instanceof BigInt64Array;
      if (isInt !== (v.dtype === 'int64')) throw new Error(`run: input '${name}' must be ${v.dtype}`);
      ortFeeds[name] = this.backend.tensor(v.dtype === 'int64' ? 'int64' : 'float32', f.data, f.shape);
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputsByName.has(name))
        throw new Error(`run: unknown input '${name}' (inputs: ${this.inputNames.join(', ')})`);
    }
    for (const [name, t] of this.paramFeeds) ortFeeds[name] = t;
    const wanted = outputs ? [...outputs] : this.outputNames;
    for (const name of wanted) if (!this.outputNames.includes(name)) throw new Error(`run: unknown output '${name}'`);
    const result = await this.compiled.session.run(ortFeeds, wanted);
    const out: Record<string, Tensor> = {};
    for (const name of wanted) {
      const t = result[name]!;
      if (t.type !== 'float32')
        throw new Error(`run: output '${name}' is ${t.type}; only float32 outputs are supported`);
      out[name] = { data: t.data as Float32Array, shape: [...t.dims] };
    }
    return out;
  }

  /**
   * Stop profiling (sessions compiled with `profile`) and return the profile file's path; null when profiling is
   * off.
   */
  endProfiling(): string | null {
    return this.compiled.endProfiling?.() ?? null;
  }

  async release(): Promise<void> {
    await this.compiled.session.release();
  }
}

export function compile(graph: Graph, options?: CompileOptions): Promise<CompiledGraph> {
  return CompiledGraph.create(graph, options);
}

/**
 * Running recorded graphs on ONNX Runtime (CPU execution provider). A `CompiledGraph` owns one inference
 * session; build it once per model and input shape and reuse it for every step.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Int64Tensor, Tensor } from '../tensor.js';
import { shapeSize, type Graph, type Value } from './graph.js';
import { serializeGraph } from './onnx.js';

export interface CompileOptions {
  /** Intra-op threads; default: every core. */
  threads?: number;
  /** ONNX Runtime graph optimisation level; 'all' pre-packs conv weights (fastest). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Force weights into an external-data file (always done past 1.5 GB of weights). */
  externalData?: boolean;
}

export interface CompileTimings {
  serializeMs: number;
  sessionMs: number;
  nodes: number;
}

type Feed = Tensor | Int64Tensor;

const EXTERNAL_THRESHOLD_BYTES = 1.5 * 1024 ** 3;

function describe(v: { shape: readonly number[] }): string {
  return `[${v.shape.join(', ')}]`;
}

export class CompiledGraph {
  private readonly inputsByName: Map<string, Value>;
  private readonly paramFeeds = new Map<string, ort.Tensor>();

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly graph: Graph,
    readonly timings: CompileTimings,
  ) {
    this.inputsByName = new Map(graph.inputs.map((v) => [v.name, v]));
    if (graph.paramMode === 'input') {
      for (const p of graph.params) this.paramFeeds.set(p.value.name, new ort.Tensor('float32', p.source.read(), [...p.value.shape]));
    }
  }

  static async create(graph: Graph, options: CompileOptions = {}): Promise<CompiledGraph> {
    if (graph.outputs.length === 0) throw new Error('compile: the graph has no outputs');
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: options.optimization ?? 'all',
      intraOpNumThreads: options.threads ?? availableParallelism(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      enableCpuMemArena: true,
      enableMemPattern: true,
    };
    // S2I_ORT_PROFILE=prefix writes ONNX Runtime's per-node JSON profile (for `npm run bench` investigations).
    const profile = process.env['S2I_ORT_PROFILE'];
    if (profile) {
      sessionOptions.enableProfiling = true;
      sessionOptions.profileFilePrefix = profile;
    }
    const weightBytes = graph.stats().paramElements * 4;
    const external = graph.paramMode === 'initializer' && (options.externalData || weightBytes > EXTERNAL_THRESHOLD_BYTES);
    const t0 = performance.now();
    let session: ort.InferenceSession;
    let serializeMs: number;
    if (external) {
      // Past protobuf's 2 GB limit: model + weights file in a private folder, loaded by path. The folder can go
      // as soon as the session exists (ONNX Runtime has read or mapped the weights by then).
      const dir = mkdtempSync(join(tmpdir(), 's2i-graph-'));
      try {
        const bytes = serializeGraph(graph, { externalDataPath: join(dir, 'weights.bin') });
        writeFileSync(join(dir, 'model.onnx'), bytes);
        serializeMs = performance.now() - t0;
        session = await ort.InferenceSession.create(join(dir, 'model.onnx'), sessionOptions);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } else {
      const bytes = serializeGraph(graph);
      serializeMs = performance.now() - t0;
      session = await ort.InferenceSession.create(bytes, sessionOptions);
    }
    const sessionMs = performance.now() - t0 - serializeMs;
    return new CompiledGraph(session, graph, { serializeMs, sessionMs, nodes: graph.nodes.length });
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
    if (current.size !== data.length) throw new Error(`setParam: ${name} expects ${current.size} values, got ${data.length}`);
    this.paramFeeds.set(name, new ort.Tensor('float32', data, current.dims as number[]));
  }

  /** Run the graph. Every graph input must be fed with exactly its recorded shape. */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, v] of this.inputsByName) {
      const f = feeds[name];
      if (!f) throw new Error(`run: missing input '${name}' ${describe(v)}`);
      if (f.shape.length !== v.shape.length || f.shape.some((d, i) => d !== v.shape[i])) {
        throw new Error(`run: input '${name}' has shape ${describe(f)}, the graph was built for ${describe(v)}`);
      }
      if (f.data.length !== shapeSize(v.shape)) throw new Error(`run: input '${name}' has ${f.data.length} values for shape ${describe(v)}`);
      const isInt = f.data instanceof BigInt64Array;
      if (isInt !== (v.dtype === 'int64')) throw new Error(`run: input '${name}' must be ${v.dtype}`);
      ortFeeds[name] = new ort.Tensor(v.dtype === 'int64' ? 'int64' : 'float32', f.data, [...f.shape]);
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputsByName.has(name)) throw new Error(`run: unknown input '${name}' (inputs: ${this.inputNames.join(', ')})`);
    }
    for (const [name, t] of this.paramFeeds) ortFeeds[name] = t;
    const wanted = outputs ? [...outputs] : this.outputNames;
    for (const name of wanted) if (!this.outputNames.includes(name)) throw new Error(`run: unknown output '${name}'`);
    const result = await this.session.run(ortFeeds, wanted);
    const out: Record<string, Tensor> = {};
    for (const name of wanted) {
      const t = result[name]!;
      if (t.type !== 'float32') throw new Error(`run: output '${name}' is ${t.type}; only float32 outputs are supported`);
      out[name] = { data: t.data as Float32Array, shape: [...t.dims] };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export function compile(graph: Graph, options?: CompileOptions): Promise<CompiledGraph> {
  return CompiledGraph.create(graph, options);
}

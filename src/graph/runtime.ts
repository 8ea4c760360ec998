/**
 * Running recorded graphs on ONNX Runtime (CPU execution provider). A `CompiledGraph` owns one inference
 * session; build it once per model and input shape and reuse it for every step.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, homedir, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import type { Int64Tensor, Tensor } from '../tensor.js';
import { onCleanup } from '../util/cleanup.js';
import { shapeSize, type Graph, type Value } from './graph.js';
import { serializeGraph } from './onnx.js';

export interface CompileOptions {
  /** Intra-op threads; default: $S2I_THREADS, else every core. */
  threads?: number;
  /**
   * Whether ONNX Runtime's idle intra-op threads spin (busy-wait) for work; default: $S2I_ORT_SPINNING ('1' / '0'),
   * else off. Off measured 1.2x faster on tiny-sd's step on a 2-core machine with a training run beside it
   * (spinning threads take the core the other process, or this process's own JavaScript, needs).
   */
  spinning?: boolean;
  /** ONNX Runtime's CPU memory arena (default: on; $S2I_ORT_ARENA=0 turns it off: 1.1–1.3x slower). */
  memArena?: boolean;
  /**
   * ONNX Runtime's memory-pattern planning (default: off; $S2I_ORT_MEM_PATTERN=1 turns it on). On, the second run
   * allocates the planned block while the arena still holds the first run's buffers: peak RSS 1.92 GB against
   * 1.13 GB for the shapes training step, 457 against 321 MB for tiny-sd's A&E step, at the same speed.
   */
  memPattern?: boolean;
  /** ONNX Runtime graph optimisation level; 'all' pre-packs conv weights (fastest). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Weights in an external-data file (true) or inside the protobuf (false). Default: external when some weights
   * can be linked (see linkWeights) or past 64 MB; always past 1.5 GB (protobuf's limit is 2 GB).
   */
  externalData?: boolean;
  /**
   * With external data: let ONNX Runtime read float32 weights straight from their safetensors files (hard links
   * in the model's private folder) instead of copying them to a weights file first; default true. Falls back to
   * copying where a link cannot be made (another filesystem).
   */
  linkWeights?: boolean;
  /**
   * Half-precision weights (F16 / BF16 safetensors): 'keep' serialises them half with a Cast to float32 in the
   * graph (linked from their files like F32 weights); 'float32' converts them to a float32 weights file first.
   * Default 'float32', or $S2I_HALF_WEIGHTS. Measured on SD-1.5's UNet (`npm run bench:half`): 'keep' creates the
   * first session about twice as fast and writes no copy, but ONNX Runtime folds the Casts into float32
   * initializers on its heap, so peak RSS is ~1.8 GB higher than with the converted file it memory-maps.
   */
  halfWeights?: 'keep' | 'float32';
  /**
   * Folder of ONNX Runtime's optimized models, keyed by a hash of the serialised graph, the weight files'
   * identities, the ONNX Runtime version and the CPU: a later session of the same graph loads the optimized model
   * and skips graph optimisation. Default: $S2I_ORT_CACHE, else ~/.cache/s2i/ort; false (or S2I_ORT_CACHE=0)
   * turns it off. Its size is kept under $S2I_ORT_CACHE_MAX_GB (default 8) by removing the least recently used.
   */
  cache?: string | false;
  /**
   * Write ONNX Runtime's per-node profile to files starting with this path prefix (`endProfiling()` returns the
   * file). The S2I_ORT_PROFILE environment variable does the same for every session.
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

type Feed = Tensor | Int64Tensor;

const EXTERNAL_THRESHOLD_BYTES = 1.5 * 1024 ** 3;
/** Weights that cannot be linked are still copied to an external file past this size. */
const EXTERNAL_COPY_THRESHOLD_BYTES = 64 * 1024 ** 2;

function describe(v: { shape: readonly number[] }): string {
  return `[${v.shape.join(', ')}]`;
}

/**
 * A fresh folder for a model with external data, on the same filesystem as the weights' safetensors files when
 * possible (so they can be hard-linked into it): the system's temporary folder, else ~/.cache/s2i, else the
 * weights' own folder.
 */
/** The file a weight's bytes lie in, as a serialiser may link it (half or float32), if any. */
function weightFile(p: Graph['params'][number], keepHalf: boolean): string | undefined {
  return (keepHalf ? p.source.half?.external?.path : undefined) ?? p.source.external?.path;
}

function privateFolder(graph: Graph, keepHalf: boolean): string {
  const file = graph.params.map((p) => weightFile(p, keepHalf)).find((f) => f !== undefined);
  if (file) {
    try {
      const dev = statSync(file).dev;
      const cache = join(homedir(), '.cache', 's2i');
      for (const candidate of [tmpdir(), cache, dirname(file)]) {
        try {
          if (candidate === cache) mkdirSync(cache, { recursive: true });
          if (statSync(candidate).dev === dev)
            return mkdtempSync(join(candidate, candidate === dirname(file) ? '.s2i-graph-' : 's2i-graph-'));
        } catch {
          // not writable: try the next one
        }
      }
    } catch {
      // the file went away: copy instead
    }
  }
  return mkdtempSync(join(tmpdir(), 's2i-graph-'));
}

/** The serialised model: bytes, or a path (external data) whose folder `cleanup` removes. */
interface Serialized {
  bytes: Uint8Array;
  path: string | null;
  /** What else the model depends on: the linked weight files' identities and the copied weights' hash. */
  dependencies: string[];
  cleanup(): void;
}

function serialize(graph: Graph, external: boolean, link: boolean, keepHalf: boolean): Serialized {
  if (!external) return { bytes: serializeGraph(graph, { keepHalf }), path: null, dependencies: [], cleanup: () => {} };
  const dir = privateFolder(graph, keepHalf);
  // Removed when the session exists, or on an error, or when the process is interrupted before either.
  const forget = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const remove = () => {
    forget();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const links = new Map<string, string | null>();
    const dependencies: string[] = [];
    const linkExternal = (path: string): string | null => {
      let name = links.get(path);
      if (name === undefined) {
        name = `w${links.size}.safetensors`;
        try {
          // ONNX Runtime refuses external files outside the model's folder, symbolic links included.
          linkSync(path, join(dir, name));
          const st = statSync(path);
          dependencies.push(`${name}:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`);
        } catch {
          name = null;
        }
        links.set(path, name);
      }
      return name;
    };
    const weights = join(dir, 'weights.bin');
    const bytes = serializeGraph(graph, {
      externalDataPath: weights,
      linkExternal: link ? linkExternal : undefined,
      keepHalf,
    });
    const path = join(dir, 'model.onnx');
    writeFileSync(path, bytes);
    if (statSync(weights).size > 0) dependencies.push(`weights.bin:${hashFile(weights)}`);
    return { bytes, path, dependencies, cleanup: remove };
  } catch (e) {
    remove();
    const code = (e as NodeJS.ErrnoException).code;
    // A full disk or a file-size limit where the model is written is the user's to fix, not a bug.
    if (code === 'ENOSPC' || code === 'EFBIG' || code === 'EDQUOT' || code === 'EROFS' || code === 'EACCES')
      throw new UserError(
        `cannot write ONNX Runtime's model files to ${dirname(dir)} (${code}); free space there or set TMPDIR`,
        {
          cause: e,
        },
      );
    throw e;
  }
}

function hashFile(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 * 1024 * 1024);
    let n: number;
    while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

let ortVersion: string | null = null;
function onnxruntimeVersion(): string {
  if (ortVersion === null) {
    try {
      const req = createRequire(import.meta.url);
      ortVersion = (
        JSON.parse(readFileSync(req.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }
      ).version;
    } catch {
      ortVersion = ort.env.versions?.common ?? 'unknown';
    }
  }
  return ortVersion;
}

function cacheDir(option: string | false | undefined): string | null {
  if (option === false) return null;
  if (option) return option;
  const env = process.env['S2I_ORT_CACHE'];
  if (env === '0' || env === 'off' || env === 'false') return null;
  return env || join(homedir(), '.cache', 's2i', 'ort');
}

function cacheLimitBytes(): number {
  const gb = Number(process.env['S2I_ORT_CACHE_MAX_GB'] ?? 8);
  return (Number.isFinite(gb) && gb > 0 ? gb : 8) * 1024 ** 3;
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) n += statSync(join(dir, f)).size;
  return n;
}

/** Remove the least recently used entries until the cache fits its limit (entries in use stay readable). */
function evict(root: string, limit: number): void {
  const entries: { dir: string; bytes: number; used: number }[] = [];
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    try {
      const st = statSync(dir);
      if (!st.isDirectory()) continue;
      // Unfinished entries of crashed processes: gone after a day.
      if (name.startsWith('tmp-')) {
        if (Date.now() - st.mtimeMs > 86_400_000) rmSync(dir, { recursive: true, force: true });
        continue;
      }
      entries.push({ dir, bytes: folderBytes(dir), used: st.mtimeMs });
    } catch {
      // removed meanwhile
    }
  }
  let total = entries.reduce((s, e) => s + e.bytes, 0);
  for (const e of entries.sort((a, b) => a.used - b.used)) {
    if (total <= limit) break;
    rmSync(e.dir, { recursive: true, force: true });
    total -= e.bytes;
  }
}

export class CompiledGraph {
  private readonly inputsByName: Map<string, Value>;
  private readonly paramFeeds = new Map<string, ort.Tensor>();

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly graph: Graph,
    readonly timings: CompileTimings,
    private readonly profilePrefix: string | null = null,
  ) {
    this.inputsByName = new Map(graph.inputs.map((v) => [v.name, v]));
    if (graph.paramMode === 'input') {
      for (const p of graph.params)
        this.paramFeeds.set(p.value.name, new ort.Tensor('float32', p.source.read(), [...p.value.shape]));
    }
  }

  static async create(graph: Graph, options: CompileOptions = {}): Promise<CompiledGraph> {
    if (graph.outputs.length === 0) throw new Error('compile: the graph has no outputs');
    const envThreads = Number(process.env['S2I_THREADS']);
    const spinning = options.spinning ?? process.env['S2I_ORT_SPINNING'] === '1';
    const level = options.optimization ?? 'all';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: level,
      intraOpNumThreads:
        options.threads ?? (Number.isInteger(envThreads) && envThreads > 0 ? envThreads : availableParallelism()),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      enableCpuMemArena: options.memArena ?? process.env['S2I_ORT_ARENA'] !== '0',
      enableMemPattern: options.memPattern ?? process.env['S2I_ORT_MEM_PATTERN'] === '1',
      extra: { session: { 'intra_op.allow_spinning': spinning ? '1' : '0' } },
    };
    // S2I_ORT_PROFILE=prefix writes ONNX Runtime's per-node JSON profile (for `npm run bench` investigations).
    const profile = options.profile ?? process.env['S2I_ORT_PROFILE'];
    if (profile) {
      sessionOptions.enableProfiling = true;
      sessionOptions.profileFilePrefix = profile;
    }
    const weightBytes = graph.stats().paramElements * 4;
    const initializers = graph.paramMode === 'initializer';
    const link = options.linkWeights !== false;
    const keepHalf =
      (options.halfWeights ?? (process.env['S2I_HALF_WEIGHTS'] === 'keep' ? 'keep' : 'float32')) === 'keep';
    const linkable = initializers && link && graph.params.some((p) => weightFile(p, keepHalf) !== undefined);
    // External data beats weights inside the protobuf well before protobuf's 2 GB limit: a 570 MB UNet created
    // its session in 1.9 s (linked) / 2.7–3.2 s (copied) against 7–7.7 s, with 0.9 GB peak RSS against 2.4 GB.
    const external =
      initializers &&
      (weightBytes > EXTERNAL_THRESHOLD_BYTES ||
        (options.externalData ?? (linkable || weightBytes > EXTERNAL_COPY_THRESHOLD_BYTES)));
    const t0 = performance.now();
    const model = serialize(graph, external, link, keepHalf);
    try {
      const serializeMs = performance.now() - t0;
      const { session, cache } = await openSession(
        model,
        sessionOptions,
        level === 'disabled' ? null : cacheDir(options.cache),
      );
      const sessionMs = performance.now() - t0 - serializeMs;
      return new CompiledGraph(
        session,
        graph,
        { serializeMs, sessionMs, nodes: graph.nodes.length, cache },
        profile ?? null,
      );
    } finally {
      // ONNX Runtime has read or mapped the weights by now (a mapping outlives the link).
      model.cleanup();
    }
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
      if (f.data.length !== shapeSize(v.shape))
        throw new Error(`run: input '${name}' has ${f.data.length} values for shape ${describe(v)}`);
      const isInt = f.data instanceof BigInt64Array;
      if (isInt !== (v.dtype === 'int64')) throw new Error(`run: input '${name}' must be ${v.dtype}`);
      ortFeeds[name] = new ort.Tensor(v.dtype === 'int64' ? 'int64' : 'float32', f.data, [...f.shape]);
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputsByName.has(name))
        throw new Error(`run: unknown input '${name}' (inputs: ${this.inputNames.join(', ')})`);
    }
    for (const [name, t] of this.paramFeeds) ortFeeds[name] = t;
    const wanted = outputs ? [...outputs] : this.outputNames;
    for (const name of wanted) if (!this.outputNames.includes(name)) throw new Error(`run: unknown output '${name}'`);
    const result = await this.session.run(ortFeeds, wanted);
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
   * Stop profiling (sessions compiled with `profile`) and return the profile file's path: the newest file that
   * starts with the prefix, as ONNX Runtime appends a timestamp. null when profiling is off.
   */
  endProfiling(): string | null {
    const prefix = this.profilePrefix;
    if (!prefix) return null;
    this.session.endProfiling();
    const dir = dirname(prefix);
    const base = basename(prefix);
    const files = readdirSync(dir)
      .filter((f) => f.startsWith(base) && f.endsWith('.json'))
      .map((f) => join(dir, f))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    return files[0] ?? null;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export function compile(graph: Graph, options?: CompileOptions): Promise<CompiledGraph> {
  return CompiledGraph.create(graph, options);
}

/**
 * A session for `model`, through the optimized-model cache when there is one: a hit loads ONNX Runtime's saved
 * optimized model with optimisation off; a miss optimizes as usual, saves the result (weights to an external
 * file beside it) and stores it under the key. Any cache trouble falls back to a plain session.
 */
async function openSession(
  model: Serialized,
  options: ort.InferenceSession.SessionOptions,
  root: string | null,
): Promise<{ session: ort.InferenceSession; cache: CompileTimings['cache'] }> {
  const plain = () =>
    model.path ? ort.InferenceSession.create(model.path, options) : ort.InferenceSession.create(model.bytes, options);
  if (!root) return { session: await plain(), cache: 'off' };
  const h = createHash('sha256');
  for (const part of [
    `s2i-ort-cache-1`,
    onnxruntimeVersion(),
    process.arch,
    cpus()[0]?.model ?? '',
    String(options.graphOptimizationLevel),
    ...model.dependencies,
  ])
    h.update(part + '\0');
  h.update(model.bytes);
  const key = h.digest('hex').slice(0, 40);
  const entry = join(root, key);
  const cached = join(entry, 'model.onnx');
  if (existsSync(cached)) {
    try {
      const session = await ort.InferenceSession.create(cached, { ...options, graphOptimizationLevel: 'disabled' });
      const now = new Date();
      utimesSync(entry, now, now);
      return { session, cache: 'hit' };
    } catch {
      rmSync(entry, { recursive: true, force: true });
    }
  }
  let tmp: string;
  try {
    mkdirSync(root, { recursive: true });
    tmp = mkdtempSync(join(root, 'tmp-'));
  } catch {
    return { session: await plain(), cache: 'off' };
  }
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    const saving: ort.InferenceSession.SessionOptions = {
      ...options,
      optimizedModelFilePath: join(tmp, 'model.onnx'),
      // The saved model holds layout transforms for this CPU (the key has the CPU); no need to warn about it.
      logSeverityLevel: 3,
      extra: {
        ...(options.extra as Record<string, unknown>),
        session: {
          ...((options.extra as { session?: Record<string, string> } | undefined)?.session ?? {}),
          optimized_model_external_initializers_file_name: 'weights.bin',
          optimized_model_external_initializers_min_size_in_bytes: '1024',
        },
      },
    };
    const session = model.path
      ? await ort.InferenceSession.create(model.path, saving)
      : await ort.InferenceSession.create(model.bytes, saving);
    try {
      if (folderBytes(tmp) <= cacheLimitBytes() / 2) {
        renameSync(tmp, entry);
        evict(root, cacheLimitBytes());
        return { session, cache: 'stored' };
      }
    } catch {
      // another process stored it first, or the cache is not writable
    }
    rmSync(tmp, { recursive: true, force: true });
    return { session, cache: 'off' };
  } catch {
    rmSync(tmp, { recursive: true, force: true });
    return { session: await plain(), cache: 'off' };
  } finally {
    forget();
  }
}

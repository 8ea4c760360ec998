/**
 * The Node backend of graph/runtime.ts: sessions on onnxruntime-node's CPU execution provider, with weights as
 * external data linked straight from their safetensors files, and an on-disk cache of optimized models.
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
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, homedir, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import './ort-env.js'; // before onnxruntime-node loads: telemetry off
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { onCleanup } from '../util/cleanup.js';
import type { Graph } from './graph.js';
import { serializeGraph } from './onnx.js';
import type { BackendSession, CompileOptions, CompileTimings, RuntimeBackend } from './runtime.js';

const EXTERNAL_THRESHOLD_BYTES = 1.5 * 1024 ** 3;
/** Weights that cannot be linked are still copied to an external file past this size. */
const EXTERNAL_COPY_THRESHOLD_BYTES = 64 * 1024 ** 2;

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
    const fd = openSync(weights, 'w');
    let bytes: Uint8Array;
    try {
      bytes = serializeGraph(graph, {
        externalData: { fileName: basename(weights), write: (b, offset) => writeSync(fd, b, 0, b.length, offset) },
        linkExternal: link ? linkExternal : undefined,
        keepHalf,
      });
    } finally {
      closeSync(fd);
    }
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

async function createSession(graph: Graph, options: CompileOptions): Promise<BackendSession> {
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
  // External data beats weights inside the protobuf well before protobuf's 2 GB limit, in session time and peak
  // memory (docs/measurements.md#external-data).
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
      weightBytes,
    );
    const sessionMs = performance.now() - t0 - serializeMs;
    return {
      session,
      timings: { serializeMs, sessionMs, nodes: graph.nodes.length, cache },
      endProfiling: profile ? () => endProfiling(session, profile) : undefined,
    };
  } finally {
    // ONNX Runtime has read or mapped the weights by now (a mapping outlives the link).
    model.cleanup();
  }
}

/**
 * Stop profiling and return the profile file's path: the newest file that starts with the prefix, as ONNX Runtime
 * appends a timestamp.
 */
function endProfiling(session: ort.InferenceSession, prefix: string): string | null {
  session.endProfiling();
  const dir = dirname(prefix);
  const base = basename(prefix);
  const files = readdirSync(dir)
    .filter((f) => f.startsWith(base) && f.endsWith('.json'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return files[0] ?? null;
}

/** onnxruntime-node, CPU execution provider. */
export const nodeRuntime: RuntimeBackend = {
  name: 'onnxruntime-node (cpu)',
  createSession,
  tensor: (type, data, dims) => new ort.Tensor(type, data, [...dims]),
};

/**
 * A session for `model`, through the optimized-model cache when there is one: a hit loads ONNX Runtime's saved
 * optimized model with optimisation off; a miss optimizes as usual, saves the result (weights to an external
 * file beside it) and stores it under the key. Any cache trouble falls back to a plain session.
 */
async function openSession(
  model: Serialized,
  options: ort.InferenceSession.SessionOptions,
  root: string | null,
  weightBytes: number,
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
  // A model whose weights alone pass the size an entry may have (half the cache) would be written out in full
  // and then thrown away: SDXL's UNet is 10.3 GB against the default 8 GB cache (docs/measurements.md#ort-cache-size).
  if (weightBytes > cacheLimitBytes() / 2) return { session: await plain(), cache: 'off' };
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

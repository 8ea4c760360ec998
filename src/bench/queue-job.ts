/**
 * One benchmark job as it travels through the queue (see queue.ts): the job's data (`QueuedJob`, checked on
 * arrival: it comes from Redis), the result (`QueuedResult`), and what a worker does with a job — the same
 * `prepareBenchJob` and `generateBenchImage` as a local run, after checking the model fingerprint and the row key.
 * No side effects: the worker thread (queue-thread.ts) and the producer both import it.
 */
import { dirname, join } from 'node:path';
import { UnrecoverableError } from 'bullmq';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../image/png.js';
import { methodPreset } from '../methods/registry.js';
import { isRequestJob, runRequestJob } from '../pipeline/request-json.js';
import type { StableDiffusion } from '../pipeline/stable-diffusion.js';
import { SAMPLER_NAMES, type SamplerName } from '../schedulers/index.js';
import { isColour, isShape } from '../shapes/world.js';
import { generateBenchImage, prepareBenchJob, type PreparedBenchJob } from './image.js';
import type { BenchJob } from './plan.js';
import type { BenchRow } from './row.js';
import { SPLITS, type PromptKind } from './suites.js';
import { makeFolders } from '../io/durable.js';

/** What travels in a job: the image to make, and what the producer expects of the worker's model. */
export interface QueuedJob {
  job: BenchJob;
  /** The producer's model fingerprint and row key. */
  model: string;
  key: string;
  /** What the producer's UNet predicts (a load option, `--prediction-type`, that the fingerprint does not cover). */
  predictionType: string;
}

/** What a worker returns: the row, and each file with its PNG bytes (base64) unless the worker wrote it itself. */
export interface QueuedResult {
  row: BenchRow;
  files: { path: string; png?: string }[];
}

export function jobIdOf(key: string): string {
  return `s2i-${key}`;
}

export function keyOfJobId(id: string | undefined): string | null {
  return id?.startsWith('s2i-') ? id.slice(4) : null;
}

// ------------------------------------------------------------------------------------------------------ wire format

/** JSON that keeps Maps (the latent loop's thresholds) as `{"$map": [[k, v], ...]}`. */
export function encodeJson(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_k, v: unknown) => (v instanceof Map ? { $map: [...(v as Map<unknown, unknown>)] } : v)),
  );
}

function decodeJson<T>(value: unknown): T {
  return JSON.parse(JSON.stringify(value), (_k, v: unknown) =>
    v && typeof v === 'object' && Array.isArray((v as { $map?: unknown }).$map)
      ? new Map((v as { $map: [unknown, unknown][] }).$map)
      : v,
  ) as T;
}

/** Checks a job's data (it comes from Redis: anyone who can write there can put anything in it). */
export function parseQueuedJob(data: unknown): QueuedJob {
  const bad = (why: string) => new UnrecoverableError(`malformed job data: ${why}`);
  if (!data || typeof data !== 'object') throw bad('not an object');
  const d = data as Record<string, unknown>;
  const j = d['job'] as Record<string, unknown> | undefined;
  if (!j || typeof j !== 'object') throw bad('no "job" object');
  const str = (o: Record<string, unknown>, k: string) => {
    if (typeof o[k] !== 'string') throw bad(`"${k}" is not a string`);
    return o[k] as string;
  };
  const int = (k: string, lo: number, hi: number) => {
    const v = j[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) throw bad(`"${k}" is out of range`);
    return v;
  };
  const method = str(j, 'method');
  try {
    methodPreset(method);
  } catch {
    throw bad(`unknown method "${method}"`);
  }
  if (!Array.isArray(j['objects'])) throw bad('"objects" is not a list');
  const objects = (j['objects'] as unknown[]).map((o) => {
    const r = o as { shape?: unknown; colour?: unknown };
    if (!o || typeof r.shape !== 'string' || !isShape(r.shape)) throw bad('an object has no known shape');
    if (r.colour !== undefined && (typeof r.colour !== 'string' || !isColour(r.colour)))
      throw bad('an object has an unknown colour');
    return r.colour !== undefined ? { shape: r.shape, colour: r.colour } : { shape: r.shape };
  });
  const sampler = str(j, 'sampler');
  if (!(SAMPLER_NAMES as readonly string[]).includes(sampler)) throw bad(`unknown sampler "${sampler}"`);
  const split = j['split'];
  if (split !== null && !(SPLITS as readonly unknown[]).includes(split)) throw bad('unknown split');
  const kind = j['kind'];
  if (kind !== null && !['single', 'distinct', 'same-shape', 'same-colour'].includes(kind as string))
    throw bad('unknown prompt kind');
  const guidance = j['guidance'];
  if (typeof guidance !== 'number' || !Number.isFinite(guidance)) throw bad('"guidance" is not a number');
  if (typeof j['maps'] !== 'boolean') throw bad('"maps" is not a boolean');
  const overrides = j['methodOverrides'];
  if (overrides !== undefined && (!overrides || typeof overrides !== 'object'))
    throw bad('"methodOverrides" is not an object');
  const job: BenchJob = {
    prompt: str(j, 'prompt'),
    objects,
    seed: int('seed', 0, Number.MAX_SAFE_INTEGER),
    method,
    suite: str(j, 'suite'),
    split: split as BenchJob['split'],
    kind: kind as PromptKind | null,
    steps: int('steps', 1, 1000),
    guidance,
    sampler: sampler as SamplerName,
    ...(overrides !== undefined ? { methodOverrides: decodeJson<BenchJob['methodOverrides']>(overrides) } : {}),
    maps: j['maps'] as boolean,
  };
  return { job, model: str(d, 'model'), key: str(d, 'key'), predictionType: str(d, 'predictionType') };
}

/** What the model's UNet predicts, as loaded (the scheduler config, or --prediction-type over it). */
export function predictionTypeOf(model: StableDiffusion): string {
  const t = model.schedulerConfig['prediction_type'];
  return typeof t === 'string' ? t : 'epsilon';
}

/** Runs queued jobs on one loaded model: checks each against the model, generates, scores, returns the result. */
export class QueuedJobRunner {
  /** `out`: write the files into this (shared) folder and return only their paths. */
  constructor(
    readonly model: StableDiffusion,
    readonly fingerprint: string,
    readonly out?: string,
  ) {}

  /**
   * Throws `UnrecoverableError` for a job that can never succeed (malformed data, a prompt the tokenizer refuses),
   * and a plain Error for one another worker may still do (another model fingerprint, other method settings).
   */
  async run(data: unknown): Promise<QueuedResult> {
    // A request from `s2i serve --queue` (src/server/redis.ts): run as `s2i generate` would, PNGs back.
    if (isRequestJob(data)) {
      try {
        return (await runRequestJob(this.model, this.fingerprint, data)) as unknown as QueuedResult;
      } catch (e) {
        if (e instanceof UserError) throw new UnrecoverableError(e.message);
        throw e;
      }
    }
    const q = parseQueuedJob(data);
    if (q.model !== this.fingerprint)
      throw new Error(
        `model fingerprint ${q.model} of the benchmark differs from this worker's ${this.fingerprint} (model ${this.model.dir}); run the worker with the benchmark's model`,
      );
    const mine = predictionTypeOf(this.model);
    if (q.predictionType !== mine)
      throw new Error(
        `prediction type ${q.predictionType} of the benchmark differs from this worker's ${mine}; give the worker the benchmark's prediction type`,
      );
    let prepared: PreparedBenchJob;
    try {
      prepared = prepareBenchJob(this.model, this.fingerprint, q.job);
    } catch (e) {
      if (e instanceof UserError) throw new UnrecoverableError(e.message);
      throw e;
    }
    if (prepared.key !== q.key)
      throw new Error(
        `this worker derives the row key ${prepared.key}, the producer ${q.key}: the same model but other method settings (different s2i versions?)`,
      );
    const image = await generateBenchImage(this.model, prepared);
    if (this.out !== undefined) {
      for (const f of image.files) {
        makeFolders(dirname(join(this.out, f.path)));
        writeFileAtomic(join(this.out, f.path), f.bytes);
      }
      return { row: image.row, files: image.files.map((f) => ({ path: f.path })) };
    }
    return { row: image.row, files: image.files.map((f) => ({ path: f.path, png: f.bytes.toString('base64') })) };
  }
}

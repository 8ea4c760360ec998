/**
 * A request and its images as plain JSON, for work that travels: `s2i serve --queue redis://` puts each request in
 * the job queue as a `RequestJob`, and an `s2i worker` runs it with `runRequestJob` — the same `plan` and `run` as
 * `s2i generate` — and returns `ServedImages` (PNGs in base64). A job's data comes from Redis, where anyone who can
 * write can put anything: `parseRequestJob` checks every field before use.
 */
import { UserError } from '../errors.js';
import { encodePng } from '../image/png.js';
import { SAMPLER_NAMES, type SamplerName } from '../schedulers/index.js';
import { plan } from './plan.js';
import type { GenerateRequest, GenerateRun } from './request.js';
import { run } from './run.js';
import type { StableDiffusion } from './stable-diffusion.js';

/** A finished request's images: PNG (base64), seed and attention picture (PNG, base64) of each. */
export interface ServedImages {
  images: { png: string; seed: number; maps: string | null }[];
  /** The guidance method that ran ('none': plain sampling). */
  method: string;
  steps: number;
  guidance: number;
  sampler: SamplerName;
  width: number;
  height: number;
}

/** What travels: the request, and the fingerprint of the model it was checked against. */
export interface RequestJob {
  s2iRequest: 1;
  model: string;
  request: Pick<
    GenerateRequest,
    | 'prompt'
    | 'negativePrompt'
    | 'steps'
    | 'guidanceScale'
    | 'sampler'
    | 'seed'
    | 'height'
    | 'width'
    | 'method'
    | 'subjects'
    | 'attentionPicture'
    | 'images'
  >;
}

/** A run's images as PNG (base64), with their seeds and attention pictures. */
export function servedImages(run: GenerateRun): ServedImages {
  const b64 = (img: { data: Uint8Array; width: number; height: number }) =>
    encodePng(img.data, img.width, img.height).toString('base64');
  return {
    images: run.images.map((i) => ({ png: b64(i.image), seed: i.seed ?? 0, maps: i.picture ? b64(i.picture) : null })),
    method: run.method?.name ?? 'none',
    steps: run.steps,
    guidance: run.guidance,
    sampler: run.sampler,
    width: run.image.width,
    height: run.image.height,
  };
}

export function isRequestJob(data: unknown): boolean {
  return !!data && typeof data === 'object' && (data as { s2iRequest?: unknown }).s2iRequest === 1;
}

/** Checks a job's data field by field (it comes from Redis); a UserError names what is wrong. */
export function parseRequestJob(data: unknown): RequestJob {
  const bad = (why: string) => new UserError(`malformed request job: ${why}`);
  if (!isRequestJob(data)) throw bad('not a request job');
  const d = data as Record<string, unknown>;
  if (typeof d['model'] !== 'string') throw bad('"model" is not a string');
  const r = d['request'] as Record<string, unknown> | undefined;
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw bad('"request" is not an object');
  const out: RequestJob['request'] = { prompt: '' };
  const str = (k: string, max: number) => {
    if (r[k] === undefined) return undefined;
    if (typeof r[k] !== 'string' || r[k].length > max) throw bad(`"${k}" is not a string of at most ${max} characters`);
    return r[k];
  };
  const num = (k: string, lo: number, hi: number, int: boolean) => {
    const v = r[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isSafeInteger(v)))
      throw bad(`"${k}" is out of range`);
    return v;
  };
  out.prompt = str('prompt', 100_000) ?? '';
  const set = <K extends keyof RequestJob['request']>(k: K, v: RequestJob['request'][K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set('negativePrompt', str('negativePrompt', 100_000));
  set('steps', num('steps', 1, 1000, true));
  set('guidanceScale', num('guidanceScale', -1000, 1000, false));
  const sampler = str('sampler', 32);
  if (sampler !== undefined && !(SAMPLER_NAMES as readonly string[]).includes(sampler)) throw bad('unknown sampler');
  set('sampler', sampler as SamplerName | undefined);
  set('seed', num('seed', 0, Number.MAX_SAFE_INTEGER, true));
  set('height', num('height', 8, 65536, true));
  set('width', num('width', 8, 65536, true));
  set('method', str('method', 64));
  set('subjects', str('subjects', 1000));
  set('images', num('images', 1, 1024, true));
  if (r['attentionPicture'] !== undefined) {
    if ((r['attentionPicture'] as { steps?: unknown } | null)?.steps !== 'mean')
      throw bad('"attentionPicture" is not {steps: "mean"}');
    out.attentionPicture = { steps: 'mean' };
  }
  return { s2iRequest: 1, model: d['model'], request: out };
}

/** Runs a request job on a loaded model (after checking it was meant for this model). */
export async function runRequestJob(model: StableDiffusion, fingerprint: string, data: unknown): Promise<ServedImages> {
  const job = parseRequestJob(data);
  if (job.model !== fingerprint)
    throw new UserError(
      `the request was checked against model fingerprint ${job.model}, this worker has ${fingerprint} (${model.dir}); run the worker with the server's model`,
    );
  return servedImages(await run(plan(job.request, model)));
}

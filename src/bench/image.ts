/**
 * One image of a benchmark: its job planned on a loaded model as a request with the benchmark's rules (`plan`:
 * subjects, method, settings; here its key), run (`run`: a batch of jobs of one method at a time, each image the one
 * it would be alone) and scored, into its row and the
 * PNG bytes of its files (the image, at most 256 px on its long side, and with `maps` the attention-map picture).
 * Writes nothing: the local run and a job queue's workers store the results their own way.
 */
import { meanMaps, tokenMap } from '../attention/render.js';
import { blendImages, heatmap } from '../image/colormap.js';
import { floatToRgb8 } from '../image/convert.js';
import { composeGrid } from '../image/grid.js';
import type { RgbImage } from '../image/image.js';
import { encodePng } from '../image/png.js';
import { resizeImage, resizeMap } from '../image/resize.js';
import type { GuidanceMethod } from '../methods/types.js';
import type { GenerateResult } from '../pipeline/generate.js';
import type { GenerateRequest } from '../pipeline/request.js';
import { plan, type GenerationPlan } from '../pipeline/plan.js';
import { run } from '../pipeline/run.js';
import type { StableDiffusion } from '../pipeline/stable-diffusion.js';
import { scoreImage } from '../shapes/score.js';
import type { Tensor } from '../tensor.js';
import { measureRow } from './metrics.js';
import {
  benchImagePaths,
  methodSettings,
  noiseSeed,
  rowKey,
  settingsHash,
  type BenchJob,
  type BenchSettings,
} from './plan.js';
import { BENCH_ROW_VERSION, type BenchRow } from './row.js';

const MAX_SAVED_SIDE = 256;

/** A job planned on a loaded model: its plan, method, settings and row key. */
export interface PreparedBenchJob {
  job: BenchJob;
  plan: GenerationPlan;
  method: GuidanceMethod | undefined;
  settings: BenchSettings;
  hash: string;
  key: string;
}

/** A generated image: its row and the files it refers to (paths relative to the output folder). */
export interface BenchImage {
  row: BenchRow;
  files: { path: string; bytes: Buffer }[];
}

/** A job's overrides as a request takes them: the map resolution is the request's own field. */
function methodAndResolution(overrides: BenchJob['methodOverrides']): Partial<GenerateRequest> {
  if (!overrides) return {};
  const { attnRes, ...rest } = overrides;
  return { ...(Object.keys(rest).length ? { methodOverrides: rest } : {}), ...(attnRes ? { attnRes } : {}) };
}

/**
 * Plans the job on `model` with the benchmark's rules (BenchmarkRules: the subjects found automatically for every
 * method, a prompt without them an error quoting it) and derives its settings and row key. `fingerprint` is
 * `modelFingerprint(model.dir)` (computed once by the caller: it reads the folder).
 */
export function prepareBenchJob(model: StableDiffusion, fingerprint: string, job: BenchJob): PreparedBenchJob {
  const planned = plan(
    {
      prompt: job.prompt,
      seed: noiseSeed(job.seed, job.prompt),
      steps: job.steps,
      guidanceScale: job.guidance,
      sampler: job.sampler,
      method: job.method,
      ...methodAndResolution(job.methodOverrides),
    },
    model,
    { recordMaps: job.maps },
  );
  const method = planned.samples[0]!.method;
  const settings: BenchSettings = {
    steps: job.steps,
    guidance: job.guidance,
    sampler: job.sampler,
    height: planned.height,
    width: planned.width,
    model: fingerprint,
    method: methodSettings(method),
  };
  const hash = settingsHash(settings);
  return { job, plan: planned, method, settings, hash, key: rowKey(job.prompt, job.seed, job.method, hash) };
}

/** Generates and scores one prepared job: the row and the PNG bytes of its files. Writes nothing. */
export async function generateBenchImage(model: StableDiffusion, prepared: PreparedBenchJob): Promise<BenchImage> {
  return (await generateBenchImages(model, [prepared]))[0]!;
}

/**
 * Generates prepared jobs of one method and sampling settings as one batch (each image is the one it would be
 * alone) and scores them: rows and PNG bytes, in the order given. Writes nothing.
 */
export async function generateBenchImages(
  model: StableDiffusion,
  prepared: readonly PreparedBenchJob[],
): Promise<BenchImage[]> {
  const first = prepared[0]!.job;
  for (const { job } of prepared) {
    if (job.steps !== first.steps || job.guidance !== first.guidance || job.sampler !== first.sampler)
      throw new Error('generateBenchImages: the jobs of one batch must share steps, guidance and sampler');
    if (job.maps !== first.maps)
      throw new Error('generateBenchImages: the jobs of one batch must all record maps or none');
  }
  const nGraphs = model.graphTimings.length;
  const runs = await run(
    prepared.map((p) => p.plan),
    { batchSize: prepared.length },
  );
  const results = runs.map((r) => r.result);
  const compileMs = model.graphTimings.slice(nGraphs).reduce((s, g) => s + g.buildMs + g.serializeMs + g.sessionMs, 0);
  return prepared.map((p, i) => benchImage(model, p, results[i]!, compileMs / prepared.length));
}

/** Scores one generated image: its row and the PNG bytes of its files. */
function benchImage(
  model: StableDiffusion,
  prepared: PreparedBenchJob,
  result: GenerateResult,
  compileMs: number,
): BenchImage {
  const { job, settings, hash, key } = prepared;
  const subjects = prepared.plan.subjects!.subjects;
  const attributes = prepared.plan.attributes;
  const image = floatToRgb8(result.image);
  const tScore = performance.now();
  const score = scoreImage(image, undefined, undefined, job.objects);
  const scoreMs = performance.now() - tScore;

  const paths = benchImagePaths(job.prompt, job.method, job.seed, hash);
  const saved = smallImage(image);
  const files = [{ path: paths.image, bytes: encodePng(saved.data, saved.width, saved.height) }];
  let mapsPath: string | null = null;
  if (job.maps) {
    const tokens = [
      ...subjects.map((s) => ({ word: s.word, index: s.tokenIndex })),
      ...attributes.map((a) => ({ word: a.attribute.word, index: a.attribute.tokenIndex })),
    ].sort((a, b) => a.index - b.index);
    const pic = mapsPicture(image, [...result.attentionMaps.values()], tokens);
    if (pic) {
      mapsPath = paths.maps;
      files.push({ path: mapsPath, bytes: encodePng(pic.data, pic.width, pic.height) });
    }
  }
  const measured = { score, result, compileMs, scoreMs };
  const row = {
    v: BENCH_ROW_VERSION,
    key,
    prompt: job.prompt,
    seed: job.seed,
    noise_seed: result.seed!,
    method: job.method,
    settings,
    settings_hash: hash,
    suite: job.suite,
    split: job.split,
    kind: job.kind,
    subjects: subjects.map((s) => ({ word: s.word, tokens: [...s.tokenIndices] })),
    attributes: attributes.map((a) => ({
      word: a.attribute.word,
      tokens: [...a.attribute.tokenIndices],
      subject: a.subject,
    })),
    objects: score.objects,
    ...measureRow(measured, 'score'),
    detections: score.detections.map((d) => ({
      shape: d.shape,
      colour: d.colour,
      bbox: d.bbox,
      area: d.area,
      matched_to: d.matched_to,
    })),
    ...measureRow(measured, 'result'),
    image: paths.image,
    maps: mapsPath,
    model_dir: model.dir,
    created: new Date().toISOString(),
  } as BenchRow;
  return { row, files };
}

/** The image as saved: native size, or reduced to at most 256 px on its long side. */
function smallImage(img: RgbImage): RgbImage {
  const long = Math.max(img.width, img.height);
  if (long <= MAX_SAVED_SIDE) return img;
  const s = MAX_SAVED_SIDE / long;
  return resizeImage(img, Math.max(1, Math.round(img.width * s)), Math.max(1, Math.round(img.height * s)), 'bilinear');
}

/**
 * One tile per token: the token's cross-attention map (averaged over the recorded steps, divided by its max) as a
 * jet heat map over the image, labelled with the word.
 */
export function mapsPicture(
  image: RgbImage,
  maps: readonly Tensor[],
  tokens: readonly { word: string; index: number }[],
): RgbImage | null {
  if (maps.length === 0 || tokens.length === 0) return null;
  const mean = meanMaps(maps);
  const [h, w] = mean.shape as [number, number, number];
  const k = Math.max(1, Math.ceil(64 / Math.min(image.width, image.height)));
  const base = k > 1 ? resizeImage(image, image.width * k, image.height * k, 'nearest') : smallImage(image);
  const tiles = tokens.map((t) => {
    const big = resizeMap(tokenMap(mean, t.index), w, h, base.width, base.height, 'bilinear');
    return blendImages(base, heatmap(big, base.width, base.height, { colormap: 'jet', normalize: 'max' }), 0.5);
  });
  return composeGrid(tiles, tiles.length, { pad: 2, labels: tokens.map((t) => t.word) });
}

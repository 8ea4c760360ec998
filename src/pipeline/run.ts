/**
 * `run(plan)`: a planned request (plan.ts) generated — its images in batches, each turned into 8-bit pixels and,
 * when asked, its attention picture — and handed back with every setting it used. Plans with the same batch key (a
 * server's queue, a benchmark's jobs of one method) run together in one `generateBatch`.
 */
import { meanMaps, promptTokenColumns, renderAttentionPicture, type AttentionRow } from '../attention/render.js';
import { floatToRgb8 } from '../image/convert.js';
import { generateBatch, type GenerateResult } from './generate.js';
import { plan, type GenerationPlan } from './plan.js';
import { type GenerateRequest, type GenerateRun, type ImageRun, type RequestHooks } from './request.js';
import type { StableDiffusion } from './stable-diffusion.js';
import type { Tensor } from '../tensor.js';

export interface RunHooks extends RequestHooks {
  /**
   * Images generated together. Default: a single plan's own batch size; for a list of plans, as many of all their
   * images as fit the memory budget (generateBatch's default).
   */
  batchSize?: number;
}

/** Runs one plan. */
export function run(plan: GenerationPlan, hooks?: RunHooks): Promise<GenerateRun>;
/** Runs plans of one model and batch key together; their runs in plan order. */
export function run(plans: readonly GenerationPlan[], hooks?: RunHooks): Promise<GenerateRun[]>;
export async function run(
  which: GenerationPlan | readonly GenerationPlan[],
  hooks: RunHooks = {},
): Promise<GenerateRun | GenerateRun[]> {
  const plans: readonly GenerationPlan[] = Array.isArray(which) ? which : [which as GenerationPlan];
  const first = plans[0]!;
  for (const p of plans)
    if (p.model !== first.model || p.batchKey !== first.batchKey)
      throw new Error('run: plans run together must share their model and batch key');
  const samples = plans.flatMap((p) => p.samples);
  const batchSize = hooks.batchSize ?? (Array.isArray(which) ? undefined : first.batchSize);
  hooks.onStart?.(first.totalCalls * (batchSize === undefined ? 1 : Math.ceil(samples.length / batchSize)));
  const results = await generateBatch(first.model, samples, {
    ...first.options,
    ...(batchSize !== undefined ? { batchSize } : {}),
    ...(hooks.onStep ? { onStep: hooks.onStep } : {}),
  });
  let at = 0;
  const runs = plans.map((p) => {
    const mine = results.slice(at, at + p.samples.length);
    at += p.samples.length;
    return finish(p, mine);
  });
  return Array.isArray(which) ? runs : runs[0]!;
}

/** Plans and runs a request on a loaded model (the library's one call). */
export async function runRequest(
  model: StableDiffusion,
  request: GenerateRequest,
  hooks: RequestHooks = {},
): Promise<GenerateRun> {
  return run(plan(request, model), hooks);
}

/** The run of a plan from the results of its samples (in their order). */
function finish(p: GenerationPlan, results: readonly GenerateResult[]): GenerateRun {
  const wanted = p.request.attentionPicture;
  const images: ImageRun[] = results.map((result, i) => {
    const image = floatToRgb8(result.image, { range: 'signed' });
    const picture = wanted ? renderAttentionPicture(image, pictureRows(p, result), tokenColumns(p)) : null;
    return { seed: p.seeds[i], result, image, picture };
  });
  return {
    ...images[0]!,
    images,
    batchSize: p.batchSize,
    steps: p.steps,
    guidance: p.guidance,
    sampler: p.sampler,
    subjects: p.subjects,
    attributes: p.attributes,
    method: p.method,
    attnRes: p.attnRes,
    notes: p.notes,
  };
}

/** The picture's rows: at the plan's resolution, then (each row's label naming its size) at every further one. */
function pictureRows(p: GenerationPlan, result: GenerateResult): AttentionRow[] {
  const { steps, alsoAt } = p.request.attentionPicture!;
  if (!alsoAt?.length) return attentionRows(result.attentionMaps, result.timesteps, steps);
  const sized = (res: string, maps: Map<number, Tensor>) =>
    attentionRows(maps, result.timesteps, steps).map((row) => ({ ...row, label: [res, ...row.label] }));
  return [
    ...sized(p.attnRes!.join('x'), result.attentionMaps),
    ...[...(result.attentionMapsAt ?? [])].flatMap(([res, maps]) => sized(res, maps)),
  ];
}

/** The attention picture's rows: the mean over all recorded steps, or the chosen steps. */
function attentionRows(
  byCall: Map<number, Tensor>,
  timesteps: readonly number[],
  which: readonly number[] | 'all' | 'mean',
): AttentionRow[] {
  const calls = [...byCall.keys()].sort((a, b) => a - b);
  if (which === 'mean') {
    return [{ label: ['mean of', `${calls.length} steps`], maps: meanMaps(calls.map((i) => byCall.get(i)!)) }];
  }
  const steps = which === 'all' ? calls : which;
  return steps.map((i) => ({ label: [`step ${i}`, `t=${timesteps[i]}`], maps: byCall.get(i)! }));
}

/** The picture's columns: the subjects' tokens when subjects were named, else every prompt token. */
function tokenColumns(p: GenerationPlan) {
  if (p.subjects)
    return p.subjects.subjects.flatMap((s) => s.tokenIndices.map((index, k) => ({ index, text: s.tokenTexts[k]! })));
  return promptTokenColumns(p.model.tokenizer, p.request.prompt);
}

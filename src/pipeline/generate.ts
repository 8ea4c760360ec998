/**
 * Text-to-image sampling with classifier-free guidance, as diffusers' StableDiffusionPipeline.__call__ does it:
 * text embeddings for the prompt and the negative prompt (empty by default), initial latents × init_noise_sigma,
 * then per sampler call: scale_model_input, a UNet pass over [uncond, cond], uncond + g·(cond − uncond),
 * sampler step; finally the VAE decode. A guidance method may change the latents before each guided pass
 * (Attend-and-Excite, Suppress-to-Impress's loss mode) and edit the pass's cross-attention (edit mode).
 *
 * Several samples (each its own prompt, seed, initial latents and method instance) run as one batch: one text
 * encoder pass, one UNet pass of 2B rows per sampler call ([uncond × B, cond × B], diffusers' order), one decode.
 * Each sample has its own random stream and sampler state, and samples never interact inside a pass, so every
 * image of a batch is its batch-1 image up to float32 rounding.
 */
import { FieldError, UserError } from '../errors.js';
import type { GuidedSample, PassCount, StartSample, StepContext } from '../methods/types.js';
import {
  createSampler,
  defaultSampler,
  resolveSchedulerConfig,
  type Sampler,
  type SamplerName,
} from '../schedulers/index.js';
import { firstNonFinite, numel, type Tensor } from '../tensor.js';
import { checkMemory } from '../util/memory.js';
import { GaussianRng } from '../util/random.js';
import { defaultBatchSize } from './batch-size.js';
import { generationFootprint } from './footprint.js';
import type { BatchOptions, GenerateOptions, GenerateResult, SampleRequest, StepRecord } from './generate-types.js';
import { attentionRecording, guidedPass, keepMapsAt, guidedPrediction } from './guided-pass.js';
import { candidateSeed, chooseStarts, startPlan } from './starts.js';
import type { StableDiffusion } from './stable-diffusion.js';

export { candidateSeed };
export type {
  AttentionRecording,
  BatchOptions,
  GenerateOptions,
  GenerateResult,
  SampleRequest,
  StepInfo,
  StepRecord,
} from './generate-types.js';

/** diffusers' StableDiffusionPipeline defaults. */
export const DEFAULT_STEPS = 50;
export const DEFAULT_GUIDANCE = 7.5;
/**
 * The guidance scales a run accepts. diffusers takes any number, but past a few tens every model's latents grow
 * until the image is saturated (1e30 gives a two-colour picture and no error); 0 is the unconditional prediction.
 */
export const GUIDANCE_RANGE = [0, 100] as const;

function checkImageSize(name: 'height' | 'width', v: number): void {
  if (!Number.isInteger(v) || v < 8 || v % 8 !== 0)
    throw new FieldError(name, `must be a positive multiple of 8, got ${v}`);
}

/**
 * The image size and the initial latents as [1, C, h, w]: the latents' shape is checked here, once, and sets the
 * size unless height/width are given (then they must agree).
 */
export function resolveImageSize(
  model: StableDiffusion,
  options: Pick<GenerateOptions, 'height' | 'width' | 'initialLatents'>,
): { height: number; width: number; initial: Tensor | null } {
  let height = options.height ?? model.defaultImageSize;
  let width = options.width ?? model.defaultImageSize;
  const given = options.initialLatents;
  if (!given) return { height, width, initial: null };
  const [f, c] = [model.scaleFactor, model.latentChannels];
  const shape = given.shape.length === 3 ? [1, ...given.shape] : [...given.shape];
  const bad = (expected: string) =>
    new FieldError('initialLatents', (name) => `${name} has shape [${given.shape.join(', ')}], expected ${expected}`);
  if (shape.length !== 4 || shape[0] !== 1 || shape[1] !== c) {
    const side = (v: number | undefined, letter: string) => (v !== undefined ? v / f : letter);
    throw bad(`[1, ${c}, ${side(options.height, 'h')}, ${side(options.width, 'w')}] (${c} latent channels)`);
  }
  const [lh, lw] = [shape[2]!, shape[3]!];
  if ((options.height ?? lh * f) !== lh * f || (options.width ?? lw * f) !== lw * f)
    throw bad(`[1, ${c}, ${height / f}, ${width / f}] for a ${width}x${height} image`);
  [height, width] = [lh * f, lw * f];
  if (height % 8 !== 0 || width % 8 !== 0) {
    throw new FieldError(
      'initialLatents',
      (name) =>
        `${name} has shape [${given.shape.join(', ')}], which makes a ${width}x${height} image; image sides must be multiples of 8`,
    );
  }
  if (firstNonFinite(given.data) >= 0) throw new FieldError('initialLatents', 'contains NaN or Inf');
  return { height, width, initial: { data: given.data, shape } };
}

/** One image: a batch of one. */
export async function generate(model: StableDiffusion, options: GenerateOptions): Promise<GenerateResult> {
  const { prompt, negativePrompt, seed, initialLatents, method, ...shared } = options;
  const sample: SampleRequest = { prompt };
  if (negativePrompt !== undefined) sample.negativePrompt = negativePrompt;
  if (seed !== undefined) sample.seed = seed;
  if (initialLatents !== undefined) sample.initialLatents = initialLatents;
  if (method !== undefined) sample.method = method;
  return (await generateBatch(model, [sample], shared))[0]!;
}

interface BatchSettings {
  steps: number;
  guidance: number;
  height: number;
  width: number;
  latentShape: readonly [1, number, number, number];
  samplerName: SamplerName;
  schedulerConfig: ReturnType<typeof resolveSchedulerConfig>;
}

function resolveBatchSettings(
  model: StableDiffusion,
  samples: readonly SampleRequest[],
  options: BatchOptions,
): BatchSettings {
  const steps = options.steps ?? DEFAULT_STEPS;
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000)
    throw new FieldError('steps', `must be an integer from 1 to 1000, got ${steps}`);
  const guidance = options.guidanceScale ?? model.defaultGuidance ?? DEFAULT_GUIDANCE;
  if (!Number.isFinite(guidance) || guidance < GUIDANCE_RANGE[0] || guidance > GUIDANCE_RANGE[1])
    throw new FieldError(
      'guidanceScale',
      `must be a number from ${GUIDANCE_RANGE[0]} to ${GUIDANCE_RANGE[1]} (larger scales saturate the image), got ${guidance}`,
    );
  // The first sample's latents may set the size; every sample's must then agree with it.
  const withLatents = samples.find((s) => s.initialLatents);
  const { height, width } = resolveImageSize(model, { ...options, initialLatents: withLatents?.initialLatents });
  checkImageSize('height', height);
  checkImageSize('width', width);
  const f = model.scaleFactor;
  if (height % f !== 0 || width % f !== 0)
    throw new UserError(`image size ${height}x${width} is not a multiple of the VAE factor ${f}`);
  // Before anything is allocated: refuse sizes that cannot fit even one image (a 4096x4096 SD image needs
  // hundreds of GB); how many images fit together is the batch size's business (batch-size.ts).
  const footprint = generationFootprint({
    unet: model.unetConfig,
    vae: model.vaeConfig,
    parameters: model.parameterCount,
    latentHeight: height / f,
    latentWidth: width / f,
    scaleFactor: f,
    materializedAttention: samples.some((s) => s.method) || options.recordAttention !== undefined,
    gradient: samples.some((s) => s.method?.usesGradients === true),
  });
  checkMemory(footprint.bytes, `a ${width}x${height} image (${footprint.largest})`);
  const samplerName = options.sampler ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  return {
    steps,
    guidance,
    height,
    width,
    latentShape: [1, model.latentChannels, height / f, width / f],
    samplerName,
    schedulerConfig: resolveSchedulerConfig(samplerName, model.schedulerConfig, options.schedulerOverrides ?? {}),
  };
}

/**
 * Images for several samples, in consecutive batches of at most `options.batchSize` (default: one batch).
 * Results are in the order of `samples`. Every sample is checked before any work starts.
 */
export async function generateBatch(
  model: StableDiffusion,
  samples: readonly SampleRequest[],
  options: BatchOptions = {},
): Promise<GenerateResult[]> {
  if (samples.length === 0) throw new FieldError('samples', 'must hold at least one sample');
  const settings = resolveBatchSettings(model, samples, options);
  // Every sample's initial latents as [1, C, h, w], checked against the batch's size.
  const checked = samples.map((s) =>
    s.initialLatents
      ? {
          ...s,
          initialLatents: resolveImageSize(model, {
            height: settings.height,
            width: settings.width,
            initialLatents: s.initialLatents,
          }).initial!,
        }
      : s,
  );
  const size =
    options.batchSize ??
    defaultBatchSize(model, {
      images: samples.length,
      height: settings.height,
      width: settings.width,
      gradient: samples.some((s) => s.method?.usesGradients === true),
    });
  if (!Number.isInteger(size) || size < 1) throw new FieldError('batchSize', `must be a positive integer, got ${size}`);
  const batches = Math.ceil(samples.length / size);
  const results: GenerateResult[] = [];
  for (let b = 0; b < batches; b++)
    results.push(...(await runBatch(model, checked.slice(b * size, (b + 1) * size), options, settings, b, batches)));
  return results;
}

/** Per-sample state through the sampler loop. */
interface SampleRun {
  request: SampleRequest;
  sampler: Sampler;
  latents: Tensor;
  cond: Tensor;
  uncond: Tensor;
  result: GenerateResult;
  /** UNet passes spent on this sample so far (its starts' included once chosen). */
  cost: PassCount;
}

async function runBatch(
  model: StableDiffusion,
  requests: readonly SampleRequest[],
  options: BatchOptions,
  settings: BatchSettings,
  batchIndex: number,
  batches: number,
): Promise<GenerateResult[]> {
  const t0 = performance.now();
  const B = requests.length;
  const [, c, h, w] = settings.latentShape;
  const perSample = c * h * w;

  // One text-encoder pass over the distinct prompts (the negative prompt is usually shared by all).
  const tEncode = performance.now();
  // Without a negative prompt: the empty prompt's embedding, or zeros where the pipeline says so (SDXL).
  const zeroNegative = model.zeroNegativeEmbedding();
  const negatives = requests.map((r) => r.negativePrompt ?? (zeroNegative ? null : ''));
  const texts = [...new Set([...requests.map((r) => r.prompt), ...negatives.filter((t) => t !== null)])];
  const embedded = await model.encodePrompts(texts);
  // null: no negative prompt given
  const embedding = (text: string | null) =>
    text === null ? (zeroNegative ?? embedded[texts.indexOf('')]!) : embedded[texts.indexOf(text)]!;
  for (const e of embedded)
    if (firstNonFinite(e.data) >= 0)
      throw new UserError(
        `the text encoder's output holds NaN or Inf: ${await model.diagnoseNonFinite('text_encoder')}`,
      );
  const encodeMs = performance.now() - tEncode;
  const [tokens, dim] = [embedded[0]!.shape[1]!, embedded[0]!.shape[2]!];

  const unet = model.unetAccess(h, w, tokens);
  const recording = attentionRecording(requests, options, h, w);
  const batch = (b: number) => ({ size: B, index: b });
  const start = (r: SampleRequest, b: number) =>
    startSample(r, settings, options, embedding, recording.resolution, batch(b));
  const loop: CallLoop = { model, unet, settings, options, recording, batchIndex, batches, tokens, dim };

  const tDenoise = performance.now();
  let runs = requests.map((r, b) => start(r, b));
  const totalCalls = runs[0]!.sampler.timesteps.length;
  await optimizeStarts(loop, runs);
  const starts = startPlan(requests, totalCalls);
  let from = 0;
  if (starts) {
    runs = await chooseStarts(
      runs,
      starts,
      totalCalls,
      (some, round) => runCalls(loop, some, 0, starts.atCall, round),
      (r, b, k) => {
        const method = r.method!.starts!.fork();
        const s = start({ ...r, seed: candidateSeed(r.seed ?? 0, k), method }, b);
        s.result.seed = r.seed ?? null;
        return s;
      },
    );
    from = starts.atCall;
  }
  await runCalls(loop, runs, from, totalCalls, null);
  const denoiseMs = performance.now() - tDenoise;

  const tDecode = performance.now();
  const stacked = new Float32Array(B * perSample);
  runs.forEach((s, b) => stacked.set(s.latents.data, b * perSample));
  const images = await model.decode({ data: stacked, shape: [B, c, h, w] });
  // The decoded images become the output: NaN would silently turn into black pixels.
  if (firstNonFinite(images.data) >= 0)
    throw new UserError(`the VAE decoder's output holds NaN or Inf: ${await model.diagnoseNonFinite('vae')}`);
  const imageSize = images.data.length / B;
  const decodeMs = performance.now() - tDecode;
  const totalMs = performance.now() - t0;
  return runs.map((s, b) => {
    const r = s.result;
    r.finalLatents = s.latents;
    r.image = { data: images.data.slice(b * imageSize, (b + 1) * imageSize), shape: [1, ...images.shape.slice(1)] };
    r.timings = { encodeMs, denoiseMs, decodeMs, totalMs };
    r.cost = { ...s.cost, seconds: totalMs / 1000 / B };
    return r;
  });
}

/** What the sampler loop over a set of samples needs beyond the samples. */
interface CallLoop {
  model: StableDiffusion;
  unet: ReturnType<StableDiffusion['unetAccess']>;
  settings: BatchSettings;
  options: BatchOptions;
  recording: ReturnType<typeof attentionRecording>;
  batchIndex: number;
  batches: number;
  tokens: number;
  dim: number;
}

/** Sampler calls from..to-1 for `runs` (one guided pass of all of them per call). */
async function runCalls(
  loop: CallLoop,
  runs: readonly SampleRun[],
  from: number,
  to: number,
  candidateRound: number | null,
): Promise<void> {
  const { unet, settings, options, recording, tokens, dim } = loop;
  const B = runs.length;
  const [, c, h, w] = settings.latentShape;
  const perSample = c * h * w;
  // [uncond × B, cond × B], as diffusers concatenates them.
  const context: Tensor = { data: new Float32Array(2 * B * tokens * dim), shape: [2 * B, tokens, dim] };
  runs.forEach((s, b) => {
    context.data.set(s.uncond.data, b * tokens * dim);
    context.data.set(s.cond.data, (B + b) * tokens * dim);
  });
  const timesteps = runs[0]!.sampler.timesteps;
  const totalCalls = timesteps.length;
  // A method that edits some calls gets the editing graph on every call (factors of 1 where it does not edit,
  // which leave the probabilities bit-identical): one UNet session instead of two, each of which holds its own
  // copy of the weights in ONNX Runtime (docs/measurements.md#unet-sessions).
  const editGraph = runs.some((s) => s.request.method?.guidedPassEdit !== undefined);
  for (let i = from; i < to; i++) {
    const tStep = performance.now();
    const timestep = timesteps[i]!;
    const ctx: StepContext = { index: i, timestep, totalCalls, unet };
    await updateLatents(ctx, runs);
    const { resolution, everyCall, steps: recordSteps } = recording;
    const wantMaps = resolution !== null && (everyCall || !recordSteps || recordSteps.has(i));
    const edits = runs.map((s) => s.request.method?.guidedPassEdit?.(ctx) ?? null);
    const alsoAt = wantMaps && (!recordSteps || recordSteps.has(i)) ? recording.alsoAt : [];
    const record = wantMaps ? resolution : null;
    const out = await guidedPass(unet, runs, context, timestep, i, record, edits, editGraph, alsoAt);
    for (const s of runs) s.cost.unetForward++;
    if (firstNonFinite(out.noisePred) >= 0 && runs.every((s) => firstNonFinite(s.latents.data) < 0))
      throw new UserError(
        `the UNet's output holds NaN or Inf at step ${i} (t=${timestep}): ${await loop.model.diagnoseNonFinite('unet')}`,
      );
    for (const maps of [...(out.rawMaps ?? []), ...(out.usedMaps ?? [])])
      if (firstNonFinite(maps.data) >= 0)
        throw new UserError(`the cross-attention maps hold NaN or Inf at step ${i} (t=${timestep})`);
    const stepMaps: Tensor[] = [];
    const predicted = runs.map((s, b) => {
      const rawMaps = out.rawMaps?.[b] ?? null;
      const usedMaps = out.usedMaps?.[b] ?? rawMaps;
      if (usedMaps) stepMaps.push(usedMaps);
      if (usedMaps && (!recordSteps || recordSteps.has(i))) s.result.attentionMaps.set(i, usedMaps);
      if (rawMaps && edits[b]) s.result.rawAttentionMaps.set(i, rawMaps);
      keepMapsAt(s.result, out.mapsAt, b, i);
      s.request.method?.afterGuidedPass?.(ctx, rawMaps);
      return stepSample(s, guidedPrediction(out.noisePred, b, B, perSample, settings.guidance), ctx, settings);
    });
    const ms = performance.now() - tStep;
    const methodLogs = runs.map((s) => {
      const record: StepRecord = { index: i, timestep, ms };
      const log = s.request.method?.stepLog?.(i);
      if (log) record.method = log;
      s.result.steps.push(record);
      return log ?? null;
    });
    options.onStep?.({
      index: i,
      timestep,
      totalCalls,
      candidateRound,
      batch: loop.batchIndex,
      batches: loop.batches,
      latents: runs.map((s) => s.latents),
      predictedOriginal: predicted,
      methodLogs,
      ms,
      ...(stepMaps.length === runs.length ? { attentionMaps: stepMaps } : {}),
    });
  }
}

/** A sample's own random stream, sampler and initial latents (its seed's, or the given ones × init_noise_sigma). */
function startSample(
  r: SampleRequest,
  settings: BatchSettings,
  options: BatchOptions,
  embedding: (text: string | null) => Tensor,
  attentionResolution: readonly [number, number] | null,
  batch: { size: number; index: number },
): SampleRun {
  const { latentShape } = settings;
  const seed = r.seed ?? null;
  const rng = new GaussianRng(seed ?? 0);
  const sampler = createSampler(settings.samplerName, settings.schedulerConfig, settings.steps, {
    noise: (n) => rng.normal(n),
    eta: options.eta,
  });
  const initial = r.initialLatents ?? { data: rng.normal(numel(latentShape)), shape: [...latentShape] };
  const sigma0 = Math.fround(sampler.initNoiseSigma);
  const latents = { data: initial.data.map((v) => Math.fround(v * sigma0)), shape: [...latentShape] };
  return {
    request: r,
    sampler,
    latents,
    cond: embedding(r.prompt),
    uncond: embedding(r.negativePrompt ?? null),
    result: {
      sampler: settings.samplerName,
      timesteps: sampler.timesteps,
      seed,
      height: settings.height,
      width: settings.width,
      initialLatents: initial,
      finalLatents: latents,
      latentsPerStep: [],
      image: latents,
      steps: [],
      attentionMaps: new Map(),
      rawAttentionMaps: new Map(),
      attentionResolution,
      batch,
      candidate: null,
      timings: { encodeMs: 0, denoiseMs: 0, decodeMs: 0, totalMs: 0 },
      cost: { unetForward: 0, unetBackward: 0, seconds: 0 },
    },
    cost: { unetForward: 0, unetBackward: 0 },
  };
}

/** One sampler step of one sample; returns the sampler's predicted original, when it makes one. */
function stepSample(s: SampleRun, guided: Float32Array, ctx: StepContext, settings: BatchSettings): Tensor | null {
  const { index: i, timestep } = ctx;
  const stepped = s.sampler.step(guided, i, s.latents.data);
  const next = stepped.prevSample;
  const bad = firstNonFinite(next);
  if (bad >= 0) {
    // Blame the guidance only when the guided prediction itself overflowed; otherwise the sampler did it.
    const badPrediction = firstNonFinite(guided);
    throw badPrediction >= 0
      ? new FieldError(
          'guidanceScale',
          (name) =>
            `the guided noise prediction became ${guided[badPrediction]} at step ${i} (t=${timestep}); try a lower ${name}`,
        )
      : new UserError(
          `sampler ${settings.samplerName} turned finite latents into ${next[bad]} at step ${i} (t=${timestep}); try another sampler`,
        );
  }
  s.latents = { data: next, shape: [...settings.latentShape] };
  s.result.latentsPerStep.push(s.latents);
  return stepped.predOriginalSample ? { data: stepped.predOriginalSample, shape: [...settings.latentShape] } : null;
}

/**
 * Methods that optimise the start (INITNO) do so before the first call, one call per group of samples whose
 * methods share a batch key; restarts draw fresh noise from the sample's start seeds (candidateSeed).
 */
async function optimizeStarts(loop: CallLoop, runs: readonly SampleRun[]): Promise<void> {
  const groups = new Map<string, number[]>();
  runs.forEach((s, b) => {
    const m = s.request.method;
    if (!m?.optimizeStart) return;
    groups.set(m.batchKey, [...(groups.get(m.batchKey) ?? []), b]);
  });
  if (groups.size === 0) return;
  const timesteps = runs[0]!.sampler.timesteps;
  const ctx: StepContext = { index: 0, timestep: timesteps[0]!, totalCalls: timesteps.length, unet: loop.unet };
  for (const members of groups.values()) {
    const samples: StartSample[] = members.map((b) => {
      const s = runs[b]!;
      const sigma0 = Math.fround(s.sampler.initNoiseSigma);
      return {
        method: s.request.method!,
        latents: s.latents,
        cond: s.cond,
        cost: s.cost,
        fresh: (round) =>
          new GaussianRng(candidateSeed(s.request.seed ?? 0, round))
            .normal(s.latents.data.length)
            .map((v) => Math.fround(v * sigma0)),
      };
    });
    const first = samples[0]!.method;
    const changed = await first.optimizeStart!(ctx, samples);
    members.forEach((b, k) => {
      const data = changed[k]!;
      if (firstNonFinite(data) >= 0) throw new UserError(`${first.name} produced a non-finite start`);
      runs[b]!.latents = { data, shape: runs[b]!.latents.shape };
    });
  }
}

/** Gradient methods' latent updates: one call per group of samples whose methods share a batch key. */
async function updateLatents(ctx: StepContext, runs: readonly SampleRun[]): Promise<void> {
  const groups = new Map<string, number[]>();
  runs.forEach((s, b) => {
    const m = s.request.method;
    if (!m?.updateLatents) return;
    const list = groups.get(m.batchKey) ?? [];
    list.push(b);
    groups.set(m.batchKey, list);
  });
  for (const members of groups.values()) {
    const first = runs[members[0]!]!.request.method!;
    const samples: GuidedSample[] = members.map((b) => ({
      method: runs[b]!.request.method!,
      latents: runs[b]!.latents,
      cond: runs[b]!.cond,
      cost: runs[b]!.cost,
    }));
    const changed = await first.updateLatents!(ctx, samples);
    members.forEach((b, k) => {
      const data = changed[k]!;
      if (data === runs[b]!.latents.data) return;
      if (firstNonFinite(data) >= 0)
        throw new UserError(`${first.name} produced non-finite latents at step ${ctx.index} (t=${ctx.timestep})`);
      runs[b]!.latents = { data, shape: runs[b]!.latents.shape };
    });
  }
}

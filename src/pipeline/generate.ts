/**
 * Text-to-image sampling with classifier-free guidance, as diffusers' StableDiffusionPipeline.__call__ does it:
 * text embeddings for the prompt and the negative prompt (empty by default), initial latents × init_noise_sigma,
 * then per sampler call: scale_model_input, a batch-2 UNet pass [uncond, cond], uncond + g·(cond − uncond),
 * sampler step; finally the VAE decode. A guidance method may change the latents before each guided pass
 * (Attend-and-Excite, Suppress-to-Impress's loss mode) and edit the pass's cross-attention (edit mode).
 */
import { AttentionStore, composeHooks } from '../attention/store.js';
import { multiplicativeEditor, parseEditInputName } from '../attention/editors.js';
import { UserError } from '../errors.js';
import * as op from '../graph/ops.js';
import type { GuidanceMethod, StepContext } from '../methods/types.js';
import { createSampler, defaultSampler, resolveSchedulerConfig, type SamplerName } from '../schedulers/index.js';
import { firstNonFinite, numel, type Tensor } from '../tensor.js';
import { GaussianRng } from '../util/random.js';
import type { StableDiffusion } from './stable-diffusion.js';

export interface AttentionRecording {
  /** Query resolution [h, w] of the maps (default: latent size / 4). */
  resolution?: readonly [number, number];
  /** Which sampler calls to record (default: every call). */
  steps?: readonly number[];
}

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  /** Inference steps (PNDM runs one extra UNet call). Default 50. */
  steps?: number;
  guidanceScale?: number;
  /** Default: the model's own scheduler. */
  sampler?: SamplerName;
  /** Scheduler config keys that override the model's (e.g. { timestep_spacing: 'trailing' }). */
  schedulerOverrides?: Record<string, unknown>;
  eta?: number;
  seed?: number;
  /** Image size in pixels; multiples of 8. Default: the model's native size. */
  height?: number;
  width?: number;
  /** Initial latents [1, C, h, w] (before × init_noise_sigma), instead of seeded noise. */
  initialLatents?: Tensor;
  method?: GuidanceMethod;
  /** Record the conditional cross-attention maps of the guided passes (for pictures). */
  recordAttention?: AttentionRecording;
  onStep?: (info: StepInfo) => void;
}

export interface StepInfo {
  index: number;
  timestep: number;
  totalCalls: number;
  latents: Tensor;
  /** The sampler's prediction of the final (denoised) latents at this step, when it makes one. */
  predictedOriginal: Tensor | null;
  ms: number;
  /** This call's recorded cross-attention maps [h, w, T], when maps are recorded (pages show them as they form). */
  attentionMaps?: Tensor;
}

export interface StepRecord {
  index: number;
  timestep: number;
  ms: number;
  method?: Record<string, unknown>;
}

export interface GenerateResult {
  sampler: SamplerName;
  timesteps: readonly number[];
  seed: number | null;
  height: number;
  width: number;
  initialLatents: Tensor;
  finalLatents: Tensor;
  /** Latents after each sampler call. */
  latentsPerStep: Tensor[];
  /** Decoded image [1, 3, H, W] before clamping (diffusers' decoded_raw). */
  image: Tensor;
  steps: StepRecord[];
  /** Recorded conditional cross-attention maps by call index, each [h, w, T], as the guided pass used them. */
  attentionMaps: Map<number, Tensor>;
  /** For edited calls: the model's own maps before the edit. */
  rawAttentionMaps: Map<number, Tensor>;
  attentionResolution: readonly [number, number] | null;
  timings: { encodeMs: number; denoiseMs: number; decodeMs: number; totalMs: number };
}

function checkImageSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 8 || v % 8 !== 0)
    throw new UserError(`--${name} must be a positive multiple of 8, got ${v}`);
}

export async function generate(model: StableDiffusion, options: GenerateOptions): Promise<GenerateResult> {
  const t0 = performance.now();
  const steps = options.steps ?? 50;
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000)
    throw new UserError(`--steps must be an integer from 1 to 1000, got ${steps}`);
  const guidance = options.guidanceScale ?? 7.5;
  if (!Number.isFinite(guidance)) throw new UserError(`--guidance must be a number, got ${guidance}`);
  const height = options.height ?? model.defaultImageSize;
  const width = options.width ?? model.defaultImageSize;
  checkImageSize('height', height);
  checkImageSize('width', width);
  const f = model.scaleFactor;
  if (height % f !== 0 || width % f !== 0)
    throw new UserError(`image size ${height}x${width} is not a multiple of the VAE factor ${f}`);
  const latentShape = [1, model.latentChannels, height / f, width / f] as const;

  const samplerName = options.sampler ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  const schedulerConfig = resolveSchedulerConfig(samplerName, model.schedulerConfig, options.schedulerOverrides ?? {});
  const seed = options.seed ?? null;
  const rng = new GaussianRng(seed ?? 0);
  const sampler = createSampler(samplerName, schedulerConfig, steps, { noise: (n) => rng.normal(n), eta: options.eta });

  let initial: Tensor;
  if (options.initialLatents) {
    const given = options.initialLatents;
    if (given.shape.length !== 4 || given.shape.some((d, i) => d !== latentShape[i])) {
      throw new UserError(
        `initial latents have shape [${given.shape.join(', ')}], expected [${latentShape.join(', ')}] for ${height}x${width}`,
      );
    }
    if (firstNonFinite(given.data) >= 0) throw new UserError('initial latents contain NaN or Inf');
    initial = given;
  } else {
    initial = { data: rng.normal(numel(latentShape)), shape: [...latentShape] };
  }
  const sigma0 = Math.fround(sampler.initNoiseSigma);
  let latents: Tensor = { data: initial.data.map((v) => Math.fround(v * sigma0)), shape: [...latentShape] };

  const tEncode = performance.now();
  const cond = await model.encodePrompt(options.prompt);
  const uncond = await model.encodePrompt(options.negativePrompt ?? '');
  const encodeMs = performance.now() - tEncode;
  const [tokens, dim] = [cond.shape[1]!, cond.shape[2]!];
  const context = { data: new Float32Array(2 * tokens * dim), shape: [2, tokens, dim] };
  context.data.set(uncond.data, 0);
  context.data.set(cond.data, tokens * dim);

  const [, c, h, w] = latentShape;
  const unet = model.unetAccess(h, w, tokens);
  const method = options.method;
  const defaultRes = [Math.ceil(h / 4), Math.ceil(w / 4)] as const;
  const methodRes = method?.attentionResolution?.(h, w) ?? null;
  const userRes = options.recordAttention ? (options.recordAttention.resolution ?? defaultRes) : null;
  if (methodRes && userRes && methodRes.join('x') !== userRes.join('x')) {
    throw new UserError(
      `the method records attention at ${methodRes.join('x')}; pictures at ${userRes.join('x')} are not supported in the same run`,
    );
  }
  const recordRes = methodRes ?? userRes;
  const recordSteps = options.recordAttention?.steps ? new Set(options.recordAttention.steps) : null;

  const result: GenerateResult = {
    sampler: samplerName,
    timesteps: sampler.timesteps,
    seed,
    height,
    width,
    initialLatents: initial,
    finalLatents: latents,
    latentsPerStep: [],
    image: latents,
    steps: [],
    attentionMaps: new Map(),
    rawAttentionMaps: new Map(),
    attentionResolution: recordRes,
    timings: { encodeMs, denoiseMs: 0, decodeMs: 0, totalMs: 0 },
  };

  const tDenoise = performance.now();
  const totalCalls = sampler.timesteps.length;
  for (let i = 0; i < totalCalls; i++) {
    const tStep = performance.now();
    const timestep = sampler.timesteps[i]!;
    const ctx = (): StepContext => ({ index: i, timestep, totalCalls, latents, cond, unet });
    if (method?.beforeGuidedPass) {
      const changed = await method.beforeGuidedPass(ctx());
      if (changed) {
        if (firstNonFinite(changed.data) >= 0)
          throw new UserError(`${method.name} produced non-finite latents at step ${i} (t=${timestep})`);
        latents = changed;
      }
    }
    const wantMaps = recordRes !== null && (methodRes !== null || !recordSteps || recordSteps.has(i));
    const edit = method?.guidedPassEdit?.(ctx()) ?? null;
    const key = `guided:rec=${wantMaps ? recordRes!.join('x') : '-'}:edit=${edit ? 1 : 0}`;
    const session = await unet.compile(key, (g, build) => {
      const sample = g.input('sample', [2, c, h, w]);
      const ts = g.input('timestep', [2]);
      const ctxIn = g.input('context', [2, tokens, dim]);
      // Two views when editing: the model's own maps (before the edit; they define the method's regions) and the
      // maps the pass actually used (after it; what pictures show). Without an edit they are the same.
      const raw = wantMaps ? new AttentionStore({ kind: 'cross', resolution: recordRes! }) : null;
      const editor = edit ? multiplicativeEditor(g, 2) : null;
      const used = raw && editor ? new AttentionStore({ kind: 'cross', resolution: recordRes! }) : null;
      const { noisePred } = build(
        { sample, timestep: ts, encoderHiddenStates: ctxIn },
        { attentionHook: composeHooks(raw?.hook, editor?.hook, used?.hook) },
      );
      g.output('noise_pred', noisePred);
      if (raw) g.output('attention_maps_raw', op.identity(raw.aggregate({ resolution: recordRes!, batchIndex: 1 })));
      if (used) g.output('attention_maps', op.identity(used.aggregate({ resolution: recordRes!, batchIndex: 1 })));
    });
    const scaled = sampler.scaleModelInput(latents.data, i);
    const batch = new Float32Array(2 * scaled.length);
    batch.set(scaled, 0);
    batch.set(scaled, scaled.length);
    const feeds: Record<string, Tensor> = {
      sample: { data: batch, shape: [2, c, h, w] },
      timestep: { data: Float32Array.of(timestep, timestep), shape: [2] },
      context,
    };
    if (edit) {
      for (const input of session.graph.inputs) {
        const at = parseEditInputName(input.name);
        if (!at) continue;
        const factor = edit(at.height, at.width, tokens, 2);
        if (factor.data.length !== numel(input.shape))
          throw new Error(
            `attention edit for ${input.name} has ${factor.data.length} values, expected [${input.shape}]`,
          );
        feeds[input.name] = { data: factor.data, shape: [...input.shape] };
      }
    }
    const out = await session.run(feeds);
    const pred = out['noise_pred']!.data;
    const n = scaled.length;
    const g32 = Math.fround(guidance);
    const guided = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      const u = pred[j]!;
      guided[j] = u + Math.fround(g32 * Math.fround(pred[n + j]! - u));
    }
    const rawMaps = out['attention_maps_raw'] ?? null;
    const usedMaps = out['attention_maps'] ?? rawMaps;
    if (usedMaps && (!recordSteps || recordSteps.has(i))) result.attentionMaps.set(i, usedMaps);
    if (rawMaps && edit) result.rawAttentionMaps.set(i, rawMaps);
    method?.afterGuidedPass?.(ctx(), rawMaps);
    const stepped = sampler.step(guided, i, latents.data);
    const next = stepped.prevSample;
    const bad = firstNonFinite(next);
    if (bad >= 0)
      throw new UserError(
        `the latents became ${next[bad]} at step ${i} (t=${timestep}); try a lower --guidance or another --scheduler`,
      );
    latents = { data: next, shape: [...latentShape] };
    result.latentsPerStep.push(latents);
    const ms = performance.now() - tStep;
    const record: StepRecord = { index: i, timestep, ms };
    const log = method?.stepLog?.(i);
    if (log) record.method = log;
    result.steps.push(record);
    const predictedOriginal = stepped.predOriginalSample
      ? { data: stepped.predOriginalSample, shape: [...latentShape] }
      : null;
    options.onStep?.({
      index: i,
      timestep,
      totalCalls,
      latents,
      predictedOriginal,
      ms,
      ...(usedMaps ? { attentionMaps: usedMaps } : {}),
    });
  }
  result.timings.denoiseMs = performance.now() - tDenoise;
  result.finalLatents = latents;
  const tDecode = performance.now();
  result.image = await model.decode(latents);
  result.timings.decodeMs = performance.now() - tDecode;
  result.timings.totalMs = performance.now() - t0;
  return result;
}

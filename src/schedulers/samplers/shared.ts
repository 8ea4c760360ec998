/**
 * What every sampler algorithm shares: the inputs one is built from (the schedule is computed once, apart from
 * the algorithm, as k-diffusion passes `sigmas`), the noise source, and diffusers' x0 clamping/thresholding.
 * The float32 rounding helpers are f32.ts's.
 */
import type { SchedulerConfig } from '../config.js';
import { f } from '../f32.js';
import type { InferenceSchedule } from '../schedule.js';

export interface StepResult {
  /** x_{t-1}: the latents to feed the next model call (or the final latents). */
  readonly prevSample: Float32Array;
  /** The model's current estimate of x_0 (ddim, euler, euler-a, dpmpp-2m; not pndm, like diffusers). */
  readonly predOriginalSample?: Float32Array;
}

/** One sampler step after model call `i`: the (guided) model output at latents `x` → the next latents. */
export type StepFunction = (modelOutput: Float32Array, i: number, x: Float32Array) => StepResult;

export interface SamplerOptions {
  /**
   * Standard-normal draws (`n` of them, a fresh array each call) for euler-a, ddim with eta > 0, and euler with
   * s_churn > 0. Like diffusers' EulerDiscreteScheduler, euler draws noise on every step when a source is given,
   * even when it does not use it (s_churn 0), so a shared generator advances the same way.
   */
  readonly noise?: (n: number) => Float32Array;
  /** DDIM eta (0 = deterministic DDIM, 1 = DDPM-like); default 0. */
  readonly eta?: number;
  /** DDIM use_clipped_model_output; default false. */
  readonly useClippedModelOutput?: boolean;
  /** Euler churn parameters (diffusers' step() arguments); defaults 0, 0, Infinity, 1. */
  readonly sChurn?: number;
  readonly sTmin?: number;
  readonly sTmax?: number;
  readonly sNoise?: number;
  /** Number of samples in the latents (only used by dynamic thresholding, which is per sample); default 1. */
  readonly batchSize?: number;
}

/** Everything an algorithm is built from: the resolved config, the precomputed schedule and the options. */
export interface SamplerInputs {
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float32Array;
  readonly schedule: InferenceSchedule;
  readonly numInferenceSteps: number;
  readonly options: SamplerOptions;
}

/** An algorithm as built for one generation (stateful ones keep their history in the closure). */
export interface SamplerAlgorithm {
  readonly step: StepFunction;
  /** Multiply the initial N(0, I) latents by this (default 1). */
  readonly initNoiseSigma?: number;
  /** The UNet input for call `i` (default: the latents themselves). */
  readonly scaleModelInput?: (x: Float32Array, i: number) => Float32Array;
}

/** `n` draws from the noise source, which `who` cannot do without. */
export function drawNoise(noise: SamplerOptions['noise'], n: number, who: string): Float32Array {
  if (noise === undefined) throw new Error(`${who} needs a noise source (options.noise)`);
  const z = noise(n);
  if (z.length !== n) throw new Error(`${who}: noise source returned ${z.length} values, expected ${n}`);
  return z;
}

/** Elementwise float32 clamp to [-r, r] (in place): diffusers' clip_sample. */
export function clampInPlace(x: Float32Array, r: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = v < -r ? -r : v > r ? r : v;
  }
}

/** diffusers' _threshold_sample (dynamic thresholding, Imagen), per sample, in place. */
export function thresholdInPlace(x: Float32Array, batch: number, ratio: number, maxValue: number): void {
  if (x.length % batch !== 0) throw new Error(`thresholding: ${x.length} values do not split into ${batch} samples`);
  const n = x.length / batch;
  const q = f(ratio);
  const rank = f(q * (n - 1));
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const w = f(rank - lo);
  for (let b = 0; b < batch; b++) {
    const seg = x.subarray(b * n, (b + 1) * n);
    const sorted = Float32Array.from(seg, Math.abs).sort();
    const a = sorted[lo]!;
    const e = sorted[hi]!;
    let s = w < 0.5 ? f(a + f(w * f(e - a))) : f(e - f(f(e - a) * f(1 - w)));
    s = Math.min(Math.max(s, 1), f(maxValue));
    for (let i = 0; i < n; i++) {
      const v = seg[i]!;
      seg[i] = f((v < -s ? -s : v > s ? s : v) / s);
    }
  }
}

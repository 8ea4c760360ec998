/**
 * Samplers: diffusers v0.24.0 semantics in k-diffusion's shape — the schedule (timesteps, sigmas) is computed once
 * apart from the algorithm (schedule.ts), and each algorithm is a short step function over the model's output in
 * its own file under samplers/ (PNDM, DDIM, Euler, Euler ancestral, DPM-Solver++ 2M), declared there with its
 * diffusers class, defaults and schedule (samplers/spec.ts). This file builds one and checks what every caller
 * hands it.
 *
 * Arithmetic mirrors diffusers' float32 torch tensors op by op (every `f(...)` is one torch op, f32.ts), so step
 * results agree with diffusers to float32 rounding (see test/schedulers.test.ts).
 *
 * A sampler is stateful (PNDM and DPM-Solver++ keep a history of model outputs): create a fresh one for every
 * generation and call `step` once per model call, in order.
 */
import { FieldError } from '../errors.js';
import {
  isResolvedConfig,
  resolveSchedulerConfig,
  samplerSpec,
  type RawSchedulerConfig,
  type SamplerName,
  type SchedulerConfig,
} from './config.js';
import type { SamplerOptions, StepResult } from './samplers/shared.js';
import { computeAlphasCumprod, type InferenceSchedule } from './schedule.js';

export type { SamplerOptions, StepResult } from './samplers/shared.js';

export interface Sampler {
  readonly name: SamplerName;
  readonly config: SchedulerConfig;
  readonly numInferenceSteps: number;
  /** The timestep fed to the UNet at each model call, in order (PNDM: numInferenceSteps + 1 calls). */
  readonly timesteps: readonly number[];
  /** How diffusers types the timestep: int64 (pndm, ddim, dpmpp-2m) or float32 (euler, euler-a; values exact). */
  readonly timestepDType: 'int64' | 'float32';
  /** float32 sigmas (timesteps.length + 1) for euler, euler-a and dpmpp-2m; null otherwise. */
  readonly sigmas: Float32Array | null;
  /** Multiply the initial N(0, I) latents by this (float32). */
  readonly initNoiseSigma: number;
  /** Training alphas_cumprod (float32). */
  readonly alphasCumprod: Float32Array;
  /** diffusers' scheduler.order (1 for all of these). */
  readonly order: number;
  /** diffusers' num_warmup_steps = timesteps.length - numInferenceSteps * order (PNDM: 1; the legacy callback skips these). */
  readonly numWarmupSteps: number;
  /** The UNet input for model call `callIndex` (euler/euler-a: sample / sqrt(sigma²+1); others: `sample` itself). */
  scaleModelInput(sample: Float32Array, callIndex: number): Float32Array;
  /** One sampler step after model call `callIndex`. `modelOutput` is the (guided) UNet output. */
  step(modelOutput: Float32Array, callIndex: number, sample: Float32Array): StepResult;
}

/** The schedule fed to sampler `name`: everything computed once per (config, steps). */
export function inferenceSchedule(
  name: SamplerName,
  c: SchedulerConfig,
  alphasCumprod: Float32Array,
  n: number,
): InferenceSchedule {
  return samplerSpec(name).schedule(c, alphasCumprod, n);
}

const alphasCache = new WeakMap<SchedulerConfig, Float32Array>();

function alphasFor(c: SchedulerConfig): Float32Array {
  let a = alphasCache.get(c);
  if (a === undefined) {
    a = computeAlphasCumprod(c);
    alphasCache.set(c, a);
  }
  return a;
}

/**
 * Creates a sampler for one generation. `config` is a scheduler_config.json dict (resolved here for `name` with
 * from_config semantics) or a config already resolved for `name`.
 */
export function createSampler(
  name: SamplerName,
  config: SchedulerConfig | RawSchedulerConfig,
  numInferenceSteps: number,
  options: SamplerOptions = {},
): Sampler {
  let c: SchedulerConfig;
  if (isResolvedConfig(config)) {
    if (config.sampler !== name) {
      throw new Error(`createSampler: config was resolved for ${config.sampler}, not ${name}; pass the raw config`);
    }
    c = config;
  } else c = resolveSchedulerConfig(name, config);
  const eta = options.eta ?? 0;
  if (!(eta >= 0) || !Number.isFinite(eta)) throw new FieldError('eta', `must be a number >= 0 (got ${eta})`);
  if (eta !== 0 && name !== 'ddim') throw new FieldError('eta', `applies only to sampler ddim (got sampler ${name})`);
  const alphasCumprod = alphasFor(c);
  const schedule = inferenceSchedule(name, c, alphasCumprod, numInferenceSteps);
  const spec = samplerSpec(name);
  const algorithm = spec.build({ config: c, alphasCumprod, schedule, numInferenceSteps, options });
  const ts = schedule.timesteps;
  const checkIndex = (i: number) => {
    if (!Number.isInteger(i) || i < 0 || i >= ts.length) {
      throw new Error(`sampler ${name}: call index ${i} is outside 0..${ts.length - 1}`);
    }
  };
  return {
    name,
    config: c,
    numInferenceSteps,
    timesteps: Object.freeze([...ts]),
    timestepDType: spec.timestepDType,
    sigmas: schedule.sigmas,
    initNoiseSigma: algorithm.initNoiseSigma ?? 1,
    alphasCumprod,
    order: 1,
    numWarmupSteps: ts.length - numInferenceSteps,
    scaleModelInput(sample, callIndex) {
      checkIndex(callIndex);
      return algorithm.scaleModelInput?.(sample, callIndex) ?? sample;
    },
    step(modelOutput, callIndex, sample) {
      checkIndex(callIndex);
      if (modelOutput.length !== sample.length) {
        throw new Error(`sampler ${name}: model output has ${modelOutput.length} values, sample ${sample.length}`);
      }
      return algorithm.step(modelOutput, callIndex, sample);
    },
  };
}

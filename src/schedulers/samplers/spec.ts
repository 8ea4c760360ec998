/**
 * What declares a sampler: its name and the diffusers class it mirrors, the names people call it, that class's
 * `__init__` keyword arguments with their v0.24.0 defaults (the keys `from_config` accepts), the prediction types
 * it supports, how diffusers types its timesteps, its schedule and its step function. The scheduler-config parser
 * (config.ts), `createSampler`, `s2i info` and the CLI's help read these; adding a sampler is one file and one line
 * in samplers/index.ts.
 */
import type { PredictionType, SchedulerConfig, SchedulerConfigJson } from '../config.js';
import type { InferenceSchedule } from '../schedule.js';
import type { SamplerAlgorithm, SamplerInputs } from './shared.js';

export interface SamplerSpec<N extends string = string> {
  readonly name: N;
  /** The diffusers class it mirrors (a scheduler_config.json's `_class_name`). */
  readonly className: string;
  /** Other names a person may give it (compared lower-case, `_` and spaces read as `-`). */
  readonly aliases: readonly string[];
  /** The class's `__init__` keyword arguments that we model, with diffusers v0.24.0's defaults. */
  readonly defaults: Readonly<Partial<SchedulerConfigJson>>;
  /**
   * Values this sampler sets over the model's config file (a named variant of a class, as "DPM++ 2M Karras" is of
   * DPMSolverMultistepScheduler); explicit overrides still win.
   */
  readonly sets?: Readonly<Partial<SchedulerConfigJson>>;
  /** Keyword arguments the class accepts that we do not model: only their default value is allowed. */
  readonly unsupported?: Readonly<Record<string, unknown>>;
  readonly predictionTypes: readonly PredictionType[];
  /** How diffusers types the timestep fed to the UNet (float32 values are exact). */
  readonly timestepDType: 'int64' | 'float32';
  /** Checks of a config beyond each key's own (`value` reads a key as resolved, before type checks). */
  readonly check?: (value: (key: keyof SchedulerConfigJson) => unknown, where: string) => void;
  /** The inference schedule (timesteps, sigmas), computed once per (config, steps). */
  readonly schedule: (c: SchedulerConfig, alphasCumprod: Float32Array, steps: number) => InferenceSchedule;
  /** The algorithm for one generation. */
  readonly build: (inputs: SamplerInputs) => SamplerAlgorithm;
}

/** A sampler's declaration, its name kept as a literal type. */
export function defineSampler<const N extends string>(spec: SamplerSpec<N>): SamplerSpec<N> {
  return spec;
}

/** The `__init__` keyword arguments every diffusers scheduler here shares, with their defaults. */
export const COMMON_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
} as const;

export {
  SAMPLER_NAMES,
  SAMPLER_CLASS,
  defaultSampler,
  isResolvedConfig,
  loadSchedulerConfig,
  parseSamplerName,
  resolveSchedulerConfig,
  samplerForClassName,
  samplerSpec,
  type BetaSchedule,
  type PredictionType,
  type RawSchedulerConfig,
  type SamplerName,
  type SchedulerConfig,
  type TimestepSpacing,
} from './config.js';
export { createSampler, inferenceSchedule, type Sampler, type SamplerOptions, type StepResult } from './samplers.js';
export { computeAlphasCumprod, computeBetas, trainingSigmas, type InferenceSchedule } from './schedule.js';
export { noiseSchedule, type NoiseSchedule } from './training.js';

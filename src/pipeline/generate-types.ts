/**
 * What batched generation takes and gives: a sample (what differs between the images of a batch), the options
 * every sample of a batch shares, the step report a caller watches, and each image's result. generate.ts runs them.
 */
import type { PassCount, StepLog, GuidanceMethod } from '../methods/types.js';
import type { SamplerName } from '../schedulers/index.js';
import type { Tensor } from '../tensor.js';

export interface AttentionRecording {
  /** Query resolution [h, w] of the maps (default: latent size / 4). */
  resolution?: readonly [number, number];
  /** Which sampler calls to record (default: every call). */
  steps?: readonly number[];
  /**
   * Further resolutions recorded on those calls, for pictures only (a UNet with cross-attention at several sizes):
   * the maps the pass used, in `GenerateResult.attentionMapsAt`.
   */
  alsoAt?: readonly (readonly [number, number])[];
}

/** What differs between the samples of a batch. */
export interface SampleRequest {
  prompt: string;
  negativePrompt?: string;
  seed?: number;
  /** Initial latents [1, C, h, w] or [C, h, w] (before × init_noise_sigma), instead of seeded noise. */
  initialLatents?: Tensor;
  /** This sample's guidance (its own instance: its own prompt's subjects). */
  method?: GuidanceMethod;
}

/** What every sample of a batch shares. */
export interface BatchOptions {
  /** Inference steps (PNDM runs one extra UNet call). Default DEFAULT_STEPS (50). */
  steps?: number;
  /** Default DEFAULT_GUIDANCE (7.5), or the model's own (SDXL's 5). */
  guidanceScale?: number;
  /** Default: the model's own scheduler. */
  sampler?: SamplerName;
  /** Scheduler config keys that override the model's (e.g. { timestep_spacing: 'trailing' }). */
  schedulerOverrides?: Record<string, unknown>;
  eta?: number;
  /** Image size in pixels; multiples of 8. Default: the initial latents' size, else the model's native size. */
  height?: number;
  width?: number;
  /** Record the conditional cross-attention maps of the guided passes (for pictures). */
  recordAttention?: AttentionRecording;
  /**
   * Samples per batch: `generateBatch` runs the samples in consecutive batches of at most this many. Default: as
   * many as fit the memory budget, at most 16 (batch-size.ts).
   */
  batchSize?: number;
  onStep?: (info: StepInfo) => void;
}

/** One image's request and the shared settings (`generate`). */
export type GenerateOptions = SampleRequest & Omit<BatchOptions, 'batchSize'>;

export interface StepInfo {
  index: number;
  timestep: number;
  totalCalls: number;
  /**
   * While a method chooses among starts: which try (0: every sample's own seed; 1, 2, ...: the samples still
   * looking for a cleaner layout) — the calls 0..atCall-1 then run once per try. null afterwards.
   */
  candidateRound: number | null;
  /** Which batch (0-based) of how many this call belongs to. */
  batch: number;
  batches: number;
  /** The batch's latents after this call, one [1, C, h, w] per sample. */
  latents: readonly Tensor[];
  /** Per sample, the sampler's prediction of the final (denoised) latents at this step, when it makes one. */
  predictedOriginal: readonly (Tensor | null)[];
  /** Per sample, what its method logged at this call (null without a method or a log). */
  methodLogs: readonly (StepLog | null)[];
  ms: number;
  /**
   * Per sample, this call's recorded cross-attention maps [h, w, T] as the pass used them, when this call recorded
   * maps (a page shows them as they form).
   */
  attentionMaps?: readonly Tensor[];
}

export interface StepRecord {
  index: number;
  timestep: number;
  /** Milliseconds of this call for the whole batch. */
  ms: number;
  method?: StepLog;
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
  /** The maps at `AttentionRecording.alsoAt`'s resolutions ('16x16' → call index → [h, w, T]), when asked. */
  attentionMapsAt?: Map<string, Map<number, Tensor>>;
  attentionResolution: readonly [number, number] | null;
  /** The batch this image was made in: its size and this image's place in it. */
  batch: { size: number; index: number };
  /**
   * When the method chose among starts: which one made the image (0: the sample's own seed), the seed of its
   * initial noise, the layout score of every start tried, in order, and the call they were compared at.
   */
  candidate: { index: number; seed: number; scores: number[]; atCall: number } | null;
  /** Milliseconds of the whole batch (divide by batch.size for a per-image share). */
  timings: { encodeMs: number; denoiseMs: number; decodeMs: number; totalMs: number };
  /**
   * What this image cost: UNet forward passes (each guided pass of the sample is one, and so is each of its
   * method's loss passes and each pass of the starts it tried), backward passes, and wall seconds (its share of
   * the batch's: the batch's time / batch size).
   */
  cost: PassCount & { seconds: number };
}

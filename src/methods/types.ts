/**
 * What a guidance method sees of the sampler loop. Methods live below the pipeline, so the pipeline hands
 * them this narrow view: the sampler call, each sample's latents and text embedding, and a way to compile UNet
 * graph variants (with their own attention hooks, losses and gradients) that the pipeline caches per key.
 *
 * Batches: every sample of a batch has its own method instance (its own prompt's subjects, regions and logs).
 * Per-sample work (attention edits, reading the guided pass's maps, logs) is asked of each instance; the latent
 * update, which runs the UNet, is asked once for all samples whose methods share a `batchKey`, so that their
 * losses and gradients come out of one batched pass.
 */
import type { Graph } from '../graph/graph.js';
import type { CompiledGraph } from '../graph/runtime.js';
import type { UNetInputs, UNetOptions, UNetOutputs } from '../models/unet.js';
import type { Tensor } from '../tensor.js';

export type UNetBuilder = (inputs: UNetInputs, options?: UNetOptions) => UNetOutputs;

export interface UNetAccess {
  /** [channels, height, width] of one latent. */
  readonly latentShape: readonly [number, number, number];
  /** [tokens, dim] of one text embedding. */
  readonly contextShape: readonly [number, number];
  /** Compile (once per key) a graph that calls the UNet; `build` adds inputs, hooks, losses and outputs. */
  compile(key: string, build: (g: Graph, unet: UNetBuilder) => void): Promise<CompiledGraph>;
}

/** One sampler call, the same for every sample of the batch. */
export interface StepContext {
  /** Index of this UNet call in the sampler's schedule (PNDM's 10 steps are 11 calls). */
  readonly index: number;
  readonly timestep: number;
  readonly totalCalls: number;
  readonly unet: UNetAccess;
}

/** UNet passes spent on one image: guided passes and the methods' own (loss, start) passes alike. */
export interface PassCount {
  /** Forward passes: each guided (classifier-free) pass of the sample is one, each loss pass one. */
  unetForward: number;
  /** Backward (gradient) passes. */
  unetBackward: number;
}

/** One sample of a batch, as a method's latent update sees it. */
export interface GuidedSample<M extends GuidanceMethod = GuidanceMethod> {
  readonly method: M;
  /** The sample's current latents x_t, [1, C, h, w]. */
  readonly latents: Tensor;
  /** Its conditional text embedding [1, T, D]. */
  readonly cond: Tensor;
  /** The sample's pass count; a method's own passes add to it (loss-pass.ts does). */
  readonly cost?: PassCount;
}

/**
 * Multiplicative factors for one sample's conditional cross-attention in the guided pass: called once per query
 * resolution present in the UNet, returns height*width*tokens factors ([queries, tokens], row-major). The
 * unconditional half is never edited.
 */
export type AttentionEdit = (height: number, width: number, tokens: number) => Float32Array;

/** What a method measured and did at one sampler call, for one sample (`--json` writes it in snake_case). */
export interface StepLog {
  /** The loss that drove this call's latent update (after refinement); null where none was evaluated. */
  loss: number | null;
  /** Largest (smoothed) attention of each subject at that evaluation; null where none was evaluated. */
  maxAttention: number[] | null;
  /** Refinement tries at this call (0: none). */
  refinementTries: number;
  /** Step size of the latent update; null where the latents were not updated. */
  stepSize: number | null;
  /** Suppress-to-Impress: each loss term at that evaluation. */
  terms?: Readonly<Record<string, number>>;
  /** Suppress-to-Impress: whether this call's guided pass was edited. */
  edited?: boolean;
  /** Suppress-to-Impress: the later tokens found to carry each subject at this call (methods/carriers.ts). */
  carriers?: readonly (readonly number[])[];
  /** Suppress-to-Impress: the layout score of this call's maps (lower is better), where one was computed. */
  layoutScore?: number;
}

/** A StepLog as JSON writes it (snake_case, as every file s2i writes); the fields a method did not log are absent. */
export interface StepLogJson {
  loss: number | null;
  max_attention: number[] | null;
  refinement_tries: number;
  step_size: number | null;
  /** Loss terms keep their names. */
  terms?: Readonly<Record<string, number>>;
  edited?: boolean;
  carriers?: readonly (readonly number[])[];
  layout_score?: number;
}

/** The one conversion of a StepLog to JSON's case, field by field. */
export function stepLogJson(log: StepLog): StepLogJson {
  return {
    loss: log.loss,
    max_attention: log.maxAttention,
    refinement_tries: log.refinementTries,
    step_size: log.stepSize,
    ...(log.terms !== undefined ? { terms: log.terms } : {}),
    ...(log.edited !== undefined ? { edited: log.edited } : {}),
    ...(log.carriers !== undefined ? { carriers: log.carriers } : {}),
    ...(log.layoutScore !== undefined ? { layout_score: log.layoutScore } : {}),
  };
}

/**
 * Choosing among several starts: the pipeline runs up to `candidates` initial noises of a sample (the first is
 * the sample's own seed) to sampler call `atCall`, each with its own method instance (`fork`), and keeps the one
 * whose `layoutScore` is lowest — stopping early at the first whose score is at most `accept`.
 */
export interface CandidateSelection {
  candidates: number;
  atCall: number;
  accept: number | null;
  /** At most this many guided passes per image: fewer starts are tried (never fewer than one). */
  budget?: number | null;
}

/** A method's choice among starts: how (CandidateSelection), a fresh instance per start, and the score. */
export interface StartChoice extends CandidateSelection {
  /** A fresh instance with the same settings and subjects (another start of the same sample). */
  fork(): GuidanceMethod;
  /** How promising this sample's layout looks after the latest guided pass; lower is better. */
  layoutScore(): number;
}

/** One sample's start, as a method that optimises it sees it (before the first sampler call). */
export interface StartSample {
  readonly method: GuidanceMethod;
  /** The initial latents × init_noise_sigma [1, C, h, w], as the first UNet call would see them. */
  readonly latents: Tensor;
  readonly cond: Tensor;
  readonly cost?: PassCount;
  /** Fresh initial latents (× init_noise_sigma) for restart `round` (1, 2, ...), from the sample's own seed. */
  fresh(round: number): Float32Array;
}

export interface GuidanceMethod {
  readonly name: string;
  /**
   * Samples whose methods give equal keys have their latents updated together: the pipeline calls
   * `updateLatents` of the first of them once per sampler call, with all of them. Equal keys mean the same
   * class and the same shared settings; each sample keeps its own subjects.
   */
  readonly batchKey: string;
  /** Whether `updateLatents` runs backward passes (memory: they keep the forward's activations). */
  readonly usesGradients?: boolean;
  /**
   * Query resolution [h, w] of the cross-attention maps the method wants recorded in every guided pass (passed
   * to afterGuidedPass), given the latent size; absent or null: none.
   */
  attentionResolution?(latentHeight: number, latentWidth: number): readonly [number, number] | null;
  /**
   * Gradient methods: the new latents data ([C*h*w] each) of every given sample before the guided pass, in the
   * order given. `samples[i].method` are instances of this method's class with this `batchKey`.
   */
  updateLatents?(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]>;
  /** Attention edits for this sample's conditional half of this step's guided pass, or null for none. */
  guidedPassEdit?(ctx: StepContext): AttentionEdit | null;
  /** This sample's aggregated conditional maps [h, w, T] of the guided pass, at `attentionResolution`. */
  afterGuidedPass?(ctx: StepContext, maps: Tensor | null): void;
  /** This sample's log of one call (what the method measured and did). */
  stepLog?(index: number): StepLog | undefined;
  /** Choosing the start among several initial noises; absent or null: none. */
  readonly starts?: StartChoice | null;
  /**
   * Optimising the start (INITNO): the new initial latents ([C*h*w] each, × init_noise_sigma) of the given
   * samples, before the first sampler call. `samples[i].method` share this method's `batchKey`.
   */
  optimizeStart?(ctx: StepContext, samples: readonly StartSample[]): Promise<Float32Array[]>;
}

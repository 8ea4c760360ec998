/**
 * What a guidance method sees of the sampler loop. Methods live below the pipeline, so the pipeline hands
 * them this narrow view: the current latents and text embedding, and a way to compile UNet graph variants
 * (with their own attention hooks, losses and gradients) that the pipeline caches per key.
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

export interface StepContext {
  /** Index of this UNet call in the sampler's schedule (PNDM's 10 steps are 11 calls). */
  readonly index: number;
  readonly timestep: number;
  readonly totalCalls: number;
  /** The current latents x_t, [1, C, h, w]. */
  readonly latents: Tensor;
  /** The conditional text embedding [1, T, D]. */
  readonly cond: Tensor;
  readonly unet: UNetAccess;
}

/**
 * Multiplicative factors for the guided pass's cross-attention: called once per query resolution present in
 * the UNet, returns [batch, 1, height*width, tokens] factors (batch 0 is the unconditional half).
 */
export type AttentionEdit = (height: number, width: number, tokens: number, batch: number) => Tensor;

export interface GuidanceMethod {
  readonly name: string;
  /**
   * Query resolution [h, w] of the cross-attention maps the method wants recorded in every guided pass (passed
   * to afterGuidedPass), given the latent size; absent or null: none.
   */
  attentionResolution?(latentHeight: number, latentWidth: number): readonly [number, number] | null;
  /** Change the latents before the guided pass (gradient methods); return nothing to keep them. */
  beforeGuidedPass?(ctx: StepContext): Promise<Tensor | void>;
  /** Attention edits for this step's guided pass, or null for none. */
  guidedPassEdit?(ctx: StepContext): AttentionEdit | null;
  /** The guided pass's aggregated conditional maps [h, w, T] at `attentionResolution`. */
  afterGuidedPass?(ctx: StepContext, maps: Tensor | null): void;
  /** Per-call log for `--json` (what the method measured and did at this step). */
  stepLog?(index: number): Record<string, unknown> | undefined;
}

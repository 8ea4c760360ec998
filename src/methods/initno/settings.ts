/** INITNO's settings: the official code's defaults and the resolved configuration of one run. */
import type { LatentLoopConfig } from '../latent-loop.js';
import type { Subject } from '../spec.js';

/** INITNO's settings, as the official code has them (calls given for 50 steps). */
export const INITNO_DEFAULTS = {
  /** Noise optimisation: Adam's learning rate and epsilon. */
  lr: 1e-2,
  eps: 1e-3,
  /** Rounds from fresh noise, and steps per round; steps of the final re-optimisation. */
  rounds: 5,
  roundSteps: 10,
  finalSteps: 50,
  /** Success: response below this and conflict below `tauSelf`. */
  tauCross: 0.2,
  tauSelf: 0.3,
  /** KL steps until KL(N(μ, σ²) ‖ N(0, 1)) is at most this. */
  klLimit: 1e-3,
  /** The loop's refinement calls at 50 steps, and its targets (response ≤ 1 − 0.8, conflict ≤ 0.3). */
  refineAt50: [10, 20] as readonly number[],
  refineThreshold: 0.8,
  maxRefinementSteps: 20,
  /** The alignment loss's moving average: cache ← α·cache + (1 − α)·maps. */
  alpha: 0.9,
};

export interface InitnoConfig extends LatentLoopConfig {
  subjects: readonly Subject[];
  /** Calls at which the loop refines (scaled). */
  refineAt: readonly number[];
  rounds: number;
  roundSteps: number;
  finalSteps: number;
  smoothAttentions: boolean;
  kernelSize: number;
  sigma: number;
  attnRes?: readonly [number, number];
}

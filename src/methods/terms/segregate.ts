/**
 * A-STAR's segregation term (Agarwal et al. 2023, "A-STAR: Test-time Attention Segregation and Retention"): for
 * every pair of subjects, Σ min(A_i, A_j) / Σ (A_i + A_j) on the maps themselves, summed over the pairs. (The
 * paper's retention term, which keeps each map close to its earlier steps' maps, is not included: no official
 * code is public.)
 */
import * as op from '../../graph/ops.js';
import type { LossTermSpec } from '../loss-terms.js';

export const segregateTerm: LossTermSpec = {
  pairs: true,
  build: ({ A, pairs, pairMasks, overlap }) =>
    pairs.length ? op.addN(pairs.map(([s, r], p) => op.mul(overlap(A, s, r), pairMasks[p]!))) : null,
};

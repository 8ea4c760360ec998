/**
 * INITNO's clean cross-attention term (Guo et al. 2024, `fn_compute_loss` of xiefan-guo/initno): the largest
 * attention left outside the peak's Otsu component, counted when it exceeds the smallest inside it; summed over
 * the subjects.
 */
import * as op from '../../graph/ops.js';
import type { LossTermSpec } from '../loss-terms.js';

export const cleanTerm: LossTermSpec = {
  build: ({ A, inp }) => {
    const c = inp.components;
    const background = op.reduceMax(op.mul(A, op.sub(1, c)), [2, 3], false);
    const foreground = op.reduceMin(op.add(op.mul(A, c), op.sub(1, c)), [2, 3], false);
    const active = op.stopGradient(op.cast(op.greater(background, foreground), 'float32'));
    return op.reduceSum(op.mul(op.mul(background, active), inp.subjectMask), [1], false);
  },
};

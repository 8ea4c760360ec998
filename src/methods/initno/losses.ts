/**
 * INITNO's losses as one graph over a pass's aggregated attention maps: the response, the self-attention
 * conflict, the clean and the alignment terms, and the two sums the official code differentiates.
 */
import type { Value } from '../../graph/graph.js';
import * as op from '../../graph/ops.js';
import { attendExciteLoss, selectedSubjectMaps } from '../attend-and-excite.js';
import { smoothMaps } from '../smoothing.js';

/** Which loss a pass differentiates: the response alone, the noise optimisation's joint loss, the loop's augmented. */
export type InitnoLossKind = 'response' | 'compute' | 'augmented';

export interface InitnoLossInputs {
  /** One-hot subject columns [k, T-2, n] and real-slot mask [k, n]. */
  select: Value;
  mask: Value;
  /** Each subject's peak component (Otsu + the peak's 4-connected blob) of its smoothed map [k, n, h, w]. */
  components: Value;
  /** The alignment cache (unsmoothed ×100-softmaxed subject columns) before this pass [k, n, h, w]. */
  cachePrev: Value;
  /** cache ← keep·cache + take·maps [k] (first pass: 0 and 1). */
  cacheKeep: Value;
  cacheTake: Value;
}

export interface InitnoLossValues {
  response: Value;
  conflict: Value;
  clean: Value;
  alignment: Value;
  /** fn_compute_loss: response + conflict (zero while response > 0.5) + clean. */
  compute: Value;
  /** fn_augmented_compute_losss: response + 0.1·clean + 0.1·alignment + conflict. */
  augmented: Value;
  /** Smoothed subject maps [k, n, h, w] (for the masks) and the updated cache [k, n, h, w]. */
  subjectMaps: Value;
  cacheNew: Value;
}

/**
 * INITNO's losses per sample [k] from the aggregated maps: cross [k, h, w, T], self [k, h, w, h*w]. The
 * smoothing settings are A&E's (INITNO's GaussianSmoothing is the same kernel).
 */
export function initnoLosses(
  cross: Value,
  self: Value,
  inp: InitnoLossInputs,
  smoothing: { smoothAttentions: boolean; kernelSize: number; sigma: number },
): InitnoLossValues {
  const g = cross.graph;
  const [k, h, w] = cross.shape as [number, number, number, number];
  const n = inp.select.shape[2]!;
  const hw = h * w;
  const raw = selectedSubjectMaps(cross, inp.select, { ...smoothing, smoothAttentions: false }); // [k, n, h, w]
  const smooth = (x: Value) =>
    smoothing.smoothAttentions
      ? op.reshape(smoothMaps(op.reshape(x, [k * n, h, w]), smoothing.kernelSize, smoothing.sigma), [k, n, h, w])
      : x;
  const A = smooth(raw);
  const peak = op.reduceMax(A, [2, 3], false); // [k, n]: the top-1 value
  const response = attendExciteLoss(peak, inp.mask);

  // Clean: the largest attention outside the peak's component, counted when it exceeds the smallest inside.
  const c = inp.components;
  const background = op.reduceMax(op.mul(A, op.sub(1, c)), [2, 3], false);
  const foreground = op.reduceMin(op.add(op.mul(A, c), op.sub(1, c)), [2, 3], false);
  const active = op.stopGradient(op.cast(op.greater(background, foreground), 'float32'));
  const clean = op.reduceSum(op.mul(op.mul(background, active), inp.mask), [1], false);

  // Conflict: each subject's self-attention row at its cross-attention peak (first maximum), smoothed.
  const flat = op.reshape(A, [k, n, hw]);
  const positions = g.constant(
    BigInt64Array.from({ length: hw }, (_, i) => BigInt(i)),
    [hw],
    'int64',
    'initno_positions',
  );
  const onehot = op.stopGradient(op.cast(op.equal(positions, op.argMax(flat, -1, true)), 'float32')); // [k, n, hw]
  const rows = op.matmul(onehot, op.reshape(self, [k, hw, hw])); // [k, n, hw]
  const S = smooth(op.reshape(rows, [k, n, h, w]));
  const slot = (x: Value, i: number) => op.reshape(op.slice(x, [i], [i + 1], [1]), [k, h, w]);
  const slotMask = (i: number) => op.reshape(op.slice(inp.mask, [i], [i + 1], [1]), [k]);
  const pairs: Value[] = [];
  const pairMasks: Value[] = [];
  for (let s = 0; s < n; s++)
    for (let r = s + 1; r < n; r++) {
      const [a, b] = [slot(S, s), slot(S, r)];
      const overlap = op.div(
        op.reduceSum(op.minimum(a, b), [1, 2], false),
        op.add(op.reduceSum(op.add(a, b), [1, 2], false), 1e-6),
      );
      const m = op.mul(slotMask(s), slotMask(r));
      pairs.push(op.mul(overlap, m));
      pairMasks.push(m);
    }
  const zero = g.constant(new Float32Array(k), [k], 'float32', 'initno_zero');
  const conflict = pairs.length ? op.div(op.addN(pairs), op.maximum(op.addN(pairMasks), 1)) : zero;

  // Alignment with the moving average of the maps (the cache takes this pass's maps without gradient).
  const col = (x: Value) => op.reshape(x, [k, 1, 1, 1]);
  const cacheNew = op.add(op.mul(inp.cachePrev, col(inp.cacheKeep)), op.mul(op.stopGradient(raw), col(inp.cacheTake)));
  const l1 = op.reduceMean(op.abs(op.sub(A, smooth(cacheNew))), [2, 3], false); // [k, n]
  const alignment = op.reduceSum(op.mul(l1, inp.mask), [1], false);

  // fn_compute_loss zeroes the conflict while the response loss is above 0.5.
  const notAbove = op.sub(1, op.stopGradient(op.cast(op.greater(response, 0.5), 'float32')));
  const compute = op.add(op.add(response, op.mul(conflict, notAbove)), clean);
  const augmented = op.add(
    op.add(op.add(response, op.mul(clean, Math.fround(0.1))), op.mul(alignment, Math.fround(0.1))),
    conflict,
  );
  return { response, conflict, clean, alignment, compute, augmented, subjectMaps: A, cacheNew };
}

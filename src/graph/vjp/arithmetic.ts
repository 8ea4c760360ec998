/** VJP rules with a body of their own: MatMul, the reductions, elementwise Max/Min, Pow, LayerNormalization, Softmax. */
import { shapeSize, type Value } from '../graph.js';
import * as op from '../ops.js';
import { attrInt, keptCotangent, norm, reduceAxes, transposeLast2, unbroadcast, type VjpRule } from './common.js';

export const matmulVjp: VjpRule = ({ inputs, gy, needs }) => {
  const a = inputs[0]!;
  const b = inputs[1]!;
  const [m, k] = a.shape.slice(-2) as [number, number];
  const n = b.shape[b.rank - 1]!;
  let ga: Value | null = null;
  let gb: Value | null = null;
  if (needs[0]) ga = unbroadcast(op.matmul(gy, transposeLast2(b)), a.shape);
  if (needs[1]) {
    const bBatch = shapeSize(b.shape.slice(0, -2));
    const aBatch = shapeSize(a.shape.slice(0, -2));
    if (bBatch === 1 && aBatch > 1) {
      // A weight shared across the batch (x @ W): fold the batch into the rows, one plain MatMul.
      const a2 = op.reshape(a, [aBatch * m, k]);
      const gy2 = op.reshape(gy, [aBatch * m, n]);
      gb = op.reshape(op.matmul(op.transpose(a2, [1, 0]), gy2), b.shape);
    } else {
      gb = unbroadcast(op.matmul(transposeLast2(a), gy), b.shape);
    }
  }
  return [ga, gb];
};

// ---- reductions --------------------------------------------------------------------------------------------

export const reduceSumVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  const axes = reduceAxes(node, x);
  if (!axes) return [gy];
  return [op.expand(keptCotangent(node, x, gy, axes), x.shape)];
};

export const reduceMeanVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  const axes = reduceAxes(node, x);
  if (!axes) return [gy];
  const count = axes.reduce((s, a) => s * x.shape[a]!, 1);
  return [op.expand(op.mul(keptCotangent(node, x, gy, axes), 1 / count), x.shape)];
};

/** ReduceMax / ReduceMin: the cotangent split evenly among the elements equal to the extremum. */
export const reduceExtremumVjp: VjpRule = ({ node, inputs, y, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  const axes = reduceAxes(node, x);
  if (!axes) return [gy];
  const yk = keptCotangent(node, x, y, axes);
  const mask = op.cast(op.equal(x, yk), 'float32');
  const count = op.reduceSum(mask, axes, true);
  return [op.mul(mask, op.div(keptCotangent(node, x, gy, axes), count))];
};

// ---- elementwise -------------------------------------------------------------------------------------------

/** Elementwise Max (greater = op.greater) or Min (op.less) of two tensors, torch.maximum/minimum at ties. */
export function extremumVjp(wins: (a: Value, b: Value) => Value): VjpRule {
  return ({ node, inputs, gy, needs }) => {
    if (inputs.length !== 2)
      throw new Error(`gradients: ${node.opType} with ${inputs.length} inputs is not supported (2 only)`);
    const a = inputs[0]!;
    const b = inputs[1]!;
    const tie = op.equal(a, b);
    const half = op.mul(gy, 0.5);
    const share = (first: Value, second: Value) => op.where(wins(first, second), gy, op.where(tie, half, 0));
    if (needs[0] && needs[1]) {
      const ga = share(a, b);
      return [unbroadcast(ga, a.shape), unbroadcast(op.sub(gy, ga), b.shape)];
    }
    return [needs[0] ? unbroadcast(share(a, b), a.shape) : null, needs[1] ? unbroadcast(share(b, a), b.shape) : null];
  };
}

export const powVjp: VjpRule = ({ graph: g, inputs, y, gy, needs }) => {
  const a = inputs[0]!;
  const b = inputs[1]!;
  let ga: Value | null = null;
  if (needs[0]) {
    const data = g.constants.get(b);
    if (data && data.length === 1 && b.dtype === 'float32') {
      const p = (data as Float32Array)[0]!;
      const q = p - 1;
      const base = q === 0 ? null : q === 1 ? a : op.pow(a, q);
      const d = base ? op.mul(base, p) : null;
      ga = unbroadcast(d ? op.mul(gy, d) : op.mul(gy, p), a.shape);
    } else {
      ga = unbroadcast(op.mul(gy, op.mul(b, op.pow(a, op.sub(b, 1)))), a.shape);
    }
  }
  const gb = needs[1] ? unbroadcast(op.mul(gy, op.mul(y, op.log(a))), b.shape) : null;
  return [ga, gb];
};

// ---- normalization -----------------------------------------------------------------------------------------

/**
 * x̂ = (x − μ)·r, y = x̂·γ + β over the axes from `axis` on; with ĝ = g·γ:
 * ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ∂γ = Σ g·x̂, ∂β = Σ g (sums over the leading axes).
 */
export const layerNormVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const [x, scale, bias] = inputs as [Value, Value, Value | null];
  const a = norm(attrInt(node, 'axis', -1), x.rank);
  const mean = node.outputs[1]!;
  const r = node.outputs[2]!;
  const normAxes = Array.from({ length: x.rank - a }, (_, i) => a + i);
  const leadAxes = Array.from({ length: a }, (_, i) => i);
  const xhat = op.mul(op.sub(x, mean), r);
  const sumLead = (v: Value) => op.reshape(op.reduceSum(v, leadAxes, false), scale.shape);
  const gs = needs[1] ? sumLead(op.mul(gy, xhat)) : null;
  const gb = bias && needs[2] ? sumLead(gy) : null;
  let gx: Value | null = null;
  if (needs[0]) {
    const gh = op.mul(gy, scale);
    const m1 = op.reduceMean(gh, normAxes, true);
    const m2 = op.reduceMean(op.mul(gh, xhat), normAxes, true);
    gx = op.mul(op.sub(op.sub(gh, m1), op.mul(xhat, m2)), r);
  }
  return [gx, gs, gb];
};

export const softmaxVjp: VjpRule = ({ node, y, gy, needs }) => {
  if (!needs[0]) return [null];
  const a = norm(attrInt(node, 'axis', -1), y.rank);
  const gyy = op.mul(gy, y);
  return [op.sub(gyy, op.mul(y, op.reduceSum(gyy, [a], true)))];
};

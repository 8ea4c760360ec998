/** VJP rules of the operators that move elements: Pad, Slice, Gather, ScatterND. */
import { type Graph, type Value } from '../graph.js';
import * as op from '../ops.js';
import { attrInt, constInts, norm, type VjpRule, zeros } from './common.js';

/** VJP of reflect padding along one axis: the core plus the mirrored border cotangents added back. */
function reflectPadAxisVjp(g: Graph, gv: Value, axis: number, begin: number, end: number, n: number): Value {
  const total = begin + n + end;
  const parts = [op.slice(gv, [begin], [begin + n], [axis])];
  // A zero appended at index `total` serves the positions that receive nothing from a border.
  const padded = op.pad(gv, [...gv.shape.map(() => 0), ...gv.shape.map((_, i) => (i === axis ? 1 : 0))]);
  if (begin > 0) {
    // x[k] for k = 1..begin also appears at y[begin − k].
    const idx = Array.from({ length: n }, (_, i) => (i >= 1 && i <= begin ? begin - i : total));
    parts.push(op.gather(padded, g.ints(idx), axis));
  }
  if (end > 0) {
    // x[n−1−k] for k = 1..end also appears at y[begin + n − 1 + k].
    const idx = Array.from({ length: n }, (_, i) =>
      i >= n - 1 - end && i <= n - 2 ? begin + n - 1 + (n - 1 - i) : total,
    );
    parts.push(op.gather(padded, g.ints(idx), axis));
  }
  return op.addN(parts);
}

/** VJP of edge padding along one axis: border cotangents summed into the first / last element. */
function edgePadAxisVjp(gv: Value, axis: number, begin: number, end: number, n: number): Value {
  if (n === 1) return op.reduceSum(gv, [axis], true);
  const first = op.slice(gv, [0], [begin + 1], [axis]);
  const parts = [begin > 0 ? op.reduceSum(first, [axis], true) : first];
  if (n > 2) parts.push(op.slice(gv, [begin + 1], [begin + n - 1], [axis]));
  const last = op.slice(gv, [begin + n - 1], [begin + n + end], [axis]);
  parts.push(end > 0 ? op.reduceSum(last, [axis], true) : last);
  return op.concat(parts, axis);
}

export const padVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  const pads = constInts(inputs[1]!, 'Pad pads');
  const modeAttr = node.attrs['mode'];
  const mode = modeAttr && modeAttr.kind === 'string' ? modeAttr.value : 'constant';
  if (inputs.length > 3 && inputs[3]) throw new Error('gradients: Pad with an axes input is not supported');
  const r = x.rank;
  if (mode === 'constant')
    return [
      op.pad(
        gy,
        pads.map((p) => -p),
      ),
    ];
  if (mode !== 'reflect' && mode !== 'edge') throw new Error(`gradients: Pad mode '${mode}' is not supported`);
  if (pads.some((p) => p < 0)) throw new Error(`gradients: ${mode} Pad with negative pads is not supported`);
  let gv = gy;
  for (let a = 0; a < r; a++) {
    const b = pads[a]!;
    const e = pads[a + r]!;
    if (b === 0 && e === 0) continue;
    const n = x.shape[a]!;
    if (mode === 'reflect') {
      if (b > n - 1 || e > n - 1) throw new Error(`gradients: reflect Pad of ${b},${e} on an axis of size ${n}`);
      gv = reflectPadAxisVjp(g, gv, a, b, e, n);
    } else {
      gv = edgePadAxisVjp(gv, a, b, e, n);
    }
  }
  return [gv];
};

// ---- slice / gather ----------------------------------------------------------------------------------------

export const sliceVjp: VjpRule = ({ graph: g, inputs, y, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  if (y.size === 0) return [zeros(g, x.shape)];
  const starts = constInts(inputs[1]!, 'Slice starts');
  const axes = inputs[3] ? constInts(inputs[3], 'Slice axes') : starts.map((_, i) => i);
  const steps = inputs[4] ? constInts(inputs[4], 'Slice steps') : starts.map(() => 1);
  const r = x.rank;
  const begin = new Array<number>(r).fill(0);
  const endPad = new Array<number>(r).fill(0);
  let gv = gy;
  axes.forEach((ax, i) => {
    const a = norm(ax, r);
    const dim = x.shape[a]!;
    const step = steps[i]!;
    if (step <= 0) throw new Error('gradients: Slice with non-positive steps is not supported');
    const st = Math.min(Math.max(starts[i]! < 0 ? starts[i]! + dim : starts[i]!, 0), dim);
    const len = y.shape[a]!;
    let covered = len;
    if (step > 1) {
      // Interleave step−1 zeros after each element: [.., L, ..] → [.., L, 1, ..] → pad → [.., L*step, ..].
      const shp = [...gv.shape];
      const withUnit = [...shp.slice(0, a + 1), 1, ...shp.slice(a + 1)];
      const p = new Array<number>(2 * (r + 1)).fill(0);
      p[r + 1 + a + 1] = step - 1;
      const spread = op.pad(op.reshape(gv, withUnit), p);
      shp[a] = len * step;
      gv = op.reshape(spread, shp);
      covered = len * step;
    }
    begin[a] = st;
    endPad[a] = dim - st - covered; // negative when the interleaved zeros overshoot: Pad crops
  });
  return [op.pad(gv, [...begin, ...endPad])];
};

export const gatherVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
  const x = inputs[0]!;
  const idx = inputs[1]!;
  if (!needs[0]) return [null, null];
  const a = norm(attrInt(node, 'axis', 0), x.rank);
  const n = idx.size;
  const pre = x.shape.slice(0, a);
  const post = x.shape.slice(a + 1);
  const ind = op.reshape(idx, [n, 1]);
  if (a === 0) {
    return [op.scatterND(zeros(g, x.shape), ind, op.reshape(gy, [n, ...post]), 'add'), null];
  }
  // Move the gathered axis to the front, scatter, move it back.
  const perm = [a, ...pre.map((_, i) => i), ...post.map((_, i) => a + 1 + i)];
  const upd = op.transpose(op.reshape(gy, [...pre, n, ...post]), perm);
  const scattered = op.scatterND(zeros(g, [x.shape[a]!, ...pre, ...post]), ind, upd, 'add');
  const inv = perm.map((_, i) => perm.indexOf(i));
  return [op.transpose(scattered, inv), null];
};

export const scatterNDVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
  const [, indices, updates] = inputs as [Value, Value, Value];
  const redAttr = node.attrs['reduction'];
  const reduction = redAttr && redAttr.kind === 'string' ? redAttr.value : 'none';
  if (reduction !== 'none' && reduction !== 'add')
    throw new Error(`gradients: ScatterND reduction '${reduction}' is not supported`);
  if (indices.shape[indices.rank - 1] !== 1)
    throw new Error('gradients: ScatterND is supported with index depth 1 only');
  const gd = needs[0] ? (reduction === 'add' ? gy : op.scatterND(gy, indices, zeros(g, updates.shape), 'none')) : null;
  const gu = needs[2] ? op.gather(gy, op.reshape(indices, indices.shape.slice(0, -1)), 0) : null;
  return [gd, null, gu];
};

/**
 * Operators: each function records one ONNX node (opset 17) and infers its output shape. Composite layers
 * (GroupNorm, LayerNorm, GELU, SiLU, nearest upsampling) are written from primitives so that reverse mode needs
 * VJP rules for primitives only; ONNX Runtime's optimiser fuses the common patterns back.
 */
import { attr, broadcastShapes, Graph, sameShape, shapeSize, type Attrs, type DType, Value } from './graph.js';

export const OPSET = 17;

export type Operand = Value | number;

function graphOf(...xs: Operand[]): Graph {
  for (const x of xs) if (x instanceof Value) return x.graph;
  throw new Error('ops: at least one operand must be a graph value');
}

function lift(g: Graph, x: Operand, dtype: DType = 'float32'): Value {
  if (x instanceof Value) return x;
  return g.scalar(x, dtype === 'int64' ? 'int64' : 'float32');
}

function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${what}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

function unary(op: string, x: Value, attrs: Attrs = {}): Value {
  return x.graph.addNode(op, [x], [{ dtype: x.dtype, shape: x.shape }], attrs)[0]!;
}

function binary(op: string, a: Operand, b: Operand, outDtype?: DType): Value {
  const g = graphOf(a, b);
  const dt = a instanceof Value ? a.dtype : (b as Value).dtype;
  const va = lift(g, a, dt);
  const vb = lift(g, b, dt);
  if (va.dtype !== vb.dtype) throw new Error(`${op}: dtype mismatch ${va.dtype} vs ${vb.dtype}`);
  const shape = broadcastShapes(va.shape, vb.shape, op);
  return g.addNode(op, [va, vb], [{ dtype: outDtype ?? va.dtype, shape }])[0]!;
}

// ---- elementwise -------------------------------------------------------------------------------------------
export const add = (a: Operand, b: Operand) => binary('Add', a, b);
export const sub = (a: Operand, b: Operand) => binary('Sub', a, b);
export const mul = (a: Operand, b: Operand) => binary('Mul', a, b);
export const div = (a: Operand, b: Operand) => binary('Div', a, b);
export const pow = (a: Operand, b: Operand) => binary('Pow', a, b);
/** Elementwise maximum / minimum of two tensors. */
export const maximum = (a: Operand, b: Operand) => binary('Max', a, b);
export const minimum = (a: Operand, b: Operand) => binary('Min', a, b);
export const equal = (a: Operand, b: Operand) => binary('Equal', a, b, 'bool');
export const greater = (a: Operand, b: Operand) => binary('Greater', a, b, 'bool');
export const less = (a: Operand, b: Operand) => binary('Less', a, b, 'bool');

export const neg = (x: Value) => unary('Neg', x);
export const sqrt = (x: Value) => unary('Sqrt', x);
export const exp = (x: Value) => unary('Exp', x);
export const log = (x: Value) => unary('Log', x);
export const abs = (x: Value) => unary('Abs', x);
export const sigmoid = (x: Value) => unary('Sigmoid', x);
export const tanh = (x: Value) => unary('Tanh', x);
export const erf = (x: Value) => unary('Erf', x);
export const relu = (x: Value) => unary('Relu', x);
export const sin = (x: Value) => unary('Sin', x);
export const cos = (x: Value) => unary('Cos', x);
export const sign = (x: Value) => unary('Sign', x);
export const identity = (x: Value) => unary('Identity', x);

/** The value of `x`, seen by reverse mode as a constant (torch's `.detach()`). */
export function stopGradient(x: Value): Value {
  const y = unary('Identity', x);
  x.graph.stopGradientNodes.add(y.producer!);
  return y;
}

export function cast(x: Value, to: DType): Value {
  if (x.dtype === to) return x;
  return x.graph.addNode('Cast', [x], [{ dtype: to, shape: x.shape }], { to: attr.int(onnxDataType(to)) })[0]!;
}

export function where(cond: Value, a: Operand, b: Operand): Value {
  const g = cond.graph;
  const va = lift(g, a);
  const vb = lift(g, b);
  const shape = broadcastShapes(cond.shape, broadcastShapes(va.shape, vb.shape, 'Where'), 'Where');
  return g.addNode('Where', [cond, va, vb], [{ dtype: va.dtype, shape }])[0]!;
}

// ---- shape -------------------------------------------------------------------------------------------------
/** Reshape with at most one -1 (inferred); 0 is not special here (unlike ONNX) to keep shapes explicit. */
export function reshape(x: Value, shape: readonly number[]): Value {
  const known = shape.filter((d) => d !== -1);
  const n = shapeSize(known);
  const minus = shape.filter((d) => d === -1).length;
  if (minus > 1) throw new Error(`Reshape: more than one -1 in [${shape}]`);
  const out = shape.map((d) => (d === -1 ? x.size / n : d));
  if (shapeSize(out) !== x.size || out.some((d) => !Number.isInteger(d))) {
    throw new Error(`Reshape: cannot reshape [${x.shape}] to [${shape}]`);
  }
  if (sameShape(out, x.shape)) return x;
  return x.graph.addNode('Reshape', [x, x.graph.ints(out)], [{ dtype: x.dtype, shape: out }])[0]!;
}

export function transpose(x: Value, perm: readonly number[]): Value {
  if (perm.length !== x.rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new Error(`Transpose: bad permutation [${perm}] for rank ${x.rank}`);
  }
  if (perm.every((p, i) => p === i)) return x;
  const shape = perm.map((p) => x.shape[p]!);
  return x.graph.addNode('Transpose', [x], [{ dtype: x.dtype, shape }], { perm: attr.ints(perm) })[0]!;
}

export function concat(xs: readonly Value[], axis: number): Value {
  if (xs.length === 0) throw new Error('Concat: no inputs');
  if (xs.length === 1) return xs[0]!;
  const first = xs[0]!;
  const a = normAxis(axis, first.rank, 'Concat');
  const shape = [...first.shape];
  shape[a] = 0;
  for (const x of xs) {
    if (x.rank !== first.rank || x.dtype !== first.dtype || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`Concat: incompatible [${x.shape}] and [${first.shape}] on axis ${a}`);
    }
    shape[a]! += x.shape[a]!;
  }
  return first.graph.addNode('Concat', xs, [{ dtype: first.dtype, shape }], { axis: attr.int(a) })[0]!;
}

/** Python-style slice along the given axes (negative indices count from the end; ends are clamped). */
export function slice(
  x: Value,
  starts: readonly number[],
  ends: readonly number[],
  axes: readonly number[],
  steps?: readonly number[],
): Value {
  const st = steps ?? axes.map(() => 1);
  const shape = [...x.shape];
  const normStarts: number[] = [];
  const normEnds: number[] = [];
  const normAxes: number[] = [];
  axes.forEach((ax, i) => {
    const a = normAxis(ax, x.rank, 'Slice');
    const dim = x.shape[a]!;
    const step = st[i]!;
    if (step <= 0) throw new Error('Slice: only positive steps are supported');
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
    const s = clamp(starts[i]!);
    const e = clamp(ends[i]!);
    shape[a] = Math.max(0, Math.ceil((e - s) / step));
    normStarts.push(s);
    normEnds.push(e);
    normAxes.push(a);
  });
  const g = x.graph;
  return g.addNode(
    'Slice',
    [x, g.ints(normStarts), g.ints(normEnds), g.ints(normAxes), g.ints(st)],
    [{ dtype: x.dtype, shape }],
  )[0]!;
}

/** Split `x` along `axis` into pieces of the given sizes (as slices, so each piece has a simple VJP). */
export function split(x: Value, sizes: readonly number[], axis: number): Value[] {
  const a = normAxis(axis, x.rank, 'Split');
  if (sizes.reduce((s, d) => s + d, 0) !== x.shape[a])
    throw new Error(`Split: sizes [${sizes}] do not sum to ${x.shape[a]}`);
  let at = 0;
  return sizes.map((n) => {
    const piece = slice(x, [at], [at + n], [a]);
    at += n;
    return piece;
  });
}

export function expand(x: Value, shape: readonly number[]): Value {
  const out = broadcastShapes(x.shape, shape, 'Expand');
  if (sameShape(out, x.shape)) return x;
  return x.graph.addNode('Expand', [x, x.graph.ints(out)], [{ dtype: x.dtype, shape: out }])[0]!;
}

export function gather(x: Value, indices: Value, axis = 0): Value {
  const a = normAxis(axis, x.rank, 'Gather');
  const shape = [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)];
  return x.graph.addNode('Gather', [x, indices], [{ dtype: x.dtype, shape }], { axis: attr.int(a) })[0]!;
}

/**
 * Pad with ONNX's pads layout [begin_0, begin_1, ..., end_0, end_1, ...]; mode 'constant' | 'reflect' | 'edge'.
 * Negative pads crop.
 */
export function pad(
  x: Value,
  pads: readonly number[],
  mode: 'constant' | 'reflect' | 'edge' = 'constant',
  value = 0,
): Value {
  if (pads.length !== 2 * x.rank) throw new Error(`Pad: need ${2 * x.rank} pads, got ${pads.length}`);
  if (pads.every((p) => p === 0)) return x;
  const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + x.rank]!);
  const g = x.graph;
  const inputs: (Value | null)[] = [x, g.ints(pads)];
  if (mode === 'constant' && value !== 0) inputs.push(g.scalar(value));
  return g.addNode('Pad', inputs, [{ dtype: x.dtype, shape }], { mode: attr.string(mode) })[0]!;
}

/**
 * ScatterND (opset 16+): a copy of `data` with the slices addressed by `indices` ([..., k] int64, negative
 * counts from the end) replaced by `updates`, or with reduction 'add' / 'mul' combined with them (duplicates
 * then accumulate). `updates` has shape indices.shape[:-1] + data.shape[k:]. Added for reverse mode: the
 * gradient of an embedding lookup (Gather) is a ScatterND-add of the output gradient into zeros.
 */
export function scatterND(
  data: Value,
  indices: Value,
  updates: Value,
  reduction: 'none' | 'add' | 'mul' = 'none',
): Value {
  if (indices.dtype !== 'int64') throw new Error(`ScatterND: indices must be int64, got ${indices.dtype}`);
  if (indices.rank < 1) throw new Error('ScatterND: indices must have rank >= 1');
  const k = indices.shape[indices.rank - 1]!;
  if (k > data.rank) throw new Error(`ScatterND: index depth ${k} exceeds data rank ${data.rank}`);
  const want = [...indices.shape.slice(0, -1), ...data.shape.slice(k)];
  if (!sameShape(want, updates.shape)) throw new Error(`ScatterND: updates [${updates.shape}] should be [${want}]`);
  if (updates.dtype !== data.dtype) throw new Error(`ScatterND: dtype mismatch ${data.dtype} vs ${updates.dtype}`);
  const attrs: Attrs = reduction === 'none' ? {} : { reduction: attr.string(reduction) };
  return data.graph.addNode(
    'ScatterND',
    [data, indices, updates],
    [{ dtype: data.dtype, shape: data.shape }],
    attrs,
  )[0]!;
}

/**
 * Elementwise sum of several tensors with broadcasting (ONNX Sum): one node instead of a chain of Adds.
 * Added for reverse mode, which accumulates the gradients of a value used several times with it.
 */
export function addN(xs: readonly Value[]): Value {
  if (xs.length === 0) throw new Error('Sum: no inputs');
  if (xs.length === 1) return xs[0]!;
  const first = xs[0]!;
  let shape: number[] = [...first.shape];
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw new Error(`Sum: dtype mismatch ${first.dtype} vs ${x.dtype}`);
    shape = broadcastShapes(shape, x.shape, 'Sum');
  }
  return first.graph.addNode('Sum', xs, [{ dtype: first.dtype, shape }])[0]!;
}

// ---- reductions --------------------------------------------------------------------------------------------
function reducedShape(
  x: Value,
  axes: readonly number[],
  keepdims: boolean,
  what: string,
): { axes: number[]; shape: number[] } {
  const norm = [...new Set(axes.map((a) => normAxis(a, x.rank, what)))].sort((a, b) => a - b);
  const shape: number[] = [];
  x.shape.forEach((d, i) => {
    if (norm.includes(i)) {
      if (keepdims) shape.push(1);
    } else shape.push(d);
  });
  return { axes: norm, shape };
}

/** ReduceSum (opset 13+: axes as an input). */
export function reduceSum(x: Value, axes: readonly number[], keepdims = true): Value {
  const r = reducedShape(x, axes, keepdims, 'ReduceSum');
  if (r.axes.length === 0) return x;
  const g = x.graph;
  return g.addNode('ReduceSum', [x, g.ints(r.axes)], [{ dtype: x.dtype, shape: r.shape }], {
    keepdims: attr.int(keepdims ? 1 : 0),
  })[0]!;
}

/** ReduceMean / ReduceMax (opset 17: axes as an attribute). */
function reduceAttr(op: string, x: Value, axes: readonly number[], keepdims: boolean): Value {
  const r = reducedShape(x, axes, keepdims, op);
  if (r.axes.length === 0) return x;
  return x.graph.addNode(op, [x], [{ dtype: x.dtype, shape: r.shape }], {
    axes: attr.ints(r.axes),
    keepdims: attr.int(keepdims ? 1 : 0),
  })[0]!;
}
export const reduceMean = (x: Value, axes: readonly number[], keepdims = true) =>
  reduceAttr('ReduceMean', x, axes, keepdims);
export const reduceMax = (x: Value, axes: readonly number[], keepdims = true) =>
  reduceAttr('ReduceMax', x, axes, keepdims);
export const reduceMin = (x: Value, axes: readonly number[], keepdims = true) =>
  reduceAttr('ReduceMin', x, axes, keepdims);

/** Index of the first maximum along `axis` (int64; no gradient). */
export function argMax(x: Value, axis: number, keepdims = true): Value {
  const a = normAxis(axis, x.rank, 'ArgMax');
  const shape = keepdims ? x.shape.map((d, i) => (i === a ? 1 : d)) : x.shape.filter((_, i) => i !== a);
  return x.graph.addNode('ArgMax', [x], [{ dtype: 'int64', shape }], {
    axis: attr.int(a),
    keepdims: attr.int(keepdims ? 1 : 0),
    select_last_index: attr.int(0),
  })[0]!;
}

export function softmax(x: Value, axis = -1): Value {
  return unary('Softmax', x, { axis: attr.int(normAxis(axis, x.rank, 'Softmax')) });
}

// ---- linear algebra ----------------------------------------------------------------------------------------
export function matmul(a: Value, b: Value): Value {
  if (a.rank < 2 || b.rank < 2)
    throw new Error(`MatMul: operands must have rank >= 2, got [${a.shape}] and [${b.shape}]`);
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  if (k !== k2) throw new Error(`MatMul: inner dimensions differ: [${a.shape}] x [${b.shape}]`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'MatMul');
  return a.graph.addNode('MatMul', [a, b], [{ dtype: a.dtype, shape: [...batch, m, n] }])[0]!;
}

export interface ConvOptions {
  strides?: readonly [number, number];
  /** [top, left, bottom, right] as ONNX orders them. */
  pads?: readonly [number, number, number, number];
  dilations?: readonly [number, number];
  group?: number;
}

export function convOutputSize(
  inSize: number,
  k: number,
  stride: number,
  padBegin: number,
  padEnd: number,
  dilation: number,
): number {
  return Math.floor((inSize + padBegin + padEnd - dilation * (k - 1) - 1) / stride) + 1;
}

/** 2-D convolution, x [N,C,H,W], w [O,C/group,kh,kw], optional bias [O]. */
export function conv(x: Value, w: Value, bias: Value | null, opts: ConvOptions = {}): Value {
  if (x.rank !== 4 || w.rank !== 4)
    throw new Error(`Conv: expected 4-D input and weight, got [${x.shape}] and [${w.shape}]`);
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [o, cg, kh, kw] = w.shape as [number, number, number, number];
  const group = opts.group ?? 1;
  if (c !== cg * group) throw new Error(`Conv: input has ${c} channels, weight expects ${cg * group}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== o))
    throw new Error(`Conv: bias [${bias.shape}] does not match ${o} output channels`);
  const strides = opts.strides ?? [1, 1];
  const pads = opts.pads ?? [0, 0, 0, 0];
  const dil = opts.dilations ?? [1, 1];
  const oh = convOutputSize(h, kh, strides[0], pads[0], pads[2], dil[0]);
  const ow = convOutputSize(wd, kw, strides[1], pads[1], pads[3], dil[1]);
  const attrs: Attrs = {
    kernel_shape: attr.ints([kh, kw]),
    strides: attr.ints(strides),
    pads: attr.ints(pads),
    dilations: attr.ints(dil),
    group: attr.int(group),
  };
  return x.graph.addNode('Conv', bias ? [x, w, bias] : [x, w], [{ dtype: x.dtype, shape: [n, o, oh, ow] }], attrs)[0]!;
}

/** ConvTranspose, x [N,C,H,W], w [C,O/group,kh,kw]; used by reverse mode for strided convolutions. */
export function convTranspose(
  x: Value,
  w: Value,
  opts: {
    strides: readonly [number, number];
    pads: readonly [number, number, number, number];
    outputPadding?: readonly [number, number];
    dilations?: readonly [number, number];
    group?: number;
  },
): Value {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [ci, og, kh, kw] = w.shape as [number, number, number, number];
  const group = opts.group ?? 1;
  if (c !== ci) throw new Error(`ConvTranspose: input has ${c} channels, weight expects ${ci}`);
  const dil = opts.dilations ?? [1, 1];
  const op = opts.outputPadding ?? [0, 0];
  const oh = opts.strides[0] * (h - 1) + op[0] + (kh - 1) * dil[0] + 1 - opts.pads[0] - opts.pads[2];
  const ow = opts.strides[1] * (wd - 1) + op[1] + (kw - 1) * dil[1] + 1 - opts.pads[1] - opts.pads[3];
  return x.graph.addNode('ConvTranspose', [x, w], [{ dtype: x.dtype, shape: [n, og * group, oh, ow] }], {
    kernel_shape: attr.ints([kh, kw]),
    strides: attr.ints(opts.strides),
    pads: attr.ints(opts.pads),
    dilations: attr.ints(dil),
    output_padding: attr.ints(op),
    group: attr.int(group),
  })[0]!;
}

// ---- composite layers --------------------------------------------------------------------------------------
export const silu = (x: Value) => mul(x, sigmoid(x));
/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export const quickGelu = (x: Value) => mul(x, sigmoid(mul(x, 1.702)));
/** Exact GELU: 0.5 x (1 + erf(x / sqrt 2)), as torch's default. */
export const gelu = (x: Value) => mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));

/** y = x Wᵀ + b with torch Linear's weight layout [out, in]. */
export function linear(x: Value, weight: Value, bias: Value | null): Value {
  const y = matmul(x, transpose(weight, [1, 0]));
  return bias ? add(y, bias) : y;
}

/**
 * ONNX LayerNormalization (opset 17) over the axes from `axis` to the end: y = (x − mean)·invStdDev·scale + bias.
 * One kernel instead of eight elementwise passes; its Mean and InvStdDev outputs make the VJP cheap.
 * scale/bias have the normalised axes' shape.
 */
export function layerNormalization(
  x: Value,
  scale: Value,
  bias: Value | null,
  axis: number,
  eps: number,
): { y: Value; mean: Value; invStdDev: Value } {
  const a = normAxis(axis, x.rank, 'LayerNormalization');
  const normShape = x.shape.slice(a);
  if (scale.shape.length !== normShape.length || scale.shape.some((d, i) => d !== normShape[i])) {
    throw new Error(`LayerNormalization: scale [${scale.shape}] does not match the normalised shape [${normShape}]`);
  }
  const statShape = x.shape.map((d, i) => (i < a ? d : 1));
  const [y, mean, invStdDev] = x.graph.addNode(
    'LayerNormalization',
    bias ? [x, scale, bias] : [x, scale],
    [
      { dtype: x.dtype, shape: x.shape },
      { dtype: 'float32', shape: statShape },
      { dtype: 'float32', shape: statShape },
    ],
    { axis: attr.int(a), epsilon: attr.float(eps) },
  );
  return { y: y!, mean: mean!, invStdDev: invStdDev! };
}

export function layerNorm(x: Value, weight: Value | null, bias: Value | null, eps: number): Value {
  const c = x.shape[x.rank - 1]!;
  const scale = weight ?? x.graph.constant(new Float32Array(c).fill(1), [c], 'float32', 'ones');
  return layerNormalization(x, scale, bias, -1, eps).y;
}

/** torch.nn.GroupNorm on [N, C, ...spatial]: LayerNormalization of each group, then the per-channel affine. */
export function groupNorm(x: Value, groups: number, weight: Value | null, bias: Value | null, eps: number): Value {
  const [n, c] = x.shape as [number, number];
  if (c % groups !== 0) throw new Error(`GroupNorm: ${c} channels not divisible by ${groups} groups`);
  const spatial = x.shape.slice(2);
  const len = (c / groups) * shapeSize(spatial);
  const grouped = reshape(x, [n, groups, len]);
  const ones = x.graph.constant(new Float32Array(len).fill(1), [len], 'float32', 'ones');
  let y = reshape(layerNormalization(grouped, ones, null, -1, eps).y, x.shape);
  const affineShape = [c, ...spatial.map(() => 1)];
  if (weight) y = mul(y, reshape(weight, affineShape));
  if (bias) y = add(y, reshape(bias, affineShape));
  return y;
}

/** Nearest-neighbour 2x upsampling of [N,C,H,W] (torch F.interpolate(scale_factor=2, mode='nearest')). */
export function upsampleNearest2x(x: Value): Value {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const wide = expand(reshape(x, [n, c, h, 1, w, 1]), [n, c, h, 2, w, 2]);
  return reshape(wide, [n, c, 2 * h, 2 * w]);
}

/** ONNX TensorProto.DataType codes. */
export function onnxDataType(dtype: DType): number {
  switch (dtype) {
    case 'float32':
      return 1;
    case 'int32':
      return 6;
    case 'int64':
      return 7;
    case 'bool':
      return 9;
    case 'float16':
      return 10;
  }
}

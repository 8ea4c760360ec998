/**
 * A plain-TypeScript float64 reference evaluator for recorded graphs: every operator that `ops.ts` and
 * `autodiff.ts` record, written as directly from the ONNX specification (opset 17) as possible. It pins ONNX
 * Runtime's results and gives float64 finite differences. Readability over speed: small tensors only.
 *
 * Every tensor is held as float64 numbers whatever its dtype (int64 indices and bools as 0/1 are exact).
 */
import type { DType, Graph, Node, Value } from '../../src/graph/graph.js';

export interface RefTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

export type FeedData = ArrayLike<number> | BigInt64Array;

export function refTensor(data: FeedData, shape: readonly number[], dtype: DType = 'float32'): RefTensor {
  const d = Float64Array.from(data as ArrayLike<number>, (x) => Number(x));
  if (d.length !== size(shape)) throw new Error(`refTensor: ${d.length} values for shape [${shape}]`);
  return { dtype, shape: [...shape], data: d };
}

/**
 * Evaluate `wanted` values of `graph`. `feeds` maps graph input names (and, optionally, parameter names, which
 * otherwise come from their weight sources) to data; `overrides` replaces any value outright. Only the nodes
 * needed for `wanted` run.
 */
export function evaluate(
  graph: Graph,
  feeds: Record<string, FeedData>,
  wanted: readonly Value[],
  overrides?: ReadonlyMap<Value, RefTensor>,
): RefTensor[] {
  const env = new Map<Value, RefTensor>();
  const valueOf = (v: Value): RefTensor => {
    const known = overrides?.get(v) ?? env.get(v);
    if (known) return known;
    let t: RefTensor;
    if (v.producer) {
      const node = v.producer;
      const ins = node.inputs.map((i) => (i ? valueOf(i) : null));
      const outs = runNode(node, ins);
      node.outputs.forEach((o, k) => {
        const r = outs[k]!;
        if (!sameDims(r.shape, o.shape))
          throw new Error(
            `interpreter: ${node.opType} gave [${r.shape}], recorder inferred [${o.shape}] (${node.name})`,
          );
        env.set(o, r);
      });
      return env.get(v)!;
    }
    const c = graph.constants.get(v);
    if (c) t = refTensor(c as FeedData, v.shape, v.dtype);
    else if (v.name in feeds) t = refTensor(feeds[v.name]!, v.shape, v.dtype);
    else {
      const p = graph.params.find((q) => q.value === v);
      if (!p) throw new Error(`interpreter: no feed for input ${v.name}`);
      t = refTensor(p.source.read(), v.shape, v.dtype);
    }
    env.set(v, t);
    return t;
  };
  // Evaluate iteratively in recording order to avoid deep recursion on long graphs.
  const needed = new Set<Node>();
  const stack = [...wanted];
  const seen = new Set<Value>();
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v) || overrides?.has(v)) continue;
    seen.add(v);
    if (v.producer) {
      needed.add(v.producer);
      for (const i of v.producer.inputs) if (i) stack.push(i);
    }
  }
  for (const node of [...needed].sort((a, b) => a.id - b.id)) valueOf(node.outputs[0]!);
  return wanted.map(valueOf);
}

// ---- index helpers -----------------------------------------------------------------------------------------

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    idx[i] = flat % shape[i]!;
    flat = Math.floor(flat / shape[i]!);
  }
  return idx;
}

function ravel(idx: readonly number[], shape: readonly number[]): number {
  let flat = 0;
  for (let i = 0; i < shape.length; i++) flat = flat * shape[i]! + idx[i]!;
  return flat;
}

function make(dtype: DType, shape: readonly number[], fill: (idx: number[], flat: number) => number): RefTensor {
  const data = new Float64Array(size(shape));
  for (let f = 0; f < data.length; f++) data[f] = fill(unravel(f, shape), f);
  return { dtype, shape: [...shape], data };
}

function broadcastShape(shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x !== 1) {
        if (d !== 1 && d !== x)
          throw new Error(`interpreter: shapes ${shapes.map((q) => `[${q}]`).join(' ')} do not broadcast`);
        d = x;
      }
    }
    out.push(d);
  }
  return out;
}

/** The element of `t` that broadcasts to output index `idx`. */
function at(t: RefTensor, idx: readonly number[]): number {
  const off = idx.length - t.shape.length;
  let flat = 0;
  for (let i = 0; i < t.shape.length; i++) flat = flat * t.shape[i]! + (t.shape[i] === 1 ? 0 : idx[i + off]!);
  return t.data[flat]!;
}

function elementwise(dtype: DType, ts: readonly RefTensor[], f: (xs: number[]) => number): RefTensor {
  const shape = broadcastShape(ts.map((t) => t.shape));
  return make(dtype, shape, (idx) => f(ts.map((t) => at(t, idx))));
}

const ints = (t: RefTensor | null | undefined): number[] => (t ? Array.from(t.data) : []);

function attrI(node: Node, name: string, dflt: number): number {
  const a = node.attrs[name];
  return a && a.kind === 'int' ? a.value : dflt;
}

function attrIs(node: Node, name: string): number[] | undefined {
  const a = node.attrs[name];
  return a && a.kind === 'ints' ? [...a.value] : undefined;
}

function attrF(node: Node, name: string, dflt: number): number {
  const a = node.attrs[name];
  return a && a.kind === 'float' ? a.value : dflt;
}

function attrS(node: Node, name: string, dflt: string): string {
  const a = node.attrs[name];
  return a && a.kind === 'string' ? a.value : dflt;
}

const normAxis = (a: number, rank: number) => (a < 0 ? a + rank : a);

// ---- math --------------------------------------------------------------------------------------------------

/** erf to float64 precision: 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)), a series of positive terms. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (Math.abs(x) > 6) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 0; n < 500 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (2 * x * x) / (2 * n + 3);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

const UNARY: Record<string, (x: number) => number> = {
  Neg: (x) => -x,
  Sqrt: Math.sqrt,
  Exp: Math.exp,
  Log: Math.log,
  Abs: Math.abs,
  Sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  Tanh: Math.tanh,
  Erf: erf,
  Relu: (x) => (x > 0 ? x : 0),
  Sin: Math.sin,
  Cos: Math.cos,
  Sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  Identity: (x) => x,
};

const BINARY: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => Math.pow(a, b),
  Equal: (a, b) => (a === b ? 1 : 0),
  Greater: (a, b) => (a > b ? 1 : 0),
  Less: (a, b) => (a < b ? 1 : 0),
};

const DTYPE_OF_ONNX: Record<number, DType> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16' };

// ---- operators ---------------------------------------------------------------------------------------------

function runNode(node: Node, ins: (RefTensor | null)[]): RefTensor[] {
  const x = ins[0]!;
  const t = node.opType;
  if (t in UNARY) return [make(x.dtype, x.shape, (_, f) => UNARY[t]!(x.data[f]!))];
  if (t in BINARY) {
    const dtype = t === 'Equal' || t === 'Greater' || t === 'Less' ? 'bool' : x.dtype;
    return [elementwise(dtype, [x, ins[1]!], ([a, b]) => BINARY[t]!(a!, b!))];
  }
  switch (t) {
    case 'Max':
      return [elementwise(x.dtype, ins as RefTensor[], (xs) => Math.max(...xs))];
    case 'Min':
      return [elementwise(x.dtype, ins as RefTensor[], (xs) => Math.min(...xs))];
    case 'Sum':
      return [elementwise(x.dtype, ins as RefTensor[], (xs) => xs.reduce((a, b) => a + b, 0))];
    case 'Where':
      return [elementwise(ins[1]!.dtype, ins as RefTensor[], ([c, a, b]) => (c ? a! : b!))];
    case 'Cast': {
      const to = DTYPE_OF_ONNX[attrI(node, 'to', 1)]!;
      const conv =
        to === 'bool'
          ? (v: number) => (v !== 0 ? 1 : 0)
          : to === 'int64' || to === 'int32'
            ? Math.trunc
            : (v: number) => v;
      return [make(to, x.shape, (_, f) => conv(x.data[f]!))];
    }
    case 'Reshape': {
      const target = ints(ins[1]).map((d, i) => (d === 0 && attrI(node, 'allowzero', 0) === 0 ? x.shape[i]! : d));
      const known = target.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
      const shape = target.map((d) => (d === -1 ? size(x.shape) / known : d));
      if (size(shape) !== size(x.shape)) throw new Error(`interpreter: Reshape [${x.shape}] to [${target}]`);
      return [{ dtype: x.dtype, shape, data: x.data.slice() }];
    }
    case 'Transpose': {
      const perm = attrIs(node, 'perm') ?? x.shape.map((_, i) => x.shape.length - 1 - i);
      const shape = perm.map((p) => x.shape[p]!);
      return [
        make(x.dtype, shape, (idx) => {
          const src = new Array<number>(idx.length);
          perm.forEach((p, i) => (src[p] = idx[i]!));
          return x.data[ravel(src, x.shape)]!;
        }),
      ];
    }
    case 'Concat': {
      const a = normAxis(attrI(node, 'axis', 0), x.shape.length);
      const parts = ins as RefTensor[];
      const shape = [...x.shape];
      shape[a] = parts.reduce((s, p) => s + p.shape[a]!, 0);
      return [
        make(x.dtype, shape, (idx) => {
          let k = idx[a]!;
          for (const p of parts) {
            if (k < p.shape[a]!) {
              const src = [...idx];
              src[a] = k;
              return p.data[ravel(src, p.shape)]!;
            }
            k -= p.shape[a]!;
          }
          throw new Error('unreachable');
        }),
      ];
    }
    case 'Slice':
      return [
        slice(x, ints(ins[1]), ints(ins[2]), ins[3] ? ints(ins[3]) : undefined, ins[4] ? ints(ins[4]) : undefined),
      ];
    case 'Expand': {
      const shape = broadcastShape([x.shape, ints(ins[1])]);
      return [make(x.dtype, shape, (idx) => at(x, idx))];
    }
    case 'Gather': {
      const a = normAxis(attrI(node, 'axis', 0), x.shape.length);
      const ind = ins[1]!;
      const dim = x.shape[a]!;
      const shape = [...x.shape.slice(0, a), ...ind.shape, ...x.shape.slice(a + 1)];
      const r = ind.shape.length;
      return [
        make(x.dtype, shape, (idx) => {
          let k = ind.data[ravel(idx.slice(a, a + r), ind.shape)]!;
          if (k < 0) k += dim;
          if (k < 0 || k >= dim) throw new Error(`interpreter: Gather index ${k} out of range`);
          return x.data[ravel([...idx.slice(0, a), k, ...idx.slice(a + r)], x.shape)]!;
        }),
      ];
    }
    case 'ScatterND': {
      const [ind, upd] = [ins[1]!, ins[2]!];
      const reduction = attrS(node, 'reduction', 'none');
      const data = x.data.slice();
      const k = ind.shape[ind.shape.length - 1]!;
      const nIdx = size(ind.shape.slice(0, -1));
      const sliceSize = size(x.shape.slice(k));
      const xs = stridesOf(x.shape);
      for (let i = 0; i < nIdx; i++) {
        let base = 0;
        for (let j = 0; j < k; j++) {
          let v = ind.data[i * k + j]!;
          if (v < 0) v += x.shape[j]!;
          base += v * xs[j]!;
        }
        for (let e = 0; e < sliceSize; e++) {
          const u = upd.data[i * sliceSize + e]!;
          if (reduction === 'add') data[base + e]! += u;
          else if (reduction === 'mul') data[base + e]! *= u;
          else data[base + e] = u;
        }
      }
      return [{ dtype: x.dtype, shape: x.shape, data }];
    }
    case 'Pad':
      return [pad(x, ints(ins[1]), attrS(node, 'mode', 'constant'), ins[2] ? ins[2].data[0]! : 0)];
    case 'ReduceSum':
    case 'ReduceMean':
    case 'ReduceMax':
    case 'ReduceMin': {
      let axes = t === 'ReduceSum' ? ints(ins[1]) : (attrIs(node, 'axes') ?? []);
      if (axes.length === 0) {
        if (attrI(node, 'noop_with_empty_axes', 0)) return [x];
        axes = x.shape.map((_, i) => i);
      }
      return [
        reduce(
          x,
          axes.map((a) => normAxis(a, x.shape.length)),
          attrI(node, 'keepdims', 1) === 1,
          t,
        ),
      ];
    }
    case 'ArgMax':
    case 'ArgMin': {
      // int64 indices of the first (or, with select_last_index, the last) extremum along `axis`
      const a = normAxis(attrI(node, 'axis', 0), x.shape.length);
      const last = attrI(node, 'select_last_index', 0) === 1;
      const kept = x.shape.map((d, i) => (i === a ? 1 : d));
      const r = make('int64', kept, (idx) => {
        let best = 0;
        for (let k = 1; k < x.shape[a]!; k++) {
          const v =
            x.data[
              ravel(
                idx.map((q, i) => (i === a ? k : q)),
                x.shape,
              )
            ]!;
          const b =
            x.data[
              ravel(
                idx.map((q, i) => (i === a ? best : q)),
                x.shape,
              )
            ]!;
          const better = t === 'ArgMax' ? v > b || (last && v === b) : v < b || (last && v === b);
          if (better) best = k;
        }
        return best;
      });
      return [attrI(node, 'keepdims', 1) ? r : { ...r, shape: x.shape.filter((_, i) => i !== a) }];
    }
    case 'Softmax': {
      const a = normAxis(attrI(node, 'axis', -1), x.shape.length);
      const mx = reduce(x, [a], true, 'ReduceMax');
      const e = make(x.dtype, x.shape, (idx, f) => Math.exp(x.data[f]! - at(mx, idx)));
      const s = reduce(e, [a], true, 'ReduceSum');
      return [make(x.dtype, x.shape, (idx, f) => e.data[f]! / at(s, idx))];
    }
    case 'LayerNormalization': {
      // outputs Y, Mean, InvStdDev over the axes from `axis` on (two-pass, float64)
      const a = normAxis(attrI(node, 'axis', -1), x.shape.length);
      const axes = x.shape.map((_, i) => i).filter((i) => i >= a);
      const eps = attrF(node, 'epsilon', 1e-5);
      const mean = reduce(x, axes, true, 'ReduceMean');
      const sq = make(x.dtype, x.shape, (idx, f) => (x.data[f]! - at(mean, idx)) ** 2);
      const variance = reduce(sq, axes, true, 'ReduceMean');
      const inv = make(x.dtype, variance.shape, (_, f) => 1 / Math.sqrt(variance.data[f]! + eps));
      const scale = ins[1]!;
      const bias = ins[2] ?? null;
      const tail = (idx: number[]) => ravel(idx.slice(a), x.shape.slice(a));
      const y = make(
        x.dtype,
        x.shape,
        (idx, f) =>
          (x.data[f]! - at(mean, idx)) * at(inv, idx) * scale.data[tail(idx)]! + (bias ? bias.data[tail(idx)]! : 0),
      );
      return [y, mean, inv];
    }
    case 'MatMul':
      return [matmul(x, ins[1]!)];
    case 'Conv':
      return [conv(node, x, ins[1]!, ins[2] ?? null)];
    case 'ConvTranspose':
      return [convTranspose(node, x, ins[1]!, ins[2] ?? null)];
    default:
      throw new Error(`interpreter: no implementation of ${t}`);
  }
}

function slice(x: RefTensor, starts: number[], ends: number[], axes?: number[], steps?: number[]): RefTensor {
  const r = x.shape.length;
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, r));
  const st = steps ?? starts.map(() => 1);
  const begin = x.shape.map(() => 0);
  const step = x.shape.map(() => 1);
  const shape = [...x.shape];
  ax.forEach((a, i) => {
    const dim = x.shape[a]!;
    const s = st[i]!;
    let b = starts[i]! < 0 ? starts[i]! + dim : starts[i]!;
    let e = ends[i]! < 0 ? ends[i]! + dim : ends[i]!;
    if (s > 0) {
      b = Math.min(Math.max(b, 0), dim);
      e = Math.min(Math.max(e, 0), dim);
    } else {
      b = Math.min(Math.max(b, 0), dim - 1);
      e = Math.min(Math.max(e, -1), dim - 1);
    }
    begin[a] = b;
    step[a] = s;
    shape[a] = Math.max(0, Math.ceil((e - b) / s));
  });
  return make(
    x.dtype,
    shape,
    (idx) =>
      x.data[
        ravel(
          idx.map((k, i) => begin[i]! + k * step[i]!),
          x.shape,
        )
      ]!,
  );
}

function pad(x: RefTensor, pads: number[], mode: string, value: number): RefTensor {
  const r = x.shape.length;
  const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + r]!);
  return make(x.dtype, shape, (idx) => {
    const src: number[] = [];
    for (let i = 0; i < r; i++) {
      const n = x.shape[i]!;
      let c = idx[i]! - pads[i]!;
      if (c < 0 || c >= n) {
        if (mode === 'constant') return value;
        if (mode === 'edge') c = Math.min(Math.max(c, 0), n - 1);
        else if (mode === 'reflect') {
          while (c < 0 || c >= n) c = c < 0 ? -c : 2 * (n - 1) - c;
        } else throw new Error(`interpreter: Pad mode ${mode}`);
      }
      src.push(c);
    }
    return x.data[ravel(src, x.shape)]!;
  });
}

function reduce(x: RefTensor, axes: number[], keepdims: boolean, kind: string): RefTensor {
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const acc = new Float64Array(size(kept)).fill(kind === 'ReduceMax' ? -Infinity : kind === 'ReduceMin' ? Infinity : 0);
  for (let f = 0; f < x.data.length; f++) {
    const idx = unravel(f, x.shape).map((k, i) => (axes.includes(i) ? 0 : k));
    const o = ravel(idx, kept);
    const v = x.data[f]!;
    if (kind === 'ReduceMax') acc[o] = Math.max(acc[o]!, v);
    else if (kind === 'ReduceMin') acc[o] = Math.min(acc[o]!, v);
    else acc[o]! += v;
  }
  if (kind === 'ReduceMean') {
    const n = axes.reduce((s, a) => s * x.shape[a]!, 1);
    for (let i = 0; i < acc.length; i++) acc[i]! /= n;
  }
  const shape = keepdims ? kept : x.shape.filter((_, i) => !axes.includes(i));
  return { dtype: x.dtype, shape, data: acc };
}

function matmul(a: RefTensor, b: RefTensor): RefTensor {
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error('interpreter: MatMul needs rank >= 2');
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  if (k !== k2) throw new Error('interpreter: MatMul inner dimensions differ');
  const batch = broadcastShape([a.shape.slice(0, -2), b.shape.slice(0, -2)]);
  const aBatch: RefTensor = { ...a, shape: a.shape.slice(0, -2) };
  const bBatch: RefTensor = { ...b, shape: b.shape.slice(0, -2) };
  return make(a.dtype, [...batch, m, n], (idx) => {
    const bi = idx.slice(0, -2);
    const i = idx[idx.length - 2]!;
    const j = idx[idx.length - 1]!;
    // Flat batch offsets via broadcasting on the batch dims only.
    const aOff = batchOffset(aBatch.shape, bi);
    const bOff = batchOffset(bBatch.shape, bi);
    let s = 0;
    for (let q = 0; q < k; q++) s += a.data[aOff * m * k + i * k + q]! * b.data[bOff * k * n + q * n + j]!;
    return s;
  });
}

function batchOffset(shape: readonly number[], idx: readonly number[]): number {
  const off = idx.length - shape.length;
  let flat = 0;
  for (let i = 0; i < shape.length; i++) flat = flat * shape[i]! + (shape[i] === 1 ? 0 : idx[i + off]!);
  return flat;
}

function convAttrs(node: Node) {
  return {
    strides: attrIs(node, 'strides') ?? [1, 1],
    pads: attrIs(node, 'pads') ?? [0, 0, 0, 0],
    dil: attrIs(node, 'dilations') ?? [1, 1],
    group: attrI(node, 'group', 1),
    outputPadding: attrIs(node, 'output_padding') ?? [0, 0],
  };
}

/** y[n, o, i, j] = b[o] + Σ_{c in o's group, a, b} x[n, c, i·s0 − p0 + a·d0, j·s1 − p1 + b·d1] · w[o, c', a, b]. */
function conv(node: Node, x: RefTensor, w: RefTensor, bias: RefTensor | null): RefTensor {
  const { strides: s, pads: p, dil: d, group } = convAttrs(node);
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [o, cg, kh, kw] = w.shape as [number, number, number, number];
  const oh = Math.floor((h + p[0]! + p[2]! - d[0]! * (kh - 1) - 1) / s[0]!) + 1;
  const ow = Math.floor((wd + p[1]! + p[3]! - d[1]! * (kw - 1) - 1) / s[1]!) + 1;
  const og = o / group;
  if (cg * group !== c) throw new Error('interpreter: Conv channel mismatch');
  return make(x.dtype, [n, o, oh, ow], ([b, oc, i, j]) => {
    let acc = bias ? bias.data[oc!]! : 0;
    const g = Math.floor(oc! / og);
    for (let ci = 0; ci < cg; ci++) {
      for (let a = 0; a < kh; a++) {
        const yi = i! * s[0]! - p[0]! + a * d[0]!;
        if (yi < 0 || yi >= h) continue;
        for (let q = 0; q < kw; q++) {
          const xj = j! * s[1]! - p[1]! + q * d[1]!;
          if (xj < 0 || xj >= wd) continue;
          acc += x.data[ravel([b!, g * cg + ci, yi, xj], x.shape)]! * w.data[ravel([oc!, ci, a, q], w.shape)]!;
        }
      }
    }
    return acc;
  });
}

/** y[n, g·og + o, i·s0 − p0 + a·d0, ...] += x[n, c, i, j] · w[c, o, a, b] (ONNX ConvTranspose, explicit pads). */
function convTranspose(node: Node, x: RefTensor, w: RefTensor, bias: RefTensor | null): RefTensor {
  const { strides: s, pads: p, dil: d, group, outputPadding: op } = convAttrs(node);
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [, og, kh, kw] = w.shape as [number, number, number, number];
  const oh = s[0]! * (h - 1) + op[0]! + (kh - 1) * d[0]! + 1 - p[0]! - p[2]!;
  const ow = s[1]! * (wd - 1) + op[1]! + (kw - 1) * d[1]! + 1 - p[1]! - p[3]!;
  const cg = c / group;
  const shape = [n, og * group, oh, ow];
  const out = new Float64Array(size(shape));
  for (let b = 0; b < n; b++)
    for (let ci = 0; ci < c; ci++) {
      const g = Math.floor(ci / cg);
      for (let i = 0; i < h; i++)
        for (let j = 0; j < wd; j++) {
          const xv = x.data[ravel([b, ci, i, j], x.shape)]!;
          for (let o = 0; o < og; o++)
            for (let a = 0; a < kh; a++) {
              const yi = i * s[0]! - p[0]! + a * d[0]!;
              if (yi < 0 || yi >= oh) continue;
              for (let q = 0; q < kw; q++) {
                const yj = j * s[1]! - p[1]! + q * d[1]!;
                if (yj < 0 || yj >= ow) continue;
                out[ravel([b, g * og + o, yi, yj], shape)]! += xv * w.data[ravel([ci, o, a, q], w.shape)]!;
              }
            }
        }
    }
  if (bias) for (let f = 0; f < out.length; f++) out[f]! += bias.data[unravel(f, shape)[1]!]!;
  return { dtype: x.dtype, shape, data: out };
}

/**
 * Reverse-mode automatic differentiation on recorded graphs.
 *
 * ONNX Runtime has no autodiff, so `gradients()` appends the backward pass to the SAME graph as ordinary ONNX
 * operators: every operator in `ops.ts` that can be differentiated has a VJP rule (vector-Jacobian product)
 * that, given the cotangent of its output, records the operators computing the cotangents of its inputs.
 * The returned values are ordinary graph values: mark them as outputs and compile the graph as usual.
 *
 *   const loss = ...;                                   // a scalar Value
 *   const [dLatent, dW] = gradients(loss, [latent, w]); // d(loss)/d(latent), d(loss)/d(w)
 *   g.output('grad_latent', dLatent);
 *
 * Semantics (those of torch.autograd.grad, float32 only):
 * - Only nodes on a path from some `wrt` value to `loss` are differentiated; everything else is skipped.
 *   Paths are cut at `graph.stopGradientNodes` (ops.stopGradient, torch's .detach()) and at integer or bool
 *   values (indices, masks, shapes), which carry no gradient.
 * - `loss` must have one element (shape [] or all ones) unless `seed`, a cotangent of loss's shape, is given;
 *   the result is then the vector-Jacobian product seedᵀ·∂loss/∂wrt.
 * - A `wrt` value that `loss` does not depend on gets zeros of its shape (torch's allow_unused=True with
 *   materialised zeros), recorded as a broadcast scalar rather than a big constant. Pass
 *   `unreachable: 'error'` to get an exception instead.
 * - A `wrt` value may be any value: an input, a parameter, a constant or an intermediate result (then its
 *   gradient is the total cotangent flowing into it).
 * - Cotangents of a value used several times are accumulated with one ONNX Sum node.
 * - Non-differentiable points follow PyTorch 1.13: Relu'(0) = 0, Abs'(0) = 0 (sign), elementwise Max/Min
 *   split the gradient equally between equal inputs (torch.maximum/minimum), ReduceMax/ReduceMin split it
 *   equally among tied extrema (torch.amax/amin and tensor.max()), Sign has zero gradient.
 * - Pow: the gradient w.r.t. the base is exponent·base^(exponent-1) for any exponent; the gradient w.r.t. a
 *   non-constant exponent is result·log(base), correct for positive bases only (NaN elsewhere, like torch
 *   except that torch defines it as 0 where base == 0).
 * - Conv and ConvTranspose: group = 1 only (a clear error otherwise). Conv's input gradient is a Conv with
 *   transposed, flipped weights for stride 1 and a ConvTranspose for larger strides; its weight gradient is an
 *   im2col (Pad, kh·kw strided Slices, Concat, one batched MatMul, ReduceSum over the batch): each the fastest
 *   of the forms measured (docs/measurements.md#conv-gradients).
 * - Gather's gradient w.r.t. its data (an embedding table) is a ScatterND with reduction 'add' into zeros, the
 *   fastest of the forms measured (docs/measurements.md#gather-gradient).
 * - Other operators (custom ones recorded with graph.addNode) can be given a rule with `registerVjp`.
 * - float16 values on a differentiated path are rejected (the backward constants are float32).
 */
import { type Graph, type Node, sameShape, shapeSize, type Shape, type TensorData, type Value } from './graph.js';
import * as op from './ops.js';

export interface GradientOptions {
  /** Cotangent of `loss` (same shape); required when loss has more than one element. Default: ones. */
  seed?: Value;
  /** What to return for a `wrt` value that `loss` does not depend on: zeros (default) or throw. */
  unreachable?: 'zeros' | 'error';
}

/** What a VJP rule is given: the forward node, its output's cotangent, and which inputs need a gradient. */
export interface VjpContext {
  readonly graph: Graph;
  readonly node: Node;
  /** The node's inputs (null for omitted optional inputs). */
  readonly inputs: readonly (Value | null)[];
  /** The node's (single) output. */
  readonly y: Value;
  /** Cotangent of `y` (same shape). */
  readonly gy: Value;
  /** needs[i]: whether input i needs a gradient (rules may skip work for the others and return null). */
  readonly needs: readonly boolean[];
}

/** Returns, for each input, its cotangent (exactly the input's shape) or null for none / zero. */
export type VjpRule = (ctx: VjpContext) => (Value | null)[];

const isFloat = (v: Value) => v.dtype === 'float32' || v.dtype === 'float16';

/** Reverse-mode gradients of `loss` w.r.t. each of `wrt`, recorded into loss's graph. */
export function gradients(loss: Value, wrt: readonly Value[], options: GradientOptions = {}): Value[] {
  const g = loss.graph;
  for (const w of wrt) {
    if (w.graph !== g) throw new Error(`gradients: ${w.name} belongs to another graph than the loss`);
    if (!isFloat(w)) throw new Error(`gradients: cannot differentiate w.r.t. ${w.dtype} value ${w.name}`);
  }
  if (!isFloat(loss)) throw new Error(`gradients: loss ${loss.name} is ${loss.dtype}, not a float tensor`);

  let seed = options.seed;
  if (seed) {
    if (seed.graph !== g) throw new Error('gradients: the seed belongs to another graph');
    if (!sameShape(seed.shape, loss.shape) || seed.dtype !== loss.dtype) {
      throw new Error(`gradients: seed ${seed.dtype}[${seed.shape}] does not match loss ${loss.dtype}[${loss.shape}]`);
    }
  } else {
    if (loss.size !== 1) {
      throw new Error(`gradients: loss has shape [${loss.shape}]; reduce it to one element or pass a seed cotangent`);
    }
    seed = loss.rank === 0 ? g.scalar(1) : g.constant(Float32Array.of(1), loss.shape, 'float32', 'grad_seed');
  }

  // 1. Values that depend on some wrt (forward sweep in recording order, which is topological).
  const dep = new Set<Value>(wrt);
  for (const node of g.nodes) {
    if (g.stopGradientNodes.has(node)) continue;
    if (!node.inputs.some((v) => v !== null && dep.has(v) && isFloat(v))) continue;
    for (const o of node.outputs) if (isFloat(o)) dep.add(o);
  }

  // 2. Of those, the values loss depends on (backward sweep from loss); their producers are the nodes to
  //    differentiate.
  const onPath = new Set<Value>();
  const stack: Value[] = dep.has(loss) ? [loss] : [];
  while (stack.length) {
    const v = stack.pop()!;
    if (onPath.has(v)) continue;
    onPath.add(v);
    const p = v.producer;
    if (!p || g.stopGradientNodes.has(p)) continue;
    for (const i of p.inputs) if (i && dep.has(i) && isFloat(i) && !onPath.has(i)) stack.push(i);
  }
  const nodes = new Set<Node>();
  for (const v of onPath) if (v.producer && !g.stopGradientNodes.has(v.producer)) nodes.add(v.producer);
  const order = [...nodes].sort((a, b) => b.id - a.id);

  // 3. Walk them in reverse, accumulating cotangents.
  const cot = new Map<Value, Value[]>();
  const push = (v: Value, c: Value, from: Node) => {
    if (!sameShape(c.shape, v.shape) || c.dtype !== v.dtype) {
      throw new Error(
        `gradients: internal error: ${from.opType} VJP gave ${c.dtype}[${c.shape}] for ${v.dtype}[${v.shape}] (${v.name})`,
      );
    }
    const list = cot.get(v);
    if (list) list.push(c);
    else cot.set(v, [c]);
  };
  const take = (v: Value): Value | null => {
    const list = cot.get(v);
    if (!list || list.length === 0) return null;
    if (list.length > 1) {
      const total = op.addN(list);
      list.length = 0;
      list.push(total);
    }
    return list[0]!;
  };
  cot.set(loss, [seed]);

  g.scope('grad', () => {
    for (const node of order) {
      // Multi-output operators (LayerNormalization's Mean/InvStdDev) are differentiated through output 0 only.
      for (const extra of node.outputs.slice(1)) {
        if (cot.get(extra)?.length)
          throw new Error(
            `gradients: ${node.opType} output ${extra.name} is on the gradient path; only its first output is differentiable`,
          );
      }
      const y = node.outputs[0]!;
      const gy = take(y);
      if (!gy) continue; // every path through y had zero gradient (e.g. through Sign)
      const rule = VJP_RULES[node.opType];
      if (!rule) throw new Error(`gradients: no VJP rule for operator ${node.opType} (node ${node.name})`);
      const needs = node.inputs.map((v) => v !== null && dep.has(v) && isFloat(v));
      for (const v of [y, ...node.inputs]) {
        if (v && v.dtype === 'float16' && (v === y || dep.has(v))) {
          throw new Error(
            `gradients: float16 value ${v.name} on a differentiated path; reverse mode supports float32 only`,
          );
        }
      }
      const grads = g.scope(node.name, () => rule({ graph: g, node, inputs: node.inputs, y, gy, needs }));
      node.inputs.forEach((v, i) => {
        const gv = grads[i];
        if (v && needs[i] && gv) push(v, gv, node);
      });
    }
  });

  return wrt.map((w) => {
    const c = take(w);
    if (c) return c;
    if (options.unreachable === 'error') throw new Error(`gradients: loss ${loss.name} does not depend on ${w.name}`);
    return zeros(g, w.shape);
  });
}

/** The operator types that have a VJP rule (including those whose gradient is always zero, like Sign). */
export function differentiableOps(): string[] {
  return Object.keys(VJP_RULES).sort();
}

/** Give an operator type (for instance a custom one recorded with graph.addNode) a VJP rule. */
export function registerVjp(opType: string, rule: VjpRule): void {
  if (VJP_RULES[opType]) throw new Error(`registerVjp: ${opType} already has a VJP rule`);
  VJP_RULES[opType] = rule;
}

// ---- helpers -----------------------------------------------------------------------------------------------

function zeros(g: Graph, shape: Shape): Value {
  return op.expand(g.scalar(0), shape);
}

function constData(v: Value | null, what: string): TensorData {
  const data = v ? v.graph.constants.get(v) : undefined;
  if (!data) throw new Error(`gradients: ${what} must be a constant`);
  return data;
}

function constInts(v: Value | null, what: string): number[] {
  return Array.from(constData(v, what) as BigInt64Array, (x) => Number(x));
}

function attrInt(node: Node, name: string, dflt: number): number {
  const a = node.attrs[name];
  return a && a.kind === 'int' ? a.value : dflt;
}

function attrInts(node: Node, name: string): number[] | undefined {
  const a = node.attrs[name];
  return a && a.kind === 'ints' ? [...a.value] : undefined;
}

const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Sum a broadcast cotangent back to `shape` (ReduceSum over broadcast axes, then Reshape). */
function unbroadcast(gv: Value, shape: Shape): Value {
  if (sameShape(gv.shape, shape)) return gv;
  const lead = gv.rank - shape.length;
  if (lead < 0) throw new Error(`gradients: internal error: cannot unbroadcast [${gv.shape}] to [${shape}]`);
  const axes: number[] = [];
  for (let i = 0; i < gv.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && gv.shape[i] !== 1)) axes.push(i);
  }
  const onlyLeading = axes.every((a) => a < lead);
  return op.reshape(op.reduceSum(gv, axes, !onlyLeading), shape);
}

/** Swap the last two axes. */
function transposeLast2(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return op.transpose(x, perm);
}

/** Shape of a reduction with keepdims=1. */
function keptShape(shape: Shape, axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Axes a Reduce node reduces over (from its axes input or attribute; all axes when absent). */
function reduceAxes(node: Node, x: Value): number[] | null {
  let axes: number[] | undefined;
  if (node.opType === 'ReduceSum') axes = node.inputs[1] ? constInts(node.inputs[1], 'ReduceSum axes') : undefined;
  else axes = attrInts(node, 'axes');
  if (!axes || axes.length === 0) {
    if (attrInt(node, 'noop_with_empty_axes', 0) === 1) return null;
    return x.shape.map((_, i) => i);
  }
  return [...new Set(axes.map((a) => norm(a, x.rank)))];
}

/**
 * A Reduce node's output (or its cotangent) in a form that broadcasts against the input: as is with keepdims
 * or when only leading axes were reduced, else reshaped to the keepdims shape.
 */
function keptCotangent(node: Node, x: Value, gy: Value, axes: readonly number[]): Value {
  if (attrInt(node, 'keepdims', 1) || axes.every((a) => a < axes.length)) return gy;
  return op.reshape(gy, keptShape(x.shape, axes));
}

function unary(f: (ctx: VjpContext, x: Value) => Value): VjpRule {
  return (ctx) => [ctx.needs[0] ? f(ctx, ctx.inputs[0]!) : null];
}

// ---- convolutions ------------------------------------------------------------------------------------------

interface Conv2dGeometry {
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
}

function convGeometry(node: Node): Conv2dGeometry {
  const autoPad = node.attrs['auto_pad'];
  if (autoPad && autoPad.kind === 'string' && autoPad.value !== 'NOTSET') {
    throw new Error(`gradients: ${node.opType} with auto_pad=${autoPad.value} is not supported`);
  }
  const s = attrInts(node, 'strides') ?? [1, 1];
  const p = attrInts(node, 'pads') ?? [0, 0, 0, 0];
  const d = attrInts(node, 'dilations') ?? [1, 1];
  const group = attrInt(node, 'group', 1);
  if (s.length !== 2 || p.length !== 4 || d.length !== 2)
    throw new Error(`gradients: only 2-D ${node.opType} is supported`);
  if (group !== 1) throw new Error(`gradients: ${node.opType} with group=${group} is not supported (group=1 only)`);
  return { strides: [s[0]!, s[1]!], pads: [p[0]!, p[1]!, p[2]!, p[3]!], dilations: [d[0]!, d[1]!], group };
}

/**
 * The weight gradient of a 2-D convolution as im2col:
 *   gw[o, c, a, b] = Σ_{n, i, j} gy[n, o, i, j] · x[n, c, i·s0 − pads0 + a·d0, j·s1 − pads1 + b·d1]
 * (zero outside x). Returns [O, C, kh, kw].
 */
function convWeightGrad(
  x: Value,
  gy: Value,
  kh: number,
  kw: number,
  strides: readonly [number, number],
  padsBegin: readonly [number, number],
  dil: readonly [number, number],
): Value {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [, o, oh, ow] = gy.shape as [number, number, number, number];
  // Extent of x (padded) that the patches read; pad or crop the end to exactly that.
  const needH = (kh - 1) * dil[0] + (oh - 1) * strides[0] + 1;
  const needW = (kw - 1) * dil[1] + (ow - 1) * strides[1] + 1;
  const xp = op.pad(x, [0, 0, padsBegin[0], padsBegin[1], 0, 0, needH - h - padsBegin[0], needW - w - padsBegin[1]]);
  let cols: Value;
  if (kh === 1 && kw === 1 && strides[0] === 1 && strides[1] === 1) {
    cols = xp;
  } else {
    const patches: Value[] = [];
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) {
        const s0 = a * dil[0];
        const s1 = b * dil[1];
        patches.push(
          op.slice(xp, [s0, s1], [s0 + (oh - 1) * strides[0] + 1, s1 + (ow - 1) * strides[1] + 1], [2, 3], strides),
        );
      }
    }
    // [N, C, kh*kw*OH, OW] → [N, C*kh*kw, OH*OW]: rows ordered (c, a, b) like the weight's flattening.
    cols = op.concat(patches, 2);
  }
  cols = op.reshape(cols, [n, c * kh * kw, oh * ow]);
  const gy2 = op.reshape(gy, [n, o, oh * ow]);
  const prod = op.matmul(gy2, op.transpose(cols, [0, 2, 1])); // [N, O, C*kh*kw]
  const gw = n > 1 ? op.reduceSum(prod, [0], false) : prod;
  return op.reshape(gw, [o, c, kh, kw]);
}

/** Crop (negative entries of `pads`) before a Conv whose pads must be non-negative; returns the rest. */
function splitNegativePads(
  x: Value,
  pads: readonly [number, number, number, number],
): { x: Value; pads: [number, number, number, number] } {
  const crop = pads.map((p) => Math.min(p, 0));
  const cropped = op.pad(x, [0, 0, crop[0]!, crop[1]!, 0, 0, crop[2]!, crop[3]!]);
  return { x: cropped, pads: pads.map((p) => Math.max(p, 0)) as [number, number, number, number] };
}

const convVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
  const geo = convGeometry(node);
  const x = inputs[0]!;
  const w = inputs[1]!;
  const [, c, h, wd] = x.shape as [number, number, number, number];
  const [o, , kh, kw] = w.shape as [number, number, number, number];
  const [, , oh, ow] = gy.shape as [number, number, number, number];
  const { strides: s, pads: p, dilations: d } = geo;
  let gx: Value | null = null;
  if (needs[0]) {
    if (s[0] === 1 && s[1] === 1) {
      // Full correlation of gy with the spatially flipped, channel-transposed kernel. Flipping both spatial
      // axes is reversing the flattened kh*kw block.
      let wf = w;
      if (kh * kw > 1) {
        const rev = g.ints(Array.from({ length: kh * kw }, (_, i) => kh * kw - 1 - i));
        wf = op.reshape(op.gather(op.reshape(w, [o, c, kh * kw]), rev, 2), [o, c, kh, kw]);
      }
      wf = op.transpose(wf, [1, 0, 2, 3]);
      const full = splitNegativePads(gy, [
        d[0] * (kh - 1) - p[0],
        d[1] * (kw - 1) - p[1],
        d[0] * (kh - 1) - p[2],
        d[1] * (kw - 1) - p[3],
      ]);
      gx = op.conv(full.x, wf, null, { pads: full.pads, dilations: d });
    } else {
      const outputPadding: [number, number] = [
        h - (s[0] * (oh - 1) + (kh - 1) * d[0] + 1 - p[0] - p[2]),
        wd - (s[1] * (ow - 1) + (kw - 1) * d[1] + 1 - p[1] - p[3]),
      ];
      gx = op.convTranspose(gy, w, { strides: s, pads: p, outputPadding, dilations: d });
    }
  }
  const gw = needs[1] ? convWeightGrad(x, gy, kh, kw, s, [p[0], p[1]], d) : null;
  const gb = needs[2] ? op.reduceSum(gy, [0, 2, 3], false) : null;
  return [gx, gw, gb];
};

const convTransposeVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const geo = convGeometry(node);
  const x = inputs[0]!;
  const w = inputs[1]!; // [C, O, kh, kw]
  const [, , h, wd] = x.shape as [number, number, number, number];
  const [, , kh, kw] = w.shape as [number, number, number, number];
  const { strides: s, pads: p, dilations: d } = geo;
  let gx: Value | null = null;
  if (needs[0]) {
    // ConvTranspose is the adjoint of Conv with the same weight, strides, pads and dilations; the end pads are
    // chosen so that the Conv's output is exactly x's size (they can exceed p when output_padding is used).
    const [, , hy, wy] = gy.shape as [number, number, number, number];
    const endH = (h - 1) * s[0] + (kh - 1) * d[0] + 1 - hy - p[0];
    const endW = (wd - 1) * s[1] + (kw - 1) * d[1] + 1 - wy - p[1];
    const full = splitNegativePads(gy, [p[0], p[1], endH, endW]);
    gx = op.conv(full.x, w, null, { strides: s, pads: full.pads, dilations: d });
  }
  // gw[c, o, a, b] = Σ x[n, c, i, j] · gy[n, o, i·s − p + a·d, ...]: the Conv weight gradient with roles swapped.
  const gw = needs[1] ? convWeightGrad(gy, x, kh, kw, s, [p[0], p[1]], d) : null;
  const gb = needs[2] ? op.reduceSum(gy, [0, 2, 3], false) : null;
  return [gx, gw, gb];
};

// ---- pad ---------------------------------------------------------------------------------------------------

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

const padVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
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

const sliceVjp: VjpRule = ({ graph: g, inputs, y, gy, needs }) => {
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

const gatherVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
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

const scatterNDVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
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

// ---- matmul ------------------------------------------------------------------------------------------------

const matmulVjp: VjpRule = ({ inputs, gy, needs }) => {
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

const reduceSumVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  const axes = reduceAxes(node, x);
  if (!axes) return [gy];
  return [op.expand(keptCotangent(node, x, gy, axes), x.shape)];
};

const reduceMeanVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const x = inputs[0]!;
  if (!needs[0]) return [null];
  const axes = reduceAxes(node, x);
  if (!axes) return [gy];
  const count = axes.reduce((s, a) => s * x.shape[a]!, 1);
  return [op.expand(op.mul(keptCotangent(node, x, gy, axes), 1 / count), x.shape)];
};

/** ReduceMax / ReduceMin: the cotangent split evenly among the elements equal to the extremum. */
const reduceExtremumVjp: VjpRule = ({ node, inputs, y, gy, needs }) => {
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
function extremumVjp(wins: (a: Value, b: Value) => Value): VjpRule {
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

const powVjp: VjpRule = ({ graph: g, inputs, y, gy, needs }) => {
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

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

const VJP_RULES: Record<string, VjpRule> = {
  Add: ({ inputs, gy, needs }) => [
    needs[0] ? unbroadcast(gy, inputs[0]!.shape) : null,
    needs[1] ? unbroadcast(gy, inputs[1]!.shape) : null,
  ],
  Sub: ({ inputs, gy, needs }) => [
    needs[0] ? unbroadcast(gy, inputs[0]!.shape) : null,
    needs[1] ? op.neg(unbroadcast(gy, inputs[1]!.shape)) : null,
  ],
  Mul: ({ inputs, gy, needs }) => {
    const [a, b] = inputs as [Value, Value];
    return [
      needs[0] ? unbroadcast(op.mul(gy, b), a.shape) : null,
      needs[1] ? unbroadcast(op.mul(gy, a), b.shape) : null,
    ];
  },
  Div: ({ inputs, y, gy, needs }) => {
    const [a, b] = inputs as [Value, Value];
    // d(a/b)/db = −(a/b)/b = −y/b
    return [
      needs[0] ? unbroadcast(op.div(gy, b), a.shape) : null,
      needs[1] ? op.neg(unbroadcast(op.div(op.mul(gy, y), b), b.shape)) : null,
    ];
  },
  Pow: powVjp,
  Max: extremumVjp(op.greater),
  Min: extremumVjp(op.less),
  Sum: ({ inputs, gy, needs }) => inputs.map((v, i) => (needs[i] ? unbroadcast(gy, v!.shape) : null)),

  Neg: unary(({ gy }) => op.neg(gy)),
  Sqrt: unary(({ y, gy }) => op.div(gy, op.mul(y, 2))),
  Exp: unary(({ y, gy }) => op.mul(gy, y)),
  Log: unary(({ gy }, x) => op.div(gy, x)),
  Abs: unary(({ gy }, x) => op.mul(gy, op.sign(x))),
  Sigmoid: unary(({ y, gy }) => op.mul(gy, op.mul(y, op.sub(1, y)))),
  Tanh: unary(({ y, gy }) => op.mul(gy, op.sub(1, op.mul(y, y)))),
  // 2/√π · exp(−x²) = exp(log(2/√π) − x²)
  Erf: unary(({ gy }, x) => op.mul(gy, op.exp(op.sub(Math.log(TWO_OVER_SQRT_PI), op.mul(x, x))))),
  Relu: unary(({ y, gy }) => op.where(op.greater(y, 0), gy, 0)),
  Sin: unary(({ gy }, x) => op.mul(gy, op.cos(x))),
  Cos: unary(({ gy }, x) => op.neg(op.mul(gy, op.sin(x)))),
  Identity: unary(({ gy }) => gy),
  Sign: () => [null],
  Cast: unary(({ gy }, x) => op.cast(gy, x.dtype)),
  Where: ({ inputs, gy, needs }) => {
    const [c, a, b] = inputs as [Value, Value, Value];
    return [
      null,
      needs[1] ? unbroadcast(op.where(c, gy, 0), a.shape) : null,
      needs[2] ? unbroadcast(op.where(c, 0, gy), b.shape) : null,
    ];
  },

  Reshape: unary(({ gy }, x) => op.reshape(gy, x.shape)),
  Expand: unary(({ gy }, x) => unbroadcast(gy, x.shape)),
  Transpose: unary(({ node, gy }, x) => {
    const perm = attrInts(node, 'perm') ?? x.shape.map((_, i) => x.rank - 1 - i);
    return op.transpose(
      gy,
      perm.map((_, i) => perm.indexOf(i)),
    );
  }),
  Concat: ({ node, inputs, gy, needs }) => {
    const a = norm(attrInt(node, 'axis', 0), gy.rank);
    let at = 0;
    return inputs.map((v, i) => {
      const len = v!.shape[a]!;
      const piece = needs[i] ? op.slice(gy, [at], [at + len], [a]) : null;
      at += len;
      return piece;
    });
  },
  Slice: sliceVjp,
  Gather: gatherVjp,
  ScatterND: scatterNDVjp,
  Pad: padVjp,

  ReduceSum: reduceSumVjp,
  ReduceMean: reduceMeanVjp,
  ReduceMax: reduceExtremumVjp,
  ReduceMin: reduceExtremumVjp,
  LayerNormalization: ({ node, inputs, y, gy, needs }) => {
    // x̂ = (x − μ)·r, y = x̂·γ + β over the axes from `axis` on; with ĝ = g·γ:
    // ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ∂γ = Σ g·x̂, ∂β = Σ g (sums over the leading axes).
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
    void y;
    return [gx, gs, gb];
  },

  Softmax: ({ node, y, gy, needs }) => {
    if (!needs[0]) return [null];
    const a = norm(attrInt(node, 'axis', -1), y.rank);
    const gyy = op.mul(gy, y);
    return [op.sub(gyy, op.mul(y, op.reduceSum(gyy, [a], true)))];
  },

  MatMul: matmulVjp,
  Conv: convVjp,
  ConvTranspose: convTransposeVjp,
};

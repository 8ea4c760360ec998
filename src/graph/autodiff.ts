/**
 * Reverse-mode automatic differentiation on recorded graphs.
 *
 * ONNX Runtime has no autodiff, so `gradients()` appends the backward pass to the SAME graph as ordinary ONNX
 * operators: every operator in `ops.ts` that can be differentiated has a VJP rule (vector-Jacobian product)
 * that, given the cotangent of its output, records the operators computing the cotangents of its inputs.
 * The returned values are ordinary graph values: mark them as outputs and compile the graph as usual.
 * The rules are the table at the end of this file, by operator family; those that need more than a line live in
 * `vjp/` (conv.ts, indexing.ts, arithmetic.ts), with the helpers they share in `vjp/common.ts`.
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
import { type Graph, type Node, sameShape, type Value } from './graph.js';
import * as op from './ops.js';
import {
  extremumVjp,
  layerNormVjp,
  matmulVjp,
  powVjp,
  reduceExtremumVjp,
  reduceMeanVjp,
  reduceSumVjp,
  softmaxVjp,
} from './vjp/arithmetic.js';
import { attrInt, attrInts, norm, unary, unbroadcast, type VjpRule, zeros } from './vjp/common.js';
import { convTransposeVjp, convVjp } from './vjp/conv.js';
import { gatherVjp, padVjp, scatterNDVjp, sliceVjp } from './vjp/indexing.js';

export type { VjpContext, VjpRule } from './vjp/common.js';

export interface GradientOptions {
  /** Cotangent of `loss` (same shape); required when loss has more than one element. Default: ones. */
  seed?: Value;
  /** What to return for a `wrt` value that `loss` does not depend on: zeros (default) or throw. */
  unreachable?: 'zeros' | 'error';
}

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

  const { dep, order } = differentiatedNodes(g, wrt, loss);

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

/**
 * The nodes to differentiate, latest first: those on a path from some `wrt` value to `loss` (cut at
 * stop-gradient nodes and at non-float values), and `dep`, the float values that depend on some `wrt`.
 */
function differentiatedNodes(g: Graph, wrt: readonly Value[], loss: Value): { dep: Set<Value>; order: Node[] } {
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
  return { dep, order };
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

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/** The VJP rule of each differentiable operator type, by family. */
const VJP_RULES: Record<string, VjpRule> = {
  // -- binary elementwise (with broadcasting)
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

  // -- unary elementwise (and Where)
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

  // -- layout and indexing
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

  // -- reductions and normalization
  ReduceSum: reduceSumVjp,
  ReduceMean: reduceMeanVjp,
  ReduceMax: reduceExtremumVjp,
  ReduceMin: reduceExtremumVjp,
  LayerNormalization: layerNormVjp,
  Softmax: softmaxVjp,

  // -- linear algebra
  MatMul: matmulVjp,
  Conv: convVjp,
  ConvTranspose: convTransposeVjp,
};

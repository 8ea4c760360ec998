/**
 * Reverse mode: for every VJP rule, the gradient ONNX Runtime computes from the emitted backward graph matches
 * float64 central finite differences of the reference interpreter. The backward graph is also evaluated by the
 * interpreter in float64, which pins each rule's mathematics far below float32 noise.
 *
 * All cases live in one graph compiled once (one session: a few hundred milliseconds).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { differentiableOps, gradients } from '../../src/graph/autodiff.js';
import { Graph, type DType, type Shape, type Value } from '../../src/graph/graph.js';
import * as op from '../../src/graph/ops.js';
import { compile, type CompiledGraph } from '../../src/graph/runtime.js';
import type { Int64Tensor, Tensor } from '../../src/tensor.js';
import { mulberry32 } from '../../src/util/random.js';
import { evaluate, type FeedData, type RefTensor } from '../support/interpreter.js';

const rand = mulberry32(20240611);

interface InputSpec {
  lo?: number;
  hi?: number;
  /** keep |x| >= away (kinks at 0) */
  away?: number;
  dtype?: DType;
  data?: number[];
  /** a parameter (weight source) instead of a graph input */
  param?: boolean;
}

interface Ctx {
  g: Graph;
  input(shape: Shape, spec?: InputSpec): Value;
}

interface GradCase {
  name: string;
  /** `out` is differentiated with a random seed cotangent unless it has one element; wrt default: every float input. */
  build(c: Ctx): { out: Value; wrt?: Value[] };
  /** finite-difference step (float64); default 1e-5 */
  h?: number;
  /** max coordinates checked per wrt tensor (random sample beyond); default all */
  maxCoords?: number;
}

const shapeSize = (s: Shape) => s.reduce((a, b) => a * b, 1);
const P = { param: true } as const;

/** Attend-and-Excite in miniature: conv → GroupNorm → SiLU → cross-attention → loss on token maps. */
function attendAndExcite({ g, input }: Ctx): { out: Value } {
  const [heads, dh, ctxLen, ctxDim] = [2, 4, 5, 6];
  const x = input([1, 3, 6, 6]);
  const w = input([8, 3, 3, 3], { ...P, lo: -0.4, hi: 0.4 });
  const b = input([8], P);
  const gamma = input([8], { ...P, lo: 0.5, hi: 1.5 });
  const beta = input([8], P);
  const wq = input([8, 8], { ...P, lo: -0.7, hi: 0.7 });
  const wk = input([8, ctxDim], { ...P, lo: -0.7, hi: 0.7 });
  const wv = input([8, ctxDim], P);
  const wo = input([8, 8], P);
  const context = input([1, ctxLen, ctxDim]);
  let h = op.silu(op.groupNorm(op.conv(x, w, b, { pads: [1, 1, 1, 1] }), 2, gamma, beta, 1e-5));
  h = op.transpose(op.reshape(h, [1, 8, 36]), [0, 2, 1]); // [1, 36, 8]
  const splitHeads = (t: Value, len: number) => op.transpose(op.reshape(t, [1, len, heads, dh]), [0, 2, 1, 3]);
  const q = splitHeads(op.linear(h, wq, null), 36);
  const k = splitHeads(op.linear(context, wk, null), ctxLen);
  const v = splitHeads(op.linear(context, wv, null), ctxLen);
  const probs = op.softmax(op.mul(op.matmul(q, op.transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(dh))); // [1, 2, 36, 5]
  const attnOut = op.linear(op.reshape(op.transpose(op.matmul(probs, v), [0, 2, 1, 3]), [1, 36, 8]), wo, null);
  // Attend-and-Excite loss: head-averaged maps of the text tokens (not the start token), x100 softmax over
  // tokens, Gaussian smoothing with reflect padding, and the worst of two tokens' 1 − max.
  const maps = op.slice(op.reduceMean(probs, [1], false), [1], [ctxLen], [2]); // [1, 36, 4]
  const sharp = op.softmax(op.mul(maps, 100), -1);
  const kernel = g.constant(
    Float32Array.from([1, 2, 1, 2, 4, 2, 1, 2, 1], (z) => z / 16),
    [1, 1, 3, 3],
    'float32',
    'gauss',
  );
  const tokenLoss = (t: number) => {
    const m = op.reshape(op.slice(sharp, [t], [t + 1], [2]), [1, 1, 6, 6]);
    const smooth = op.conv(op.pad(m, [0, 0, 1, 1, 0, 0, 1, 1], 'reflect'), kernel, null);
    return op.sub(1, op.reduceMax(smooth, [0, 1, 2, 3], false));
  };
  const excite = op.maximum(tokenLoss(0), tokenLoss(2));
  // A small term on the attention output so that every weight (also v and o) gets a gradient.
  const out = op.add(excite, op.mul(op.reduceMean(op.mul(attnOut, attnOut), [0, 1, 2], false), 0.1));
  return { out };
}

const CASES: GradCase[] = [
  // ---- elementwise binary (broadcast both ways)
  { name: 'Add broadcast', build: ({ input }) => ({ out: op.add(input([2, 3, 4]), input([3, 1])) }) },
  { name: 'Sub broadcast', build: ({ input }) => ({ out: op.sub(input([4]), input([2, 3, 4])) }) },
  { name: 'Mul broadcast', build: ({ input }) => ({ out: op.mul(input([2, 1, 4]), input([3, 1])) }) },
  { name: 'Div broadcast', build: ({ input }) => ({ out: op.div(input([2, 3]), input([3], { lo: 0.5, hi: 2 })) }) },
  {
    name: 'Pow constant exponent 2.5',
    build: ({ input }) => ({ out: op.pow(input([2, 3], { lo: 0.3, hi: 2 }), 2.5) }),
  },
  { name: 'Pow constant exponent 2', build: ({ input }) => ({ out: op.pow(input([5], { lo: -2, hi: 2 }), 2) }) },
  {
    name: 'Pow tensor exponent',
    build: ({ input }) => ({ out: op.pow(input([2, 3], { lo: 0.3, hi: 2 }), input([3], { lo: -1.5, hi: 1.5 })) }),
  },
  { name: 'Max broadcast (no ties)', build: ({ input }) => ({ out: op.maximum(input([2, 3]), input([3])) }) },
  { name: 'Min broadcast (no ties)', build: ({ input }) => ({ out: op.minimum(input([3, 1]), input([2, 1, 4])) }) },
  { name: 'Max with one constant operand', build: ({ input }) => ({ out: op.maximum(input([6]), 0.1) }) },
  {
    name: 'Sum (addN) broadcast',
    build: ({ input }) => ({ out: op.addN([input([2, 3]), input([3]), input([2, 1])]) }),
  },
  // ---- elementwise unary
  { name: 'Neg', build: ({ input }) => ({ out: op.neg(input([5])) }) },
  { name: 'Sqrt', build: ({ input }) => ({ out: op.sqrt(input([5], { lo: 0.2, hi: 3 })) }) },
  { name: 'Exp', build: ({ input }) => ({ out: op.exp(input([5])) }) },
  { name: 'Log', build: ({ input }) => ({ out: op.log(input([5], { lo: 0.2, hi: 3 })) }) },
  { name: 'Abs', build: ({ input }) => ({ out: op.abs(input([6], { away: 0.1 })) }) },
  { name: 'Sigmoid', build: ({ input }) => ({ out: op.sigmoid(input([5], { lo: -4, hi: 4 })) }) },
  { name: 'Tanh', build: ({ input }) => ({ out: op.tanh(input([5], { lo: -2, hi: 2 })) }) },
  { name: 'Erf', build: ({ input }) => ({ out: op.erf(input([6], { lo: -2, hi: 2 })) }) },
  { name: 'Relu', build: ({ input }) => ({ out: op.relu(input([6], { away: 0.1 })) }) },
  { name: 'Sin', build: ({ input }) => ({ out: op.sin(input([5], { lo: -3, hi: 3 })) }) },
  { name: 'Cos', build: ({ input }) => ({ out: op.cos(input([5], { lo: -3, hi: 3 })) }) },
  { name: 'Identity', build: ({ input }) => ({ out: op.identity(input([2, 2])) }) },
  {
    name: 'Cast float→float (no-op) and Sign (zero gradient)',
    build: ({ input }) => {
      const x = input([4], { away: 0.1 });
      return { out: op.add(op.cast(op.mul(x, 3), 'float32'), op.mul(op.sign(x), x)) };
    },
  },
  {
    name: 'Where (both branches, broadcast)',
    build: ({ input }) => {
      const c = op.greater(input([2, 3], { away: 0.05 }), 0);
      const [a, b] = [input([3]), input([2, 1])];
      return { out: op.where(c, a, b), wrt: [a, b] };
    },
  },
  // ---- shape
  { name: 'Reshape', build: ({ input }) => ({ out: op.reshape(input([2, 3, 4]), [4, -1]) }) },
  { name: 'Transpose', build: ({ input }) => ({ out: op.transpose(input([2, 3, 4]), [2, 0, 1]) }) },
  {
    name: 'Concat three, axis -1',
    build: ({ input }) => ({ out: op.concat([input([2, 1]), input([2, 3]), input([2, 2])], -1) }),
  },
  {
    name: 'Slice negative start / clamped end',
    build: ({ input }) => ({ out: op.slice(input([4, 5]), [-3, 1], [100, 3], [1, 0]) }),
  },
  {
    name: 'Slice with steps 2 and 3',
    build: ({ input }) => ({ out: op.slice(input([5, 7, 2]), [1, 0], [5, 7], [0, -2], [2, 3]) }),
  },
  {
    name: 'Slice step 2 overshooting the end',
    build: ({ input }) => ({ out: op.slice(input([6, 3]), [1], [6], [0], [2]) }),
  },
  {
    name: 'Split (slices) recombined',
    build: ({ input }) => {
      const [a, b] = op.split(input([2, 7]), [3, 4], 1) as [Value, Value];
      return { out: op.concat([op.mul(b, 2), a], 1) };
    },
  },
  { name: 'Expand', build: ({ input }) => ({ out: op.expand(input([3, 1]), [2, 3, 4]) }) },
  {
    name: 'Gather axis 0 (embedding: duplicate and negative ids)',
    build: ({ input }) => ({
      out: op.gather(input([7, 4]), input([2, 3], { dtype: 'int64', data: [1, 6, -1, 1, 0, 1] }), 0),
    }),
  },
  {
    name: 'Gather axis 1',
    build: ({ input }) => ({ out: op.gather(input([2, 5, 3]), input([4], { dtype: 'int64', data: [4, 0, 0, 2] }), 1) }),
  },
  {
    name: 'Gather scalar index, axis -1',
    build: ({ input }) => ({ out: op.gather(input([3, 4]), input([], { dtype: 'int64', data: [-2] }), -1) }),
  },
  {
    name: 'Pad constant (value 1.5)',
    build: ({ input }) => ({ out: op.pad(input([2, 3]), [1, 0, 2, 3], 'constant', 1.5) }),
  },
  { name: 'Pad constant with crop', build: ({ input }) => ({ out: op.pad(input([3, 5]), [0, -1, 1, -2]) }) },
  {
    name: 'Pad reflect 2-D (borders added back)',
    build: ({ input }) => ({ out: op.pad(input([1, 2, 4, 5]), [0, 0, 1, 2, 0, 0, 3, 1], 'reflect') }),
  },
  {
    name: 'Pad reflect, borders overlapping',
    build: ({ input }) => ({ out: op.pad(input([3, 2]), [2, 0, 2, 0], 'reflect') }),
  },
  { name: 'Pad edge', build: ({ input }) => ({ out: op.pad(input([3, 4]), [2, 0, 1, 3], 'edge') }) },
  {
    name: 'ScatterND add (data and updates)',
    build: ({ input }) => ({
      out: op.scatterND(input([5, 3]), input([4, 1], { dtype: 'int64', data: [0, 4, 0, -2] }), input([4, 3]), 'add'),
    }),
  },
  {
    name: 'ScatterND none (data and updates)',
    build: ({ input }) => ({
      out: op.scatterND(input([5, 3]), input([2, 1], { dtype: 'int64', data: [3, 1] }), input([2, 3])),
    }),
  },
  // ---- reductions
  { name: 'ReduceSum keepdims', build: ({ input }) => ({ out: op.reduceSum(input([2, 3, 4]), [1], true) }) },
  {
    name: 'ReduceSum negative axes, no keepdims',
    build: ({ input }) => ({ out: op.reduceSum(input([2, 3, 4]), [0, -1], false) }),
  },
  { name: 'ReduceMean keepdims', build: ({ input }) => ({ out: op.reduceMean(input([2, 3, 4]), [-1], true) }) },
  { name: 'ReduceMean to scalar', build: ({ input }) => ({ out: op.reduceMean(input([2, 3]), [0, 1], false) }) },
  { name: 'ReduceMax no keepdims', build: ({ input }) => ({ out: op.reduceMax(input([3, 4]), [0], false) }) },
  {
    name: 'ReduceMax two axes keepdims',
    build: ({ input }) => ({ out: op.reduceMax(input([2, 3, 4]), [1, 2], true) }),
  },
  { name: 'ReduceMin', build: ({ input }) => ({ out: op.reduceMin(input([2, 5]), [-1], false) }) },
  { name: 'Softmax axis -1', build: ({ input }) => ({ out: op.softmax(input([2, 3, 5], { lo: -2, hi: 2 })) }) },
  { name: 'Softmax axis 1', build: ({ input }) => ({ out: op.softmax(input([2, 3, 5], { lo: -2, hi: 2 }), 1) }) },
  // ---- linear algebra
  { name: 'MatMul 2-D', build: ({ input }) => ({ out: op.matmul(input([3, 4]), input([4, 5])) }) },
  {
    name: 'MatMul batched x shared weight',
    build: ({ input }) => ({ out: op.matmul(input([2, 3, 4, 5]), input([5, 6])) }),
  },
  {
    name: 'MatMul both batch-broadcast',
    build: ({ input }) => ({ out: op.matmul(input([2, 1, 3, 4]), input([1, 5, 4, 2])) }),
  },
  { name: 'MatMul rank-2 x batched', build: ({ input }) => ({ out: op.matmul(input([3, 4]), input([2, 4, 5])) }) },
  {
    name: 'MatMul weight with unit batch dim',
    build: ({ input }) => ({ out: op.matmul(input([2, 3, 4]), input([1, 4, 5])) }),
  },
  {
    name: 'Conv 3x3 pad 1, bias, batch 2',
    build: ({ input }) => ({
      out: op.conv(input([2, 3, 5, 5]), input([4, 3, 3, 3]), input([4]), { pads: [1, 1, 1, 1] }),
    }),
  },
  {
    name: 'Conv stride 2, asymmetric pads (output padding in the input gradient)',
    build: ({ input }) => ({
      out: op.conv(input([2, 2, 7, 6]), input([3, 2, 3, 3]), input([3]), { strides: [2, 2], pads: [1, 0, 0, 1] }),
    }),
  },
  {
    name: 'Conv dilation 2, pad 2',
    build: ({ input }) => ({
      out: op.conv(input([1, 2, 7, 7]), input([2, 2, 3, 3]), null, { pads: [2, 2, 2, 2], dilations: [2, 2] }),
    }),
  },
  {
    name: 'Conv stride [2,1], dilation 2, 2x3 kernel',
    build: ({ input }) => ({
      out: op.conv(input([1, 2, 9, 8]), input([3, 2, 2, 3]), null, {
        strides: [2, 1],
        pads: [1, 2, 0, 1],
        dilations: [2, 2],
      }),
    }),
  },
  {
    name: 'Conv 1x1 with pad 1 (cropped input gradient)',
    build: ({ input }) => ({
      out: op.conv(input([2, 3, 4, 4]), input([5, 3, 1, 1]), input([5]), { pads: [1, 1, 1, 1] }),
    }),
  },
  { name: 'Conv 1x1 plain', build: ({ input }) => ({ out: op.conv(input([2, 3, 4, 4]), input([5, 3, 1, 1]), null) }) },
  {
    name: 'Conv stride 3, kernel 2 (rows skipped)',
    build: ({ input }) => ({ out: op.conv(input([1, 2, 8, 7]), input([2, 2, 2, 2]), null, { strides: [3, 3] }) }),
  },
  {
    name: 'ConvTranspose stride 2, output padding',
    build: ({ input }) => ({
      out: op.convTranspose(input([2, 3, 3, 4]), input([3, 2, 3, 3]), {
        strides: [2, 2],
        pads: [1, 1, 0, 1],
        outputPadding: [1, 0],
      }),
    }),
  },
  {
    name: 'ConvTranspose dilation 2, stride 1',
    build: ({ input }) => ({
      out: op.convTranspose(input([1, 2, 4, 3]), input([2, 3, 2, 2]), {
        strides: [1, 1],
        pads: [0, 1, 1, 0],
        dilations: [2, 2],
      }),
    }),
  },
  // ---- composite layers and graphs
  {
    name: 'groupNorm + silu (params)',
    build: ({ input }) => ({ out: op.silu(op.groupNorm(input([2, 4, 3, 3]), 2, input([4], P), input([4], P), 1e-5)) }),
  },
  {
    name: 'layerNorm + gelu',
    build: ({ input }) => ({ out: op.gelu(op.layerNorm(input([2, 3, 6]), input([6], P), input([6], P), 1e-5)) }),
  },
  {
    name: 'quickGelu(linear)',
    build: ({ input }) => ({ out: op.quickGelu(op.linear(input([2, 3, 4]), input([5, 4], P), input([5], P))) }),
  },
  { name: 'upsampleNearest2x', build: ({ input }) => ({ out: op.upsampleNearest2x(input([1, 2, 2, 3])) }) },
  {
    name: 'a value used twice (and thrice)',
    build: ({ input }) => {
      const x = input([2, 3]);
      const y = op.mul(x, x);
      return { out: op.reduceSum(op.add(op.mul(y, op.sin(x)), y), [0, 1], false) };
    },
  },
  {
    name: 'stopGradient: d/dx sum(x · stop(x)²) = stop(x)²',
    build: ({ input }) => {
      const x = input([2, 3]);
      const s = op.stopGradient(x);
      return { out: op.mul(x, op.mul(s, s)) };
    },
  },
  {
    name: 'gradient w.r.t. an intermediate value and its input',
    build: ({ input }) => {
      const x = input([3]);
      const h = op.tanh(x);
      return { out: op.mul(op.exp(h), h), wrt: [x, h] };
    },
  },
  {
    name: 'strided conv network (stride 2 conv → relu-free silu → conv → mean)',
    build: ({ input }) => {
      const x = input([2, 2, 8, 8]);
      const h = op.silu(op.conv(x, input([4, 2, 3, 3], P), input([4], P), { strides: [2, 2], pads: [1, 1, 1, 1] }));
      return {
        out: op.reduceMean(op.conv(h, input([3, 4, 3, 3], P), null, { pads: [1, 1, 1, 1] }), [0, 1, 2, 3], false),
      };
    },
  },
  {
    name: 'Attend-and-Excite: conv → GroupNorm → SiLU → cross-attention → token-map loss',
    build: attendAndExcite,
    h: 1e-6,
    maxCoords: 40,
  },
];

interface Built {
  c: GradCase;
  out: Value;
  wrt: Value[];
  seed: Float32Array | null;
  feeds: Record<string, FeedData>;
  grads: Value[];
}

let g: Graph;
let session: CompiledGraph;
const built: Built[] = [];
let ortOut: Record<string, Tensor> = {};
const ortFeeds: Record<string, Tensor | Int64Tensor> = {};
const summary: { name: string; ort: number; f64: number }[] = [];

beforeAll(async () => {
  g = new Graph();
  CASES.forEach((c, i) => {
    const feeds: Record<string, FeedData> = {};
    const floats: Value[] = [];
    let k = 0;
    const input = (shape: Shape, spec: InputSpec = {}): Value => {
      const name = `c${i}_in${k++}`;
      const n = shapeSize(shape);
      if (spec.dtype === 'int64') {
        const data = BigInt64Array.from(spec.data!, (z) => BigInt(z));
        feeds[name] = data;
        ortFeeds[name] = { data, shape };
        return g.input(name, shape, 'int64');
      }
      const lo = spec.lo ?? -1;
      const hi = spec.hi ?? 1;
      const away = spec.away ?? 0;
      const draw = () => {
        for (;;) {
          const z = lo + (hi - lo) * rand();
          if (Math.abs(z) >= away) return z;
        }
      };
      const data = spec.data ? Float32Array.from(spec.data) : Float32Array.from({ length: n }, draw);
      feeds[name] = data;
      const v = spec.param ? g.param(name, { shape, read: () => data }) : g.input(name, shape);
      if (!spec.param) ortFeeds[name] = { data, shape };
      floats.push(v);
      return v;
    };
    const { out, wrt } = c.build({ g, input });
    const targets = wrt ?? floats;
    let seed: Float32Array | null = null;
    let grads: Value[];
    if (out.size === 1) {
      grads = gradients(out, targets);
    } else {
      seed = Float32Array.from({ length: out.size }, () => 2 * rand() - 1);
      grads = gradients(out, targets, { seed: g.constant(seed, out.shape, 'float32', `seed${i}`) });
    }
    grads.forEach((gv, j) => g.output(`c${i}_grad${j}`, gv));
    built.push({ c, out, wrt: targets, seed, feeds, grads });
  });
  session = await compile(g, { threads: 2 });
  ortOut = await session.run(ortFeeds);
});

afterAll(async () => {
  await session?.release();
  const w = (k: 'ort' | 'f64') => [...summary].sort((a, b) => b[k] - a[k])[0];
  const o = w('ort');
  const f = w('f64');
  if (process.env['AUTODIFF_REPORT']) {
    for (const r of summary) console.log(`${r.ort.toExponential(2)}\t${r.f64.toExponential(2)}\t${r.name}`);
  }
  if (o && f) {
    console.log(
      `autodiff: ${summary.length} cases, ${g.nodes.length} nodes. Largest |ORT − FD| / max|FD|: ${o.ort.toExponential(2)} (${o.name}); ` +
        `largest |interpreter-backward − FD| / max|FD|: ${f.f64.toExponential(2)} (${f.name})`,
    );
  }
});

/**
 * L = Σ out · seed in float64, with every stopGradient output frozen at its value at the unperturbed point
 * (`frozen`): finite differences of the function reverse mode differentiates.
 */
function lossOf(b: Built, feeds: Record<string, FeedData>, frozen: Map<Value, RefTensor>): number {
  const [y] = evaluate(g, feeds, [b.out], frozen);
  let s = 0;
  for (let j = 0; j < y!.data.length; j++) s += y!.data[j]! * (b.seed ? b.seed[j]! : 1);
  return s;
}

/** Whether `v` is an ancestor of `out` (so that it can be evaluated with this case's feeds). */
function relatedTo(v: Value, out: Value): boolean {
  const stack = [out];
  const seen = new Set<Value>();
  while (stack.length) {
    const u = stack.pop()!;
    if (u === v) return true;
    if (seen.has(u)) continue;
    seen.add(u);
    for (const i of u.producer?.inputs ?? []) if (i) stack.push(i);
  }
  return false;
}

describe('VJP rules vs float64 central finite differences', () => {
  CASES.forEach((c, i) => {
    it(c.name, () => {
      const b = built[i]!;
      const h = c.h ?? 1e-5;
      const f64Grads = evaluate(g, b.feeds, b.grads);
      const stopped = [...g.stopGradientNodes].map((n) => n.outputs[0]!);
      const frozen = new Map(
        stopped.filter((v) => relatedTo(v, b.out)).map((v) => [v, evaluate(g, b.feeds, [v])[0]!] as const),
      );
      let worstOrt = 0;
      let worstF64 = 0;
      b.wrt.forEach((w, j) => {
        const got = ortOut[`c${i}_grad${j}`]!;
        expect(got.shape).toEqual([...w.shape]);
        const f64 = f64Grads[j]!.data;
        // Coordinates to check: all, or a random sample. A wrt that is not a fed value (an intermediate) is
        // perturbed through an override.
        const n = w.size;
        const coords =
          c.maxCoords && n > c.maxCoords
            ? Array.from({ length: c.maxCoords }, () => Math.floor(rand() * n))
            : Array.from({ length: n }, (_, z) => z);
        const base = w.name in b.feeds ? null : evaluate(g, b.feeds, [w])[0]!;
        const fd = (coord: number, delta: number) => {
          if (base) {
            const data = base.data.slice();
            data[coord]! += delta;
            return lossOf(b, b.feeds, new Map([...frozen, [w, { ...base, data }]]));
          }
          const data = Float64Array.from(b.feeds[w.name] as Float32Array);
          data[coord]! += delta;
          return lossOf(b, { ...b.feeds, [w.name]: data }, frozen);
        };
        const fds = coords.map((z) => (fd(z, h) - fd(z, -h)) / (2 * h));
        const scale = Math.max(...fds.map(Math.abs), ...Array.from(got.data, Math.abs), 1e-12);
        // every case is built so that each wrt really influences the loss
        expect(Math.max(...fds.map(Math.abs)), `${w.name}: zero gradient`).toBeGreaterThan(1e-6);
        coords.forEach((z, q) => {
          worstOrt = Math.max(worstOrt, Math.abs(got.data[z]! - fds[q]!) / scale);
          worstF64 = Math.max(worstF64, Math.abs(f64[z]! - fds[q]!) / scale);
        });
      });
      summary.push({ name: c.name, ort: worstOrt, f64: worstF64 });
      expect(worstF64).toBeLessThan(c.h ? 1e-5 : 1e-6);
      expect(worstOrt).toBeLessThan(1e-4);
    });
  });
});

describe('reverse-mode semantics', () => {
  async function run(build: (g: Graph) => Value[], feeds: Record<string, Tensor> = {}): Promise<number[][]> {
    const gg = new Graph();
    const outs = build(gg);
    outs.forEach((v, j) => gg.output(`o${j}`, v));
    const s = await compile(gg, { threads: 2 });
    const r = await s.run(feeds);
    await s.release();
    return outs.map((_, j) => Array.from(r[`o${j}`]!.data));
  }

  it('elementwise Max/Min split the gradient evenly at ties (torch.maximum / minimum)', async () => {
    const data = Float32Array.from([1, 2, 3, 4]);
    const other = Float32Array.from([1, 5, 3, 0]);
    const [ga, gb, gc, gd] = await run(
      (gg) => {
        const a = gg.input('a', [4]);
        const b = gg.input('b', [4]);
        const mx = gradients(op.reduceSum(op.maximum(a, b), [0], false), [a, b]);
        const mn = gradients(op.reduceSum(op.minimum(a, b), [0], false), [a, b]);
        return [...mx, ...mn];
      },
      { a: { data, shape: [4] }, b: { data: other, shape: [4] } },
    );
    expect(ga).toEqual([0.5, 0, 0.5, 1]);
    expect(gb).toEqual([0.5, 1, 0.5, 0]);
    expect(gc).toEqual([0.5, 1, 0.5, 0]);
    expect(gd).toEqual([0.5, 0, 0.5, 1]);
  });

  it('ReduceMax / ReduceMin split the gradient evenly among tied extrema (torch.amax)', async () => {
    const [gmax, gmin, gall] = await run(
      (gg) => {
        const x = gg.input('x', [2, 4]);
        return [
          gradients(op.reduceSum(op.reduceMax(x, [1], false), [0], false), [x])[0]!,
          gradients(op.reduceSum(op.reduceMin(x, [1], true), [0, 1], false), [x])[0]!,
          gradients(op.reduceMax(x, [0, 1], false), [x])[0]!,
        ];
      },
      { x: { data: Float32Array.from([1, 3, 3, 2, 7, 7, 7, -1]), shape: [2, 4] } },
    );
    expect(gmax).toEqual([0, 0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3, 0].map(Math.fround));
    expect(gmin).toEqual([1, 0, 0, 0, 0, 0, 0, 1]);
    expect(gall).toEqual([0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0].map(Math.fround));
  });

  it('Relu and Abs have gradient 0 at 0 (torch)', async () => {
    const [gr, ga] = await run(
      (gg) => {
        const x = gg.input('x', [3]);
        return [
          gradients(op.reduceSum(op.relu(x), [0], false), [x])[0]!,
          gradients(op.reduceSum(op.abs(x), [0], false), [x])[0]!,
        ];
      },
      { x: { data: Float32Array.from([-1, 0, 2]), shape: [3] } },
    );
    expect(gr).toEqual([0, 0, 1]);
    expect(ga).toEqual([-1, 0, 1]);
  });

  it('unreachable wrt: zeros by default, an error on request; integer paths carry no gradient', async () => {
    const [z, zi, gx] = await run(
      (gg) => {
        const x = gg.input('x', [2, 3]);
        const y = gg.input('y', [4]);
        const loss = op.reduceSum(op.mul(x, 2), [0, 1], false);
        expect(() => gradients(loss, [y], { unreachable: 'error' })).toThrow(/does not depend on y/);
        // through an integer cast: no gradient (like torch), so zeros
        const viaInt = op.reduceSum(op.cast(op.cast(y, 'int64'), 'float32'), [0], false);
        return [gradients(loss, [y])[0]!, gradients(viaInt, [y])[0]!, gradients(loss, [x])[0]!];
      },
      {
        x: { data: new Float32Array(6).fill(1), shape: [2, 3] },
        y: { data: Float32Array.from([1.5, 2, 3, 4]), shape: [4] },
      },
    );
    expect(z).toEqual([0, 0, 0, 0]);
    expect(zi).toEqual([0, 0, 0, 0]);
    expect(gx).toEqual([2, 2, 2, 2, 2, 2]);
  });

  it('checks the loss shape and the seed', () => {
    const gg = new Graph();
    const x = gg.input('x', [2, 3]);
    expect(() => gradients(op.mul(x, 2), [x])).toThrow(
      /loss has shape \[2,3\]; reduce it to one element or pass a seed/,
    );
    expect(() => gradients(op.mul(x, 2), [x], { seed: gg.input('s', [3]) })).toThrow(
      /seed float32\[3\] does not match loss float32\[2,3\]/,
    );
    expect(() => gradients(op.mul(x, 2), [gg.input('i', [2], 'int64')])).toThrow(/cannot differentiate w.r.t. int64/);
    // a one-element loss of shape [1, 1] needs no seed
    expect(gradients(op.reduceSum(x, [0, 1], true), [x])[0]!.shape).toEqual([2, 3]);
  });

  it('grouped convolution is rejected with a clear error', () => {
    const gg = new Graph();
    const x = gg.input('x', [1, 4, 5, 5]);
    const w = gg.input('w', [4, 2, 3, 3]);
    const y = op.reduceSum(op.conv(x, w, null, { group: 2 }), [0, 1, 2, 3], false);
    expect(() => gradients(y, [x])).toThrow(/Conv with group=2 is not supported \(group=1 only\)/);
  });

  it('every operator recorded by ops.ts has a VJP rule (bool-valued comparisons excepted)', () => {
    const source = readFileSync(new URL('../../src/graph/ops.ts', import.meta.url), 'utf8');
    const recorded = new Set([...source.matchAll(/(?:addNode|binary|unary|reduceAttr)\('(\w+)'/g)].map((m) => m[1]!));
    for (const t of ['Equal', 'Greater', 'Less', 'ArgMax']) recorded.delete(t); // integer or boolean outputs: no gradient
    expect(recorded.size).toBeGreaterThan(35);
    expect([...recorded].filter((t) => !differentiableOps().includes(t))).toEqual([]);
  });

  it('only the nodes between wrt and loss are differentiated', () => {
    const gg = new Graph();
    const x = gg.input('x', [3]);
    const w = gg.input('w', [3]);
    const unrelated = op.exp(op.sin(w)); // depends on w only: needs no backward nodes for d/dx
    const before = gg.nodes.length;
    gradients(op.reduceSum(op.mul(x, unrelated), [0], false), [x]);
    const added = gg.nodes.slice(before).filter((n) => n.name.startsWith('grad/'));
    // ReduceSum's VJP (an Expand) and Mul's (one Mul); nothing for Exp or Sin
    expect(added.map((n) => n.opType).sort()).toEqual(['Expand', 'Mul']);
  });
});

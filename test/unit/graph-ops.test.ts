/**
 * Every operator of src/graph/ops.ts: the shape the recorder infers equals the shape ONNX Runtime returns, and
 * ONNX Runtime's values equal the float64 reference interpreter's (float32 tolerance). All cases live in one
 * graph compiled once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Graph, type DType, type Shape, type Value } from '../../src/graph/graph.js';
import * as op from '../../src/graph/ops.js';
import { compile, type CompiledGraph } from '../../src/graph/runtime.js';
import type { Int64Tensor, Tensor } from '../../src/tensor.js';
import { mulberry32 } from '../../src/util/random.js';
import { evaluate, type FeedData } from '../support/interpreter.js';

const rand = mulberry32(1234);

interface InputSpec {
  lo?: number;
  hi?: number;
  /** int64 indices in [lo, hi) */
  dtype?: DType;
  /** explicit data */
  data?: number[];
}

interface Ctx {
  g: Graph;
  input(shape: Shape, spec?: InputSpec): Value;
}

interface OpCase {
  name: string;
  build(c: Ctx): Value;
}

const shapeSize = (s: Shape) => s.reduce((a, b) => a * b, 1);

const CASES: OpCase[] = [
  // ---- elementwise, with broadcasting
  { name: 'Add broadcast [2,3,4]+[4]', build: ({ input }) => op.add(input([2, 3, 4]), input([4])) },
  { name: 'Add number operand', build: ({ input }) => op.add(2.5, input([3])) },
  { name: 'Sub broadcast [2,1,4]-[3,1]', build: ({ input }) => op.sub(input([2, 1, 4]), input([3, 1])) },
  { name: 'Mul both broadcast [3,1]*[1,4]', build: ({ input }) => op.mul(input([3, 1]), input([1, 4])) },
  { name: 'Div', build: ({ input }) => op.div(input([2, 3]), input([2, 3], { lo: 0.5, hi: 2 })) },
  { name: 'Pow scalar exponent', build: ({ input }) => op.pow(input([2, 3], { lo: 0.2, hi: 2 }), 2.5) },
  {
    name: 'Pow tensor exponent broadcast',
    build: ({ input }) => op.pow(input([2, 3], { lo: 0.2, hi: 2 }), input([3])),
  },
  { name: 'Max broadcast', build: ({ input }) => op.maximum(input([2, 3]), input([1, 3])) },
  { name: 'Min broadcast', build: ({ input }) => op.minimum(input([4, 1]), input([3])) },
  {
    name: 'Equal',
    build: ({ input }) =>
      op.cast(op.equal(input([6], { data: [1, 2, 3, 4, 5, 6] }), input([6], { data: [1, 0, 3, 0, 5, 0] })), 'float32'),
  },
  { name: 'Greater broadcast', build: ({ input }) => op.cast(op.greater(input([2, 3]), input([3])), 'float32') },
  { name: 'Less', build: ({ input }) => op.cast(op.less(input([2, 3]), 0), 'float32') },
  { name: 'Neg', build: ({ input }) => op.neg(input([5])) },
  { name: 'Sqrt', build: ({ input }) => op.sqrt(input([5], { lo: 0.1, hi: 3 })) },
  { name: 'Exp', build: ({ input }) => op.exp(input([5])) },
  { name: 'Log', build: ({ input }) => op.log(input([5], { lo: 0.1, hi: 3 })) },
  { name: 'Abs', build: ({ input }) => op.abs(input([5])) },
  { name: 'Sigmoid', build: ({ input }) => op.sigmoid(input([5], { lo: -4, hi: 4 })) },
  { name: 'Tanh', build: ({ input }) => op.tanh(input([5], { lo: -3, hi: 3 })) },
  { name: 'Erf', build: ({ input }) => op.erf(input([7], { data: [-3, -1.5, -0.3, 0, 0.2, 1, 2.5] })) },
  { name: 'Relu', build: ({ input }) => op.relu(input([6])) },
  { name: 'Sin', build: ({ input }) => op.sin(input([5], { lo: -3, hi: 3 })) },
  { name: 'Cos', build: ({ input }) => op.cos(input([5], { lo: -3, hi: 3 })) },
  { name: 'Sign', build: ({ input }) => op.sign(input([5], { data: [-2, 0, 3, -0.5, 0.25] })) },
  { name: 'Identity', build: ({ input }) => op.identity(input([2, 2])) },
  { name: 'stopGradient', build: ({ input }) => op.stopGradient(input([2, 2])) },
  {
    name: 'Cast float→int64→float truncates',
    build: ({ input }) => op.cast(op.cast(input([6], { data: [-1.7, -0.2, 0, 0.9, 2.5, 3.99] }), 'int64'), 'float32'),
  },
  {
    name: 'Cast float→bool→float',
    build: ({ input }) => op.cast(op.cast(input([4], { data: [0, 1.5, -2, 0] }), 'bool'), 'float32'),
  },
  { name: 'Where broadcast', build: ({ input }) => op.where(op.greater(input([2, 3]), 0), input([3]), input([2, 1])) },
  { name: 'Where number branches', build: ({ input }) => op.where(op.less(input([4]), 0), 1, -1) },
  // ---- shape
  { name: 'Reshape with -1', build: ({ input }) => op.reshape(input([2, 3, 4]), [4, -1]) },
  { name: 'Transpose', build: ({ input }) => op.transpose(input([2, 3, 4]), [2, 0, 1]) },
  {
    name: 'Concat 3 inputs axis -1',
    build: ({ input }) => op.concat([input([2, 1]), input([2, 3]), input([2, 2])], -1),
  },
  { name: 'Concat axis 0', build: ({ input }) => op.concat([input([1, 3]), input([2, 3])], 0) },
  { name: 'Slice negative start, clamped end', build: ({ input }) => op.slice(input([4, 5]), [-3], [100], [1]) },
  {
    name: 'Slice steps 2 and 3 on two axes',
    build: ({ input }) => op.slice(input([5, 7, 2]), [1, 0], [5, 7], [0, -2], [2, 3]),
  },
  { name: 'Slice negative end', build: ({ input }) => op.slice(input([3, 6]), [0, 1], [2, -1], [0, 1]) },
  { name: 'Split piece 1', build: ({ input }) => op.split(input([2, 7]), [3, 4], 1)[1]! },
  { name: 'Expand', build: ({ input }) => op.expand(input([3, 1]), [2, 3, 4]) },
  {
    name: 'Gather axis 0, 2-D indices with negative and duplicates',
    build: ({ input }) => op.gather(input([6, 3]), input([2, 3], { dtype: 'int64', data: [0, 5, -1, 2, 2, 3] }), 0),
  },
  {
    name: 'Gather axis 1',
    build: ({ input }) => op.gather(input([2, 5, 3]), input([4], { dtype: 'int64', data: [4, 0, 0, 2] }), 1),
  },
  {
    name: 'Gather scalar index, axis -1',
    build: ({ input }) => op.gather(input([3, 4]), input([], { dtype: 'int64', data: [2] }), -1),
  },
  { name: 'Pad constant with value', build: ({ input }) => op.pad(input([2, 3]), [1, 0, 2, 3], 'constant', 1.5) },
  { name: 'Pad constant negative (crop)', build: ({ input }) => op.pad(input([3, 5]), [0, -1, 1, -2]) },
  { name: 'Pad reflect 2-D', build: ({ input }) => op.pad(input([1, 1, 4, 5]), [0, 0, 1, 2, 0, 0, 3, 1], 'reflect') },
  { name: 'Pad edge', build: ({ input }) => op.pad(input([3, 4]), [2, 0, 1, 3], 'edge') },
  // ---- reductions
  { name: 'ReduceSum axis 1 keepdims', build: ({ input }) => op.reduceSum(input([2, 3, 4]), [1], true) },
  { name: 'ReduceSum axes [0,-1] no keepdims', build: ({ input }) => op.reduceSum(input([2, 3, 4]), [0, -1], false) },
  { name: 'ReduceMean axis -1 keepdims', build: ({ input }) => op.reduceMean(input([2, 3, 4]), [-1], true) },
  { name: 'ReduceMean all no keepdims', build: ({ input }) => op.reduceMean(input([2, 3]), [0, 1], false) },
  { name: 'ReduceMax axis 0 no keepdims', build: ({ input }) => op.reduceMax(input([3, 4]), [0], false) },
  { name: 'ReduceMax axes [1,2] keepdims', build: ({ input }) => op.reduceMax(input([2, 3, 4]), [1, 2], true) },
  { name: 'ReduceMin axis -1', build: ({ input }) => op.reduceMin(input([2, 5]), [-1], false) },
  { name: 'Softmax axis -1', build: ({ input }) => op.softmax(input([2, 3, 5], { lo: -3, hi: 3 })) },
  { name: 'Softmax axis 1', build: ({ input }) => op.softmax(input([2, 3, 5], { lo: -3, hi: 3 }), 1) },
  // ---- linear algebra
  { name: 'MatMul 2-D', build: ({ input }) => op.matmul(input([3, 4]), input([4, 5])) },
  { name: 'MatMul batched x shared', build: ({ input }) => op.matmul(input([2, 3, 4, 5]), input([5, 6])) },
  { name: 'MatMul both batch-broadcast', build: ({ input }) => op.matmul(input([2, 1, 3, 4]), input([1, 5, 4, 2])) },
  { name: 'MatMul rank-2 x batched', build: ({ input }) => op.matmul(input([3, 4]), input([2, 4, 5])) },
  {
    name: 'Conv 3x3 pad 1 with bias',
    build: ({ input }) => op.conv(input([2, 3, 5, 5]), input([4, 3, 3, 3]), input([4]), { pads: [1, 1, 1, 1] }),
  },
  {
    name: 'Conv stride 2 asymmetric pads',
    build: ({ input }) =>
      op.conv(input([1, 2, 7, 6]), input([3, 2, 3, 3]), null, { strides: [2, 2], pads: [1, 0, 0, 1] }),
  },
  {
    name: 'Conv dilation 2',
    build: ({ input }) =>
      op.conv(input([1, 2, 7, 7]), input([2, 2, 3, 3]), null, { pads: [2, 2, 2, 2], dilations: [2, 2] }),
  },
  {
    name: 'Conv stride 2 dilation 2 non-square',
    build: ({ input }) =>
      op.conv(input([1, 2, 9, 8]), input([3, 2, 2, 3]), null, {
        strides: [2, 1],
        pads: [1, 2, 0, 1],
        dilations: [2, 2],
      }),
  },
  {
    name: 'Conv groups 2',
    build: ({ input }) =>
      op.conv(input([1, 4, 5, 5]), input([6, 2, 3, 3]), input([6]), { pads: [1, 1, 1, 1], group: 2 }),
  },
  { name: 'Conv 1x1', build: ({ input }) => op.conv(input([2, 3, 4, 4]), input([5, 3, 1, 1]), null) },
  {
    name: 'ConvTranspose stride 2 output padding',
    build: ({ input }) =>
      op.convTranspose(input([1, 3, 3, 4]), input([3, 2, 3, 3]), {
        strides: [2, 2],
        pads: [1, 1, 0, 1],
        outputPadding: [1, 0],
      }),
  },
  {
    name: 'ConvTranspose dilation, groups 2',
    build: ({ input }) =>
      op.convTranspose(input([1, 4, 3, 3]), input([4, 1, 2, 2]), {
        strides: [1, 2],
        pads: [0, 0, 0, 0],
        dilations: [2, 1],
        group: 2,
      }),
  },
  {
    name: 'ScatterND add with duplicates',
    build: ({ input }) =>
      op.scatterND(input([5, 3]), input([4, 1], { dtype: 'int64', data: [0, 4, 0, -2] }), input([4, 3]), 'add'),
  },
  {
    name: 'ScatterND none depth 2',
    build: ({ input }) =>
      op.scatterND(input([3, 4, 2]), input([2, 2], { dtype: 'int64', data: [0, 1, 2, 3] }), input([2, 2])),
  },
  {
    name: 'Sum of three with broadcasting (addN)',
    build: ({ input }) => op.addN([input([2, 3]), input([3]), input([2, 1])]),
  },
  // ---- composite layers
  { name: 'silu', build: ({ input }) => op.silu(input([2, 5], { lo: -4, hi: 4 })) },
  { name: 'gelu', build: ({ input }) => op.gelu(input([2, 5], { lo: -4, hi: 4 })) },
  { name: 'quickGelu', build: ({ input }) => op.quickGelu(input([2, 5], { lo: -4, hi: 4 })) },
  { name: 'linear', build: ({ input }) => op.linear(input([2, 3, 4]), input([5, 4]), input([5])) },
  { name: 'layerNorm', build: ({ input }) => op.layerNorm(input([2, 3, 6]), input([6]), input([6]), 1e-5) },
  { name: 'groupNorm', build: ({ input }) => op.groupNorm(input([2, 6, 3, 3]), 3, input([6]), input([6]), 1e-5) },
  { name: 'upsampleNearest2x', build: ({ input }) => op.upsampleNearest2x(input([1, 2, 2, 3])) },
];

interface Built {
  value: Value;
  feeds: Record<string, FeedData>;
}

let g: Graph;
let session: CompiledGraph;
const built: Built[] = [];
const ortOut: Record<string, Tensor> = {};
const allFeeds: Record<string, Tensor | Int64Tensor> = {};
const worst: { name: string; err: number }[] = [];

beforeAll(async () => {
  g = new Graph();
  CASES.forEach((c, i) => {
    const feeds: Record<string, FeedData> = {};
    let k = 0;
    const input = (shape: Shape, spec: InputSpec = {}): Value => {
      const name = `c${i}_in${k++}`;
      const dtype = spec.dtype ?? 'float32';
      const v = g.input(name, shape, dtype);
      const n = shapeSize(shape);
      if (dtype === 'int64') {
        const data = BigInt64Array.from(spec.data ?? [], (x) => BigInt(x));
        if (data.length !== n) throw new Error(`${c.name}: int input needs data`);
        feeds[name] = data;
        allFeeds[name] = { data, shape };
      } else {
        const lo = spec.lo ?? -1;
        const hi = spec.hi ?? 1;
        const data = spec.data
          ? Float32Array.from(spec.data)
          : Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
        feeds[name] = data;
        allFeeds[name] = { data, shape };
      }
      return v;
    };
    const value = c.build({ g, input });
    built.push({ value, feeds });
    g.output(`case${i}`, value);
  });
  session = await compile(g, { threads: 2 });
  Object.assign(ortOut, await session.run(allFeeds));
});

afterAll(async () => {
  await session?.release();
  worst.sort((a, b) => b.err - a.err);
  console.log(
    `graph-ops: largest ORT-vs-interpreter error relative to max |value|: ${worst
      .slice(0, 3)
      .map((w) => `${w.name} ${w.err.toExponential(2)}`)
      .join('; ')}`,
  );
});

describe('ops: recorder shape = ONNX Runtime shape, ONNX Runtime values = float64 interpreter', () => {
  CASES.forEach((c, i) => {
    it(c.name, () => {
      const { value, feeds } = built[i]!;
      const got = ortOut[`case${i}`]!;
      expect(got.shape).toEqual([...value.shape]);
      const [ref] = evaluate(g, feeds, [value]);
      expect(ref!.shape).toEqual([...value.shape]);
      let scale = 0;
      for (const r of ref!.data) scale = Math.max(scale, Math.abs(r));
      let err = 0;
      for (let j = 0; j < ref!.data.length; j++) err = Math.max(err, Math.abs(got.data[j]! - ref!.data[j]!));
      const rel = err / Math.max(scale, 1e-30);
      worst.push({ name: c.name, err: rel });
      expect(rel).toBeLessThan(2e-6);
    });
  });

  it('groupNorm equals a direct GroupNorm formula', () => {
    const i = CASES.findIndex((c) => c.name === 'groupNorm');
    const { feeds } = built[i]!;
    const x = feeds[`c${i}_in0`] as Float32Array;
    const gamma = feeds[`c${i}_in1`] as Float32Array;
    const beta = feeds[`c${i}_in2`] as Float32Array;
    const [n, c, hw, groups] = [2, 6, 9, 3];
    const per = (c / groups) * hw;
    const expected = new Float64Array(x.length);
    for (let b = 0; b < n; b++) {
      for (let gr = 0; gr < groups; gr++) {
        const base = b * c * hw + gr * per;
        let mean = 0;
        for (let j = 0; j < per; j++) mean += x[base + j]!;
        mean /= per;
        let v = 0;
        for (let j = 0; j < per; j++) v += (x[base + j]! - mean) ** 2;
        v /= per;
        for (let j = 0; j < per; j++) {
          const ch = gr * (c / groups) + Math.floor(j / hw);
          expected[base + j] = ((x[base + j]! - mean) / Math.sqrt(v + 1e-5)) * gamma[ch]! + beta[ch]!;
        }
      }
    }
    const got = ortOut[`case${i}`]!.data;
    for (let j = 0; j < expected.length; j++) expect(Math.abs(got[j]! - expected[j]!)).toBeLessThan(1e-5);
  });
});

describe('shape inference errors', () => {
  const gg = new Graph();
  it('MatMul with mismatched inner dimensions', () => {
    expect(() => op.matmul(gg.input('m1', [2, 3]), gg.input('m2', [4, 5]))).toThrow(
      /MatMul: inner dimensions differ: \[2,3\] x \[4,5\]/,
    );
  });
  it('MatMul with incompatible batch dimensions', () => {
    expect(() => op.matmul(gg.input('m3', [2, 3, 4]), gg.input('m4', [3, 4, 5]))).toThrow(
      /MatMul: shapes \[2\] and \[3\] do not broadcast/,
    );
  });
  it('bad broadcast', () => {
    expect(() => op.add(gg.input('b1', [2, 3]), gg.input('b2', [4]))).toThrow(
      /Add: shapes \[2,3\] and \[4\] do not broadcast/,
    );
  });
  it('bad reshape', () => {
    expect(() => op.reshape(gg.input('r1', [2, 3]), [4, -1])).toThrow(/Reshape: cannot reshape \[2,3\] to \[4,-1\]/);
    expect(() => op.reshape(gg.input('r2', [2, 3]), [-1, -1])).toThrow(/more than one -1/);
  });
  it('bad axis, conv channels, concat, pad', () => {
    expect(() => op.softmax(gg.input('s1', [2, 3]), 2)).toThrow(/Softmax: axis 2 out of range for rank 2/);
    expect(() => op.conv(gg.input('cv1', [1, 3, 4, 4]), gg.input('cv2', [2, 4, 3, 3]), null)).toThrow(
      /Conv: input has 3 channels, weight expects 4/,
    );
    expect(() => op.concat([gg.input('cc1', [2, 3]), gg.input('cc2', [3, 3])], 1)).toThrow(/Concat: incompatible/);
    expect(() => op.pad(gg.input('p1', [2, 3]), [1, 1])).toThrow(/Pad: need 4 pads, got 2/);
    expect(() => op.transpose(gg.input('t1', [2, 3]), [0, 0])).toThrow(/Transpose: bad permutation/);
  });
});

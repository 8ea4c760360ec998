/**
 * What every VJP rule shares: the context a rule is given, and the small helpers that read a node's constant
 * inputs and attributes and bring a broadcast cotangent back to its input's shape.
 */
import { type Graph, type Node, sameShape, type Shape, type TensorData, type Value } from '../graph.js';
import * as op from '../ops.js';

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

export function zeros(g: Graph, shape: Shape): Value {
  return op.expand(g.scalar(0), shape);
}

export function constData(v: Value | null, what: string): TensorData {
  const data = v ? v.graph.constants.get(v) : undefined;
  if (!data) throw new Error(`gradients: ${what} must be a constant`);
  return data;
}

export function constInts(v: Value | null, what: string): number[] {
  return Array.from(constData(v, what) as BigInt64Array, (x) => Number(x));
}

export function attrInt(node: Node, name: string, dflt: number): number {
  const a = node.attrs[name];
  return a && a.kind === 'int' ? a.value : dflt;
}

export function attrInts(node: Node, name: string): number[] | undefined {
  const a = node.attrs[name];
  return a && a.kind === 'ints' ? [...a.value] : undefined;
}

export const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Sum a broadcast cotangent back to `shape` (ReduceSum over broadcast axes, then Reshape). */
export function unbroadcast(gv: Value, shape: Shape): Value {
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
export function transposeLast2(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return op.transpose(x, perm);
}

/** Shape of a reduction with keepdims=1. */
export function keptShape(shape: Shape, axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Axes a Reduce node reduces over (from its axes input or attribute; all axes when absent). */
export function reduceAxes(node: Node, x: Value): number[] | null {
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
export function keptCotangent(node: Node, x: Value, gy: Value, axes: readonly number[]): Value {
  if (attrInt(node, 'keepdims', 1) || axes.every((a) => a < axes.length)) return gy;
  return op.reshape(gy, keptShape(x.shape, axes));
}

export function unary(f: (ctx: VjpContext, x: Value) => Value): VjpRule {
  return (ctx) => [ctx.needs[0] ? f(ctx, ctx.inputs[0]!) : null];
}

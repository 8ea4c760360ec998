/**
 * The graph recorder. Model code calls the operator functions in `ops.ts`; each call appends an ONNX node
 * with statically inferred output shapes. The same recorder is used by `autodiff.ts` to append backward
 * nodes, and by `onnx.ts` to serialise the whole thing for ONNX Runtime.
 *
 * Shapes are fully static: a graph is built for one model and one input shape, then cached. That keeps shape
 * inference trivial, lets every Reshape/Expand target be a constant, and is what ONNX Runtime optimises best.
 */

export type DType = 'float32' | 'int64' | 'int32' | 'bool' | 'float16';
export type Shape = readonly number[];

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] };

export type Attrs = Record<string, AttrValue>;

export const attr = {
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  ints: (value: readonly number[]): AttrValue => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): AttrValue => ({ kind: 'floats', value }),
};

export class Value {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    /** The node that computes this value; null for graph inputs, parameters and constants. */
    readonly producer: Node | null,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return shapeSize(this.shape);
  }

  toString(): string {
    return `${this.name}: ${this.dtype}[${this.shape.join(',')}]`;
  }
}

export interface Node {
  readonly id: number;
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  /** null marks an omitted optional input (ONNX's empty name). */
  readonly inputs: readonly (Value | null)[];
  readonly outputs: readonly Value[];
  readonly attrs: Attrs;
}

/** Typed data for constants and parameters, in the value's dtype. */
export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

/**
 * Where a parameter's float32 data comes from. `read` is called only when the graph is serialised (or fed),
 * so a model of several GB is never held twice. `external` lets the serialiser point ONNX Runtime straight
 * at little-endian float32 bytes already on disk (a safetensors file) instead of copying them.
 */
export interface WeightSource {
  readonly shape: Shape;
  read(): Float32Array;
  readonly external?: { path: string; offset: number; length: number };
  /**
   * The weight as stored when that is half precision (an F16 / BF16 safetensors tensor): a serialiser may keep
   * it so — a half initializer (read from `external` when given) and a Cast to float32 in the graph — instead of
   * converting it to float32 in memory. `read()` still gives the float32 values.
   */
  readonly half?: {
    readonly dtype: 'float16' | 'bfloat16';
    read(): Uint16Array;
    readonly external?: { path: string; offset: number; length: number };
  };
}

export type ParamMode = 'initializer' | 'input';

export interface Param {
  readonly value: Value;
  readonly source: WeightSource;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: { name: string; value: Value }[] = [];
  readonly constants = new Map<Value, TensorData>();
  readonly params: Param[] = [];
  /** Nodes whose outputs reverse mode must treat as constants (see ops.stopGradient). */
  readonly stopGradientNodes = new Set<Node>();
  private readonly paramByName = new Map<string, Value>();
  private readonly scalarCache = new Map<string, Value>();
  private readonly usedNames = new Set<string>();
  /** Per base name, the suffix its next name tries first: names are never freed, so none below it is free. */
  private readonly nextSuffix = new Map<string, number>();
  private nextId = 0;
  private scopeStack: string[] = [];

  /**
   * @param paramMode 'initializer' bakes weights into the model (ONNX Runtime pre-packs them: fastest for
   *   inference); 'input' makes every parameter a graph input fed at run time (training, where weights change).
   */
  constructor(readonly paramMode: ParamMode = 'initializer') {}

  /** Run `fn` with node names prefixed by `name` (purely for readable graphs and profiles). */
  scope<T>(name: string, fn: () => T): T {
    this.scopeStack.push(name);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  /** `base`, else `base_k` with the smallest free k (a UNet has hundreds of nodes of one scope and op). */
  private uniqueName(base: string): string {
    let name = base;
    let k = this.nextSuffix.get(base) ?? 1;
    while (this.usedNames.has(name)) name = `${base}_${k++}`;
    this.nextSuffix.set(base, k);
    this.usedNames.add(name);
    return name;
  }

  private scoped(base: string): string {
    return this.scopeStack.length ? `${this.scopeStack.join('/')}/${base}` : base;
  }

  private newValue(name: string, dtype: DType, shape: Shape, producer: Node | null): Value {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`graph: bad dimension ${d} in shape [${shape}] of ${name}`);
    }
    return new Value(this, this.nextId++, name, dtype, Object.freeze([...shape]), producer);
  }

  input(name: string, shape: Shape, dtype: DType = 'float32'): Value {
    if (this.usedNames.has(name)) throw new Error(`graph: duplicate input name '${name}'`);
    this.usedNames.add(name);
    const v = this.newValue(name, dtype, shape, null);
    this.inputs.push(v);
    return v;
  }

  /** A model weight, named exactly as in the checkpoint. Reusing a name returns the same value. */
  param(name: string, source: WeightSource): Value {
    const existing = this.paramByName.get(name);
    if (existing) return existing;
    if (this.usedNames.has(name)) throw new Error(`graph: parameter name '${name}' already used`);
    this.usedNames.add(name);
    const v = this.newValue(name, 'float32', source.shape, null);
    this.params.push({ value: v, source });
    this.paramByName.set(name, v);
    return v;
  }

  getParam(name: string): Value | undefined {
    return this.paramByName.get(name);
  }

  constant(data: TensorData, shape: Shape, dtype: DType, hint = 'const'): Value {
    if (data.length !== shapeSize(shape)) {
      throw new Error(`graph: constant ${hint} has ${data.length} elements for shape [${shape}]`);
    }
    const v = this.newValue(this.uniqueName(this.scoped(hint)), dtype, shape, null);
    this.constants.set(v, data);
    return v;
  }

  /** A deduplicated rank-0 (or given-shape [1]) float constant. */
  scalar(x: number, dtype: 'float32' | 'int64' = 'float32'): Value {
    const key = `${dtype}:${Object.is(x, -0) ? '-0' : x}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      const data = dtype === 'float32' ? Float32Array.of(x) : BigInt64Array.of(BigInt(x));
      v = this.constant(data, [], dtype, `scalar_${String(x).replace(/[^0-9a-zA-Z.-]/g, '_')}`);
      this.scalarCache.set(key, v);
    }
    return v;
  }

  /** A constant int64 vector (shapes, axes, pads, starts/ends); deduplicated by content. */
  ints(values: readonly number[]): Value {
    const key = `ints:${values.join(',')}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      v = this.constant(
        BigInt64Array.from(values, (x) => BigInt(x)),
        [values.length],
        'int64',
        'ints',
      );
      this.scalarCache.set(key, v);
    }
    return v;
  }

  addNode(
    opType: string,
    inputs: readonly (Value | null)[],
    outputs: readonly { dtype: DType; shape: Shape }[],
    attrs: Attrs = {},
    domain = '',
  ): Value[] {
    for (const v of inputs) {
      if (v && v.graph !== this) throw new Error(`graph: ${opType} input ${v.name} belongs to another graph`);
    }
    const id = this.nodes.length;
    const name = this.uniqueName(this.scoped(opType));
    const outs: Value[] = [];
    const node: Node = { id, name, opType, domain, inputs: [...inputs], outputs: outs, attrs };
    outputs.forEach((o, k) =>
      outs.push(this.newValue(outputs.length === 1 ? `${name}:out` : `${name}:out${k}`, o.dtype, o.shape, node)),
    );
    this.nodes.push(node);
    return outs;
  }

  /** Mark `value` as a graph output called `name` (an Identity node carries the public name). */
  output(name: string, value: Value): void {
    if (this.outputs.some((o) => o.name === name)) throw new Error(`graph: duplicate output name '${name}'`);
    if (this.usedNames.has(name)) throw new Error(`graph: output name '${name}' already used by a value`);
    this.usedNames.add(name);
    this.outputs.push({ name, value });
  }

  stats(): { nodes: number; params: number; paramElements: number } {
    let paramElements = 0;
    for (const p of this.params) paramElements += shapeSize(p.source.shape);
    return { nodes: this.nodes.length, params: this.params.length, paramElements };
  }
}

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Numpy/ONNX multidirectional broadcasting. */
export function broadcastShapes(a: Shape, b: Shape, what = 'broadcast'): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`${what}: shapes [${a}] and [${b}] do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

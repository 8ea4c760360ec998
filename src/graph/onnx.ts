/**
 * Serialise a recorded graph to an ONNX ModelProto (opset 17, IR 8). Weights are embedded as raw little-endian
 * initializers, or written to an external-data file beside the model when they would push the protobuf past
 * its 2 GB limit (ONNX Runtime must then load the model by path).
 */
import { type Graph, type Node, type TensorData, type Value } from './graph.js';
import { OPSET, onnxDataType } from './ops.js';
import {
  ATTRIBUTE_TYPE,
  DATA_LOCATION_EXTERNAL,
  DATA_TYPE,
  encodeModel,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './protobuf.js';

function valueInfo(name: string, v: Value): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnxDataType(v.dtype), shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
  };
}

function bytesOf(data: TensorData): Uint8Array {
  // Typed arrays are little-endian on every platform Node runs on.
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function attribute(name: string, a: Graph['nodes'][number]['attrs'][string]): AttributeProto {
  const T = ATTRIBUTE_TYPE;
  switch (a.kind) {
    case 'int':
      return { name, type: T.INT, i: a.value };
    case 'float':
      return { name, type: T.FLOAT, f: a.value };
    case 'string':
      return { name, type: T.STRING, s: new TextEncoder().encode(a.value) };
    case 'ints':
      return { name, type: T.INTS, ints: [...a.value] };
    case 'floats':
      return { name, type: T.FLOATS, floats: [...a.value] };
  }
}

export interface SerializeOptions {
  /**
   * When set, parameters (not small constants) go to this external-data file (`fileName`, beside the model, as
   * ONNX Runtime will look for it) through `write`, and the model must be loaded by path or with its external
   * data. Required past ~2 GB of weights.
   */
  externalData?: ExternalDataSink;
  /** Apply registered substitutions (fused kernels) where safe; default true. */
  substitutions?: boolean;
  /**
   * With `externalData`: for a parameter whose source already lies on disk as little-endian float32
   * (`WeightSource.external`, e.g. an F32 tensor of a safetensors file), return the file's name as the model's
   * folder sees it (a hard link placed there), or null to copy the tensor into the external data as usual.
   * ONNX Runtime then reads the weights straight from the original file: no float32 copy in memory, none on disk.
   */
  linkExternal?: (path: string) => string | null;
  /**
   * Keep half-precision weights half (`WeightSource.half`): a FLOAT16 / BFLOAT16 initializer (linked like F32
   * weights when it lies in a file) and a Cast to float32 in the graph, instead of a float32 initializer made
   * in memory. Default false.
   */
  keepHalf?: boolean;
}

/** Where external data goes: the file's name as the model refers to it, and a writer of its bytes. */
export interface ExternalDataSink {
  fileName: string;
  write(bytes: Uint8Array, offset: number): void;
}

/**
 * A cheaper way to compute `plain`, used at serialisation when it is safe: `fused` (e.g. one fused attention
 * kernel) replaces `plain` unless one of `guards` (intermediates of the plain computation that only it may read,
 * e.g. attention probabilities) is needed by something else that is serialised: a graph output, a hook's loss,
 * a backward pass. Then the plain nodes stay and `fused` is dropped. Both must have the same dtype and shape.
 */
export function registerSubstitution(plain: Value, fused: Value, guards: readonly Value[]): void {
  if (plain.graph !== fused.graph || guards.some((v) => v.graph !== plain.graph))
    throw new Error('registerSubstitution: values of different graphs');
  if (
    plain.dtype !== fused.dtype ||
    plain.shape.length !== fused.shape.length ||
    plain.shape.some((d, i) => d !== fused.shape[i])
  ) {
    throw new Error(`registerSubstitution: ${fused} cannot stand for ${plain}`);
  }
  let list = SUBSTITUTIONS.get(plain.graph);
  if (!list) SUBSTITUTIONS.set(plain.graph, (list = []));
  list.push({ plain, fused, guards: [...guards] });
}

interface Substitution {
  plain: Value;
  fused: Value;
  guards: Value[];
}
const SUBSTITUTIONS = new WeakMap<Graph, Substitution[]>();

function nodesFor(graph: Graph, map: ReadonlyMap<Value, Value>): { nodes: Node[]; read: Set<Value> } {
  const live = new Set<Node>();
  const read = new Set<Value>();
  const stack: Value[] = graph.outputs.map((o) => map.get(o.value) ?? o.value);
  for (const v of stack) read.add(v);
  while (stack.length) {
    const v = stack.pop()!;
    const n = v.producer;
    if (!n || live.has(n)) continue;
    live.add(n);
    for (const i of n.inputs) {
      if (!i) continue;
      const j = map.get(i) ?? i;
      read.add(j);
      stack.push(j);
    }
  }
  return { nodes: graph.nodes.filter((n) => live.has(n)), read };
}

/**
 * The nodes that some graph output depends on, in recorded (topological) order, with the registered
 * substitutions that are safe applied (`substitute` maps each replaced value to its replacement).
 */
export function liveGraph(
  graph: Graph,
  substitutions = true,
): { nodes: Node[]; substitute: ReadonlyMap<Value, Value> } {
  const active = new Map<Value, Substitution>();
  if (substitutions) for (const s of SUBSTITUTIONS.get(graph) ?? []) active.set(s.plain, s);
  for (;;) {
    const map = new Map([...active].map(([v, s]) => [v, s.fused]));
    const { nodes, read } = nodesFor(graph, map);
    let dropped = false;
    for (const [v, s] of active) {
      if (s.guards.some((gv) => read.has(gv))) {
        active.delete(v);
        dropped = true;
      }
    }
    if (!dropped) return { nodes, substitute: map };
  }
}

/** The nodes that some graph output depends on, in recorded (topological) order (as serialised). */
export function liveNodes(graph: Graph): Node[] {
  return liveGraph(graph).nodes;
}

/** An initializer whose bytes lie in `location` (a file in the model's folder) at [offset, offset + length). */
function externalInitializer(
  value: Value,
  location: string,
  offset: number,
  length: number,
  name = value.name,
  dataType: number = DATA_TYPE.FLOAT,
): TensorProto {
  return {
    name,
    dims: [...value.shape],
    dataType,
    dataLocation: DATA_LOCATION_EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  };
}

/** The parameters as initializers: in the file, or written or linked as external data; half weights kept half. */
function paramInitializers(
  graph: Graph,
  used: ReadonlySet<Value>,
  options: SerializeOptions,
  casts: NodeProto[],
): TensorProto[] {
  const initializers: TensorProto[] = [];
  // Half weights kept half: the initializer under another name, and a Cast giving the parameter's float32 value.
  const halfOf = (p: Graph['params'][number]) => {
    const half = options.keepHalf && graph.paramMode === 'initializer' ? p.source.half : undefined;
    if (!half) return null;
    const name = `${p.value.name}::${half.dtype}`;
    casts.push({
      name: `cast/${p.value.name}`,
      opType: 'Cast',
      input: [name],
      output: [p.value.name],
      attribute: [{ name: 'to', type: ATTRIBUTE_TYPE.INT, i: DATA_TYPE.FLOAT }],
    });
    const dataType = half.dtype === 'float16' ? DATA_TYPE.FLOAT16 : DATA_TYPE.BFLOAT16;
    return { half, name, dataType };
  };
  if (options.externalData) {
    const sink = options.externalData;
    let offset = 0;
    for (const p of graph.params) {
      if (!used.has(p.value)) continue;
      const h = halfOf(p);
      if (h) {
        const linked = h.half.external && options.linkExternal ? options.linkExternal(h.half.external.path) : null;
        if (h.half.external && linked) {
          const { offset: at, length } = h.half.external;
          initializers.push(externalInitializer(p.value, linked, at, length, h.name, h.dataType));
          continue;
        }
        const bytes = bytesOf(h.half.read());
        sink.write(bytes, offset);
        initializers.push(externalInitializer(p.value, sink.fileName, offset, bytes.length, h.name, h.dataType));
        offset += Math.ceil(bytes.length / 64) * 64;
        continue;
      }
      const ext = p.source.external;
      const linked = ext && options.linkExternal ? options.linkExternal(ext.path) : null;
      if (ext && linked) {
        initializers.push(externalInitializer(p.value, linked, ext.offset, ext.length));
        continue;
      }
      const bytes = bytesOf(p.source.read());
      sink.write(bytes, offset);
      initializers.push(externalInitializer(p.value, sink.fileName, offset, bytes.length));
      // 64-byte alignment lets ONNX Runtime memory-map each tensor.
      offset += Math.ceil(bytes.length / 64) * 64;
    }
  } else {
    for (const p of graph.params) {
      if (!used.has(p.value)) continue;
      const h = halfOf(p);
      if (h) {
        initializers.push({
          name: h.name,
          dims: [...p.value.shape],
          dataType: h.dataType,
          rawData: bytesOf(h.half.read()),
        });
        continue;
      }
      initializers.push({
        name: p.value.name,
        dims: [...p.value.shape],
        dataType: DATA_TYPE.FLOAT,
        rawData: bytesOf(p.source.read()),
      });
    }
  }
  return initializers;
}

export function serializeGraph(graph: Graph, options: SerializeOptions = {}): Uint8Array {
  return encodeModel(modelProto(graph, options));
}

/** The graph as an ONNX ModelProto (what `serializeGraph` encodes). */
export function modelProto(graph: Graph, options: SerializeOptions = {}): ModelProto {
  // Only what the outputs need: a gradient graph, say, need not carry the layers after the last one its loss reads.
  const { nodes, substitute } = liveGraph(graph, options.substitutions ?? true);
  const mapped = (v: Value) => substitute.get(v) ?? v;
  const used = new Set<Value>(graph.outputs.map((o) => mapped(o.value)));
  for (const n of nodes) for (const i of n.inputs) if (i) used.add(mapped(i));
  const initializers: TensorProto[] = [];
  for (const [v, data] of graph.constants) {
    if (!used.has(v)) continue;
    initializers.push({ name: v.name, dims: [...v.shape], dataType: onnxDataType(v.dtype), rawData: bytesOf(data) });
  }

  const graphInputs: ValueInfoProto[] = graph.inputs.map((v) => valueInfo(v.name, v));
  const casts: NodeProto[] = [];
  if (graph.paramMode === 'input') {
    for (const p of graph.params) graphInputs.push(valueInfo(p.value.name, p.value));
  } else {
    initializers.push(...paramInitializers(graph, used, options, casts));
  }

  const nameOf = (v: Value | null) => (v ? mapped(v).name : '');
  const nodeProtos: NodeProto[] = casts;
  nodeProtos.push(
    ...nodes.map((n) => ({
      name: n.name,
      opType: n.opType,
      domain: n.domain,
      input: n.inputs.map(nameOf),
      output: n.outputs.map((o) => o.name),
      attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
    })),
  );
  // Public output names are given by Identity nodes so one value can be exported under several names.
  for (const o of graph.outputs) {
    nodeProtos.push({
      name: `output/${o.name}`,
      opType: 'Identity',
      input: [nameOf(o.value)],
      output: [o.name],
      attribute: [],
    });
  }
  const domains = [...new Set(nodes.map((n) => n.domain).filter((d) => d !== '' && d !== 'ai.onnx'))].sort();

  return {
    irVersion: 8,
    producerName: 'suppress-to-impress',
    opsetImport: [{ domain: '', version: OPSET }, ...domains.map((domain) => ({ domain, version: 1 }))],
    graph: {
      name: 's2i',
      node: nodeProtos,
      initializer: initializers,
      input: graphInputs,
      output: graph.outputs.map((o) => valueInfo(o.name, o.value)),
    },
  };
}

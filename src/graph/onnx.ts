/**
 * Serialise a recorded graph to an ONNX ModelProto (opset 17, IR 8). Weights are embedded as raw little-endian
 * initializers, or written to an external-data file beside the model when they would push the protobuf past
 * its 2 GB limit (ONNX Runtime must then load the model by path).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import onnxProto from 'onnx-proto';
import { type Graph, type Node, type TensorData, type Value } from './graph.js';
import { OPSET, onnxDataType } from './ops.js';

const { onnx } = onnxProto;

function valueInfo(name: string, v: Value): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnxDataType(v.dtype), shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
  };
}

function bytesOf(data: TensorData): Uint8Array {
  // Typed arrays are little-endian on every platform Node runs on.
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function attribute(name: string, a: Graph['nodes'][number]['attrs'][string]): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
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
   * When set, parameters (not small constants) go to this file as external data, and the model must be saved
   * in the same folder and loaded by path. Required past ~2 GB of weights.
   */
  externalDataPath?: string;
}

/** The nodes that some graph output depends on, in recorded (topological) order. */
export function liveNodes(graph: Graph): Node[] {
  const live = new Set<Node>();
  const stack: Value[] = graph.outputs.map((o) => o.value);
  while (stack.length) {
    const v = stack.pop()!;
    const n = v.producer;
    if (!n || live.has(n)) continue;
    live.add(n);
    for (const i of n.inputs) if (i) stack.push(i);
  }
  return graph.nodes.filter((n) => live.has(n));
}

export function serializeGraph(graph: Graph, options: SerializeOptions = {}): Uint8Array {
  // Only what the outputs need: a gradient graph, say, need not carry the layers after the last one its loss reads.
  const nodes = liveNodes(graph);
  const used = new Set<Value>(graph.outputs.map((o) => o.value));
  for (const n of nodes) for (const i of n.inputs) if (i) used.add(i);
  const initializers: onnxProto.onnx.ITensorProto[] = [];
  for (const [v, data] of graph.constants) {
    if (!used.has(v)) continue;
    initializers.push({ name: v.name, dims: [...v.shape], dataType: onnxDataType(v.dtype), rawData: bytesOf(data) });
  }

  const graphInputs: onnxProto.onnx.IValueInfoProto[] = graph.inputs.map((v) => valueInfo(v.name, v));
  if (graph.paramMode === 'input') {
    for (const p of graph.params) graphInputs.push(valueInfo(p.value.name, p.value));
  } else if (options.externalDataPath) {
    const fd = openSync(options.externalDataPath, 'w');
    let offset = 0;
    try {
      for (const p of graph.params) {
        if (!used.has(p.value)) continue;
        const bytes = bytesOf(p.source.read());
        writeSync(fd, bytes, 0, bytes.length, offset);
        initializers.push({
          name: p.value.name,
          dims: [...p.value.shape],
          dataType: onnx.TensorProto.DataType.FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: basename(options.externalDataPath) },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(bytes.length) },
          ],
        });
        // 64-byte alignment lets ONNX Runtime memory-map each tensor.
        offset += Math.ceil(bytes.length / 64) * 64;
      }
    } finally {
      closeSync(fd);
    }
  } else {
    for (const p of graph.params) {
      if (!used.has(p.value)) continue;
      initializers.push({ name: p.value.name, dims: [...p.value.shape], dataType: onnx.TensorProto.DataType.FLOAT, rawData: bytesOf(p.source.read()) });
    }
  }

  const nameOf = (v: Value | null) => (v ? v.name : '');
  const nodeProtos: onnxProto.onnx.INodeProto[] = nodes.map((n) => ({
    name: n.name,
    opType: n.opType,
    domain: n.domain,
    input: n.inputs.map(nameOf),
    output: n.outputs.map((o) => o.name),
    attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
  }));
  // Public output names are given by Identity nodes so one value can be exported under several names.
  for (const o of graph.outputs) {
    nodeProtos.push({ name: `output/${o.name}`, opType: 'Identity', input: [o.value.name], output: [o.name], attribute: [] });
  }

  const model: onnxProto.onnx.IModelProto = {
    irVersion: 8,
    producerName: 'suppress-to-impress',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: 's2i',
      node: nodeProtos,
      initializer: initializers,
      input: graphInputs,
      output: graph.outputs.map((o) => valueInfo(o.name, o.value)),
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/**
 * How model code gets its weights: `p('conv1.weight', [32, 32, 3, 3])`. The name is the checkpoint key
 * (relative to the current module) and the shape is what the config implies, so loading is a walk over the
 * module tree that checks every key and shape on the way, not a table of special cases.
 */
import type { Graph, Value, WeightSource } from '../graph/graph.js';

export type ParamFn = (name: string, shape: readonly number[]) => Value;

/** Parameters of a submodule: keys are prefixed with `prefix.`. */
export function child(p: ParamFn, prefix: string): ParamFn {
  return (name, shape) => p(`${prefix}.${name}`, shape);
}

/** Anything that can hand out weight sources by checkpoint key (a WeightStore over safetensors files, or memory). */
export interface WeightProvider {
  source(key: string, expectedShape: readonly number[]): WeightSource;
}

/**
 * A ParamFn recording graph parameters backed by `weights`; `keyPrefix` maps module names to checkpoint keys.
 * `graphPrefix` names the graph's parameters apart from the checkpoint keys, for two models whose keys coincide
 * in one graph (SDXL's two CLIP text encoders).
 */
export function graphParams(graph: Graph, weights: WeightProvider, keyPrefix = '', graphPrefix = ''): ParamFn {
  return (name, shape) => {
    const key = keyPrefix + name;
    return graph.getParam(graphPrefix + key) ?? graph.param(graphPrefix + key, weights.source(key, shape));
  };
}

/** In-memory weights (training, tests, models made from scratch). */
export class MemoryWeights implements WeightProvider {
  readonly tensors = new Map<string, { data: Float32Array; shape: readonly number[] }>();

  set(key: string, data: Float32Array, shape: readonly number[]): void {
    this.tensors.set(key, { data, shape: [...shape] });
  }

  source(key: string, expectedShape: readonly number[]): WeightSource {
    const t = this.tensors.get(key);
    if (!t) throw new Error(`missing weight '${key}'`);
    if (t.shape.length !== expectedShape.length || t.shape.some((d, i) => d !== expectedShape[i])) {
      throw new Error(`weight '${key}' has shape [${t.shape}], expected [${expectedShape}]`);
    }
    return { shape: t.shape, read: () => t.data };
  }
}

/**
 * Steering cross-attention inside the forward pass. A multiplicative editor scales chosen probabilities by a
 * factor fed at run time (one graph input per query resolution, [batch, 1, queries, keys], broadcast over
 * heads), then renormalises every row so it still sums to 1: the mass taken from an edited token goes to the
 * other tokens in proportion to what they had.
 */
import type { Graph, Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import type { AttentionHook } from '../models/attention.js';

export function editInputName(height: number, width: number): string {
  return `attention_edit_${height}x${width}`;
}

/** The query resolution an editor input is for, or null for any other graph input. */
export function parseEditInputName(name: string): { height: number; width: number } | null {
  const m = /^attention_edit_(\d+)x(\d+)$/.exec(name);
  return m ? { height: Number(m[1]), width: Number(m[2]) } : null;
}

export interface MultiplicativeEditor {
  hook: AttentionHook;
  /** The graph inputs created so far, by resolution. */
  inputs: Map<string, Value>;
}

/** Edit every cross-attention layer; layers of the same resolution share one factor input. */
export function multiplicativeEditor(graph: Graph, batch: number): MultiplicativeEditor {
  const inputs = new Map<string, Value>();
  const hook: AttentionHook = (layer, probs) => {
    if (layer.kind !== 'cross') return;
    const name = editInputName(layer.height, layer.width);
    let factor = inputs.get(name);
    if (!factor) {
      factor = graph.input(name, [batch, 1, layer.height * layer.width, layer.keyLength]);
      inputs.set(name, factor);
    }
    const scaled = op.mul(probs, factor);
    return op.div(scaled, op.reduceSum(scaled, [-1], true));
  };
  return { hook, inputs };
}

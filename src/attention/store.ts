/**
 * Seeing cross-attention: an AttentionStore is an attention hook that keeps the probabilities of the layers it
 * selects (by place, resolution, self/cross) while a UNet graph is being built; `aggregate` then averages them
 * over heads and layers into per-token maps, in the graph, exactly as Attend-and-Excite's
 * `aggregate_attention` does (layers in the order up, down, mid; each layer's heads; sum / count).
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import type { AttentionHook, AttentionKind, AttentionLayer, AttentionPlace } from '../models/attention.js';

export interface AttentionSelector {
  kind?: AttentionKind;
  places?: readonly AttentionPlace[];
  /** Query grid [height, width]; layers at other resolutions are skipped. */
  resolution?: readonly [number, number];
}

export interface RecordedAttention {
  layer: AttentionLayer;
  /** [batch, heads, queries, keys] */
  probs: Value;
}

export class AttentionStore {
  readonly records: RecordedAttention[] = [];

  constructor(readonly selector: AttentionSelector = { kind: 'cross' }) {}

  selects(layer: AttentionLayer): boolean {
    const s = this.selector;
    if (s.kind && layer.kind !== s.kind) return false;
    if (s.places && !s.places.includes(layer.place)) return false;
    if (s.resolution && (layer.height !== s.resolution[0] || layer.width !== s.resolution[1])) return false;
    return true;
  }

  readonly hook: AttentionHook = (layer, probs) => {
    if (this.selects(layer)) this.records.push({ layer, probs });
  };

  /**
   * Mean over heads and the selected layers of one resolution: [batch, h, w, keys], or of the batch entries
   * `batches` = [start, end) only, or [h, w, keys] for one `batchIndex`. `placeOrder` fixes the summation order
   * (A&E: up, down, mid) so float sums match the reference.
   */
  aggregate(opts: {
    resolution: readonly [number, number];
    placeOrder?: readonly AttentionPlace[];
    batchIndex?: number;
    batches?: readonly [number, number];
  }): Value {
    const [h, w] = opts.resolution;
    const order = opts.placeOrder ?? ['up', 'down', 'mid'];
    const chosen = order.flatMap((place) =>
      this.records.filter((r) => r.layer.place === place && r.layer.height === h && r.layer.width === w),
    );
    if (chosen.length === 0) {
      const have = [...new Set(this.records.map((r) => `${r.layer.height}x${r.layer.width}`))].join(', ') || 'none';
      throw new Error(`no recorded attention layers at ${h}x${w} (recorded resolutions: ${have})`);
    }
    const range = opts.batchIndex !== undefined ? ([opts.batchIndex, opts.batchIndex + 1] as const) : opts.batches;
    // Every head of every layer as one [nb, h, w, keys] map, summed by one n-ary Sum: an elementwise sum in the
    // order given, whatever the batch size. (A ReduceSum over a stacked axis would be summed by a loop that
    // ONNX Runtime picks by shape — another one for batch 1 — and batch-1 and batched maps would differ in
    // their last bits, enough for a gradient method's updates to drift apart.)
    const maps = chosen.flatMap(({ probs }) => {
      const [b, heads, , keys] = probs.shape as [number, number, number, number];
      let x = probs;
      if (range) x = op.slice(x, [range[0]], [range[1]], [0]);
      const nb = range ? range[1] - range[0] : b;
      return op.split(x, new Array<number>(heads).fill(1), 1).map((head) => op.reshape(head, [nb, h, w, keys]));
    });
    const mean = op.div(op.addN(maps), maps.length);
    return opts.batchIndex !== undefined ? op.reshape(mean, [h, w, mean.shape[3]!]) : mean;
  }
}

/** Run several hooks in order; each sees the probabilities as edited by the ones before it. */
export function composeHooks(...hooks: (AttentionHook | undefined)[]): AttentionHook {
  const list = hooks.filter((h): h is AttentionHook => !!h);
  return (layer, probs) => {
    let current = probs;
    let edited = false;
    for (const h of list) {
      const r = h(layer, current);
      if (r) {
        current = r;
        edited = true;
      }
    }
    return edited ? current : undefined;
  };
}

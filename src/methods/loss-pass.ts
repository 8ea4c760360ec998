/**
 * The one gradient pass every loss method shares (A&E, Suppress-to-Impress's loss mode, the rivals): a batched
 * conditional UNet pass over k samples' latents with the cross-attention (and, when asked, self-attention) maps
 * aggregated at one resolution, the method's loss on them, and ∂(Σ_b loss_b)/∂latents — each sample's own
 * gradient, since samples never interact inside the pass. The method gives the per-sample inputs it feeds
 * (token selections, masks, regions) and builds its loss from the maps; this file does the rest.
 */
import { gradients } from '../graph/autodiff.js';
import type { Graph, Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { AttentionStore, composeHooks } from '../attention/store.js';
import type { Tensor } from '../tensor.js';
import { row, stack } from './batch.js';
import type { PassCount, UNetAccess } from './types.js';

export interface LossPassMaps {
  /** Cross-attention [k, h, w, T], averaged over layers (up, down, mid) and heads. */
  cross: Value;
  /** Self-attention [k, h, w, h*w] at the same resolution, when `selfAttention` was asked for. */
  self: Value | null;
  /**
   * Cross-attention of the layers at higher resolutions (integer multiples), nearest-downsampled to this one and
   * averaged [k, h, w, T], when `intermediate` was asked for and the UNet has such layers; else null.
   */
  intermediate: Value | null;
}

export interface LossPassGraph {
  /** Cache key of the method's part of the graph (the gradient and the batch size are added here). */
  key: string;
  k: number;
  withGrad: boolean;
  res: readonly [number, number];
  selfAttention?: boolean;
  intermediate?: boolean;
  /** The method's own inputs, in order: name → shape including the leading k. */
  inputs: readonly (readonly [string, readonly number[]])[];
  /** The loss [k] and any other outputs, from the maps and the inputs. */
  build(g: Graph, maps: LossPassMaps, inputs: Record<string, Value>): { loss: Value; outputs: Record<string, Value> };
}

/**
 * Divide & Bind's `aggregate_attention_intermediate`: every recorded head of the cross-attention layers at
 * resolutions above `res` (integer multiples), nearest-downsampled to `res` (every s-th row and column), averaged
 * in the order up, down, mid; [k, h, w, T]. Null when there are none.
 */
export function intermediateMaps(store: AttentionStore, res: readonly [number, number]): Value | null {
  const [h, w] = res;
  const maps: Value[] = [];
  for (const place of ['up', 'down', 'mid'] as const)
    for (const { layer, probs } of store.records) {
      if (layer.place !== place || layer.height <= h || layer.height % h !== 0 || layer.width % w !== 0) continue;
      const [b, heads, , keys] = probs.shape as [number, number, number, number];
      const grid = op.reshape(probs, [b, heads, layer.height, layer.width, keys]);
      const down = op.slice(grid, [0, 0], [layer.height, layer.width], [2, 3], [layer.height / h, layer.width / w]);
      for (const head of op.split(down, new Array<number>(heads).fill(1), 1))
        maps.push(op.reshape(head, [b, h, w, keys]));
    }
  return maps.length ? op.div(op.addN(maps), maps.length) : null;
}

/** One sample of a pass: its latent [C*h*w] and conditional text embedding [1, T, D]. */
export interface LossPassSample {
  latent: Float32Array;
  cond: Tensor;
  /** The sample's count of UNet passes, which this pass adds to. */
  cost?: PassCount;
}

export interface LossPassResult {
  /** Per sample (the first `samples.length` of the batch). */
  loss: Float32Array;
  grad: Float32Array[] | null;
  /** Every other output, for the whole batch of k. */
  outputs: Record<string, Tensor>;
}

/**
 * Runs one loss pass over `samples` padded to `spec.k` (the caller pads its inputs the same way). Each sample's
 * `cost` counts one forward pass, and one backward pass with the gradient.
 */
export async function runLossPass(
  unet: UNetAccess,
  spec: LossPassGraph,
  timestep: number,
  samples: readonly LossPassSample[],
  feeds: Record<string, Tensor>,
): Promise<LossPassResult> {
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const { k, res, withGrad } = spec;
  const key = `${spec.key}:${withGrad ? 'grad' : 'eval'}:b${k}`;
  const session = await unet.compile(key, (g, build) => {
    const sample = g.input('sample', [k, c, h, w]);
    const ts = g.input('timestep', [k]);
    const context = g.input('context', [k, tokens, dim]);
    const inputs: Record<string, Value> = {};
    for (const [name, shape] of spec.inputs) inputs[name] = g.input(name, shape);
    const cross = new AttentionStore({ kind: 'cross', resolution: res });
    const self = spec.selfAttention ? new AttentionStore({ kind: 'self', resolution: res }) : null;
    const all = spec.intermediate ? new AttentionStore({ kind: 'cross' }) : null;
    build(
      { sample, timestep: ts, encoderHiddenStates: context },
      { attentionHook: composeHooks(cross.hook, self?.hook, all?.hook) },
    );
    const maps = {
      cross: cross.aggregate({ resolution: res }),
      self: self?.aggregate({ resolution: res }) ?? null,
      intermediate: all ? intermediateMaps(all, res) : null,
    };
    const { loss, outputs } = spec.build(g, maps, inputs);
    g.output('loss', loss);
    for (const [name, v] of Object.entries(outputs)) g.output(name, v);
    // Samples do not interact, so the gradient of the sum is each sample's own gradient.
    if (withGrad) g.output('grad', gradients(op.reduceSum(loss, [0], false), [sample])[0]!);
  });
  const padded = [...samples];
  while (padded.length < k) padded.push(samples[samples.length - 1]!);
  const out = await session.run({
    sample: stack(
      padded.map((s) => s.latent),
      [c, h, w],
    ),
    timestep: { data: new Float32Array(k).fill(timestep), shape: [k] },
    context: stack(
      padded.map((s) => s.cond.data),
      [tokens, dim],
    ),
    ...feeds,
  });
  for (const s of samples) {
    if (!s.cost) continue;
    s.cost.unetForward++;
    if (withGrad) s.cost.unetBackward++;
  }
  return {
    loss: out['loss']!.data,
    grad: out['grad'] ? samples.map((_, b) => row(out['grad']!.data, b, k)) : null,
    outputs: out,
  };
}

/**
 * The one attention function. Every attention layer of every model computes softmax(Q Kᵀ / √d) V here, so
 * recording and editing attention probabilities is one hook, not a patch per model.
 */
import { attr, type Value } from '../graph/graph.js';
import { registerSubstitution } from '../graph/onnx.js';
import * as op from '../graph/ops.js';

export type AttentionKind = 'self' | 'cross';
export type AttentionPlace = 'down' | 'mid' | 'up';

export interface AttentionLayer {
  /** Module path, e.g. `down_blocks.1.attentions.0.transformer_blocks.0.attn2` (diffusers' naming). */
  readonly name: string;
  readonly kind: AttentionKind;
  readonly place: AttentionPlace;
  /** Spatial size of the query grid (queries = height * width). */
  readonly height: number;
  readonly width: number;
  readonly heads: number;
  readonly keyLength: number;
  /** Position of the layer among all attention layers of the UNet (self and cross), in forward order. */
  readonly index: number;
}

/**
 * Called with each layer's probabilities [batch, heads, queries, keys]. Return a replacement to edit them
 * before they multiply V (it must keep the shape), or nothing to leave them as they are. Recording is simply
 * keeping the value (e.g. to make it a graph output or to build a loss on it).
 */
export type AttentionHook = (layer: AttentionLayer, probs: Value) => Value | void;

export interface AttentionOptions {
  /** Identifies the layer to the hook; layers without one are never hooked. */
  layer?: AttentionLayer;
  hook?: AttentionHook;
  /** Added to the scores before the softmax (e.g. CLIP's causal mask). */
  mask?: Value;
  /**
   * Scale Q by dh^-0.5 before QKᵀ (transformers' CLIP) instead of scaling the scores (diffusers); the two
   * differ only in float rounding, but matching each reference exactly is the point.
   */
  scaleQuery?: boolean;
}

/**
 * Whether unmasked attention may run as ONNX Runtime's fused `com.microsoft.MultiHeadAttention` kernel where
 * nothing else reads its probabilities (S2I_FUSED_ATTENTION=0 turns it off): faster for self-attention and tiny-sd's
 * cross-attention, never slower (docs/measurements.md#fused-attention).
 */
// (globalThis.process: there is none in a browser.)
export const FUSED_ATTENTION = globalThis.process?.env['S2I_FUSED_ATTENTION'] !== '0';

/**
 * Multi-head attention on [B, N, heads*dh] queries and [B, M, heads*dh] keys/values (already projected).
 * Scores are (QKᵀ)·dh^-0.5 like diffusers' baddbmm(alpha=scale); softmax over keys. Returns [B, N, heads*dh].
 */
export function attention(q: Value, k: Value, v: Value, heads: number, opts: AttentionOptions = {}): Value {
  const [b, n, inner] = q.shape as [number, number, number];
  const m = k.shape[1]!;
  if (inner % heads !== 0) throw new Error(`attention: ${inner} channels not divisible by ${heads} heads`);
  const dh = inner / heads;
  const scale = dh ** -0.5;
  const qh = op.transpose(op.reshape(opts.scaleQuery ? op.mul(q, scale) : q, [b, n, heads, dh]), [0, 2, 1, 3]);
  const kt = op.transpose(op.reshape(k, [b, m, heads, dh]), [0, 2, 3, 1]);
  const vh = op.transpose(op.reshape(v, [b, m, heads, dh]), [0, 2, 1, 3]);
  let scores = op.matmul(qh, kt);
  if (!opts.scaleQuery) scores = op.mul(scores, scale);
  if (opts.mask) scores = op.add(scores, opts.mask);
  const raw = op.softmax(scores, -1);
  let probs = raw;
  const { layer, hook } = opts;
  if (layer && hook) {
    const edited = hook(layer, probs);
    if (edited && edited !== probs) {
      if (edited.shape.length !== probs.shape.length || edited.shape.some((d, i) => d !== probs.shape[i])) {
        throw new Error(`attention hook for ${layer.name} changed the shape [${probs.shape}] to [${edited.shape}]`);
      }
      probs = edited;
    }
  }
  const out = op.reshape(op.transpose(op.matmul(probs, vh), [0, 2, 1, 3]), [b, n, inner]);
  if (FUSED_ATTENTION && probs === raw && !opts.mask && !opts.scaleQuery && q.dtype === 'float32') {
    // The plain nodes above stay in the graph for hooks and reverse mode; the serialiser runs this one kernel
    // instead only when nothing else reads the probabilities or scores (no recording, no loss, no backward pass).
    const fused = q.graph.addNode(
      'MultiHeadAttention',
      [q, k, v],
      [{ dtype: q.dtype, shape: [b, n, inner] }],
      { num_heads: attr.int(heads), scale: attr.float(scale) },
      'com.microsoft',
    )[0]!;
    registerSubstitution(out, fused, [raw, scores]);
  }
  return out;
}

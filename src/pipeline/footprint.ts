/**
 * How much memory one generation needs at least, from the configs and the image size, for the memory budget
 * (`util/memory.ts`). Three terms, each what must exist at once:
 *
 * - the weights (float32, 4 bytes a parameter);
 * - the UNet pass (batch 2, classifier-free guidance): activations at the top level, batch × channels × 4 bytes
 *   × 17 per latent cell, and the self-attention of the highest-resolution level with attention: one S × S slice
 *   of probabilities (S = latent cells at that level) when ONNX Runtime's fused kernel runs it, all
 *   batch × heads slices when a backward pass goes through it (gradient methods: the plain nodes stay, and their
 *   probabilities are kept for the backward pass). Reading or editing cross-attention maps (S2I's edit, A&E's
 *   forward, --attention-maps) leaves the self-attention fused — only the cross-attention layers run unfused,
 *   batch × heads × S × 77 probabilities — so such a method's guided pass costs what plain sampling's does
 *   (docs/measurements.md#fused-self-attention);
 * - the VAE decode: 3 tensors of the first decoder channels per pixel, plus one S × S slice of its mid-block
 *   attention at the latent size.
 *
 * Gradient methods keep the forward pass for the backward one: the UNet term counts twice. The factors were
 * fitted on the shapes model's peak memory and give a lower bound for SD-1.5's (docs/measurements.md#footprint), so
 * the check refuses only runs that cannot fit, such as a 4096x4096 SD image (terabytes of attention).
 */
import type { UNetConfig } from '../models/unet.js';
import type { VaeConfig } from '../models/vae.js';

/** Live float32 tensors per top-level latent cell in the UNet pass (fitted on the shapes model: 4.4 KB/cell). */
const UNET_LIVE_TENSORS = 17;
/** Prompt tokens of a cross-attention map (CLIP's context length). */
const CONTEXT_TOKENS = 77;
/** Live float32 tensors per pixel at the VAE decoder's full resolution. */
const VAE_LIVE_TENSORS = 3;

export interface FootprintInput {
  unet: UNetConfig;
  /** null for pixel-space models. */
  vae: VaeConfig | null;
  /** Parameters of all components together. */
  parameters: number;
  latentHeight: number;
  latentWidth: number;
  /** VAE scale factor (1 without a VAE). */
  scaleFactor: number;
  /** Cross-attention probabilities read or edited (guided methods, attention maps): those layers run unfused. */
  materializedAttention: boolean;
  /** A gradient method (keeps the forward activations for the backward pass). */
  gradient: boolean;
}

export interface Footprint {
  bytes: number;
  /** The largest term, for messages: e.g. "UNet self-attention at 512x512 latents". */
  largest: string;
}

export function generationFootprint(x: FootprintInput): Footprint {
  const { unet, vae } = x;
  const h = x.latentHeight;
  const w = x.latentWidth;
  const batch = 2;
  const terms: [number, string][] = [[x.parameters * 4, 'the weights']];

  // UNet: activations at the top level, and the highest-resolution self-attention.
  const activations = UNET_LIVE_TENSORS * batch * (unet.blockOutChannels[0] ?? 0) * 4 * h * w;
  const n = unet.downBlockTypes.length;
  let attention = 0;
  let attentionAt = '';
  for (let i = 0; i < n; i++) {
    const withAttention =
      unet.downBlockTypes[i]!.includes('CrossAttn') ||
      (unet.upBlockTypes[n - 1 - i] ?? '').includes('CrossAttn') ||
      (i === n - 1 && unet.midBlockType !== null);
    if (!withAttention || unet.onlyCrossAttention[i]) continue;
    const [lh, lw] = [Math.ceil(h / 2 ** i), Math.ceil(w / 2 ** i)];
    const s = lh * lw;
    const heads = unet.numAttentionHeads[i] ?? 1;
    // The fused kernel holds one head's S × S slice at a time; a backward pass keeps them all.
    attention = (x.gradient ? batch * heads : 1) * s * s * 4;
    if (x.materializedAttention) attention += batch * heads * s * CONTEXT_TOKENS * 4;
    attentionAt = `UNet self-attention at ${lh}x${lw}`;
    break;
  }
  const unetLabel = attention > activations ? attentionAt : `UNet activations at ${h}x${w} latents`;
  terms.push([(activations + attention) * (x.gradient ? 2 : 1), unetLabel]);

  if (vae) {
    const H = h * x.scaleFactor;
    const W = w * x.scaleFactor;
    const cv = vae.blockOutChannels[0] ?? 0;
    const conv = VAE_LIVE_TENSORS * cv * 4 * H * W;
    const s = vae.midBlockAddAttention ? h * w : 0;
    const mid = s * s * 4;
    terms.push([
      conv + mid,
      mid > conv ? `VAE mid-block attention at ${h}x${w}` : `VAE decoder activations at ${W}x${H}`,
    ]);
  }
  // The weights stay; the UNet pass and the decode come one after the other.
  const weights = terms[0]![0];
  const passes = terms.slice(1).sort((a, b) => b[0] - a[0]);
  return { bytes: weights + (passes[0]?.[0] ?? 0), largest: (passes[0] ?? terms[0]!)[1] };
}

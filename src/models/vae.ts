/**
 * diffusers' AutoencoderKL: encoder (image → latent distribution) and decoder (latent → image). Both use
 * ResnetBlock2D without time embedding, a mid block with single-head spatial self-attention, GroupNorm eps 1e-6.
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { attention } from './attention.js';
import { activation, conv2d, groupNorm, linear } from './layers.js';
import { child, type ParamFn } from './params.js';

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  normNumGroups: number;
  actFn: string;
  scalingFactor: number;
  /** Whether the mid blocks have attention (diffusers' mid_block_add_attention, default true). */
  midBlockAddAttention: boolean;
}

const EPS = 1e-6;

function resnet(p: ParamFn, cfg: VaeConfig, x: Value, inCh: number, outCh: number): Value {
  let h = activation(cfg.actFn, groupNorm(child(p, 'norm1'), x, cfg.normNumGroups, EPS));
  h = conv2d(child(p, 'conv1'), h, inCh, outCh, 3, { padding: 1 });
  h = activation(cfg.actFn, groupNorm(child(p, 'norm2'), h, cfg.normNumGroups, EPS));
  h = conv2d(child(p, 'conv2'), h, outCh, outCh, 3, { padding: 1 });
  const shortcut = inCh !== outCh ? conv2d(child(p, 'conv_shortcut'), x, inCh, outCh, 1) : x;
  return op.add(shortcut, h);
}

function spatialAttention(p: ParamFn, cfg: VaeConfig, x: Value): Value {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const normed = groupNorm(child(p, 'group_norm'), x, cfg.normNumGroups, EPS);
  const tokens = op.transpose(op.reshape(normed, [b, c, h * w]), [0, 2, 1]);
  const q = linear(child(p, 'to_q'), tokens, c, c);
  const k = linear(child(p, 'to_k'), tokens, c, c);
  const v = linear(child(p, 'to_v'), tokens, c, c);
  // One head of width c (diffusers: heads = channels // attention_head_dim with attention_head_dim = channels).
  const out = linear(child(p, 'to_out.0'), attention(q, k, v, 1), c, c);
  const image = op.reshape(op.transpose(out, [0, 2, 1]), [b, c, h, w]);
  return op.add(image, x);
}

function midBlock(p: ParamFn, cfg: VaeConfig, x: Value): Value {
  const c = x.shape[1]!;
  let h = resnet(child(p, 'resnets.0'), cfg, x, c, c);
  if (cfg.midBlockAddAttention) h = spatialAttention(child(p, 'attentions.0'), cfg, h);
  return resnet(child(p, 'resnets.1'), cfg, h, c, c);
}

/** Latents [B, latent_channels, h, w] (already divided by scaling_factor) → image [B, out_channels, 8h, 8w] in about [-1, 1]. */
export function vaeDecode(cfg: VaeConfig, params: ParamFn, latents: Value): Value {
  const g = latents.graph;
  const lc = cfg.latentChannels;
  const boc = cfg.blockOutChannels;
  const z = conv2d(child(params, 'post_quant_conv'), latents, lc, lc, 1);
  const p = child(params, 'decoder');
  return g.scope('decoder', () => {
    let h = conv2d(child(p, 'conv_in'), z, lc, boc[boc.length - 1]!, 3, { padding: 1 });
    h = midBlock(child(p, 'mid_block'), cfg, h);
    const rev = [...boc].reverse();
    let prev = rev[0]!;
    rev.forEach((out, i) => {
      const bp = child(p, `up_blocks.${i}`);
      for (let j = 0; j <= cfg.layersPerBlock; j++)
        h = resnet(child(bp, `resnets.${j}`), cfg, h, j === 0 ? prev : out, out);
      if (i < rev.length - 1)
        h = conv2d(child(bp, 'upsamplers.0.conv'), op.upsampleNearest2x(h), out, out, 3, { padding: 1 });
      prev = out;
    });
    h = activation(cfg.actFn, groupNorm(child(p, 'conv_norm_out'), h, cfg.normNumGroups, EPS));
    return conv2d(child(p, 'conv_out'), h, boc[0]!, cfg.outChannels, 3, { padding: 1 });
  });
}

/** Image [B, in_channels, H, W] in [-1, 1] → the latent distribution's mean and log-variance, each [B, latent_channels, H/f, W/f]. */
export function vaeEncode(cfg: VaeConfig, params: ParamFn, image: Value): { mean: Value; logvar: Value } {
  const g = image.graph;
  const boc = cfg.blockOutChannels;
  const lc = cfg.latentChannels;
  const p = child(params, 'encoder');
  const moments = g.scope('encoder', () => {
    let h = conv2d(child(p, 'conv_in'), image, cfg.inChannels, boc[0]!, 3, { padding: 1 });
    let prev = boc[0]!;
    boc.forEach((out, i) => {
      const bp = child(p, `down_blocks.${i}`);
      for (let j = 0; j < cfg.layersPerBlock; j++)
        h = resnet(child(bp, `resnets.${j}`), cfg, h, j === 0 ? prev : out, out);
      if (i < boc.length - 1) {
        // Downsample2D with padding 0: pad right/bottom by one, then a stride-2 conv.
        h = conv2d(child(bp, 'downsamplers.0.conv'), op.pad(h, [0, 0, 0, 0, 0, 0, 1, 1]), out, out, 3, { stride: 2 });
      }
      prev = out;
    });
    h = midBlock(child(p, 'mid_block'), cfg, h);
    h = activation(cfg.actFn, groupNorm(child(p, 'conv_norm_out'), h, cfg.normNumGroups, EPS));
    return conv2d(child(p, 'conv_out'), h, boc[boc.length - 1]!, 2 * lc, 3, { padding: 1 });
  });
  const q = conv2d(child(params, 'quant_conv'), moments, 2 * lc, 2 * lc, 1);
  const [mean, logvar] = op.split(q, [lc, lc], 1) as [Value, Value];
  return { mean, logvar: op.maximum(op.minimum(logvar, 20), -30) };
}

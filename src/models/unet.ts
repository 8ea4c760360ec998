/**
 * diffusers' UNet2DConditionModel for SD 1.x / 2.x / SDXL configs: sinusoidal time embedding (plus SDXL's
 * `text_time` added embedding), ResnetBlock2D,
 * Transformer2DModel (conv or linear projection, self- then cross-attention, GEGLU feed-forward), down/mid/up
 * blocks with skip connections. Module and weight names follow diffusers one-to-one.
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import {
  attention,
  type AttentionHook,
  type AttentionKind,
  type AttentionLayer,
  type AttentionPlace,
} from './attention.js';
import { activation, conv2d, groupNorm, layerNorm, linear } from './layers.js';
import { child, type ParamFn } from './params.js';

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

export interface UNetConfig {
  sampleSize: number;
  /**
   * SDXL's `addition_embed_type: "text_time"`: `timeEmbedDim` is addition_time_embed_dim (the sinusoidal width of
   * each of the six time ids), `inputDim` projection_class_embeddings_input_dim (pooled width + 6 × timeEmbedDim).
   * null: none (SD 1.x / 2.x).
   */
  addition: { timeEmbedDim: number; inputDim: number } | null;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: DownBlockType[];
  upBlockTypes: UpBlockType[];
  /** null: no mid block. */
  midBlockType: 'UNetMidBlock2DCrossAttn' | null;
  blockOutChannels: number[];
  layersPerBlock: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  actFn: string;
  normNumGroups: number;
  normEps: number;
  crossAttentionDim: number[];
  transformerLayersPerBlock: number[];
  /** Heads per block (diffusers' `num_attention_heads`, which SD configs spell `attention_head_dim`). */
  numAttentionHeads: number[];
  onlyCrossAttention: boolean[];
  useLinearProjection: boolean;
  upcastAttention: boolean;
  convInKernel: number;
  convOutKernel: number;
}

export interface UNetInputs {
  /** [B, C, H, W] latents (already scaled by the scheduler). */
  sample: Value;
  /** [B] float timesteps. */
  timestep: Value;
  /** [B, T, crossAttentionDim] text embeddings. */
  encoderHiddenStates: Value;
  /** SDXL: [B, pooled width] pooled text embeddings (`added_cond_kwargs["text_embeds"]`). */
  textEmbeds?: Value;
  /** SDXL: [B, 6] time ids: original size (h, w), crop top-left (y, x), target size (h, w). */
  timeIds?: Value;
}

export interface UNetOptions {
  attentionHook?: AttentionHook;
  /** Collect the outputs of the top-level modules (time_proj, down_blocks.i, ...) for tests and debugging. */
  intermediates?: Map<string, Value>;
}

interface Ctx {
  cfg: UNetConfig;
  temb: Value;
  context: Value;
  hook?: AttentionHook;
  attentionIndex: number;
}

function timestepEmbedding(timestep: Value, dim: number, flipSinToCos: boolean, freqShift: number): Value {
  const half = Math.floor(dim / 2);
  // Frequencies computed in float32, step by step as torch does, so the embedding matches to the last bit or two.
  const freqs = new Float32Array(half);
  const logMax = Math.fround(-Math.log(10000));
  for (let i = 0; i < half; i++)
    freqs[i] = Math.fround(Math.exp(Math.fround(Math.fround(logMax * i) / (half - freqShift))));
  const g = timestep.graph;
  const b = timestep.shape[0]!;
  const args = op.mul(op.reshape(timestep, [b, 1]), g.constant(freqs, [1, half], 'float32', 'time_freqs'));
  const sin = op.sin(args);
  const cos = op.cos(args);
  let emb = flipSinToCos ? op.concat([cos, sin], -1) : op.concat([sin, cos], -1);
  if (dim % 2 === 1) emb = op.pad(emb, [0, 0, 0, 1]);
  return emb;
}

function resnetBlock(
  p: ParamFn,
  ctx: Ctx,
  x: Value,
  inChannels: number,
  outChannels: number,
  outputScaleFactor = 1,
): Value {
  const { cfg } = ctx;
  let h = activation(cfg.actFn, groupNorm(child(p, 'norm1'), x, cfg.normNumGroups, cfg.normEps));
  h = conv2d(child(p, 'conv1'), h, inChannels, outChannels, 3, { padding: 1 });
  const tembDim = ctx.temb.shape[1]!;
  const t = linear(child(p, 'time_emb_proj'), activation(cfg.actFn, ctx.temb), tembDim, outChannels);
  h = op.add(h, op.reshape(t, [t.shape[0]!, outChannels, 1, 1]));
  h = activation(cfg.actFn, groupNorm(child(p, 'norm2'), h, cfg.normNumGroups, cfg.normEps));
  h = conv2d(child(p, 'conv2'), h, outChannels, outChannels, 3, { padding: 1 });
  const shortcut = inChannels !== outChannels ? conv2d(child(p, 'conv_shortcut'), x, inChannels, outChannels, 1) : x;
  const out = op.add(shortcut, h);
  return outputScaleFactor === 1 ? out : op.div(out, outputScaleFactor);
}

function attentionModule(
  p: ParamFn,
  ctx: Ctx,
  x: Value,
  context: Value | null,
  heads: number,
  meta: { name: string; kind: AttentionKind; place: AttentionPlace; height: number; width: number },
): Value {
  const inner = x.shape[2]!;
  const source = context ?? x;
  const contextDim = source.shape[2]!;
  const q = linear(child(p, 'to_q'), x, inner, inner, false);
  const k = linear(child(p, 'to_k'), source, contextDim, inner, false);
  const v = linear(child(p, 'to_v'), source, contextDim, inner, false);
  const layer: AttentionLayer = { ...meta, heads, keyLength: source.shape[1]!, index: ctx.attentionIndex++ };
  const out = attention(q, k, v, heads, { layer, hook: ctx.hook });
  return linear(child(p, 'to_out.0'), out, inner, inner);
}

function basicTransformerBlock(
  p: ParamFn,
  ctx: Ctx,
  x: Value,
  heads: number,
  onlyCross: boolean,
  name: string,
  place: AttentionPlace,
  height: number,
  width: number,
): Value {
  const dim = x.shape[2]!;
  const meta = { place, height, width };
  let h = x;
  const n1 = layerNorm(child(p, 'norm1'), h, 1e-5);
  h = op.add(
    attentionModule(child(p, 'attn1'), ctx, n1, onlyCross ? ctx.context : null, heads, {
      ...meta,
      name: `${name}.attn1`,
      kind: onlyCross ? 'cross' : 'self',
    }),
    h,
  );
  const n2 = layerNorm(child(p, 'norm2'), h, 1e-5);
  h = op.add(
    attentionModule(child(p, 'attn2'), ctx, n2, ctx.context, heads, { ...meta, name: `${name}.attn2`, kind: 'cross' }),
    h,
  );
  const n3 = layerNorm(child(p, 'norm3'), h, 1e-5);
  // GEGLU feed-forward: proj to 2 * 4 * dim, half of it gates the other half through exact GELU.
  const innerFf = dim * 4;
  const proj = linear(child(p, 'ff.net.0.proj'), n3, dim, innerFf * 2);
  const [hidden, gate] = op.split(proj, [innerFf, innerFf], -1) as [Value, Value];
  const ff = linear(child(p, 'ff.net.2'), op.mul(hidden, op.gelu(gate)), innerFf, dim);
  return op.add(ff, h);
}

function transformer2d(
  p: ParamFn,
  ctx: Ctx,
  x: Value,
  heads: number,
  layers: number,
  onlyCross: boolean,
  name: string,
  place: AttentionPlace,
): Value {
  const { cfg } = ctx;
  const [b, c, height, width] = x.shape as [number, number, number, number];
  let h = groupNorm(child(p, 'norm'), x, cfg.normNumGroups, 1e-6);
  const toTokens = (v: Value) => op.reshape(op.transpose(v, [0, 2, 3, 1]), [b, height * width, c]);
  const toImage = (v: Value) => op.transpose(op.reshape(v, [b, height, width, c]), [0, 3, 1, 2]);
  h = cfg.useLinearProjection
    ? linear(child(p, 'proj_in'), toTokens(h), c, c)
    : toTokens(conv2d(child(p, 'proj_in'), h, c, c, 1));
  for (let i = 0; i < layers; i++) {
    h = basicTransformerBlock(
      child(p, `transformer_blocks.${i}`),
      ctx,
      h,
      heads,
      onlyCross,
      `${name}.transformer_blocks.${i}`,
      place,
      height,
      width,
    );
  }
  h = cfg.useLinearProjection
    ? toImage(linear(child(p, 'proj_out'), h, c, c))
    : conv2d(child(p, 'proj_out'), toImage(h), c, c, 1);
  return op.add(h, x);
}

/** torch F.interpolate(mode='nearest') to an arbitrary size (2x is a cheap reshape/expand). */
function upsampleNearest(x: Value, outH: number, outW: number): Value {
  const [, , h, w] = x.shape as [number, number, number, number];
  if (outH === 2 * h && outW === 2 * w) return op.upsampleNearest2x(x);
  const indices = (inSize: number, outSize: number) => {
    const scale = Math.fround(inSize / outSize);
    return BigInt64Array.from({ length: outSize }, (_, i) =>
      BigInt(Math.min(Math.floor(Math.fround(i * scale)), inSize - 1)),
    );
  };
  const g = x.graph;
  const rows = op.gather(x, g.constant(indices(h, outH), [outH], 'int64', 'nearest_rows'), 2);
  return op.gather(rows, g.constant(indices(w, outW), [outW], 'int64', 'nearest_cols'), 3);
}

/**
 * SDXL's `text_time` conditioning (diffusers' get_aug_embed): each time id embedded like a timestep, flattened
 * after the pooled text embedding, through `add_embedding` (linear, SiLU, linear), added to the time embedding.
 */
function addedEmbedding(cfg: UNetConfig, params: ParamFn, inputs: UNetInputs, temb: Value): Value {
  const { timeEmbedDim, inputDim } = cfg.addition!;
  const { textEmbeds, timeIds } = inputs;
  if (!textEmbeds || !timeIds) throw new Error('UNet: an SDXL UNet (text_time) needs textEmbeds and timeIds');
  const b = timeIds.shape[0]!;
  const ids = timestepEmbedding(op.reshape(timeIds, [b * 6]), timeEmbedDim, cfg.flipSinToCos, cfg.freqShift);
  const added = op.concat([textEmbeds, op.reshape(ids, [b, 6 * timeEmbedDim])], -1);
  if (added.shape[1] !== inputDim)
    throw new Error(`UNet: pooled (${textEmbeds.shape[1]}) + 6 x ${timeEmbedDim} time ids is not ${inputDim} wide`);
  const tembDim = temb.shape[1]!;
  const h = linear(child(params, 'add_embedding.linear_1'), added, inputDim, tembDim);
  return op.add(temb, linear(child(params, 'add_embedding.linear_2'), op.silu(h), tembDim, tembDim));
}

export interface UNetOutputs {
  noisePred: Value;
}

export function unet2dCondition(
  cfg: UNetConfig,
  params: ParamFn,
  inputs: UNetInputs,
  options: UNetOptions = {},
): UNetOutputs {
  const g = inputs.sample.graph;
  const keep = (name: string, v: Value) => {
    options.intermediates?.set(name, v);
    return v;
  };
  const boc = cfg.blockOutChannels;
  const nBlocks = boc.length;
  if (cfg.downBlockTypes.length !== nBlocks || cfg.upBlockTypes.length !== nBlocks) {
    throw new Error('UNet: down_block_types, up_block_types and block_out_channels must have the same length');
  }
  let sample = inputs.sample;
  if (cfg.centerInputSample) sample = op.sub(op.mul(sample, 2), 1);

  const timeDim = boc[0]!;
  const tembDim = timeDim * 4;
  const tProj = keep('time_proj', timestepEmbedding(inputs.timestep, timeDim, cfg.flipSinToCos, cfg.freqShift));
  let temb = keep(
    'time_embedding',
    g.scope('time_embedding', () => {
      const h = linear(child(params, 'time_embedding.linear_1'), tProj, timeDim, tembDim);
      return linear(child(params, 'time_embedding.linear_2'), activation(cfg.actFn, h), tembDim, tembDim);
    }),
  );
  if (cfg.addition) temb = keep('add_embedding', addedEmbedding(cfg, params, inputs, temb));
  const ctx: Ctx = { cfg, temb, context: inputs.encoderHiddenStates, hook: options.attentionHook, attentionIndex: 0 };

  const inPad = (cfg.convInKernel - 1) / 2;
  sample = keep(
    'conv_in',
    conv2d(child(params, 'conv_in'), sample, cfg.inChannels, boc[0]!, cfg.convInKernel, { padding: inPad }),
  );
  const skips: Value[] = [sample];

  // ---- down
  let channels = boc[0]!;
  cfg.downBlockTypes.forEach((type, i) => {
    const name = `down_blocks.${i}`;
    const p = child(params, name);
    const out = boc[i]!;
    sample = g.scope(name, () => {
      let h = sample;
      for (let j = 0; j < cfg.layersPerBlock[i]!; j++) {
        h = resnetBlock(child(p, `resnets.${j}`), ctx, h, j === 0 ? channels : out, out);
        if (type === 'CrossAttnDownBlock2D') {
          h = transformer2d(
            child(p, `attentions.${j}`),
            ctx,
            h,
            cfg.numAttentionHeads[i]!,
            cfg.transformerLayersPerBlock[i]!,
            cfg.onlyCrossAttention[i]!,
            `${name}.attentions.${j}`,
            'down',
          );
        }
        skips.push(h);
      }
      if (i < nBlocks - 1) {
        const dp = child(p, 'downsamplers.0.conv');
        if (cfg.downsamplePadding === 0) h = op.pad(h, [0, 0, 0, 0, 0, 0, 1, 1]);
        h = conv2d(dp, h, out, out, 3, { stride: 2, padding: cfg.downsamplePadding });
        skips.push(h);
      }
      return h;
    });
    channels = out;
    keep(name, sample);
  });

  // ---- mid
  if (cfg.midBlockType === 'UNetMidBlock2DCrossAttn') {
    const p = child(params, 'mid_block');
    const c = boc[nBlocks - 1]!;
    sample = g.scope('mid_block', () => {
      let h = resnetBlock(child(p, 'resnets.0'), ctx, sample, c, c, cfg.midBlockScaleFactor);
      h = transformer2d(
        child(p, 'attentions.0'),
        ctx,
        h,
        cfg.numAttentionHeads[nBlocks - 1]!,
        cfg.transformerLayersPerBlock[nBlocks - 1]!,
        false,
        'mid_block.attentions.0',
        'mid',
      );
      return resnetBlock(child(p, 'resnets.1'), ctx, h, c, c, cfg.midBlockScaleFactor);
    });
    keep('mid_block', sample);
  }

  // ---- up
  const rev = [...boc].reverse();
  const revHeads = [...cfg.numAttentionHeads].reverse();
  const revLayers = [...cfg.layersPerBlock].reverse();
  const revTransformerLayers = [...cfg.transformerLayersPerBlock].reverse();
  const revOnlyCross = [...cfg.onlyCrossAttention].reverse();
  let prevOut = rev[0]!;
  cfg.upBlockTypes.forEach((type, i) => {
    const name = `up_blocks.${i}`;
    const p = child(params, name);
    const out = rev[i]!;
    const inCh = rev[Math.min(i + 1, nBlocks - 1)]!;
    const numLayers = revLayers[i]! + 1;
    sample = g.scope(name, () => {
      let h = sample;
      for (let j = 0; j < numLayers; j++) {
        const skip = skips.pop()!;
        const skipCh = skip.shape[1]!;
        const expectedSkip = j === numLayers - 1 ? inCh : out;
        if (skipCh !== expectedSkip)
          throw new Error(
            `UNet: skip connection into ${name}.resnets.${j} has ${skipCh} channels, expected ${expectedSkip}`,
          );
        const resIn = j === 0 ? prevOut : out;
        h = resnetBlock(child(p, `resnets.${j}`), ctx, op.concat([h, skip], 1), resIn + skipCh, out);
        if (type === 'CrossAttnUpBlock2D') {
          h = transformer2d(
            child(p, `attentions.${j}`),
            ctx,
            h,
            revHeads[i]!,
            revTransformerLayers[i]!,
            revOnlyCross[i]!,
            `${name}.attentions.${j}`,
            'up',
          );
        }
      }
      if (i < nBlocks - 1) {
        // The next skip's size: 2x, unless the latent size is not a multiple of the total down-sampling factor.
        const target = skips[skips.length - 1]!;
        h = upsampleNearest(h, target.shape[2]!, target.shape[3]!);
        h = conv2d(child(p, 'upsamplers.0.conv'), h, out, out, 3, { padding: 1 });
      }
      return h;
    });
    prevOut = out;
    keep(name, sample);
  });

  const normed = keep(
    'conv_norm_out',
    groupNorm(child(params, 'conv_norm_out'), sample, cfg.normNumGroups, cfg.normEps),
  );
  const outPad = (cfg.convOutKernel - 1) / 2;
  const noisePred = keep(
    'conv_out',
    conv2d(child(params, 'conv_out'), activation(cfg.actFn, normed), boc[0]!, cfg.outChannels, cfg.convOutKernel, {
      padding: outPad,
    }),
  );
  return { noisePred };
}

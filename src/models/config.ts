/**
 * config.json → typed model configs, with diffusers' / transformers' defaults for absent keys and a one-line
 * error for anything we cannot run (naming the file and the key).
 *
 * Besides types, values are checked against what the models can build: activations they implement, group
 * norms whose groups divide the channels, positive epsilons, and sizes within sane limits — far above any
 * Stable Diffusion (SDXL's largest width is 2,048, its sample size 128) but below where a typo such as
 * `sample_size: 4096` or `hidden_size: 1e9` would exhaust memory before any weight is compared with it.
 */
import { UserError } from '../errors.js';
import { configBool, configIntArray, configNumber, configString, configStringArray } from '../io/json-config.js';
import type { ClipTextConfig } from './clip.js';
import type { DownBlockType, UNetConfig, UpBlockType } from './unet.js';
import type { VaeConfig } from './vae.js';

type Json = Record<string, unknown>;

/**
 * The defaults of each component's config.json, by key: diffusers' / transformers' own values for keys a config
 * leaves out. The parsers below and `s2i info` both read them from here.
 */
export const CLIP_TEXT_DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  /** CLIPTextModelWithProjection's text_projection width (SDXL's second encoder). */
  projection_dim: 512,
} as const;

export const UNET_DEFAULTS = {
  sample_size: 64,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  /** diffusers' name for the head count in SD configs (num_attention_heads, when given, wins). */
  attention_head_dim: 8,
  only_cross_attention: false,
  use_linear_projection: false,
  upcast_attention: false,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  /** SDXL's `addition_embed_type: "text_time"`: the width of each of the six time ids' sinusoidal embeddings. */
  addition_time_embed_dim: 256,
} as const;

/** AutoencoderKL's defaults; its block types default to one DownEncoderBlock2D / UpDecoderBlock2D per channel count. */
export const VAE_DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  latent_channels: 4,
  block_out_channels: [64],
  layers_per_block: 1,
  norm_num_groups: 32,
  act_fn: 'silu',
  scaling_factor: 0.18215,
  mid_block_add_attention: true,
} as const;

/** Upper limits on config sizes (see the module comment). */
export const CONFIG_LIMITS = {
  /** Channels, hidden and intermediate sizes, cross-attention width. */
  width: 65_536,
  /** UNet sample_size (latent pixels): 512 is 4,096 px with an SD VAE. */
  sampleSize: 512,
  vocabulary: 1_048_576,
  positions: 4_096,
  layers: 256,
  heads: 1_024,
  blocks: 16,
  imageChannels: 64,
  kernel: 15,
} as const;

/** Activations the models implement (layers.ts), by config value. */
const UNET_ACTIVATIONS = ['silu', 'swish', 'gelu', 'relu'];
const CLIP_ACTIVATIONS = ['quick_gelu', 'gelu'];

/** io's config accessors bound to one file, plus the range checks and per-block forms models need. */
class Reader {
  constructor(
    private readonly json: Json,
    private readonly file: string,
  ) {}

  private value(key: string): unknown {
    const v = this.json[key];
    return v === null ? undefined : v;
  }

  fail(key: string, want: string, v: unknown): never {
    let shown: string;
    try {
      shown = JSON.stringify(v) ?? String(v);
    } catch {
      shown = String(v);
    }
    if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
    throw new UserError(`${this.file}: config key '${key}' must be ${want}, found ${shown}`);
  }

  number(key: string, fallback?: number): number {
    return configNumber(this.json, key, this.file, fallback);
  }

  /** A number in (min, max] (exclusive min: epsilons). */
  positive(key: string, fallback: number, max: number): number {
    const v = this.number(key, fallback);
    if (!(v > 0 && v <= max)) this.fail(key, `a number above 0 and at most ${max}`, v);
    return v;
  }

  int(key: string, fallback: number | undefined, min: number, max: number): number {
    const v = this.number(key, fallback);
    if (!Number.isInteger(v) || v < min || v > max) this.fail(key, `an integer from ${min} to ${max}`, v);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    return configBool(this.json, key, this.file, fallback);
  }

  string(key: string, fallback?: string): string {
    return configString(this.json, key, this.file, fallback);
  }

  oneOf(key: string, fallback: string, allowed: readonly string[]): string {
    const v = this.string(key, fallback);
    if (!allowed.includes(v)) this.fail(key, `one of ${allowed.join(', ')}`, v);
    return v;
  }

  stringList(key: string, fallback?: string[]): string[] {
    const v = configStringArray(this.json, key, this.file, fallback);
    if (v.length > CONFIG_LIMITS.blocks) this.fail(key, `a list of at most ${CONFIG_LIMITS.blocks} names`, v);
    return v;
  }

  intList(key: string, fallback: number[] | undefined, max: number): number[] {
    const v = configIntArray(this.json, key, this.file, fallback);
    if (v.length === 0 || v.length > CONFIG_LIMITS.blocks || v.some((x) => x < 1 || x > max)) {
      this.fail(key, `a list of 1 to ${CONFIG_LIMITS.blocks} integers from 1 to ${max}`, v);
    }
    return v;
  }

  /** An int or a per-block list (diffusers accepts both for several keys). */
  perBlock(key: string, n: number, fallback: number, max: number): number[] {
    const v = this.value(key);
    if (Array.isArray(v)) {
      const list = this.intList(key, undefined, max);
      if (list.length !== n) this.fail(key, `a list of ${n} integers (one per block)`, v);
      return list;
    }
    return Array.from({ length: n }, () => this.int(key, fallback, 1, max));
  }

  boolPerBlock(key: string, n: number, fallback: boolean): boolean[] {
    const v = this.value(key);
    if (Array.isArray(v)) {
      if (v.length !== n || v.some((x) => typeof x !== 'boolean')) this.fail(key, `a list of ${n} booleans`, v);
      return v as boolean[];
    }
    return Array.from({ length: n }, () => this.bool(key, fallback));
  }

  unsupportedUnless(key: string, allowed: unknown[]): void {
    const v = this.value(key);
    if (v !== undefined && !allowed.includes(v)) {
      throw new UserError(
        `${this.file}: config key '${key}' = ${JSON.stringify(v)} is not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`,
      );
    }
  }

  /** GroupNorm splits channels into groups: every channel count must be a multiple of the group count. */
  groupsDivide(key: string, groups: number, channels: readonly number[]): void {
    const bad = channels.find((c) => c % groups !== 0);
    if (bad !== undefined) {
      throw new UserError(
        `${this.file}: config key '${key}' = ${groups} does not divide ${bad} channels (block_out_channels ${JSON.stringify(channels)}); GroupNorm needs it to`,
      );
    }
  }
}

export function parseClipTextConfig(json: Json, file: string): ClipTextConfig {
  const r = new Reader(json, file);
  const T = CLIP_TEXT_DEFAULTS;
  const L = CONFIG_LIMITS;
  const cfg: ClipTextConfig = {
    vocabSize: r.int('vocab_size', T.vocab_size, 1, L.vocabulary),
    hiddenSize: r.int('hidden_size', T.hidden_size, 1, L.width),
    intermediateSize: r.int('intermediate_size', T.intermediate_size, 1, 4 * L.width),
    numHiddenLayers: r.int('num_hidden_layers', T.num_hidden_layers, 1, L.layers),
    numAttentionHeads: r.int('num_attention_heads', T.num_attention_heads, 1, L.heads),
    maxPositionEmbeddings: r.int('max_position_embeddings', T.max_position_embeddings, 1, L.positions),
    hiddenAct: r.oneOf('hidden_act', T.hidden_act, CLIP_ACTIVATIONS),
    layerNormEps: r.positive('layer_norm_eps', T.layer_norm_eps, 1),
    projectionDim: r.int('projection_dim', T.projection_dim, 1, L.width),
  };
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0)
    throw new UserError(
      `${file}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numAttentionHeads}`,
    );
  return cfg;
}

const DOWN_TYPES: DownBlockType[] = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES: UpBlockType[] = ['CrossAttnUpBlock2D', 'UpBlock2D'];

/** Keys naming diffusers UNet features this runtime does not build: refused up front rather than silently ignored. */
function rejectUnsupportedUNetKeys(r: Reader): void {
  for (const key of [
    'class_embed_type',
    'encoder_hid_dim',
    'encoder_hid_dim_type',
    'time_cond_proj_dim',
    'num_class_embeds',
    'timestep_post_act',
    'time_embedding_act_fn',
  ]) {
    r.unsupportedUnless(key, []);
  }
  r.unsupportedUnless('addition_embed_type', ['text_time']);
  r.unsupportedUnless('resnet_time_scale_shift', ['default']);
  r.unsupportedUnless('time_embedding_type', ['positional']);
  r.unsupportedUnless('attention_type', ['default']);
  r.unsupportedUnless('dual_cross_attention', [false]);
  r.unsupportedUnless('resnet_skip_time_act', [false]);
  r.unsupportedUnless('resnet_out_scale_factor', [1, 1.0]);
  r.unsupportedUnless('cross_attention_norm', []);
  r.unsupportedUnless('time_embedding_dim', []);
}

interface UNetBlockTypes {
  down: DownBlockType[];
  up: UpBlockType[];
  mid: UNetConfig['midBlockType'];
}

/** Down, up and mid block types: one down and one up block per entry of block_out_channels (n of them). */
function parseUNetBlockTypes(r: Reader, json: Json, file: string, n: number): UNetBlockTypes {
  const U = UNET_DEFAULTS;
  const down = r.stringList('down_block_types', [...U.down_block_types]);
  const up = r.stringList('up_block_types', [...U.up_block_types]);
  for (const t of down)
    if (!DOWN_TYPES.includes(t as DownBlockType))
      throw new UserError(`${file}: down block type '${t}' is not supported (${DOWN_TYPES.join(', ')})`);
  for (const t of up)
    if (!UP_TYPES.includes(t as UpBlockType))
      throw new UserError(`${file}: up block type '${t}' is not supported (${UP_TYPES.join(', ')})`);
  if (down.length !== n || up.length !== n)
    throw new UserError(`${file}: down_block_types, up_block_types and block_out_channels must have the same length`);
  const midRaw = json['mid_block_type'];
  const mid = midRaw === null ? null : r.string('mid_block_type', U.mid_block_type);
  if (mid !== null && mid !== 'UNetMidBlock2DCrossAttn')
    throw new UserError(`${file}: mid_block_type '${mid}' is not supported`);
  return { down: down as DownBlockType[], up: up as UpBlockType[], mid: mid as UNetConfig['midBlockType'] };
}

/** Attention heads per block, each dividing its block's channel count. */
function parseUNetHeads(r: Reader, json: Json, file: string, boc: readonly number[]): number[] {
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (SD configs name the head count attention_head_dim).
  const headsKey =
    json['num_attention_heads'] !== undefined && json['num_attention_heads'] !== null
      ? 'num_attention_heads'
      : 'attention_head_dim';
  const numAttentionHeads = r.perBlock(headsKey, boc.length, UNET_DEFAULTS.attention_head_dim, CONFIG_LIMITS.heads);
  boc.forEach((c, i) => {
    if (c % numAttentionHeads[i]! !== 0)
      throw new UserError(`${file}: block ${i} has ${c} channels, not divisible by ${numAttentionHeads[i]} heads`);
  });
  return numAttentionHeads;
}

/**
 * SDXL: the pooled text embedding and six time ids (original size, crop top-left, target size), each embedded
 * sinusoidally, feed a second TimestepEmbedding added to the time embedding. Null for SD 1.x/2.x UNets.
 */
function parseUNetAddition(r: Reader, json: Json, file: string): UNetConfig['addition'] {
  if (json['addition_embed_type'] !== 'text_time') return null;
  const addition = {
    timeEmbedDim: r.int('addition_time_embed_dim', UNET_DEFAULTS.addition_time_embed_dim, 1, CONFIG_LIMITS.width),
    inputDim: r.int('projection_class_embeddings_input_dim', undefined, 1, CONFIG_LIMITS.width),
  };
  if (addition.inputDim <= 6 * addition.timeEmbedDim)
    throw new UserError(
      `${file}: projection_class_embeddings_input_dim ${addition.inputDim} leaves no room for the pooled text embedding beside 6 x addition_time_embed_dim ${addition.timeEmbedDim}`,
    );
  return addition;
}

export function parseUNetConfig(json: Json, file: string): UNetConfig {
  const r = new Reader(json, file);
  const U = UNET_DEFAULTS;
  const L = CONFIG_LIMITS;
  // The checks run in this order so the first bad key a user sees is the same as before the split.
  rejectUnsupportedUNetKeys(r);
  const boc = r.intList('block_out_channels', [...U.block_out_channels], L.width);
  const n = boc.length;
  const blocks = parseUNetBlockTypes(r, json, file, n);
  const numAttentionHeads = parseUNetHeads(r, json, file, boc);
  const kIn = r.int('conv_in_kernel', U.conv_in_kernel, 1, L.kernel);
  const kOut = r.int('conv_out_kernel', U.conv_out_kernel, 1, L.kernel);
  if (kIn % 2 === 0 || kOut % 2 === 0) throw new UserError(`${file}: conv kernels must be odd`);
  const normNumGroups = r.int('norm_num_groups', U.norm_num_groups, 1, L.width);
  r.groupsDivide('norm_num_groups', normNumGroups, boc);
  const sampleSize = r.number('sample_size', U.sample_size);
  if (!Number.isInteger(sampleSize) || sampleSize < 1 || sampleSize > L.sampleSize) {
    throw new UserError(
      `${file}: config key 'sample_size' = ${sampleSize} is outside 1..${L.sampleSize} (the latent size the model is trained at; SD 1.x uses 64, SDXL 128)`,
    );
  }
  const addition = parseUNetAddition(r, json, file);
  return {
    sampleSize,
    addition,
    inChannels: r.int('in_channels', U.in_channels, 1, L.imageChannels),
    outChannels: r.int('out_channels', U.out_channels, 1, L.imageChannels),
    centerInputSample: r.bool('center_input_sample', U.center_input_sample),
    flipSinToCos: r.bool('flip_sin_to_cos', U.flip_sin_to_cos),
    freqShift: r.int('freq_shift', U.freq_shift, 0, 1),
    downBlockTypes: blocks.down,
    upBlockTypes: blocks.up,
    midBlockType: blocks.mid,
    blockOutChannels: boc,
    layersPerBlock: r.perBlock('layers_per_block', n, U.layers_per_block, L.layers),
    downsamplePadding: r.int('downsample_padding', U.downsample_padding, 0, 1),
    midBlockScaleFactor: r.positive('mid_block_scale_factor', U.mid_block_scale_factor, 1e6),
    actFn: r.oneOf('act_fn', U.act_fn, UNET_ACTIVATIONS),
    normNumGroups,
    normEps: r.positive('norm_eps', U.norm_eps, 1),
    crossAttentionDim: r.perBlock('cross_attention_dim', n, U.cross_attention_dim, L.width),
    transformerLayersPerBlock: r.perBlock('transformer_layers_per_block', n, U.transformer_layers_per_block, L.layers),
    numAttentionHeads,
    onlyCrossAttention: r.boolPerBlock('only_cross_attention', n, U.only_cross_attention),
    useLinearProjection: r.bool('use_linear_projection', U.use_linear_projection),
    upcastAttention: r.bool('upcast_attention', U.upcast_attention),
    convInKernel: kIn,
    convOutKernel: kOut,
  };
}

export function parseVaeConfig(json: Json, file: string): VaeConfig {
  const r = new Reader(json, file);
  const V = VAE_DEFAULTS;
  const L = CONFIG_LIMITS;
  const boc = r.intList('block_out_channels', [...V.block_out_channels], L.width);
  const down = r.stringList(
    'down_block_types',
    boc.map(() => 'DownEncoderBlock2D'),
  );
  const up = r.stringList(
    'up_block_types',
    boc.map(() => 'UpDecoderBlock2D'),
  );
  if (down.some((t) => t !== 'DownEncoderBlock2D') || up.some((t) => t !== 'UpDecoderBlock2D')) {
    throw new UserError(`${file}: only DownEncoderBlock2D / UpDecoderBlock2D VAEs are supported`);
  }
  if (down.length !== boc.length || up.length !== boc.length)
    throw new UserError(`${file}: block types and block_out_channels differ in length`);
  r.unsupportedUnless('latents_mean', []);
  const normNumGroups = r.int('norm_num_groups', V.norm_num_groups, 1, L.width);
  r.groupsDivide('norm_num_groups', normNumGroups, boc);
  const scalingFactor = r.number('scaling_factor', V.scaling_factor);
  // decode divides by it: 0 would turn every image into NaN
  if (!(scalingFactor > 0)) r.fail('scaling_factor', 'a number above 0', scalingFactor);
  return {
    inChannels: r.int('in_channels', V.in_channels, 1, L.imageChannels),
    outChannels: r.int('out_channels', V.out_channels, 1, L.imageChannels),
    latentChannels: r.int('latent_channels', V.latent_channels, 1, L.imageChannels),
    blockOutChannels: boc,
    layersPerBlock: r.int('layers_per_block', V.layers_per_block, 1, L.layers),
    normNumGroups,
    actFn: r.oneOf('act_fn', V.act_fn, UNET_ACTIVATIONS),
    scalingFactor,
    midBlockAddAttention: r.bool('mid_block_add_attention', V.mid_block_add_attention),
  };
}

/** Spatial down-sampling factor of the VAE (2^(blocks-1)): 8 for SD. */
export function vaeScaleFactor(cfg: VaeConfig): number {
  return 2 ** (cfg.blockOutChannels.length - 1);
}

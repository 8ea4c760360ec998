/**
 * config.json → typed model configs, with diffusers' / transformers' defaults for absent keys and a one-line
 * error for anything we cannot run (naming the file and the key).
 */
import { UserError } from '../errors.js';
import { configBool, configIntArray, configNumber, configString, configStringArray } from '../io/model-folder.js';
import type { ClipTextConfig } from './clip.js';
import type { DownBlockType, UNetConfig, UpBlockType } from './unet.js';
import type { VaeConfig } from './vae.js';

type Json = Record<string, unknown>;

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

  private fail(key: string, want: string, v: unknown): never {
    throw new UserError(`${this.file}: config key '${key}' must be ${want}, found ${JSON.stringify(v)}`);
  }

  number(key: string, fallback?: number): number {
    return configNumber(this.json, key, this.file, fallback);
  }

  int(key: string, fallback?: number, min = 0): number {
    const v = this.number(key, fallback);
    if (!Number.isInteger(v) || v < min) this.fail(key, `an integer >= ${min}`, v);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    return configBool(this.json, key, this.file, fallback);
  }

  string(key: string, fallback?: string): string {
    return configString(this.json, key, this.file, fallback);
  }

  stringList(key: string, fallback?: string[]): string[] {
    return configStringArray(this.json, key, this.file, fallback);
  }

  intList(key: string, fallback?: number[]): number[] {
    const v = configIntArray(this.json, key, this.file, fallback);
    if (v.some((x) => x < 1)) this.fail(key, 'a list of positive integers', v);
    return v;
  }

  /** An int or a per-block list (diffusers accepts both for several keys). */
  perBlock(key: string, n: number, fallback?: number): number[] {
    const v = this.value(key);
    if (Array.isArray(v)) {
      const list = this.intList(key);
      if (list.length !== n) this.fail(key, `a list of ${n} integers (one per block)`, v);
      return list;
    }
    return Array.from({ length: n }, () => this.int(key, fallback, 1));
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
      throw new UserError(`${this.file}: config key '${key}' = ${JSON.stringify(v)} is not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
    }
  }
}

export function parseClipTextConfig(json: Json, file: string): ClipTextConfig {
  const r = new Reader(json, file);
  const hiddenAct = r.string('hidden_act', 'quick_gelu');
  if (!['quick_gelu', 'gelu'].includes(hiddenAct)) throw new UserError(`${file}: hidden_act '${hiddenAct}' is not supported (quick_gelu, gelu)`);
  const cfg: ClipTextConfig = {
    vocabSize: r.int('vocab_size', 49408, 1),
    hiddenSize: r.int('hidden_size', 512, 1),
    intermediateSize: r.int('intermediate_size', 2048, 1),
    numHiddenLayers: r.int('num_hidden_layers', 12, 1),
    numAttentionHeads: r.int('num_attention_heads', 8, 1),
    maxPositionEmbeddings: r.int('max_position_embeddings', 77, 1),
    hiddenAct,
    layerNormEps: r.number('layer_norm_eps', 1e-5),
  };
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) throw new UserError(`${file}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numAttentionHeads}`);
  return cfg;
}

const DOWN_TYPES: DownBlockType[] = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_TYPES: UpBlockType[] = ['CrossAttnUpBlock2D', 'UpBlock2D'];

export function parseUNetConfig(json: Json, file: string): UNetConfig {
  const r = new Reader(json, file);
  for (const key of ['addition_embed_type', 'class_embed_type', 'encoder_hid_dim', 'encoder_hid_dim_type', 'time_cond_proj_dim', 'num_class_embeds', 'timestep_post_act', 'time_embedding_act_fn']) {
    r.unsupportedUnless(key, []);
  }
  r.unsupportedUnless('resnet_time_scale_shift', ['default']);
  r.unsupportedUnless('time_embedding_type', ['positional']);
  r.unsupportedUnless('attention_type', ['default']);
  r.unsupportedUnless('dual_cross_attention', [false]);
  r.unsupportedUnless('resnet_skip_time_act', [false]);
  r.unsupportedUnless('resnet_out_scale_factor', [1, 1.0]);
  r.unsupportedUnless('cross_attention_norm', []);
  r.unsupportedUnless('time_embedding_dim', []);
  const boc = r.intList('block_out_channels', [320, 640, 1280, 1280]);
  const n = boc.length;
  const down = r.stringList('down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
  const up = r.stringList('up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
  for (const t of down) if (!DOWN_TYPES.includes(t as DownBlockType)) throw new UserError(`${file}: down block type '${t}' is not supported (${DOWN_TYPES.join(', ')})`);
  for (const t of up) if (!UP_TYPES.includes(t as UpBlockType)) throw new UserError(`${file}: up block type '${t}' is not supported (${UP_TYPES.join(', ')})`);
  if (down.length !== n || up.length !== n) throw new UserError(`${file}: down_block_types, up_block_types and block_out_channels must have the same length`);
  const midRaw = json['mid_block_type'];
  const midBlockType = midRaw === null ? null : r.string('mid_block_type', 'UNetMidBlock2DCrossAttn');
  if (midBlockType !== null && midBlockType !== 'UNetMidBlock2DCrossAttn') throw new UserError(`${file}: mid_block_type '${midBlockType}' is not supported`);
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (SD configs name the head count attention_head_dim).
  const headsKey = json['num_attention_heads'] !== undefined && json['num_attention_heads'] !== null ? 'num_attention_heads' : 'attention_head_dim';
  const numAttentionHeads = r.perBlock(headsKey, n, 8);
  boc.forEach((c, i) => {
    if (c % numAttentionHeads[i]! !== 0) throw new UserError(`${file}: block ${i} has ${c} channels, not divisible by ${numAttentionHeads[i]} heads`);
  });
  const kIn = r.int('conv_in_kernel', 3, 1);
  const kOut = r.int('conv_out_kernel', 3, 1);
  if (kIn % 2 === 0 || kOut % 2 === 0) throw new UserError(`${file}: conv kernels must be odd`);
  return {
    sampleSize: r.int('sample_size', 64, 1),
    inChannels: r.int('in_channels', 4, 1),
    outChannels: r.int('out_channels', 4, 1),
    centerInputSample: r.bool('center_input_sample', false),
    flipSinToCos: r.bool('flip_sin_to_cos', true),
    freqShift: r.number('freq_shift', 0),
    downBlockTypes: down as DownBlockType[],
    upBlockTypes: up as UpBlockType[],
    midBlockType: midBlockType as UNetConfig['midBlockType'],
    blockOutChannels: boc,
    layersPerBlock: r.perBlock('layers_per_block', n, 2),
    downsamplePadding: r.int('downsample_padding', 1),
    midBlockScaleFactor: r.number('mid_block_scale_factor', 1),
    actFn: r.string('act_fn', 'silu'),
    normNumGroups: r.int('norm_num_groups', 32, 1),
    normEps: r.number('norm_eps', 1e-5),
    crossAttentionDim: r.perBlock('cross_attention_dim', n, 1280),
    transformerLayersPerBlock: r.perBlock('transformer_layers_per_block', n, 1),
    numAttentionHeads,
    onlyCrossAttention: r.boolPerBlock('only_cross_attention', n, false),
    useLinearProjection: r.bool('use_linear_projection', false),
    upcastAttention: r.bool('upcast_attention', false),
    convInKernel: kIn,
    convOutKernel: kOut,
  };
}

export function parseVaeConfig(json: Json, file: string): VaeConfig {
  const r = new Reader(json, file);
  const boc = r.intList('block_out_channels', [64]);
  const down = r.stringList('down_block_types', boc.map(() => 'DownEncoderBlock2D'));
  const up = r.stringList('up_block_types', boc.map(() => 'UpDecoderBlock2D'));
  if (down.some((t) => t !== 'DownEncoderBlock2D') || up.some((t) => t !== 'UpDecoderBlock2D')) {
    throw new UserError(`${file}: only DownEncoderBlock2D / UpDecoderBlock2D VAEs are supported`);
  }
  if (down.length !== boc.length || up.length !== boc.length) throw new UserError(`${file}: block types and block_out_channels differ in length`);
  r.unsupportedUnless('latents_mean', []);
  return {
    inChannels: r.int('in_channels', 3, 1),
    outChannels: r.int('out_channels', 3, 1),
    latentChannels: r.int('latent_channels', 4, 1),
    blockOutChannels: boc,
    layersPerBlock: r.int('layers_per_block', 1, 1),
    normNumGroups: r.int('norm_num_groups', 32, 1),
    actFn: r.string('act_fn', 'silu'),
    scalingFactor: r.number('scaling_factor', 0.18215),
    midBlockAddAttention: r.bool('mid_block_add_attention', true),
  };
}

/** Spatial down-sampling factor of the VAE (2^(blocks-1)): 8 for SD. */
export function vaeScaleFactor(cfg: VaeConfig): number {
  return 2 ** (cfg.blockOutChannels.length - 1);
}

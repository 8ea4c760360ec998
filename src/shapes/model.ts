/**
 * The shapes-world text-to-image model: an SD-architecture CLIPTextModel + UNet2DConditionModel in pixel space
 * (32x32 RGB, no VAE), with cross-attention at 8x8 only (down_blocks.2, mid, up_blocks.0), stored in the diffusers
 * folder layout so the ordinary pipeline loads it.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { isUserError, UserError } from '../errors.js';
import { onCleanup } from '../util/cleanup.js';
import { dirname, join } from 'node:path';
import { SAMPLING_DEFAULTS_FILE, type SamplingDefaults } from '../io/model-folder.js';
import { writeSafetensors } from '../io/safetensors.js';
import { parseClipTextConfig, parseUNetConfig } from '../models/config.js';
import type { TextToImageConfig } from '../train/diffusion.js';
import { buildShapesVocabulary } from './vocab.js';
import { makeFolders } from '../io/durable.js';

export const SHAPES_TOKENS = 32;

export function shapesUNetConfigJson(): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: '0.24.0',
    sample_size: 32,
    in_channels: 3,
    out_channels: 3,
    center_input_sample: false,
    flip_sin_to_cos: true,
    freq_shift: 0,
    down_block_types: ['DownBlock2D', 'DownBlock2D', 'CrossAttnDownBlock2D'],
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    up_block_types: ['CrossAttnUpBlock2D', 'UpBlock2D', 'UpBlock2D'],
    only_cross_attention: false,
    block_out_channels: [32, 64, 128],
    layers_per_block: 1,
    downsample_padding: 1,
    mid_block_scale_factor: 1,
    act_fn: 'silu',
    norm_num_groups: 32,
    norm_eps: 1e-5,
    cross_attention_dim: 64,
    transformer_layers_per_block: 1,
    attention_head_dim: 4,
    use_linear_projection: false,
    upcast_attention: false,
    resnet_time_scale_shift: 'default',
    conv_in_kernel: 3,
    conv_out_kernel: 3,
  };
}

export function shapesTextConfigJson(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'],
    model_type: 'clip_text_model',
    vocab_size: vocabSize,
    hidden_size: 64,
    intermediate_size: 256,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: SHAPES_TOKENS,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    bos_token_id: vocabSize - 2,
    eos_token_id: vocabSize - 1,
    pad_token_id: vocabSize - 1,
    torch_dtype: 'float32',
  };
}

/**
 * Pixel space: cosine betas reach (near) zero terminal SNR, so the last training step is pure noise and sampling
 * starts from what the model was trained on (SD's scaled-linear schedule does not, which tinted the prototype's
 * backgrounds); v-prediction stays well-posed there. DDIM with trailing spacing starts at t = 999.
 */
export function shapesSchedulerConfigJson(): Record<string, unknown> {
  return {
    _class_name: 'DDIMScheduler',
    _diffusers_version: '0.24.0',
    num_train_timesteps: 1000,
    beta_schedule: 'squaredcos_cap_v2',
    beta_start: 0.0001,
    beta_end: 0.02,
    prediction_type: 'v_prediction',
    timestep_spacing: 'trailing',
    steps_offset: 0,
    clip_sample: false,
    set_alpha_to_one: true,
    rescale_betas_zero_snr: false,
  };
}

export function shapesModelConfig(): TextToImageConfig {
  const vocab = buildShapesVocabulary();
  const vocabSize = Object.keys(vocab.vocab).length;
  return {
    text: parseClipTextConfig(shapesTextConfigJson(vocabSize), 'shapes text config'),
    unet: parseUNetConfig(shapesUNetConfigJson(), 'shapes unet config'),
    tokens: SHAPES_TOKENS,
  };
}

export interface ModelFolderContents {
  unetConfig: Record<string, unknown>;
  textConfig: Record<string, unknown>;
  schedulerConfig: Record<string, unknown>;
  /** Weights by checkpoint key: unet keys as diffusers names them, text keys `text_model.*`. */
  unetWeights: ReadonlyMap<string, { data: Float32Array; shape: readonly number[] }>;
  textWeights: ReadonlyMap<string, { data: Float32Array; shape: readonly number[] }>;
  metadata?: Record<string, string>;
  /** Recommended sampling settings, written to s2i.json (what `s2i generate` uses unless told otherwise). */
  sampling?: SamplingDefaults;
  /** A latent-space model's AutoencoderKL (vae/); none for pixel space. */
  vae?: {
    config: Record<string, unknown>;
    weights: ReadonlyMap<string, { data: Float32Array; shape: readonly number[] }>;
    /** Its own metadata (the VAE run's step), not the UNet's. */
    metadata?: Record<string, string>;
  };
  /** The tokenizer's model_max_length (default SHAPES_TOKENS). */
  tokens?: number;
}

/**
 * A model folder is replaced as a whole: refuse anything at `dir` that is not a model folder (or an empty folder),
 * so a mistyped --out never deletes a user's files or a device node.
 */
export function checkReplaceableModelFolder(dir: string, flag = '--out'): void {
  if (!existsSync(dir)) return;
  const st = statSync(dir);
  if (!st.isDirectory()) throw new UserError(`${flag} ${dir} exists and is not a directory`);
  if (readdirSync(dir).length > 0 && !existsSync(join(dir, 'model_index.json')))
    throw new UserError(`${flag} ${dir} is a folder that holds other files (no model_index.json); give a new path`);
}

/** Write a diffusers-layout folder (vae/ only for latent models) atomically: built beside `dir`, then renamed over it. */
export function writeShapesModelFolder(dir: string, contents: ModelFolderContents): void {
  checkReplaceableModelFolder(dir);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    writeModelFolderAt(tmp, contents);
    rmSync(dir, { recursive: true, force: true });
    makeFolders(dirname(dir));
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (isUserError(e)) throw e;
    throw new UserError(`${dir}: cannot write the model folder: ${(e as Error).message}`, { cause: e });
  } finally {
    forget();
  }
}

function writeModelFolderAt(tmp: string, contents: ModelFolderContents): void {
  const json = (path: string, obj: unknown) => {
    mkdirSync(dirname(join(tmp, path)), { recursive: true });
    writeFileSync(join(tmp, path), JSON.stringify(obj, null, 2) + '\n');
  };
  json('model_index.json', {
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.24.0',
    scheduler: ['diffusers', 'DDIMScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: contents.vae ? ['diffusers', 'AutoencoderKL'] : [null, null],
    safety_checker: [null, null],
    feature_extractor: [null, null],
    requires_safety_checker: false,
  });
  json('unet/config.json', contents.unetConfig);
  json('text_encoder/config.json', contents.textConfig);
  json('scheduler/scheduler_config.json', contents.schedulerConfig);
  if (contents.sampling) json(SAMPLING_DEFAULTS_FILE, contents.sampling);
  const tok = buildShapesVocabulary();
  json('tokenizer/vocab.json', tok.vocab);
  writeFileSync(
    join(tmp, 'tokenizer/merges.txt'),
    '#version: 0.2\n' + tok.merges.map(([a, b]) => `${a} ${b}`).join('\n') + '\n',
  );
  const special = {
    bos_token: '<|startoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    pad_token: '<|endoftext|>',
  };
  json('tokenizer/special_tokens_map.json', special);
  json('tokenizer/tokenizer_config.json', {
    tokenizer_class: 'CLIPTokenizer',
    model_max_length: contents.tokens ?? SHAPES_TOKENS,
    do_lower_case: true,
    ...special,
  });
  const toRecord = (m: ModelFolderContents['unetWeights']) =>
    Object.fromEntries(
      [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, { data: v.data, shape: [...v.shape] }]),
    );
  writeSafetensors(join(tmp, 'unet/diffusion_pytorch_model.safetensors'), toRecord(contents.unetWeights), {
    format: 'pt',
    ...contents.metadata,
  });
  writeSafetensors(join(tmp, 'text_encoder/model.safetensors'), toRecord(contents.textWeights), {
    format: 'pt',
    ...contents.metadata,
  });
  if (contents.vae) {
    json('vae/config.json', contents.vae.config);
    writeSafetensors(join(tmp, 'vae/diffusion_pytorch_model.safetensors'), toRecord(contents.vae.weights), {
      format: 'pt',
      ...(contents.vae.metadata ?? contents.metadata),
    });
  }
}

/**
 * The shapes world's second model, built the way Stable Diffusion is: 64x64 images through an AutoencoderKL
 * (×4 down, 4 latent channels), a UNet2DConditionModel on 16x16 latents with self- and cross-attention at
 * 16x16 and 8x8 (CrossAttnDownBlock2D ×2 + a plain DownBlock2D, as SD has three cross-attention levels and one
 * plain one) and in the 4x4 mid block, a 4-layer causal CLIPTextModel of width 128 over 77 positions, and
 * SD-1.5's scheduler (ε-prediction, scaled-linear betas 0.00085–0.012, leading spacing with steps_offset 1).
 */
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig } from '../models/config.js';
import type { VaeConfig } from '../models/vae.js';
import type { TextToImageConfig } from '../train/diffusion.js';
import { buildShapesVocabulary } from './vocab.js';

/** Image side of the latent world, latent side, and prompt length (CLIP's 77). */
export const LDM_IMAGE_SIZE = 64;
export const LDM_LATENT_SIZE = 16;
export const LDM_TOKENS = 77;
/**
 * The model folder's s2i.json: SD-1.5's guidance 7.5 at 25 DDIM steps, the first model's count (SD-1.5's 50 are
 * the README's first tables), so that `s2i generate` answers in under 2 s on a 2-core machine: single objects stay
 * above the quality bar (97.5% of the held-apart ones × 20 seeds), and S2I still beats plain sampling and every
 * rival, by less on two objects than at 50 steps (README, "At 25 steps").
 */
export const LDM_SAMPLING = { steps: 25, guidance: 7.5 } as const;

/**
 * AutoencoderKL, ×4 (three blocks): 32/64/64 channels, one resnet per encoder block (two per decoder block, as
 * diffusers builds them), single-head attention in the 16x16 mid blocks. scaling_factor is measured after
 * training (1 / std of the latents, as SD's 0.18215 was); the value here is a placeholder until then.
 */
export function ldmVaeConfigJson(scalingFactor = 1): Record<string, unknown> {
  return {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.24.0',
    in_channels: 3,
    out_channels: 3,
    latent_channels: 4,
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    block_out_channels: [16, 32, 64],
    layers_per_block: 1,
    act_fn: 'silu',
    norm_num_groups: 16,
    sample_size: LDM_IMAGE_SIZE,
    scaling_factor: scalingFactor,
    mid_block_add_attention: true,
  };
}

export function ldmUNetConfigJson(): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: '0.24.0',
    sample_size: LDM_LATENT_SIZE,
    in_channels: 4,
    out_channels: 4,
    center_input_sample: false,
    flip_sin_to_cos: true,
    freq_shift: 0,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    only_cross_attention: false,
    block_out_channels: [64, 128, 128],
    layers_per_block: 1,
    downsample_padding: 1,
    mid_block_scale_factor: 1,
    act_fn: 'silu',
    norm_num_groups: 32,
    norm_eps: 1e-5,
    cross_attention_dim: 128,
    transformer_layers_per_block: 1,
    // diffusers reads SD-1.5's attention_head_dim 8 as the number of heads; here 4 heads.
    attention_head_dim: 4,
    use_linear_projection: false,
    upcast_attention: false,
    resnet_time_scale_shift: 'default',
    conv_in_kernel: 3,
    conv_out_kernel: 3,
  };
}

export function ldmTextConfigJson(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'],
    model_type: 'clip_text_model',
    vocab_size: vocabSize,
    hidden_size: 128,
    intermediate_size: 512,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    max_position_embeddings: LDM_TOKENS,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    bos_token_id: vocabSize - 2,
    eos_token_id: vocabSize - 1,
    pad_token_id: vocabSize - 1,
    torch_dtype: 'float32',
  };
}

/** SD-1.5's scheduler_config.json (DDIM form): ε-prediction, scaled-linear betas, leading spacing, offset 1. */
export function ldmSchedulerConfigJson(): Record<string, unknown> {
  return {
    _class_name: 'DDIMScheduler',
    _diffusers_version: '0.24.0',
    num_train_timesteps: 1000,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    beta_end: 0.012,
    prediction_type: 'epsilon',
    timestep_spacing: 'leading',
    steps_offset: 1,
    clip_sample: false,
    set_alpha_to_one: false,
    rescale_betas_zero_snr: false,
  };
}

export function ldmModelConfig(): TextToImageConfig {
  const vocabSize = Object.keys(buildShapesVocabulary().vocab).length;
  return {
    text: parseClipTextConfig(ldmTextConfigJson(vocabSize), 'shapes-ldm text config'),
    unet: parseUNetConfig(ldmUNetConfigJson(), 'shapes-ldm unet config'),
    tokens: LDM_TOKENS,
  };
}

export function ldmVaeConfig(scalingFactor = 1): VaeConfig {
  return parseVaeConfig(ldmVaeConfigJson(scalingFactor), 'shapes-ldm vae config');
}

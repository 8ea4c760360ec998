/**
 * The diffusers configs of a converted single-file checkpoint, as diffusers' `create_unet_diffusers_config` /
 * `create_vae_diffusers_config` make them: every size a weight shape determines is read from the weights
 * (channels, layers per block, which blocks have attention, cross-attention width, conv or linear projections,
 * text width, depth and vocabulary); what no shape holds is the SD family's (configs/stable-diffusion-v1 or -v2:
 * attention heads, norms, activations, the VAE's scaling factor, the scheduler).
 *
 * Attention heads are the one architectural number weights do not show, so inference is limited to the
 * standard SD 1.x / 2.x widths (UNet base width 320, text width 768 / 1024), where it is known: 8 heads per
 * block for SD 1.x, 64-wide heads for SD 2.x. Anything else needs its config folder (`--config DIR`).
 */
import { FieldError, UserError } from '../../errors.js';
import { readJsonObject, type Config } from '../json-config.js';
import type { WeightEntry } from '../weight-store.js';
import type { TextEncoderLayout } from './convert.js';

export type SdFamily = 'stable-diffusion-v1' | 'stable-diffusion-v2' | 'stable-diffusion-xl';

/** The config folders shipped with s2i for single files (see configs/README.md for their source). */
export function shippedConfigDir(family: SdFamily): string {
  // (fileURLToPath without node:url: a file: URL's path, percent-decoded; the folder ships with the package)
  return decodeURIComponent(new URL(`../../../configs/${family}`, import.meta.url).pathname);
}

export const FAMILY_OF_LAYOUT: Readonly<Record<TextEncoderLayout, SdFamily>> = {
  clip: 'stable-diffusion-v1',
  'open-clip': 'stable-diffusion-v2',
  sdxl: 'stable-diffusion-xl',
};

/** What `s2i info` and messages call a family. */
export const FAMILY_NAME: Readonly<Record<SdFamily, string>> = {
  'stable-diffusion-v1': 'SD 1.x',
  'stable-diffusion-v2': 'SD 2.x',
  'stable-diffusion-xl': 'SDXL',
};

const STANDARD = {
  'stable-diffusion-v1': { unetWidth: 320, textWidth: 768 },
  'stable-diffusion-v2': { unetWidth: 320, textWidth: 1024 },
  'stable-diffusion-xl': { unetWidth: 320, textWidth: 768 },
} as const;

/** SDXL's second text encoder (OpenCLIP ViT-bigG): its standard width, with 64-wide heads. */
const SDXL_TEXT2_WIDTH = 1280;

type Shapes = ReadonlyMap<string, WeightEntry>;

function shapeOf(weights: Shapes, key: string, where: string): readonly number[] {
  const e = weights.get(key);
  if (!e) throw new UserError(`${where}: missing weight '${key}'`);
  return e.tensor.shape;
}

/** Distinct values of the numeric path segment captured by `re` (e.g. the N of `down_blocks.N.`). */
function indices(weights: Shapes, re: RegExp): number[] {
  const out = new Set<number>();
  for (const k of weights.keys()) {
    const m = re.exec(k);
    if (m) out.add(Number(m[1]));
  }
  return [...out].sort((a, b) => a - b);
}

function hasPrefix(weights: Shapes, prefix: string): boolean {
  for (const k of weights.keys()) if (k.startsWith(prefix)) return true;
  return false;
}

export interface InferredConfigs {
  unet: Config;
  vae: Config;
  textEncoder: Config;
  /** SDXL's second text encoder; null for SD 1.x / 2.x. */
  textEncoder2: Config | null;
}

/** A CLIP text encoder's config from its weights over the family's; `dropLast`: SD 2.x's unused last layer. */
function inferTextConfig(base: Config, text: Shapes, where: string, dropLast: boolean): Config {
  const [vocab, width] = shapeOf(text, 'text_model.embeddings.token_embedding.weight', where) as [number, number];
  const blocks = indices(text, /^text_model\.encoder\.layers\.(\d+)\./).length;
  const projection = text.get('text_projection.weight');
  return {
    ...base,
    vocab_size: vocab,
    hidden_size: width,
    intermediate_size: shapeOf(text, 'text_model.encoder.layers.0.mlp.fc1.weight', where)[0]!,
    num_hidden_layers: dropLast ? blocks - 1 : blocks,
    num_attention_heads: width / 64,
    max_position_embeddings: shapeOf(text, 'text_model.embeddings.position_embedding.weight', where)[0]!,
    // text_projection is read transposed from OpenCLIP's [width, projection]
    ...(projection ? { projection_dim: projection.tensor.shape[projection.transposed ? 1 : 0] } : {}),
  };
}

export function inferConfigs(
  family: SdFamily,
  layout: TextEncoderLayout,
  weights: { unet: Shapes; vae: Shapes; textEncoder: Shapes; textEncoder2: Shapes | null },
  where: string,
): InferredConfigs {
  const dir = shippedConfigDir(family);
  const base = (name: string) => readJsonObject(`${dir}/${name}/config.json`);
  const { unet, vae, textEncoder: text } = weights;

  // text encoder
  const [, textWidth] = shapeOf(text, 'text_model.embeddings.token_embedding.weight', where) as [number, number];

  // UNet
  const [width, inChannels] = shapeOf(unet, 'conv_in.weight', where) as [number, number];
  const outChannels = shapeOf(unet, 'conv_out.weight', where)[0]!;
  const levels = indices(unet, /^down_blocks\.(\d+)\./);
  const layersPerBlock = indices(unet, /^down_blocks\.0\.resnets\.(\d+)\./).length;
  const blockOut = levels.map((b) => shapeOf(unet, `down_blocks.${b}.resnets.0.conv1.weight`, where)[0]!);
  const down = levels.map((b) =>
    hasPrefix(unet, `down_blocks.${b}.attentions.`) ? 'CrossAttnDownBlock2D' : 'DownBlock2D',
  );
  const up = levels.map((b) => (hasPrefix(unet, `up_blocks.${b}.attentions.`) ? 'CrossAttnUpBlock2D' : 'UpBlock2D'));
  const firstAttention = [...unet.keys()].find((k) => /\.attn2\.to_k\.weight$/.test(k));
  const crossAttentionDim = firstAttention ? shapeOf(unet, firstAttention, where)[1]! : textWidth;
  const projIn = [...unet.keys()].find((k) => k.endsWith('.proj_in.weight'));
  const linearProjection = projIn ? shapeOf(unet, projIn, where).length === 2 : false;
  const depth = levels.map((b) =>
    Math.max(
      1,
      indices(unet, new RegExp(`^down_blocks\\.${b}\\.attentions\\.0\\.transformer_blocks\\.(\\d+)\\.`)).length,
    ),
  );

  const standard = STANDARD[family];
  const text2Width = weights.textEncoder2
    ? shapeOf(weights.textEncoder2, 'text_model.embeddings.token_embedding.weight', where)[1]!
    : null;
  if (
    width !== standard.unetWidth ||
    textWidth !== standard.textWidth ||
    (text2Width !== null && text2Width !== SDXL_TEXT2_WIDTH)
  ) {
    const also = (v: number | null) => (v !== null ? ` and ${v}` : '');
    throw new FieldError(
      'config',
      (name) =>
        `${where}: not a standard ${FAMILY_NAME[family]} architecture (UNet width ${width}, text encoder width ${textWidth}${also(text2Width)}; ` +
        `standard: ${standard.unetWidth}, ${standard.textWidth}${also(text2Width !== null ? SDXL_TEXT2_WIDTH : null)}), so its attention heads are unknown; ` +
        `give its diffusers config folder with ${name} DIR`,
    );
  }

  const unetConfig: Record<string, unknown> = {
    ...base('unet'),
    in_channels: inChannels,
    out_channels: outChannels,
    block_out_channels: blockOut,
    layers_per_block: layersPerBlock,
    down_block_types: down,
    up_block_types: [...up],
    mid_block_type: hasPrefix(unet, 'mid_block.attentions.') ? 'UNetMidBlock2DCrossAttn' : null,
    cross_attention_dim: crossAttentionDim,
    use_linear_projection: linearProjection,
    transformer_layers_per_block: depth.every((d) => d === depth[0]) ? depth[0] : depth,
    // SD 1.x: 8 heads in every block; SD 2.x and SDXL: heads 64 wide (num_head_channels 64 in their LDM yaml)
    attention_head_dim: family === 'stable-diffusion-v1' ? 8 : blockOut.map((c) => c / 64),
  };
  // SDXL's text_time embedding: its input width (pooled + 6 time ids) from add_embedding.linear_1
  const addEmbedding = unet.get('add_embedding.linear_1.weight');
  if (addEmbedding) unetConfig['projection_class_embeddings_input_dim'] = addEmbedding.tensor.shape[1];

  const vaeLevels = indices(vae, /^encoder\.down_blocks\.(\d+)\./);
  const vaeConfig: Record<string, unknown> = {
    ...base('vae'),
    in_channels: shapeOf(vae, 'encoder.conv_in.weight', where)[1],
    out_channels: shapeOf(vae, 'decoder.conv_out.weight', where)[0],
    latent_channels: shapeOf(vae, 'decoder.conv_in.weight', where)[1],
    block_out_channels: vaeLevels.map((i) => shapeOf(vae, `encoder.down_blocks.${i}.resnets.0.conv1.weight`, where)[0]),
    layers_per_block: indices(vae, /^encoder\.down_blocks\.0\.resnets\.(\d+)\./).length,
    down_block_types: vaeLevels.map(() => 'DownEncoderBlock2D'),
    up_block_types: vaeLevels.map(() => 'UpDecoderBlock2D'),
    mid_block_add_attention: hasPrefix(vae, 'decoder.mid_block.attentions.'),
  };

  const textConfig = inferTextConfig(base('text_encoder'), text, where, layout === 'open-clip');
  // SDXL conditions on both encoders' penultimate layers but pools the second's last: no layer is dropped.
  const text2Config = weights.textEncoder2
    ? inferTextConfig(base('text_encoder_2'), weights.textEncoder2, where, false)
    : null;
  return { unet: unetConfig, vae: vaeConfig, textEncoder: textConfig, textEncoder2: text2Config };
}

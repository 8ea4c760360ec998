/**
 * Single-file Stable Diffusion checkpoints (the original CompVis / Stability "LDM" layout that A1111, ComfyUI
 * and model sites use) read as diffusers components: every key is renamed to its diffusers name, with
 * diffusers' own conversion code as the reference for every rule (`loaders/single_file_utils.py`:
 * `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`,
 * `convert_open_clip_checkpoint`). Nothing is copied: a converted key is a view of the file's tensor — the
 * same bytes under another name, another shape (a 1x1 convolution read as a linear layer), or a contiguous row
 * range (q, k and v out of OpenCLIP's stacked `in_proj_weight`).
 *
 *   model.diffusion_model.*          → unet          (input_blocks / middle_block / output_blocks → down/mid/up)
 *   first_stage_model.*              → vae           (encoder.down.N.block.M → encoder.down_blocks.N.resnets.M ...)
 *   cond_stage_model.transformer.*   → text_encoder  (SD 1.x: transformers' CLIPTextModel, keys as they are)
 *   cond_stage_model.model.*         → text_encoder  (SD 2.x: OpenCLIP ViT-H, renamed and split)
 *   conditioner.embedders.0.transformer.* → text_encoder   (SDXL: CLIP ViT-L, transformers' layout)
 *   conditioner.embedders.1.model.*       → text_encoder_2 (SDXL: OpenCLIP ViT-bigG, renamed and split; its
 *                                           `text_projection` [width, proj] read transposed, as diffusers does)
 *
 * Keys a checkpoint carries besides the weights are skipped as diffusers skips them: LDM's diffusion-schedule
 * buffers (`betas`, `alphas_cumprod`, ...) and the EMA copy (`model_ema.*`; diffusers converts the non-EMA
 * weights unless asked otherwise). Any other key is an error naming it.
 */
import { UserError } from '../../errors.js';
import { listKeys } from '../messages.js';
import type { SafetensorsFile, TensorInfo } from '../safetensors.js';
import type { WeightEntry } from '../weight-store.js';

export const UNET_PREFIX = 'model.diffusion_model.';
export const VAE_PREFIX = 'first_stage_model.';
export const CLIP_PREFIX = 'cond_stage_model.transformer.';
export const OPEN_CLIP_PREFIX = 'cond_stage_model.model.';
export const SDXL_CLIP_PREFIX = 'conditioner.embedders.0.transformer.';
export const SDXL_OPEN_CLIP_PREFIX = 'conditioner.embedders.1.model.';

/** SD 1.x files carry OpenAI's CLIP text encoder (transformers layout), SD 2.x OpenCLIP's, SDXL both. */
export type TextEncoderLayout = 'clip' | 'open-clip' | 'sdxl';

/** Refiner checkpoints: what they are and why they are refused, in one line. */
export const REFINER_REFUSAL =
  "is an SDXL refiner (image-to-image on the base model's latents, conditioned on an aesthetic score); s2i runs text-to-image models such as SDXL base";

/** The buffers of LDM's `DDPM` module: the training schedule, not weights (diffusers ignores them too). */
const SCHEDULE_BUFFERS = new Set([
  'betas',
  'alphas_cumprod',
  'alphas_cumprod_prev',
  'sqrt_alphas_cumprod',
  'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod',
  'sqrt_recip_alphas_cumprod',
  'sqrt_recipm1_alphas_cumprod',
  'posterior_variance',
  'posterior_log_variance_clipped',
  'posterior_mean_coef1',
  'posterior_mean_coef2',
  'logvar',
]);

export interface ConvertedCheckpoint {
  textLayout: TextEncoderLayout;
  /** diffusers key → the file's tensor (or a view of it), per component. */
  unet: Map<string, WeightEntry>;
  vae: Map<string, WeightEntry>;
  textEncoder: Map<string, WeightEntry>;
  /** SDXL's second text encoder (OpenCLIP ViT-bigG with its projection); null for SD 1.x / 2.x. */
  textEncoder2: Map<string, WeightEntry> | null;
  /** Keys of the file skipped on purpose (schedule buffers, EMA weights). */
  skipped: string[];
}

/** The same bytes under another shape (element count unchanged). */
function reshaped(t: TensorInfo, shape: readonly number[]): TensorInfo {
  return { ...t, shape: Object.freeze([...shape]) };
}

/** Rows [from, to) of a tensor (its first axis): a contiguous byte range, since tensors are row-major. */
function rows(t: TensorInfo, from: number, to: number): TensorInfo {
  const rowBytes = t.byteLength / t.shape[0]!;
  return {
    ...t,
    shape: Object.freeze([to - from, ...t.shape.slice(1)]),
    byteOffset: t.byteOffset + from * rowBytes,
    byteLength: (to - from) * rowBytes,
  };
}

/** A [C, C, 1, 1] (or [C, C, 1]) tensor read as [C, C], as diffusers' `[:, :, 0, 0]`; others unchanged. */
function squeezed(t: TensorInfo): TensorInfo {
  if (t.shape.length > 2 && t.shape.slice(2).every((d) => d === 1)) return reshaped(t, t.shape.slice(0, 2));
  return t;
}

/** diffusers' `renew_resnet_paths`: LDM ResBlock names → ResnetBlock2D names. */
const RESNET_RENAMES: readonly [string, string][] = [
  ['in_layers.0.', 'norm1.'],
  ['in_layers.2.', 'conv1.'],
  ['out_layers.0.', 'norm2.'],
  ['out_layers.3.', 'conv2.'],
  ['emb_layers.1.', 'time_emb_proj.'],
  ['skip_connection.', 'conv_shortcut.'],
];

function resnet(rest: string): string | null {
  for (const [from, to] of RESNET_RENAMES) if (rest.startsWith(from)) return to + rest.slice(from.length);
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// UNet (convert_ldm_unet_checkpoint)

/**
 * Layers per block from the input blocks: input_blocks.0 is conv_in, then each level has `layers` resnets and
 * (but the last) a downsampler `input_blocks.N.0.op`, so the first `op` sits at index layers + 1.
 */
function unetLayersPerBlock(keys: readonly string[]): number {
  let firstOp = Infinity;
  let maxIndex = 0;
  for (const k of keys) {
    const m = /^input_blocks\.(\d+)\.(\d+)\.(op\.)?/.exec(k);
    if (!m) continue;
    const i = Number(m[1]);
    maxIndex = Math.max(maxIndex, i);
    if (m[3] && m[2] === '0') firstOp = Math.min(firstOp, i);
  }
  return Number.isFinite(firstOp) ? firstOp - 1 : maxIndex;
}

/** One UNet key (without the prefix) → its diffusers key and tensor view, or null when it is not one we know. */
function unetKey(key: string, t: TensorInfo, layers: number): [string, TensorInfo] | null {
  let m: RegExpExecArray | null;
  if ((m = /^time_embed\.([02])\.(weight|bias)$/.exec(key)))
    return [`time_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`, t];
  if ((m = /^input_blocks\.0\.0\.(weight|bias)$/.exec(key))) return [`conv_in.${m[1]}`, t];
  // SDXL's text_time embedding (LDM's label_emb.0: Linear, SiLU, Linear)
  if ((m = /^label_emb\.0\.([02])\.(weight|bias)$/.exec(key)))
    return [`add_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`, t];
  if ((m = /^out\.([02])\.(weight|bias)$/.exec(key)))
    return [`${m[1] === '0' ? 'conv_norm_out' : 'conv_out'}.${m[2]}`, t];

  const attention = (prefix: string, rest: string): [string, TensorInfo] => {
    // diffusers: attention projections stored as 1x1 convolutions become linear weights
    const isProjection = /\.to_(q|k|v|out\.0)\.weight$/.test(rest);
    return [`${prefix}.${rest}`, isProjection ? squeezed(t) : t];
  };

  if ((m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(key))) {
    const i = Number(m[1]);
    const block = Math.floor((i - 1) / (layers + 1));
    const layer = (i - 1) % (layers + 1);
    const [sub, rest] = [m[2], m[3]!];
    if (i === 0) return null;
    if (sub === '0' && /^op\.(weight|bias)$/.test(rest))
      return [`down_blocks.${block}.downsamplers.0.conv.${rest.slice(3)}`, t];
    if (sub === '0') {
      const r = resnet(rest);
      return r ? [`down_blocks.${block}.resnets.${layer}.${r}`, t] : null;
    }
    if (sub === '1') return attention(`down_blocks.${block}.attentions.${layer}`, rest);
    return null;
  }
  if ((m = /^middle_block\.([012])\.(.+)$/.exec(key))) {
    const rest = m[2]!;
    if (m[1] === '1') return attention('mid_block.attentions.0', rest);
    const r = resnet(rest);
    return r ? [`mid_block.resnets.${m[1] === '0' ? 0 : 1}.${r}`, t] : null;
  }
  if ((m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(key))) {
    const i = Number(m[1]);
    const block = Math.floor(i / (layers + 1));
    const layer = i % (layers + 1);
    const [sub, rest] = [m[2], m[3]!];
    // The upsampler is the block's last module: index 1 without attention, 2 with.
    if ((sub === '1' || sub === '2') && /^conv\.(weight|bias)$/.test(rest))
      return [`up_blocks.${block}.upsamplers.0.${rest}`, t];
    if (sub === '0') {
      const r = resnet(rest);
      return r ? [`up_blocks.${block}.resnets.${layer}.${r}`, t] : null;
    }
    if (sub === '1') return attention(`up_blocks.${block}.attentions.${layer}`, rest);
    return null;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// VAE (convert_ldm_vae_checkpoint)

/** diffusers' `renew_vae_attention_paths` (q/k/v/proj_out, norm → group_norm), plus names already diffusers'. */
const VAE_ATTENTION_RENAMES: Readonly<Record<string, string>> = {
  norm: 'group_norm',
  q: 'to_q',
  k: 'to_k',
  v: 'to_v',
  proj_out: 'to_out.0',
  // Written by diffusers' own diffusers→LDM script (as the oracle's single file was), which leaves these as they are.
  to_q: 'to_q',
  to_k: 'to_k',
  to_v: 'to_v',
  'to_out.0': 'to_out.0',
  group_norm: 'group_norm',
};

/**
 * The decoder's `up.K` is resolution level K (0 = full size) while diffusers' `up_blocks.I` runs from the
 * smallest size up, so I is K's rank from the top: n-1-K for the usual levels 0..n-1. By rank, not n-1-K,
 * because diffusers' own diffusers→LDM script numbers a 2-level decoder's levels 2 and 3 (3-I, written for 4).
 */
function upLevelRanks(vaeKeys: readonly string[]): Map<number, number> {
  const levels = new Set<number>();
  for (const k of vaeKeys) {
    const m = /^decoder\.up\.(\d+)\./.exec(k);
    if (m) levels.add(Number(m[1]));
  }
  return new Map([...levels].sort((a, b) => b - a).map((k, i) => [k, i]));
}

function vaeKey(key: string, t: TensorInfo, upRank: ReadonlyMap<number, number>): [string, TensorInfo] | null {
  let m: RegExpExecArray | null;
  if (/^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.test(key)) return [key, t];
  if ((m = /^(encoder|decoder)\.norm_out\.(weight|bias)$/.exec(key))) return [`${m[1]}.conv_norm_out.${m[2]}`, t];
  if (/^(post_)?quant_conv\.(weight|bias)$/.test(key)) return [key, t];
  const res = (rest: string) => (rest.startsWith('nin_shortcut.') ? `conv_shortcut.${rest.slice(13)}` : rest);
  const isResnetPart = (rest: string) => /^(norm1|norm2|conv1|conv2|nin_shortcut)\.(weight|bias)$/.test(rest);
  if ((m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key)) && isResnetPart(m[3]!))
    return [`encoder.down_blocks.${m[1]}.resnets.${m[2]}.${res(m[3]!)}`, t];
  if ((m = /^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(key)))
    return [`encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`, t];
  if ((m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key)) && isResnetPart(m[3]!))
    return [`decoder.up_blocks.${upRank.get(Number(m[1]))}.resnets.${m[2]}.${res(m[3]!)}`, t];
  if ((m = /^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$/.exec(key)))
    return [`decoder.up_blocks.${upRank.get(Number(m[1]))}.upsamplers.0.conv.${m[2]}`, t];
  if ((m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(key)) && isResnetPart(m[3]!))
    return [`${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${res(m[3]!)}`, t];
  if ((m = /^(encoder|decoder)\.mid\.attn_1\.(.+)\.(weight|bias)$/.exec(key))) {
    if (!Object.hasOwn(VAE_ATTENTION_RENAMES, m[2]!)) return null;
    const name = VAE_ATTENTION_RENAMES[m[2]!]!;
    // conv_attn_to_linear: the 1x1 convolutions of the projections become linear weights
    return [`${m[1]}.mid_block.attentions.0.${name}.${m[3]}`, name === 'group_norm' ? t : squeezed(t)];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// text encoders (convert_ldm_clip_checkpoint, convert_open_clip_checkpoint)

function clipKey(key: string, t: TensorInfo): [string, TensorInfo] {
  // transformers before 4.19 had no `text_model.` level; checkpoints from then still circulate.
  return [key.startsWith('text_model.') ? key : `text_model.${key}`, t];
}

/** diffusers' `textenc_transformer_conversion_lst`, applied to one resblock's parameter path. */
const OPEN_CLIP_BLOCK_RENAMES: readonly [RegExp, string][] = [
  [/^ln_1\./, 'layer_norm1.'],
  [/^ln_2\./, 'layer_norm2.'],
  [/^mlp\.c_fc\./, 'mlp.fc1.'],
  [/^mlp\.c_proj\./, 'mlp.fc2.'],
  [/^attn\.out_proj\./, 'self_attn.out_proj.'],
];

/** One OpenCLIP key → zero or more diffusers keys (in_proj splits into three), or null when unknown. */
function openClipKeys(key: string, t: TensorInfo): [string, TensorInfo][] | null {
  switch (key) {
    case 'positional_embedding':
      return [['text_model.embeddings.position_embedding.weight', t]];
    case 'token_embedding.weight':
      return [['text_model.embeddings.token_embedding.weight', t]];
    case 'ln_final.weight':
    case 'ln_final.bias':
      return [[`text_model.final_layer_norm.${key.slice(9)}`, t]];
    // CLIPTextModel has no projection (SD 2.x conditions on the hidden states) and no logit scale.
    case 'text_projection':
    case 'logit_scale':
      return [];
  }
  const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(key);
  if (!m) return null;
  const layer = `text_model.encoder.layers.${m[1]}`;
  const rest = m[2]!;
  const split = /^attn\.in_proj_(weight|bias)$/.exec(rest);
  if (split) {
    const d = t.shape[0]! / 3;
    if (!Number.isInteger(d) || d === 0) return null;
    const kind = split[1];
    return (['q', 'k', 'v'] as const).map((p, i) => [
      `${layer}.self_attn.${p}_proj.${kind}`,
      rows(t, i * d, (i + 1) * d),
    ]);
  }
  for (const [re, to] of OPEN_CLIP_BLOCK_RENAMES) if (re.test(rest)) return [[`${layer}.${rest.replace(re, to)}`, t]];
  return null;
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Read `file`'s keys as diffusers components. Throws a one-line UserError when the file is not an SD 1.x / 2.x
 * single-file checkpoint, or holds keys this conversion does not know (naming them).
 */
export function convertLdmCheckpoint(file: SafetensorsFile): ConvertedCheckpoint {
  const infos = file.infos();
  const names = infos.map((t) => t.name);
  const has = (prefix: string) => names.some((n) => n.startsWith(prefix));
  // SDXL refiner: OpenCLIP ViT-bigG alone, as embedder 0
  if (has('conditioner.embedders.0.model.')) throw new UserError(`${file.path}: ${REFINER_REFUSAL}`);
  const xl = has('conditioner.embedders.');
  if (xl && !(has(SDXL_CLIP_PREFIX) && has(SDXL_OPEN_CLIP_PREFIX)))
    throw new UserError(
      `${file.path}: has conditioner.embedders.* keys but not SDXL base's two text encoders (${SDXL_CLIP_PREFIX}*, ${SDXL_OPEN_CLIP_PREFIX}*)`,
    );
  if (!has(UNET_PREFIX)) {
    const diffusersComponent = names.some((n) => /^(conv_in|text_model|encoder|decoder)\./.test(n));
    throw new UserError(
      diffusersComponent
        ? `${file.path}: holds one diffusers component's weights, not a whole model; give the model folder (model_index.json, unet/, vae/, ...)`
        : `${file.path}: not a single-file Stable Diffusion checkpoint (no ${UNET_PREFIX}* keys)`,
    );
  }
  const textLayout: TextEncoderLayout | null = xl
    ? 'sdxl'
    : has(OPEN_CLIP_PREFIX)
      ? 'open-clip'
      : has(CLIP_PREFIX)
        ? 'clip'
        : null;
  if (!textLayout) {
    throw new UserError(
      `${file.path}: has no text encoder (neither ${CLIP_PREFIX}* for SD 1.x nor ${OPEN_CLIP_PREFIX}* for SD 2.x)`,
    );
  }
  if (!has(VAE_PREFIX)) throw new UserError(`${file.path}: has no VAE (no ${VAE_PREFIX}* keys)`);

  const strip = (prefix: string) =>
    infos.filter((t) => t.name.startsWith(prefix)).map((t) => [t.name.slice(prefix.length), t] as const);
  const unetKeys = strip(UNET_PREFIX);
  const vaeKeys = strip(VAE_PREFIX);
  const layers = unetLayersPerBlock(unetKeys.map(([k]) => k));
  const upRank = upLevelRanks(vaeKeys.map(([k]) => k));

  const out: ConvertedCheckpoint = {
    textLayout,
    unet: new Map(),
    vae: new Map(),
    textEncoder: new Map(),
    textEncoder2: xl ? new Map() : null,
    skipped: [],
  };
  const unknown: string[] = [];
  const put = (target: Map<string, WeightEntry>, source: string, converted: [string, TensorInfo][] | null) => {
    if (converted === null) {
      unknown.push(source);
      return;
    }
    for (const [key, tensor] of converted) {
      if (target.has(key))
        throw new UserError(`${file.path}: two tensors convert to the same key '${key}' (one is '${source}')`);
      target.set(key, { file, tensor });
    }
  };

  for (const t of infos) {
    const n = t.name;
    if (n.startsWith(UNET_PREFIX)) {
      const r = unetKey(n.slice(UNET_PREFIX.length), t, layers);
      put(out.unet, n, r && [r]);
    } else if (n.startsWith(VAE_PREFIX)) {
      const r = vaeKey(n.slice(VAE_PREFIX.length), t, upRank);
      put(out.vae, n, r && [r]);
    } else if (textLayout === 'clip' && n.startsWith(CLIP_PREFIX)) {
      put(out.textEncoder, n, [clipKey(n.slice(CLIP_PREFIX.length), t)]);
    } else if (textLayout === 'open-clip' && n.startsWith(OPEN_CLIP_PREFIX)) {
      put(out.textEncoder, n, openClipKeys(n.slice(OPEN_CLIP_PREFIX.length), t));
    } else if (xl && n.startsWith(SDXL_CLIP_PREFIX)) {
      put(out.textEncoder, n, [clipKey(n.slice(SDXL_CLIP_PREFIX.length), t)]);
    } else if (xl && n === `${SDXL_OPEN_CLIP_PREFIX}text_projection`) {
      // OpenCLIP multiplies by it (x @ text_projection); transformers' Linear holds its transpose
      if (t.shape.length !== 2) unknown.push(n);
      else out.textEncoder2!.set('text_projection.weight', { file, tensor: t, transposed: true });
    } else if (xl && n === `${SDXL_OPEN_CLIP_PREFIX}logit_scale`) {
      out.skipped.push(n); // CLIP's contrastive temperature: not used to generate
    } else if (xl && n.startsWith(SDXL_OPEN_CLIP_PREFIX)) {
      put(out.textEncoder2!, n, openClipKeys(n.slice(SDXL_OPEN_CLIP_PREFIX.length), t));
    } else if (SCHEDULE_BUFFERS.has(n) || n.startsWith('model_ema.')) {
      out.skipped.push(n);
    } else {
      unknown.push(n);
    }
  }
  if (unknown.length > 0) {
    throw new UserError(
      `${file.path}: ${unknown.length} key${unknown.length === 1 ? '' : 's'} that no SD 1.x/2.x/XL conversion rule covers (${listKeys(unknown)})`,
    );
  }
  return out;
}

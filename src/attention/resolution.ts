/**
 * The query resolution of the cross-attention maps that methods read and pictures show, chosen in this one place.
 * The rule: 16x16 when the UNet has cross-attention at that size (Attend-and-Excite's attn_res on SD-1.5 at 512 px:
 * sixteen cells across the image, an object a few cells wide), else latent/4 = image/32 (diffusers' own rule for
 * other image sizes: 24x24 for SD at 768 px), else the UNet's middle cross-attention resolution. On this project's
 * models: the pixel-space shapes model (32x32, cross-attention only at 8x8) gets 8x8 (= latent/4); the latent one
 * (16x16 latents, cross-attention at 16, 8 and 4) gets 16x16, where latent/4 alone would give 4x4 — a map of one
 * or two cells per object. test/unit/attention-resolution.test.ts checks all three.
 */
import { FieldError, UserError } from '../errors.js';
import type { UNetConfig } from '../models/unet.js';

type Resolution = readonly [number, number];

/**
 * Query resolutions [h, w] at which a UNet has cross-attention layers for latents of size latentH x latentW
 * (each down level halves the grid: ceil with downsample_padding 1, floor with 0). Ordered from fine to coarse.
 */
export function crossAttentionResolutions(
  cfg: Pick<UNetConfig, 'downBlockTypes' | 'upBlockTypes' | 'midBlockType' | 'downsamplePadding'>,
  latentH: number,
  latentW: number,
): [number, number][] {
  const levels: [number, number][] = [];
  let h = latentH,
    w = latentW;
  const n = cfg.downBlockTypes.length;
  for (let i = 0; i < n; i++) {
    levels.push([h, w]);
    if (i < n - 1) {
      h = cfg.downsamplePadding === 0 ? Math.floor(h / 2) : Math.ceil(h / 2);
      w = cfg.downsamplePadding === 0 ? Math.floor(w / 2) : Math.ceil(w / 2);
    }
  }
  const out: [number, number][] = [];
  const isCross = (t: string | undefined | null) => typeof t === 'string' && t.includes('CrossAttn');
  for (let i = 0; i < n; i++) {
    const hasCross =
      isCross(cfg.downBlockTypes[i]) ||
      isCross(cfg.upBlockTypes[n - 1 - i]) ||
      (i === n - 1 && isCross(cfg.midBlockType));
    if (hasCross) out.push(levels[i]!);
  }
  return out;
}

/**
 * The resolution to record maps at for latents of latentH x latentW. `available` is the UNet's
 * `crossAttentionResolutions`, or null where the caller cannot see the UNet (a method built without a model: the
 * SD ratio latent/4 then). A `given` resolution must be one the UNet has.
 */
export function chooseAttentionResolution(
  available: readonly Resolution[] | null,
  latentH: number,
  latentW: number,
  given?: Resolution,
): [number, number] {
  const sdRatio: [number, number] = [Math.ceil(latentH / 4), Math.ceil(latentW / 4)];
  if (available === null) return given ? [given[0], given[1]] : sdRatio;
  const has = (r: Resolution) => available.some(([h, w]) => h === r[0] && w === r[1]);
  if (given) {
    if (!has(given)) {
      const list = available.map(([h, w]) => `${h}x${w}`).join(', ') || 'none';
      throw new FieldError(
        'attnRes',
        (name) =>
          `${name} ${given[0]}x${given[1]}: the UNet has no cross-attention at that size for this image (it has: ${list})`,
      );
    }
    return [given[0], given[1]];
  }
  for (const c of [[16, 16], sdRatio] as const) if (has(c)) return [c[0], c[1]];
  if (available.length > 0) return [...available[Math.floor(available.length / 2)]!];
  throw new UserError('the UNet has no cross-attention layers; attention methods and maps need them');
}

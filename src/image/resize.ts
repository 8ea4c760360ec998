/**
 * Resizing with PyTorch's conventions for `F.interpolate` (half-pixel centres, no antialiasing):
 * - nearest: `mode='nearest-exact'`, source index `floor((dst + 0.5) * in / out)`; for integer upscales identical
 *   to `mode='nearest'`.
 * - bilinear: `mode='bilinear', align_corners=False`, source coordinate `(dst + 0.5) * in / out - 0.5` clamped
 *   at the edges.
 * Works on any number of interleaved channels (`resizeChannels`), on RGB images, and on one-channel float maps such as
 * attention maps (`resizeMap`).
 */
import { checkSize, type RgbImage } from './image.js';

export type ResizeMode = 'nearest' | 'bilinear';

type NumArray = Uint8Array | Float32Array;

/** Resizes interleaved data with `channels` channels; output has the input's array type (bytes are rounded). */
export function resizeChannels<T extends NumArray>(
  src: T,
  width: number,
  height: number,
  channels: number,
  outWidth: number,
  outHeight: number,
  mode: ResizeMode,
): T {
  checkSize(width, height, 'resize');
  checkSize(outWidth, outHeight, 'resize');
  if (src.length !== width * height * channels) {
    throw new Error(`resize: ${src.length} values is not ${width}x${height}x${channels}`);
  }
  const isBytes = src instanceof Uint8Array;
  const out = (
    isBytes ? new Uint8Array(outWidth * outHeight * channels) : new Float32Array(outWidth * outHeight * channels)
  ) as T;
  const sx = width / outWidth,
    sy = height / outHeight;
  if (mode === 'nearest') {
    const xs = new Int32Array(outWidth);
    for (let x = 0; x < outWidth; x++) xs[x] = Math.min(width - 1, Math.floor((x + 0.5) * sx));
    for (let y = 0; y < outHeight; y++) {
      const yy = Math.min(height - 1, Math.floor((y + 0.5) * sy));
      for (let x = 0; x < outWidth; x++) {
        const s = (yy * width + xs[x]!) * channels,
          d = (y * outWidth + x) * channels;
        for (let c = 0; c < channels; c++) out[d + c] = src[s + c]!;
      }
    }
    return out;
  }
  // bilinear, align_corners=False
  const x0s = new Int32Array(outWidth),
    x1s = new Int32Array(outWidth),
    fxs = new Float64Array(outWidth);
  for (let x = 0; x < outWidth; x++) {
    const f = Math.max(0, (x + 0.5) * sx - 0.5);
    const x0 = Math.min(width - 1, Math.floor(f));
    x0s[x] = x0;
    x1s[x] = Math.min(width - 1, x0 + 1);
    fxs[x] = f - x0;
  }
  for (let y = 0; y < outHeight; y++) {
    const fy = Math.max(0, (y + 0.5) * sy - 0.5);
    const y0 = Math.min(height - 1, Math.floor(fy));
    const y1 = Math.min(height - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < outWidth; x++) {
      const wx = fxs[x]!;
      const a = (y0 * width + x0s[x]!) * channels,
        b = (y0 * width + x1s[x]!) * channels;
      const c = (y1 * width + x0s[x]!) * channels,
        e = (y1 * width + x1s[x]!) * channels;
      const d = (y * outWidth + x) * channels;
      for (let ch = 0; ch < channels; ch++) {
        const top = src[a + ch]! + (src[b + ch]! - src[a + ch]!) * wx;
        const bot = src[c + ch]! + (src[e + ch]! - src[c + ch]!) * wx;
        const v = top + (bot - top) * wy;
        out[d + ch] = isBytes ? Math.round(v) : v;
      }
    }
  }
  return out;
}

/** Resizes an RGB image (nearest or bilinear, see the module comment). */
export function resizeImage(img: RgbImage, width: number, height: number, mode: ResizeMode = 'bilinear'): RgbImage {
  return { data: resizeChannels(img.data, img.width, img.height, 3, width, height, mode), width, height };
}

export const resizeNearest = (img: RgbImage, width: number, height: number): RgbImage =>
  resizeImage(img, width, height, 'nearest');
export const resizeBilinear = (img: RgbImage, width: number, height: number): RgbImage =>
  resizeImage(img, width, height, 'bilinear');

/** Resizes a one-channel float map (row-major, `width * height` values), e.g. a 16x16 attention map to 256x256. */
export function resizeMap(
  map: Float32Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  mode: ResizeMode = 'bilinear',
): Float32Array {
  return resizeChannels(map, width, height, 1, outWidth, outHeight, mode);
}

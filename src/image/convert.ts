/** Conversions between float tensors (channel-first) and 8-bit RGB images. */
import type { Tensor } from '../tensor.js';
import type { RgbImage } from './image.js';

/**
 * Value range of a float image:
 * - `'signed'`: [-1, 1], what diffusers' VAE decoder outputs and what the shapes-world training data uses;
 *   converted as `round(clamp(x / 2 + 0.5, 0, 1) * 255)`, exactly diffusers' `(image / 2 + 0.5).clamp(0, 1)` followed
 *   by `numpy_to_pil`'s `(x * 255).round()` (numpy rounds
 *   exact halves to even, `Math.round` up; they differ only on exact halves).
 * - `'unit'`: [0, 1]; converted as `round(clamp(x, 0, 1) * 255)`.
 */
export type FloatRange = 'signed' | 'unit';

export interface FloatToRgbOptions {
  /** Default `'signed'` ([-1, 1]). */
  range?: FloatRange;
  /** For a batched tensor [B, 3, H, W]: which image (default 0). */
  index?: number;
}

/**
 * A [3, H, W] float tensor (or one image of a [B, 3, H, W] batch) to 8-bit RGB. Default range [-1, 1] (see
 * `FloatRange`); NaN becomes 0.
 */
export function floatToRgb8(t: Pick<Tensor, 'data' | 'shape'>, options: FloatToRgbOptions = {}): RgbImage {
  const { shape } = t;
  let c: number,
    h: number,
    w: number,
    b = 1;
  if (shape.length === 3) [c, h, w] = shape as [number, number, number];
  else if (shape.length === 4) [b, c, h, w] = shape as [number, number, number, number];
  else throw new Error(`floatToRgb8: expected a [3,H,W] or [B,3,H,W] tensor, got [${shape.join(',')}]`);
  if (c !== 3) throw new Error(`floatToRgb8: expected 3 channels, got shape [${shape.join(',')}]`);
  const index = options.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index >= b)
    throw new Error(`floatToRgb8: index ${index} is outside batch of ${b}`);
  const signed = (options.range ?? 'signed') === 'signed';
  const plane = h * w;
  const base = index * 3 * plane;
  const data = new Uint8Array(plane * 3);
  for (let ch = 0; ch < 3; ch++) {
    const off = base + ch * plane;
    for (let i = 0; i < plane; i++) {
      let v = t.data[off + i]!;
      if (signed) v = v / 2 + 0.5;
      v = v > 0 ? (v < 1 ? v : 1) : 0; // NaN -> 0
      data[i * 3 + ch] = Math.round(v * 255);
    }
  }
  return { data, width: w, height: h };
}

/**
 * 8-bit RGB to a [3, H, W] float array in the given range (default [-1, 1]: `2 * x / 255 - 1`), written into `out` at
 * `offset` when given (for filling a batch).
 */
export function rgb8ToFloat(img: RgbImage, range: FloatRange = 'signed', out?: Float32Array, offset = 0): Float32Array {
  const plane = img.width * img.height;
  const dst = out ?? new Float32Array(plane * 3);
  if (dst.length < offset + plane * 3) throw new Error('rgb8ToFloat: output array too small');
  const signed = range === 'signed';
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const v = img.data[i * 3 + ch]!;
      dst[offset + ch * plane + i] = signed ? (v * 2) / 255 - 1 : v / 255;
    }
  }
  return dst;
}

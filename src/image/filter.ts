/** Small image filters (used to simulate degradations when testing the shapes scorer). */
import type { RgbImage } from './image.js';

/** 1-D Gaussian kernel with radius ceil(3 sigma), normalised to sum 1. */
export function gaussianKernel(sigma: number): Float64Array {
  if (!(sigma > 0)) return Float64Array.of(1);
  const r = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float64Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) s += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i]! /= s;
  return k;
}

/** Separable Gaussian blur of an RGB image with edge pixels replicated (sigma in pixels; sigma <= 0 copies). */
export function gaussianBlur(img: RgbImage, sigma: number): RgbImage {
  const { width: w, height: h } = img;
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const tmp = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let i = -r; i <= r; i++) s += k[i + r]! * img.data[(y * w + Math.min(w - 1, Math.max(0, x + i))) * 3 + c]!;
        tmp[(y * w + x) * 3 + c] = s;
      }
    }
  }
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let i = -r; i <= r; i++) s += k[i + r]! * tmp[(Math.min(h - 1, Math.max(0, y + i)) * w + x) * 3 + c]!;
        data[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(s)));
      }
    }
  }
  return { data, width: w, height: h };
}

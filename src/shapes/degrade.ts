/**
 * Degradations that imitate what a small diffusion model's samples look like (soft edges, grain, colour drift,
 * tinted backgrounds). Used to measure how robust the scorer is; deterministic given the `Rng`. Blur is
 * `gaussianBlur` in `src/image/filter.ts`.
 */
import type { RgbImage } from '../image/image.js';
import type { Rng } from './rng.js';

const clampByte = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Independent Gaussian noise with standard deviation `sigma` (0–255 units) on every channel of every pixel. */
export function addNoise(img: RgbImage, sigma: number, rng: Rng): RgbImage {
  const data = new Uint8Array(img.data.length);
  for (let i = 0; i < data.length; i++) data[i] = clampByte(img.data[i]! + sigma * rng.normal());
  return { data, width: img.width, height: img.height };
}

export interface ColourShiftOptions {
  /** Largest per-channel offset, 0–255 units (default 20). */
  maxOffset?: number;
  /** Range of the per-image brightness gain (default [0.85, 1.05]). */
  gain?: readonly [number, number];
}

/**
 * A slight global colour drift: one random gain for the whole image and a random offset per channel, the same for
 * every pixel (so the background comes out tinted as well).
 */
export function colourShift(img: RgbImage, rng: Rng, options: ColourShiftOptions = {}): RgbImage {
  const m = options.maxOffset ?? 20;
  const [g0, g1] = options.gain ?? [0.85, 1.05];
  const gain = g0 + (g1 - g0) * rng.float();
  const off = [0, 1, 2].map(() => (2 * rng.float() - 1) * m);
  const data = new Uint8Array(img.data.length);
  for (let i = 0; i < data.length; i++) data[i] = clampByte(img.data[i]! * gain + off[i % 3]!);
  return { data, width: img.width, height: img.height };
}

export interface ObjectDriftOptions {
  /** Largest per-channel offset per object colour, 0–255 units (default 25). */
  maxOffset?: number;
  /** Range of the per-colour gain (default [0.7, 1.0]: colours drift dark, as in undertrained models). */
  gain?: readonly [number, number];
}

/**
 * Drift of the object colours only (the background stays as it is): every distinct non-white colour of the image
 * gets its own random gain and per-channel offsets. Meant for crisp renders, before blur or noise.
 */
export function driftObjectColours(img: RgbImage, rng: Rng, options: ObjectDriftOptions = {}): RgbImage {
  const m = options.maxOffset ?? 25;
  const [g0, g1] = options.gain ?? [0.7, 1.0];
  const transforms = new Map<number, number[]>();
  const data = new Uint8Array(img.data.length);
  for (let i = 0; i < data.length; i += 3) {
    const r = img.data[i]!,
      g = img.data[i + 1]!,
      b = img.data[i + 2]!;
    if (r === 255 && g === 255 && b === 255) {
      data[i] = data[i + 1] = data[i + 2] = 255;
      continue;
    }
    const key = (r << 16) | (g << 8) | b;
    let t = transforms.get(key);
    if (!t) {
      const gain = g0 + (g1 - g0) * rng.float();
      t = [gain, (2 * rng.float() - 1) * m, (2 * rng.float() - 1) * m, (2 * rng.float() - 1) * m];
      transforms.set(key, t);
    }
    data[i] = clampByte(r * t[0]! + t[1]!);
    data[i + 1] = clampByte(g * t[0]! + t[2]!);
    data[i + 2] = clampByte(b * t[0]! + t[3]!);
  }
  return { data, width: img.width, height: img.height };
}

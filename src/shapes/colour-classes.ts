/**
 * Colour classes for the shapes-world scorer (steps 1 and 2 of detect.ts's comment): CIELAB, the background
 * estimate and white balance, the nearest palette class of each pixel, the noise estimate and the majority filter.
 */
import { COLOURS, PALETTE, type Rgb } from './world.js';

const SRGB_TO_LINEAR = new Float64Array(256);
for (let i = 0; i < 256; i++) {
  const c = i / 255;
  SRGB_TO_LINEAR[i] = c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

function labF(t: number): number {
  return t > 216 / 24389 ? Math.cbrt(t) : ((24389 / 27) * t + 16) / 116;
}

/** CIELAB (D65) of an 8-bit sRGB colour. */
export function rgbToLab(r: number, g: number, b: number): [number, number, number] {
  const R = SRGB_TO_LINEAR[r]!,
    G = SRGB_TO_LINEAR[g]!,
    B = SRGB_TO_LINEAR[b]!;
  const x = (0.4124564 * R + 0.3575761 * G + 0.1804375 * B) / 0.95047;
  const y = 0.2126729 * R + 0.7151522 * G + 0.072175 * B;
  const z = (0.0193339 * R + 0.119192 * G + 0.9503041 * B) / 1.08883;
  const fx = labF(x),
    fy = labF(y),
    fz = labF(z);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

const PALETTE_LAB = COLOURS.map((c) => rgbToLab(...PALETTE[c]));

/** Class ids in the label map: -1 background, 0..5 palette colours (COLOURS order), OTHER dark/grey. */
export const BG = -1;
export const OTHER = COLOURS.length;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/**
 * Background colour estimate: per-channel median of the border pixels (sRGB). A background is light and nearly
 * neutral; if the border median is not (objects cover much of the border), white is assumed.
 */
function estimateBackground(rgb: Uint8Array, w: number, h: number): Rgb {
  const rs: number[] = [],
    gs: number[] = [],
    bs: number[] = [];
  const add = (x: number, y: number): void => {
    const i = (y * w + x) * 3;
    rs.push(rgb[i]!);
    gs.push(rgb[i + 1]!);
    bs.push(rgb[i + 2]!);
  };
  for (let x = 0; x < w; x++) (add(x, 0), h > 1 && add(x, h - 1));
  for (let y = 1; y < h - 1; y++) (add(0, y), w > 1 && add(w - 1, y));
  const bg: Rgb = [median(rs), median(gs), median(bs)];
  const lab = rgbToLab(...bg);
  if (lab[0] < 50 || Math.hypot(lab[1], lab[2]) > 30) return [255, 255, 255];
  return bg;
}

/**
 * Per-pixel colour classes (steps 1 and 2 of detect.ts's comment). Colours are first white-balanced against the estimated
 * background (per-channel gain 255 / background, von Kries style), which undoes global tints and colour casts.
 */
export function classify(
  rgb: Uint8Array,
  w: number,
  h: number,
  lightnessWeight: number,
): { labels: Int8Array; lab: Float32Array } {
  const bg = estimateBackground(rgb, w, h);
  const gain = bg.map((v) => Math.min(2, 255 / Math.max(1, v)));
  const wl = lightnessWeight * lightnessWeight;
  const labels = new Int8Array(w * h);
  const lab = new Float32Array(w * h * 3);
  const cache = new Map<number, number>(); // rgb key -> pixel index holding its result
  const byte = (v: number): number => (v >= 255 ? 255 : Math.round(v));
  for (let p = 0; p < w * h; p++) {
    const key = (rgb[p * 3]! << 16) | (rgb[p * 3 + 1]! << 8) | rgb[p * 3 + 2]!;
    const seen = cache.get(key);
    if (seen !== undefined) {
      labels[p] = labels[seen]!;
      lab.copyWithin(p * 3, seen * 3, seen * 3 + 3);
      continue;
    }
    const [L, A, B] = rgbToLab(
      byte(rgb[p * 3]! * gain[0]!),
      byte(rgb[p * 3 + 1]! * gain[1]!),
      byte(rgb[p * 3 + 2]! * gain[2]!),
    );
    lab[p * 3] = L;
    lab[p * 3 + 1] = A;
    lab[p * 3 + 2] = B;
    labels[p] = nearestClass(L, A, B, wl, true);
    cache.set(key, p);
  }
  return { labels, lab };
}

/** Nearest colour class of a (white-balanced) Lab colour: a palette colour, OTHER, or (if allowed) background. */
export function nearestClass(L: number, A: number, B: number, wl: number, allowBackground: boolean): number {
  // Background (white after balancing) at full lightness weight: dark pixels are never background.
  let best = allowBackground ? (L - 100) ** 2 + A * A + B * B : Infinity;
  let cls = BG;
  for (let k = 0; k < PALETTE_LAB.length; k++) {
    const q = PALETTE_LAB[k]!;
    const d = wl * (L - q[0]) ** 2 + (A - q[1]) ** 2 + (B - q[2]) ** 2;
    if (d < best) ((best = d), (cls = k));
  }
  // Dark or grey: low chroma and far darker than the background.
  if (Math.hypot(A, B) < 18 && L < 60) cls = OTHER;
  return cls;
}

/**
 * Noise level of the image in 0–255 units, estimated from horizontally adjacent pixel pairs that are both
 * background-like: sigma ≈ median |difference| / (0.6745 * sqrt 2), on the green channel.
 */
export function estimateNoise(rgb: Uint8Array, labels: Int8Array, w: number, h: number): number {
  const diffs: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x + 1 < w; x++) {
      const p = y * w + x;
      if (labels[p] !== BG || labels[p + 1] !== BG) continue;
      diffs.push(Math.abs(rgb[p * 3 + 1]! - rgb[(p + 1) * 3 + 1]!));
    }
  }
  if (diffs.length < 8) return 0;
  return median(diffs) / (0.6745 * Math.SQRT2);
}

/** Despeckling: a pixel with at most 3 of its own class in its 3x3 window takes the window's majority class. */
export function majorityFilter(labels: Int8Array, w: number, h: number): Int8Array {
  const out = new Int8Array(labels.length);
  const counts = new Int32Array(OTHER + 2);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      counts.fill(0);
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          counts[labels[yy * w + xx]! + 1]! += 1;
        }
      }
      const own = labels[y * w + x]!;
      if (counts[own + 1]! > 3) {
        out[y * w + x] = own;
        continue;
      }
      let best = own,
        bestCount = counts[own + 1]!;
      for (let c = 0; c < counts.length; c++) if (counts[c]! > bestCount) ((bestCount = counts[c]!), (best = c - 1));
      out[y * w + x] = best;
    }
  }
  return out;
}

/**
 * Heat maps for attention visualisation: colormaps, normalisation, and blending a map over an image the way
 * prompt-to-prompt / Attend-and-Excite notebooks show cross-attention (`show_cam_on_image`).
 */
import { type Rgb, type RgbImage } from './image.js';
import { resizeMap, type ResizeMode } from './resize.js';

export type ColormapName = 'turbo' | 'jet' | 'gray';

const clamp01 = (v: number): number => (v > 0 ? (v < 1 ? v : 1) : 0);

/**
 * Colour for t in [0, 1] (clamped; NaN treated as 0) as 0–255 values.
 * - turbo: Google's polynomial approximation of the Turbo colormap (dark blue → cyan → green → yellow → red).
 * - jet: the classic piecewise-linear jet (what OpenCV's COLORMAP_JET approximates).
 * - gray: black → white.
 */
export function colormap(t: number, name: ColormapName = 'turbo'): Rgb {
  const x = clamp01(t);
  let r: number, g: number, b: number;
  switch (name) {
    case 'turbo':
      r =
        0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
      g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
      b =
        0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
      break;
    case 'jet':
      r = 1.5 - Math.abs(4 * x - 3);
      g = 1.5 - Math.abs(4 * x - 2);
      b = 1.5 - Math.abs(4 * x - 1);
      break;
    case 'gray':
      r = g = b = x;
      break;
  }
  return [Math.round(clamp01(r) * 255), Math.round(clamp01(g) * 255), Math.round(clamp01(b) * 255)];
}

/** 256-entry lookup table (RGB triples) for a colormap. */
export function colormapTable(name: ColormapName = 'turbo'): Uint8Array {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(colormap(i / 255, name), i * 3);
  return lut;
}

/**
 * How a map is scaled to [0, 1] before colouring:
 * - `'minmax'`: (v - min) / (max - min), Attend-and-Excite's `show_image_relevance`;
 * - `'max'`: v / max, prompt-to-prompt's `show_cross_attention` (`255 * image / image.max()`);
 * - `'none'`: values are taken as already in [0, 1] (clamped).
 * A constant map becomes all zeros under `'minmax'` (and under `'max'` when its max is not positive).
 */
export type Normalize = 'minmax' | 'max' | 'none';

export function normalizeMap(map: Float32Array, mode: Normalize = 'minmax'): Float32Array {
  const out = new Float32Array(map.length);
  if (mode === 'none') {
    for (let i = 0; i < map.length; i++) out[i] = clamp01(map[i]!);
    return out;
  }
  let lo = Infinity,
    hi = -Infinity;
  for (const v of map) if (Number.isFinite(v)) ((lo = Math.min(lo, v)), (hi = Math.max(hi, v)));
  if (mode === 'max') lo = 0;
  const span = hi - lo;
  if (!(span > 0)) return out;
  for (let i = 0; i < map.length; i++) out[i] = clamp01((map[i]! - lo) / span);
  return out;
}

export interface HeatmapOptions {
  colormap?: ColormapName;
  normalize?: Normalize;
}

/** Colours a one-channel float map (row-major `width * height`) into an RGB image. Default turbo, min–max scaled. */
export function heatmap(map: Float32Array, width: number, height: number, options: HeatmapOptions = {}): RgbImage {
  if (map.length !== width * height) throw new Error(`heatmap: ${map.length} values is not ${width}x${height}`);
  const norm = normalizeMap(map, options.normalize ?? 'minmax');
  const lut = colormapTable(options.colormap ?? 'turbo');
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < norm.length; i++) {
    const k = Math.round(norm[i]! * 255) * 3;
    data[i * 3] = lut[k]!;
    data[i * 3 + 1] = lut[k + 1]!;
    data[i * 3 + 2] = lut[k + 2]!;
  }
  return { data, width, height };
}

/** Per-pixel `(1 - alpha) * a + alpha * b` of two equally sized images. */
export function blendImages(a: RgbImage, b: RgbImage, alpha: number): RgbImage {
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`blendImages: sizes ${a.width}x${a.height} and ${b.width}x${b.height} differ`);
  }
  const data = new Uint8Array(a.data.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.round((1 - alpha) * a.data[i]! + alpha * b.data[i]!);
  return { data, width: a.width, height: a.height };
}

export interface OverlayOptions extends HeatmapOptions {
  /** Heat-map weight for `mode: 'alpha'` (default 0.5). */
  alpha?: number;
  /**
   * - `'alpha'` (default): `(1 - alpha) * image + alpha * heat`.
   * - `'add'`: Attend-and-Excite's `show_cam_on_image`: `cam = heat + image` (both in [0, 1]), then `cam / max(cam)`.
   */
  mode?: 'alpha' | 'add';
  /** How the map is brought to the image's size (default bilinear, as the notebooks' `F.interpolate`). */
  resize?: ResizeMode;
  /** Colormap default for overlays is jet, as in the notebooks. */
  colormap?: ColormapName;
}

/**
 * Draws a one-channel map (e.g. a 16x16 cross-attention map) over an image: resize the map to the image
 * (bilinear by default), normalise (min–max by default), colour (jet by default) and blend.
 */
export function overlayHeatmap(
  image: RgbImage,
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  options: OverlayOptions = {},
): RgbImage {
  if (map.length !== mapWidth * mapHeight)
    throw new Error(`overlayHeatmap: ${map.length} values is not ${mapWidth}x${mapHeight}`);
  const big =
    mapWidth === image.width && mapHeight === image.height
      ? map
      : resizeMap(map, mapWidth, mapHeight, image.width, image.height, options.resize ?? 'bilinear');
  const heat = heatmap(big, image.width, image.height, {
    colormap: options.colormap ?? 'jet',
    normalize: options.normalize ?? 'minmax',
  });
  if ((options.mode ?? 'alpha') === 'alpha') return blendImages(image, heat, options.alpha ?? 0.5);
  const sum = new Float32Array(image.data.length);
  let max = 0;
  for (let i = 0; i < sum.length; i++) {
    const v = image.data[i]! + heat.data[i]!;
    sum[i] = v;
    if (v > max) max = v;
  }
  const data = new Uint8Array(sum.length);
  if (max > 0) for (let i = 0; i < sum.length; i++) data[i] = Math.round((sum[i]! / max) * 255);
  return { data, width: image.width, height: image.height };
}

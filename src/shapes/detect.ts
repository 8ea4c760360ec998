/**
 * Object detection for the shapes-world scorer (score.ts): which objects are in an image, with which colour and
 * shape.
 *
 * Step by step:
 * 1. Colour classes. The background colour is estimated as the per-channel median of the border pixels (white when
 *    that is not light and neutral), and every pixel is white-balanced against it (gain 255 / background per
 *    channel), which undoes tints and global casts. Each pixel, in CIELAB, goes to the nearest of: background
 *    (white), the six palette colours, or "other" (low chroma < 18 and L < 60: dark or grey, clearly no palette
 *    colour). Distances weight lightness by `lightnessWeight` (0.5) against the two chroma axes, so darkened or
 *    brightened colours keep their hue class.
 * 2. Denoising, only for grainy images (noise estimated from background pixels, > 8 in 0–255 units): pixels whose
 *    3x3 neighbourhood holds at most 3 pixels of their own class (themselves included) take the neighbourhood's
 *    majority class. Clean or blurred images are not filtered, so crisp corners and apexes survive.
 * 3. Settling colours per region: in each 4-connected region of non-background pixels, the colour classes that form
 *    a solid blob (next step's thresholds) are the region's colours; every pixel of the region takes the nearest of
 *    them (their mean colours). This absorbs speckles of a neighbouring hue inside a drifted object and the
 *    in-between fringe that blur leaves where two objects touch (orange between red and yellow). A region with no
 *    solid class takes the class of its mean colour.
 * 4. Blobs: 4-connected components per colour class. Blobs smaller than `minBlobArea` (12 px at 32x32, scaled with
 *    the image area) or without a solid core (fewer than `minCore` pixels whose four neighbours are in the blob) are
 *    ignored.
 * 5. Shape, from central moments of the blob (holes filled): a blob whose skewness along x or y exceeds 0.2 in
 *    magnitude is a triangle (circles and squares are symmetric; an upward triangle has skew_y -0.57); a symmetric
 *    blob is a square if rho = mu22 / (mu20 mu02) >= 0.8 (square 1, disc 0.63), else a circle. Moments tolerate blur
 *    (which rounds corners and apexes) and stray pixels far better than template matching in the bounding box, which
 *    was tried first (noise sigma 30: 86% of images fully right with templates, > 99.5% with moments).
 *    `shape_iou` still reports the IoU with the ideal template, `shape_confidence` the margin of the call.
 */
import type { RgbImage } from '../image/image.js';
import { blobMask, classifyShape, components, coreCount, type ShapeFeatures } from './blobs.js';
import { BG, classify, estimateNoise, majorityFilter, nearestClass, OTHER } from './colour-classes.js';
import { type Colour, COLOURS, type Shape } from './world.js';

export interface Detection {
  /** Palette colour of the blob, or null for a dark/grey blob that is no palette colour. */
  colour: Colour | null;
  /** Best-fitting shape. */
  shape: Shape;
  /**
   * How clearly the shape call is made: the margin to the decision boundaries, 0 (on a boundary: an in-between
   * blob, doubtful) to 1 (an ideal shape).
   */
  shape_confidence: number;
  /** IoU of the (hole-filled) blob with the ideal mask of `shape` rasterised into the blob's bounding box, 0–1. */
  shape_iou: number;
  /** The moment features the shape call is based on. */
  features: ShapeFeatures;
  /** Bounding box: left, top, width, height (pixels). */
  bbox: [number, number, number, number];
  /** Blob area in pixels. */
  area: number;
  /** Centre of mass (x, y) in pixels. */
  centroid: [number, number];
  /** Index of the prompted object this detection was matched to, or null (an extra object). */
  matched_to: number | null;
}

export interface ScoreOptions {
  /** Blobs below this many pixels are ignored (default 12 at 32x32, scaled with the image area). */
  minBlobArea?: number;
  /** Blobs with fewer core pixels (all four neighbours in the blob) are ignored (default 3 at 32x32, scaled). */
  minCore?: number;
  /** Weight of lightness against chroma in colour distances (default 0.5). */
  lightnessWeight?: number;
  /** Force the majority filter on or off (default: on when the background looks grainy). */
  denoise?: boolean;
}

interface Resolved {
  minBlobArea: number;
  minCore: number;
  lightnessWeight: number;
  denoise: boolean | undefined;
}

function resolve(width: number, height: number, o: ScoreOptions): Resolved {
  const areaScale = (width * height) / (32 * 32);
  return {
    minBlobArea: o.minBlobArea ?? Math.max(3, Math.round(12 * areaScale)),
    minCore: o.minCore ?? Math.max(1, Math.round(3 * areaScale)),
    lightnessWeight: o.lightnessWeight ?? 0.5,
    denoise: o.denoise,
  };
}

/**
 * Settles the colours inside each connected foreground region (non-background pixels, 4-connected). The classes that
 * form a solid blob there (area and core above the thresholds) are the region's colours, each represented by the
 * mean colour of its solid blobs; every pixel of the region then takes the nearest of those (comparing its 3x3
 * mean colour within the region when denoising). This absorbs speckles of neighbouring hues inside a drifted object
 * and the in-between fringe that blur leaves where two objects touch. A region with no solid class but enough area
 * takes the class nearest to its mean colour.
 */
function settleRegions(
  labels: Int8Array,
  lab: Float32Array,
  w: number,
  h: number,
  o: Resolved,
  smooth: boolean,
): Int8Array {
  const wl = o.lightnessWeight * o.lightnessWeight;
  const fgLabels = labels.map((c) => (c === BG ? BG : 0));
  const regionOf = new Int32Array(w * h).fill(-1);
  const regions = components(fgLabels, w, h);
  regions.forEach((r, i) => r.pixels.forEach((p) => (regionOf[p] = i)));
  // Solid class blobs per region: class -> [sum L, sum a, sum b, n]
  const solid = regions.map(() => new Map<number, [number, number, number, number]>());
  for (const blob of components(labels, w, h)) {
    if (blob.pixels.length < o.minBlobArea || coreCount(blob, labels, w, h) < o.minCore) continue;
    const m = solid[regionOf[blob.pixels[0]!]!]!;
    const acc = m.get(blob.cls) ?? [0, 0, 0, 0];
    for (const p of blob.pixels)
      ((acc[0] += lab[p * 3]!), (acc[1] += lab[p * 3 + 1]!), (acc[2] += lab[p * 3 + 2]!), acc[3]++);
    m.set(blob.cls, acc);
  }
  const out = Int8Array.from(labels);
  regions.forEach((region, i) => {
    const classes = solid[i]!;
    if (classes.size === 0) {
      if (region.pixels.length < o.minBlobArea) return;
      let L = 0,
        A = 0,
        B = 0;
      for (const p of region.pixels) ((L += lab[p * 3]!), (A += lab[p * 3 + 1]!), (B += lab[p * 3 + 2]!));
      const n = region.pixels.length;
      const cls = nearestClass(L / n, A / n, B / n, wl, false);
      for (const p of region.pixels) out[p] = cls;
      return;
    }
    if (classes.size === 1) {
      const cls = classes.keys().next().value!;
      for (const p of region.pixels) out[p] = cls;
      return;
    }
    const reps = [...classes].map(([cls, [L, A, B, n]]) => [cls, L / n, A / n, B / n] as const);
    for (const p of region.pixels) {
      let L = lab[p * 3]!,
        A = lab[p * 3 + 1]!,
        B = lab[p * 3 + 2]!;
      if (smooth) {
        let n = 1;
        const x = p % w,
          y = (p - x) / w;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx,
              yy = y + dy;
            if ((dx === 0 && dy === 0) || xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            const q = yy * w + xx;
            if (regionOf[q] !== i) continue;
            ((L += lab[q * 3]!), (A += lab[q * 3 + 1]!), (B += lab[q * 3 + 2]!), n++);
          }
        }
        ((L /= n), (A /= n), (B /= n));
      }
      let best = Infinity;
      for (const [cls, rl, ra, rb] of reps) {
        const d = wl * (L - rl) ** 2 + (A - ra) ** 2 + (B - rb) ** 2;
        if (d < best) ((best = d), (out[p] = cls));
      }
    }
  });
  return out;
}

/** Finds the objects in an RGB image (see the module comment); detections are sorted by area, largest first. */
export function detectObjects(
  rgb: Uint8Array | RgbImage,
  width?: number,
  height?: number,
  options: ScoreOptions = {},
): Detection[] {
  const img = asImage(rgb, width, height);
  const { width: w, height: h } = img;
  const o = resolve(w, h, options);
  const classified = classify(img.data, w, h, o.lightnessWeight);
  let labels = classified.labels;
  const denoise = o.denoise ?? estimateNoise(img.data, labels, w, h) > 8;
  if (denoise) labels = majorityFilter(labels, w, h);
  labels = settleRegions(labels, classified.lab, w, h, o, denoise);
  const detections: Detection[] = [];
  for (const blob of components(labels, w, h)) {
    if (blob.pixels.length < o.minBlobArea) continue;
    if (coreCount(blob, labels, w, h) < o.minCore) continue;
    const { mask, bw, bh } = blobMask(blob, w);
    const { shape, confidence, iou, features } = classifyShape(mask, bw, bh);
    let sx = 0,
      sy = 0;
    for (const p of blob.pixels) ((sx += p % w), (sy += Math.floor(p / w)));
    const n = blob.pixels.length;
    detections.push({
      colour: blob.cls === OTHER ? null : COLOURS[blob.cls]!,
      shape,
      shape_confidence: round3(confidence),
      shape_iou: round3(iou),
      features: {
        skew_y: round3(features.skew_y),
        skew_x: round3(features.skew_x),
        rho: round3(features.rho),
        fill: round3(features.fill),
      },
      bbox: [blob.x0, blob.y0, bw, bh],
      area: n,
      centroid: [round3(sx / n + 0.5), round3(sy / n + 0.5)],
      matched_to: null,
    });
  }
  detections.sort((a, b) => b.area - a.area || a.bbox[1] - b.bbox[1] || a.bbox[0] - b.bbox[0]);
  return detections;
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

export function asImage(rgb: Uint8Array | RgbImage, width?: number, height?: number): RgbImage {
  if (!(rgb instanceof Uint8Array)) return rgb;
  if (width === undefined || height === undefined)
    throw new Error('scoreImage: width and height are required with raw RGB bytes');
  if (rgb.length !== width * height * 3) throw new Error(`scoreImage: ${rgb.length} bytes is not ${width}x${height}x3`);
  return { data: rgb, width, height };
}

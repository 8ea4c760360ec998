/**
 * An exact scorer for shapes-world images: which objects are in the picture, with which colour and shape, and how
 * that compares with what the prompt asked for. The benchmark's measure of object neglect and attribute binding.
 *
 * Detection, step by step:
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
 * 6. Matching: prompted objects are assigned to detections by an optimal (Hungarian) assignment maximising
 *    2 * [same shape] + [same colour] per pair (an unspecified colour counts as the same when the shape is), with a
 *    tiny preference for larger, better-shaped blobs. Pairs sharing neither shape nor colour are never matched.
 */
import type { RgbImage } from '../image/image.js';
import { type ParsedPrompt, parsePrompt, type PromptObject } from './prompt.js';
import { type Colour, COLOURS, PALETTE, type Rgb, type Shape, shapeMask } from './world.js';

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

export interface ObjectReport {
  /** The prompted object. */
  shape: Shape;
  colour: Colour | null;
  /** A detection was assigned to this object (it shares the shape, the colour, or both). */
  found: boolean;
  /** The assigned detection has the prompted shape: the object is present, whatever its colour. */
  found_shape_match: boolean;
  /**
   * The assigned detection has the prompted colour (for a prompt without a colour: true when found_shape_match).
   */
  colour_correct: boolean;
  /**
   * The object is present (right shape) but painted in the colour of another prompted object instead of its own.
   */
  leaked: boolean;
  detection: number | null;
  detected_shape: Shape | null;
  detected_colour: Colour | null;
}

export interface ScoreReport {
  /** The prompt text when a string was scored. */
  prompt?: string;
  width: number;
  height: number;
  objects: ObjectReport[];
  /**
   * Object recall, the neglect measure: the fraction of prompted objects for which a detection of the prompted
   * shape (any colour) is assigned by the optimal matching; 1 - object_recall is the neglect rate. 1 for no objects.
   */
  object_recall: number;
  /**
   * Binding: the fraction of prompted objects that are present with the prompted shape AND the prompted colour
   * (found_shape_match && colour_correct). Never above object_recall. 1 for no objects.
   */
  binding: number;
  /** Binding among present objects: binding / object_recall, or null when no object is present. */
  binding_given_found: number | null;
  /** Number of detections assigned to no prompted object (stray blobs, surplus copies, unrequested objects). */
  extra_objects: number;
  /**
   * Colour leakage: among prompted objects that name a colour, the fraction that are present (right shape) but carry
   * the colour of a different prompted object rather than their own ("a red circle and a blue square" drawn as a
   * blue circle and a blue square: the circle leaked). 0 when no prompted object names a colour.
   */
  leakage: number;
  /** Every prompted object present with its shape and colour, and no extra objects. */
  full_success: boolean;
  detections: Detection[];
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

// ---------------------------------------------------------------------------------------------------- colour space

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
const BG = -1;
const OTHER = COLOURS.length;

// ---------------------------------------------------------------------------------------------------- detection

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
 * Per-pixel colour classes (see the module comment). Colours are first white-balanced against the estimated
 * background (per-channel gain 255 / background, von Kries style), which undoes global tints and colour casts.
 */
function classify(rgb: Uint8Array, w: number, h: number, o: Resolved): { labels: Int8Array; lab: Float32Array } {
  const bg = estimateBackground(rgb, w, h);
  const gain = bg.map((v) => Math.min(2, 255 / Math.max(1, v)));
  const wl = o.lightnessWeight * o.lightnessWeight;
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
function nearestClass(L: number, A: number, B: number, wl: number, allowBackground: boolean): number {
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

/**
 * Noise level of the image in 0–255 units, estimated from horizontally adjacent pixel pairs that are both
 * background-like: sigma ≈ median |difference| / (0.6745 * sqrt 2), on the green channel.
 */
function estimateNoise(rgb: Uint8Array, labels: Int8Array, w: number, h: number): number {
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
function majorityFilter(labels: Int8Array, w: number, h: number): Int8Array {
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

interface Blob {
  cls: number;
  pixels: number[];
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

function components(labels: Int8Array, w: number, h: number): Blob[] {
  const seen = new Uint8Array(w * h);
  const blobs: Blob[] = [];
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    const cls = labels[start]!;
    if (cls === BG || seen[start]) continue;
    const blob: Blob = { cls, pixels: [], x0: w, y0: h, x1: -1, y1: -1 };
    seen[start] = 1;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      blob.pixels.push(p);
      const x = p % w,
        y = (p - x) / w;
      if (x < blob.x0) blob.x0 = x;
      if (x > blob.x1) blob.x1 = x;
      if (y < blob.y0) blob.y0 = y;
      if (y > blob.y1) blob.y1 = y;
      if (x > 0 && !seen[p - 1] && labels[p - 1] === cls) ((seen[p - 1] = 1), stack.push(p - 1));
      if (x < w - 1 && !seen[p + 1] && labels[p + 1] === cls) ((seen[p + 1] = 1), stack.push(p + 1));
      if (y > 0 && !seen[p - w] && labels[p - w] === cls) ((seen[p - w] = 1), stack.push(p - w));
      if (y < h - 1 && !seen[p + w] && labels[p + w] === cls) ((seen[p + w] = 1), stack.push(p + w));
    }
    blobs.push(blob);
  }
  return blobs;
}

/** The blob as a mask over its bounding box, with enclosed holes filled. */
function blobMask(blob: Blob, w: number): { mask: Uint8Array; bw: number; bh: number } {
  const bw = blob.x1 - blob.x0 + 1,
    bh = blob.y1 - blob.y0 + 1;
  const mask = new Uint8Array(bw * bh);
  for (const p of blob.pixels) mask[(Math.floor(p / w) - blob.y0) * bw + (p % w) - blob.x0] = 1;
  // Flood the outside from the box border; unreached empty cells are holes.
  const outside = new Uint8Array(bw * bh);
  const stack: number[] = [];
  const push = (q: number): void => {
    if (!mask[q] && !outside[q]) ((outside[q] = 1), stack.push(q));
  };
  for (let x = 0; x < bw; x++) (push(x), push((bh - 1) * bw + x));
  for (let y = 0; y < bh; y++) (push(y * bw), push(y * bw + bw - 1));
  while (stack.length) {
    const q = stack.pop()!;
    const x = q % bw,
      y = (q - x) / bw;
    if (x > 0) push(q - 1);
    if (x < bw - 1) push(q + 1);
    if (y > 0) push(q - bw);
    if (y < bh - 1) push(q + bw);
  }
  for (let q = 0; q < mask.length; q++) if (!outside[q]) mask[q] = 1;
  return { mask, bw, bh };
}

function coreCount(blob: Blob, labels: Int8Array, w: number, h: number): number {
  let n = 0;
  for (const p of blob.pixels) {
    const x = p % w,
      y = (p - x) / w;
    if (x === 0 || x === w - 1 || y === 0 || y === h - 1) continue;
    const c = blob.cls;
    if (labels[p - 1] === c && labels[p + 1] === c && labels[p - w] === c && labels[p + w] === c) n++;
  }
  return n;
}

export interface ShapeFeatures {
  /** Vertical skewness mu03 / mu02^1.5 (y grows downwards): about -0.57 for an upward triangle, 0 for symmetric shapes. */
  skew_y: number;
  /** Horizontal skewness mu30 / mu20^1.5: 0 for all three shapes as drawn; large for sideways triangles. */
  skew_x: number;
  /** mu22 / (mu20 mu02): 1 for a square (x and y independent), 0.63 for a disc, 0.81 for the triangle. */
  rho: number;
  /** Area / bounding-box area: square 1, circle 0.79, triangle 0.5 (blur-sensitive; reported, not used). */
  fill: number;
}

/** Moment features of a mask (row-major `bw` x `bh`, 1 = inside). */
export function shapeFeatures(mask: Uint8Array, bw: number, bh: number): ShapeFeatures {
  let n = 0,
    sx = 0,
    sy = 0;
  for (let y = 0; y < bh; y++) for (let x = 0; x < bw; x++) if (mask[y * bw + x]) (n++, (sx += x), (sy += y));
  if (n === 0) return { skew_y: 0, skew_x: 0, rho: 0, fill: 0 };
  const cx = sx / n,
    cy = sy / n;
  let m20 = 0,
    m02 = 0,
    m22 = 0,
    m03 = 0,
    m30 = 0;
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) {
      if (!mask[y * bw + x]) continue;
      const dx = x - cx,
        dy = y - cy;
      m20 += dx * dx;
      m02 += dy * dy;
      m22 += dx * dx * dy * dy;
      m03 += dy * dy * dy;
      m30 += dx * dx * dx;
    }
  }
  ((m20 /= n), (m02 /= n), (m22 /= n), (m03 /= n), (m30 /= n));
  return {
    skew_y: m02 > 0 ? m03 / m02 ** 1.5 : 0,
    skew_x: m20 > 0 ? m30 / m20 ** 1.5 : 0,
    rho: m20 > 0 && m02 > 0 ? m22 / (m20 * m02) : 1,
    fill: n / (bw * bh),
  };
}

/** Asymmetry (largest |skewness|) above which a blob is a triangle. */
const TRIANGLE_ASYMMETRY = 0.2;
/** rho above which a symmetric blob is a square rather than a circle. */
const SQUARE_RHO = 0.8;

interface ShapeCall {
  shape: Shape;
  confidence: number;
  iou: number;
  features: ShapeFeatures;
}

const clamp01 = (v: number): number => (v > 0 ? (v < 1 ? v : 1) : 0);

/**
 * Shape from moments: a blob whose largest |skewness| exceeds 0.2 is a triangle (any orientation: circles and squares
 * are symmetric, measured |skew| < 0.11 even at noise sigma 45 or after a 16x16 round trip, while triangles stay
 * below -0.16 even under blur sigma 1.5); otherwise rho above 0.8 means square, below circle. Confidence is the
 * margin to the decision boundaries, scaled so that an ideal shape scores 1.
 */
function classifyShape(mask: Uint8Array, bw: number, bh: number): ShapeCall {
  const features = shapeFeatures(mask, bw, bh);
  const asym = Math.max(Math.abs(features.skew_y), Math.abs(features.skew_x));
  let shape: Shape, confidence: number;
  if (asym >= TRIANGLE_ASYMMETRY) {
    shape = 'triangle';
    confidence = clamp01((asym - TRIANGLE_ASYMMETRY) / 0.35);
  } else {
    const symmetric = clamp01((TRIANGLE_ASYMMETRY - asym) / TRIANGLE_ASYMMETRY);
    if (features.rho >= SQUARE_RHO)
      ((shape = 'square'), (confidence = Math.min(symmetric, clamp01((features.rho - SQUARE_RHO) / 0.2))));
    else ((shape = 'circle'), (confidence = Math.min(symmetric, clamp01((SQUARE_RHO - features.rho) / 0.15))));
  }
  const t = shapeMask(shape, bw, bh);
  let inter = 0,
    union = 0;
  for (let i = 0; i < mask.length; i++) ((inter += mask[i]! & t[i]!), (union += mask[i]! | t[i]!));
  return { shape, confidence, iou: union ? inter / union : 0, features };
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
  const classified = classify(img.data, w, h, o);
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

function asImage(rgb: Uint8Array | RgbImage, width?: number, height?: number): RgbImage {
  if (!(rgb instanceof Uint8Array)) return rgb;
  if (width === undefined || height === undefined)
    throw new Error('scoreImage: width and height are required with raw RGB bytes');
  if (rgb.length !== width * height * 3) throw new Error(`scoreImage: ${rgb.length} bytes is not ${width}x${height}x3`);
  return { data: rgb, width, height };
}

// ---------------------------------------------------------------------------------------------------- matching

/**
 * Maximum-weight assignment of rows to distinct columns (rows <= columns), Hungarian algorithm on costs -weight.
 * Returns the column of each row.
 */
export function maxWeightAssignment(weights: readonly (readonly number[])[]): number[] {
  const n = weights.length;
  if (n === 0) return [];
  const m = weights[0]!.length;
  if (m < n) throw new Error('maxWeightAssignment: needs at least as many columns as rows');
  const INF = Number.POSITIVE_INFINITY;
  const u = new Float64Array(n + 1),
    v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1),
    way = new Int32Array(m + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(m + 1).fill(INF);
    const used = new Uint8Array(m + 1);
    do {
      used[j0] = 1;
      const i0 = p[j0]!;
      let delta = INF,
        j1 = 0;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = -weights[i0 - 1]![j - 1]! - u[i0]! - v[j]!;
        if (cur < minv[j]!) ((minv[j] = cur), (way[j] = j0));
        if (minv[j]! < delta) ((delta = minv[j]!), (j1 = j));
      }
      for (let j = 0; j <= m; j++) {
        if (used[j]) ((u[p[j]!]! += delta), (v[j]! -= delta));
        else minv[j]! -= delta;
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const result = new Array<number>(n).fill(-1);
  for (let j = 1; j <= m; j++) if (p[j]! > 0) result[p[j]! - 1] = j - 1;
  return result;
}

function promptObjects(target: string | readonly PromptObject[] | ParsedPrompt): {
  objects: readonly PromptObject[];
  prompt?: string;
} {
  if (typeof target === 'string') return { objects: parsePrompt(target).objects, prompt: target };
  if ('objects' in target) return { objects: target.objects };
  return { objects: target };
}

/**
 * Memory the scorer uses per pixel of the image (its label and class planes, component lists), for the memory
 * budget: measured as peak RSS over pixels on a 4000x4000 image (53 bytes per pixel in all, 7 of them the PNG
 * decode's).
 */
export const SCORE_BYTES_PER_PIXEL = 46;

/**
 * Scores an image against a prompt (parsed with `parsePrompt`) or an explicit object list. `rgb` is interleaved
 * 8-bit RGB of `width` x `height` (or an `RgbImage`, then width/height may be omitted).
 */
export function scoreImage(
  rgb: Uint8Array | RgbImage,
  width: number | undefined,
  height: number | undefined,
  target: string | readonly PromptObject[] | ParsedPrompt,
  options: ScoreOptions = {},
): ScoreReport {
  const { objects, prompt } = promptObjects(target);
  const img = asImage(rgb, width, height);
  const detections = detectObjects(img, undefined, undefined, options);
  return scoreDetections(detections, objects, img.width, img.height, prompt);
}

/** The matching and metrics part of `scoreImage`, for detections already computed. */
export function scoreDetections(
  detections: Detection[],
  objects: readonly PromptObject[],
  width: number,
  height: number,
  prompt?: string,
): ScoreReport {
  const P = objects.length,
    D = detections.length;
  const maxArea = Math.max(1, ...detections.map((d) => d.area));
  const tie = 0.5 / (P + 1); // total tie-break bonus stays below one unit of real weight
  const core = (po: PromptObject, d: Detection): number => {
    const shapeEq = d.shape === po.shape;
    const colourEq = po.colour === undefined ? shapeEq : d.colour === po.colour;
    return (shapeEq ? 2 : 0) + (colourEq ? 1 : 0);
  };
  const cols = Math.max(D, P);
  const weights = objects.map((po) =>
    Array.from({ length: cols }, (_, j) => {
      const d = detections[j];
      if (!d) return 0;
      const c = core(po, d);
      return c === 0 ? 0 : c + tie * (0.5 * d.shape_confidence + 0.5 * (d.area / maxArea));
    }),
  );
  const assignment = maxWeightAssignment(weights);
  for (const d of detections) d.matched_to = null;
  const reports: ObjectReport[] = objects.map((po, i) => {
    const j = assignment[i]!;
    const d = j >= 0 && j < D && core(po, detections[j]!) > 0 ? detections[j]! : undefined;
    if (d) d.matched_to = i;
    const shapeOk = d !== undefined && d.shape === po.shape;
    const colourOk = d !== undefined && (po.colour === undefined ? shapeOk : d.colour === po.colour);
    const leaked =
      shapeOk &&
      po.colour !== undefined &&
      !colourOk &&
      d!.colour !== null &&
      objects.some((q, k) => k !== i && q.colour === d!.colour && q.colour !== po.colour);
    return {
      shape: po.shape,
      colour: po.colour ?? null,
      found: d !== undefined,
      found_shape_match: shapeOk,
      colour_correct: colourOk,
      leaked,
      detection: d ? j : null,
      detected_shape: d?.shape ?? null,
      detected_colour: d?.colour ?? null,
    };
  });
  const present = reports.filter((r) => r.found_shape_match).length;
  const bound = reports.filter((r) => r.found_shape_match && r.colour_correct).length;
  const coloured = reports.filter((r) => r.colour !== null).length;
  const extra = detections.filter((d) => d.matched_to === null).length;
  return {
    ...(prompt !== undefined ? { prompt } : {}),
    width,
    height,
    objects: reports,
    object_recall: P === 0 ? 1 : present / P,
    binding: P === 0 ? 1 : bound / P,
    binding_given_found: present === 0 ? null : bound / present,
    extra_objects: extra,
    leakage: coloured === 0 ? 0 : reports.filter((r) => r.leaked).length / coloured,
    full_success: bound === P && extra === 0,
    detections,
  };
}

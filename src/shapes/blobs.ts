/**
 * Blobs for the shapes-world scorer (steps 4 and 5 of detect.ts's comment): 4-connected components of one colour
 * class, their hole-filled masks and solid cores, and the shape call from central moments.
 */
import { BG } from './colour-classes.js';
import { type Shape, shapeMask } from './world.js';

export interface Blob {
  cls: number;
  pixels: number[];
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export function components(labels: Int8Array, w: number, h: number): Blob[] {
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
export function blobMask(blob: Blob, w: number): { mask: Uint8Array; bw: number; bh: number } {
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

export function coreCount(blob: Blob, labels: Int8Array, w: number, h: number): number {
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

export interface ShapeCall {
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
export function classifyShape(mask: Uint8Array, bw: number, bh: number): ShapeCall {
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

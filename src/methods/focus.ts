/**
 * Focus regions, computed without gradient from a subject's attention map (Suppress-to-Impress, step 1):
 * Otsu's threshold on Â = A / max A, the 4-connected region of above-threshold pixels that holds the peak
 * (INITNO's "clean" mask), a soft edge σ((Â − τ)/T) around it, and ownership between subjects by a soft
 * arg-max of Â where their regions meet.
 */
import { gaussianKernel } from './smoothing.js';

/** One map per subject, row-major [h*w]. */
export interface SubjectMaps {
  height: number;
  width: number;
  maps: Float32Array[];
}

/**
 * A&E's per-subject maps on the host: tokens 1..T-2 ×100, softmax over tokens, the subjects' columns,
 * optionally smoothed (reflect padding, the official kernel). aggregated: [h, w, T].
 */
export function subjectMapsHost(
  aggregated: { data: Float32Array; shape: readonly number[] },
  tokenIndices: readonly number[],
  smooth: { kernelSize: number; sigma: number } | null,
): SubjectMaps {
  const [h, w, t] = aggregated.shape as [number, number, number];
  const hw = h * w;
  const maps = tokenIndices.map(() => new Float32Array(hw));
  const row = new Float64Array(t - 2);
  for (let p = 0; p < hw; p++) {
    let m = -Infinity;
    for (let k = 1; k < t - 1; k++) m = Math.max(m, aggregated.data[p * t + k]! * 100);
    let sum = 0;
    for (let k = 1; k < t - 1; k++) sum += row[k - 1] = Math.exp(aggregated.data[p * t + k]! * 100 - m);
    tokenIndices.forEach((idx, s) => (maps[s]![p] = row[idx - 1]! / sum));
  }
  return {
    height: h,
    width: w,
    maps: smooth ? maps.map((m) => smoothReflect(m, h, w, smooth.kernelSize, smooth.sigma)) : maps,
  };
}

function smoothReflect(map: Float32Array, h: number, w: number, size: number, sigma: number): Float32Array {
  const k = gaussianKernel(size, sigma);
  const r = Math.floor(size / 2);
  const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let dy = -r; dy <= r; dy++)
        for (let dx = -r; dx <= r; dx++)
          s += k[(dy + r) * size + dx + r]! * map[reflect(y + dy, h) * w + reflect(x + dx, w)]!;
      out[y * w + x] = s;
    }
  return out;
}

/** Map divided by its maximum (all zeros stay zeros). */
export function normalizeByMax(map: Float32Array): Float32Array {
  let m = 0;
  for (const v of map) if (v > m) m = v;
  return m > 0 ? map.map((v) => v / m) : new Float32Array(map.length);
}

/**
 * Otsu's threshold of values in [0, 1] on a 256-level histogram (levels ⌊255·v⌋, as INITNO feeds OpenCV):
 * the level t maximising the between-class variance; levels above t are foreground. Returned as the smallest
 * foreground value, (t + 1) / 255, so that `v >= τ` is exactly "level > t". (INITNO compares the raw value with
 * t / 255 instead, which also admits level t itself — on a flat background at that level, the whole map.)
 */
export function otsuThreshold(values: Float32Array): number {
  const hist = new Float64Array(256);
  for (const v of values) hist[Math.min(255, Math.max(0, Math.floor(v * 255)))]!++;
  const total = values.length;
  let sumAll = 0;
  for (let i = 0; i < 256; i++) sumAll += i * hist[i]!;
  let wB = 0;
  let sumB = 0;
  let best = -1;
  let bestT = 0;
  for (let t = 0; t < 256; t++) {
    wB += hist[t]!;
    if (wB === 0) continue;
    const wF = total - wB;
    if (wF === 0) break;
    sumB += t * hist[t]!;
    const mB = sumB / wB;
    const mF = (sumAll - sumB) / wF;
    const between = wB * wF * (mB - mF) * (mB - mF);
    if (between > best) {
      best = between;
      bestT = t;
    }
  }
  return (bestT + 1) / 255;
}

/** The 4-connected set of pixels with value >= threshold that contains `seed` (1 inside, 0 outside). */
export function peakComponent(values: Float32Array, h: number, w: number, threshold: number, seed: number): Uint8Array {
  const inside = new Uint8Array(h * w);
  if (!(values[seed]! >= threshold)) {
    inside[seed] = 1; // a flat map: the peak alone
    return inside;
  }
  const stack = [seed];
  inside[seed] = 1;
  while (stack.length) {
    const p = stack.pop()!;
    const y = Math.floor(p / w);
    const x = p % w;
    const visit = (q: number) => {
      if (!inside[q] && values[q]! >= threshold) {
        inside[q] = 1;
        stack.push(q);
      }
    };
    if (y > 0) visit(p - w);
    if (y < h - 1) visit(p + w);
    if (x > 0) visit(p - 1);
    if (x < w - 1) visit(p + 1);
  }
  return inside;
}

export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export interface FocusOptions {
  /** Temperature of the soft edge σ((Â − τ)/T); 0 gives a hard mask. */
  edgeTemperature: number;
  /** Temperature of the soft arg-max that splits contested pixels between subjects. */
  ownershipTemperature: number;
}

export const FOCUS_DEFAULTS: FocusOptions = { edgeTemperature: 0.05, ownershipTemperature: 0.1 };

export interface FocusRegions {
  height: number;
  width: number;
  /** Otsu threshold τ_s per subject (on Â_s). */
  thresholds: number[];
  /** Hard peak components C_s. */
  components: Uint8Array[];
  /** Soft focus masks M_s. */
  masks: Float32Array[];
  /** Ownership-weighted masks O_s (what the losses and the editor use). */
  owned: Float32Array[];
}

/** Focus regions M_s and owned regions O_s of every subject (step 1 of the method). */
export function focusRegions(subjects: SubjectMaps, options: FocusOptions = FOCUS_DEFAULTS): FocusRegions {
  const { height: h, width: w } = subjects;
  const normalized = subjects.maps.map(normalizeByMax);
  const thresholds: number[] = [];
  const components: Uint8Array[] = [];
  const masks = normalized.map((a) => {
    const tau = otsuThreshold(a);
    const comp = peakComponent(a, h, w, tau, argmax(a));
    thresholds.push(tau);
    components.push(comp);
    // The soft edge reaches one pixel past the component (4-neighbours), never to other blobs of the map.
    const reach = new Uint8Array(comp);
    for (let p = 0; p < h * w; p++) {
      if (!comp[p]) continue;
      const y = Math.floor(p / w);
      const x = p % w;
      if (y > 0) reach[p - w] = 1;
      if (y < h - 1) reach[p + w] = 1;
      if (x > 0) reach[p - 1] = 1;
      if (x < w - 1) reach[p + 1] = 1;
    }
    const m = new Float32Array(h * w);
    const T = options.edgeTemperature;
    for (let p = 0; p < h * w; p++) {
      if (!reach[p]) continue;
      m[p] = T > 0 ? 1 / (1 + Math.exp(-(a[p]! - tau) / T)) : comp[p]! ? 1 : 0;
    }
    return m;
  });
  const owned = masks.map((m) => Float32Array.from(m));
  if (masks.length > 1) {
    const T = options.ownershipTemperature;
    for (let p = 0; p < h * w; p++) {
      let max = -Infinity;
      for (const a of normalized) max = Math.max(max, a[p]!);
      let z = 0;
      const e = normalized.map((a) => {
        const v = Math.exp((a[p]! - max) / T);
        z += v;
        return v;
      });
      owned.forEach((o, s) => (o[p] = o[p]! * (e[s]! / z)));
    }
  }
  return { height: h, width: w, thresholds, components, masks, owned };
}

/** Bilinear resize of a [h, w] mask to [H, W] (align_corners = false), for editing layers of other resolutions. */
export function resizeMask(mask: Float32Array, h: number, w: number, H: number, W: number): Float32Array {
  if (h === H && w === W) return mask;
  const out = new Float32Array(H * W);
  const sy = h / H;
  const sx = w / W;
  for (let Y = 0; Y < H; Y++) {
    const fy = Math.max(0, (Y + 0.5) * sy - 0.5);
    const y0 = Math.min(Math.floor(fy), h - 1);
    const y1 = Math.min(y0 + 1, h - 1);
    const ty = fy - y0;
    for (let X = 0; X < W; X++) {
      const fx = Math.max(0, (X + 0.5) * sx - 0.5);
      const x0 = Math.min(Math.floor(fx), w - 1);
      const x1 = Math.min(x0 + 1, w - 1);
      const tx = fx - x0;
      const top = mask[y0 * w + x0]! * (1 - tx) + mask[y0 * w + x1]! * tx;
      const bottom = mask[y1 * w + x0]! * (1 - tx) + mask[y1 * w + x1]! * tx;
      out[Y * W + X] = top * (1 - ty) + bottom * ty;
    }
  }
  return out;
}

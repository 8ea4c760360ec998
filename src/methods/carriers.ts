/**
 * Which tokens carry a subject. CLIP's text encoder is causal: a token's embedding sums up the prompt up to it, so
 * the words right after a noun ("a red square, a blue …": ",", "a") and, after the last noun, the end-of-text and
 * padding tokens carry that noun too, and the UNet reads the object from them as much as from the noun itself
 * (docs/method.md, diagnosis: an extra copy of the triangle is attended by "triangle", "and" and "a" alike). Acting
 * on the noun's column alone is undone by its carriers: when the edit zeroes "triangle" somewhere, the row is
 * renormalised and "and" and "a", which say "triangle" too, get more.
 *
 * So a subject is a group of tokens: its own tokens plus every later token (not another subject, not an attribute,
 * not the start token) whose cross-attention map follows the subject's — Pearson correlation ≥ ρ over the map's
 * pixels, at the current step, assigned to the subject it follows most. Found from the maps themselves, so it
 * holds for any text encoder without a word list. The group's map (the sum of its columns, before any edit) is
 * what the subject's focus region, the layout score and the edits use.
 */
import { argmax, normalizeByMax, otsuThreshold, type SubjectMaps } from './focus.js';
import { gaussianKernel } from './smoothing.js';
import type { Tensor } from '../tensor.js';

export interface CarrierOptions {
  /** Minimum Pearson correlation of a token's map with the subject's for the token to carry it. */
  minCorrelation: number;
}

export const CARRIER_DEFAULTS: CarrierOptions = { minCorrelation: 0.7 };

/**
 * How a subject's region reads its adjectives (regionMaps): 'weighted', each word by how distinct its map is;
 * 'strongest', the more distinct word alone.
 */
export type AttributeRegionRule = 'weighted' | 'strongest';

/** A subject's token group. */
export interface TokenGroup {
  /** The subject's own tokens (the first is the one whose map the correlation is taken against: its last token). */
  own: readonly number[];
  /** The later tokens found to carry it. */
  carriers: number[];
}

/** Column `k` of [h, w, T] maps, row-major h*w. */
export function tokenColumn(maps: Pick<Tensor, 'data' | 'shape'>, k: number): Float32Array {
  const [h, w, T] = maps.shape as [number, number, number];
  const out = new Float32Array(h * w);
  for (let p = 0; p < h * w; p++) out[p] = maps.data[p * T + k]!;
  return out;
}

/** Pearson correlation of two equally long maps (0 when either is constant). */
export function correlation(a: Float32Array, b: Float32Array): number {
  const n = a.length;
  let ma = 0,
    mb = 0;
  for (let i = 0; i < n; i++) ((ma += a[i]!), (mb += b[i]!));
  ma /= n;
  mb /= n;
  let sab = 0,
    saa = 0,
    sbb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i]! - ma,
      y = b[i]! - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/**
 * Each subject's token group from one call's maps [h, w, T]. `subjects[i]` are the subject's tokens with the
 * representative (last) token given separately; `reserved` are tokens no subject may take as carriers (attributes).
 */
export function findCarriers(
  maps: Pick<Tensor, 'data' | 'shape'>,
  subjects: readonly { token: number; tokens: readonly number[] }[],
  reserved: readonly number[],
  options: CarrierOptions = CARRIER_DEFAULTS,
): TokenGroup[] {
  const T = maps.shape[2]!;
  const taken = new Set<number>([0, ...reserved]);
  for (const s of subjects) for (const t of s.tokens) taken.add(t);
  const columns = subjects.map((s) => tokenColumn(maps, s.token));
  const groups: TokenGroup[] = subjects.map((s) => ({
    own: [s.token, ...s.tokens.filter((t) => t !== s.token)],
    carriers: [],
  }));
  for (let k = 1; k < T; k++) {
    if (taken.has(k)) continue;
    const column = tokenColumn(maps, k);
    let best = -1;
    let bestR = options.minCorrelation;
    subjects.forEach((s, i) => {
      if (k < s.token) return; // causal: only later tokens can carry the subject
      const r = correlation(column, columns[i]!);
      if (r >= bestR) ((bestR = r), (best = i));
    });
    if (best >= 0) groups[best]!.carriers.push(k);
  }
  return groups;
}

/** Every token of a group. */
export function groupTokens(g: TokenGroup): number[] {
  return [...g.own, ...g.carriers];
}

/**
 * Each group's map: the sum of its tokens' columns (probabilities, before any edit); `smooth`: then smoothed with
 * A&E's 3×3 Gaussian (σ 0.5, reflect padding) as its single-token maps are (for focus regions).
 */
export function groupMaps(
  maps: Pick<Tensor, 'data' | 'shape'>,
  groups: readonly TokenGroup[],
  smooth: boolean,
): SubjectMaps {
  const [h, w] = maps.shape as [number, number, number];
  return {
    height: h,
    width: w,
    maps: groups.map((g) => {
      const sum = new Float32Array(h * w);
      for (const k of groupTokens(g)) tokenColumn(maps, k).forEach((v, p) => (sum[p]! += v));
      return smooth ? smooth3x3(sum, h, w) : sum;
    }),
  };
}

/**
 * Each subject's map for its focus region and the layout score when its adjectives have a say: the token group's
 * map and the subject's attributes' map, each as a unit-mass map, weighted by how distinct it is from the other
 * subjects' maps of the same kind — (1 − mean Pearson correlation)², 0 where not positive. Which word says *where*
 * an object is depends on the model: on the pixel-space shapes model the noun and its carriers point at their own
 * object, the adjective less; on the latent one the noun hardly does and the adjective does (docs/method.md, "What
 * transferred"; scripts/token-localisation.ts). A word whose map is spread over every object alike is as similar to
 * the other subjects' as it can be and gets no weight. With one subject there is nothing to be distinct from: the
 * group's map alone, as `groupMaps` gives it. `attributes[i]`: subject i's attribute tokens (may be empty).
 *
 * `rule` 'strongest': each subject's more distinct word alone (the other weighted 0), ties to the group. Where the
 * nouns localise (the pixel model) that is the group's map, as without adjectives; where only the adjectives do, the
 * adjective's. A weighted mix dilutes the sharper map with the weaker one: on the pixel model it lost objects
 * (docs/method.md, "Retuned on the second model").
 */
export function regionMaps(
  maps: Pick<Tensor, 'data' | 'shape'>,
  groups: readonly TokenGroup[],
  attributes: readonly (readonly number[])[],
  smooth: boolean,
  rule: AttributeRegionRule = 'weighted',
): SubjectMaps {
  if (groups.length < 2) return groupMaps(maps, groups, smooth);
  const [h, w] = maps.shape as [number, number, number];
  const unitSum = (tokens: readonly number[]): Float32Array | null => {
    if (!tokens.length) return null;
    const sum = new Float32Array(h * w);
    for (const k of tokens) tokenColumn(maps, k).forEach((v, p) => (sum[p]! += v));
    let mass = 0;
    for (const v of sum) mass += v;
    return mass > 0 ? sum.map((v) => v / mass) : sum;
  };
  const parts = groups.map((g, i) => [unitSum(groupTokens(g)), unitSum(attributes[i] ?? [])] as const);
  const weight = (i: number, kind: 0 | 1): number => {
    const mine = parts[i]![kind];
    if (!mine) return 0;
    const others = parts.flatMap((o, j) => (j !== i && o[kind] ? [o[kind]!] : []));
    // No other subject has an adjective: compare with their groups' maps instead.
    const against = others.length ? others : parts.flatMap((o, j) => (j !== i && o[0] ? [o[0]] : []));
    const c = against.reduce((a, o) => a + correlation(mine, o), 0) / against.length;
    return Math.max(0, 1 - c) ** 2;
  };
  return {
    height: h,
    width: w,
    maps: parts.map((pair, i) => {
      const sum = new Float32Array(h * w);
      const weights = [weight(i, 0), weight(i, 1)];
      if (rule === 'strongest') weights[weights[0]! >= weights[1]! ? 1 : 0] = 0;
      // Maps identical to every other subject's: no word is distinct, the group's map as without adjectives.
      if (weights[0]! + weights[1]! === 0) weights[0] = 1;
      pair.forEach((m, kind) => {
        const wt = weights[kind]!;
        if (m && wt > 0) m.forEach((v, p) => (sum[p]! += wt * v));
      });
      return smooth ? smooth3x3(sum, h, w) : sum;
    }),
  };
}

const KERNEL = gaussianKernel(3, 0.5);

function smooth3x3(map: Float32Array, h: number, w: number): Float32Array {
  const reflect = (i: number, n: number) => (n === 1 ? 0 : i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++)
          s += KERNEL[(dy + 1) * 3 + dx + 1]! * map[reflect(y + dy, h) * w + reflect(x + dx, w)]!;
      out[y * w + x] = s;
    }
  return out;
}

/** Labels of the 4-connected components of `values ≥ threshold` (0: below), and their count. */
export function components(
  values: Float32Array,
  h: number,
  w: number,
  threshold: number,
): { labels: Int32Array; count: number } {
  const labels = new Int32Array(h * w);
  let count = 0;
  for (let p = 0; p < h * w; p++) {
    if (labels[p] || !(values[p]! >= threshold)) continue;
    labels[p] = ++count;
    const stack = [p];
    while (stack.length) {
      const q = stack.pop()!;
      const y = Math.floor(q / w),
        x = q % w;
      const visit = (r: number) => {
        if (!labels[r] && values[r]! >= threshold) ((labels[r] = count), stack.push(r));
      };
      if (y > 0) visit(q - w);
      if (y < h - 1) visit(q + w);
      if (x > 0) visit(q - 1);
      if (x < w - 1) visit(q + 1);
    }
  }
  return { labels, count };
}

export interface LayoutScore {
  /** The largest share of a subject's map in above-threshold blobs other than its peak's: a second copy forming. */
  duplicate: number;
  /** The largest IoU between two subjects' peak blobs: two subjects competing for one place (one will be lost). */
  collision: number;
  /** duplicate + collision: lower is better. */
  total: number;
}

/**
 * How promising a layout looks from one call's group maps (unsmoothed; Otsu's threshold on each max-normalised
 * map): the two failures the benchmark counts most, an extra copy and a missing object, each as the maps show them
 * while the layout forms (docs/method.md: on the tuning split, duplicate predicts an extra object with AUC 0.86 and
 * the score predicts failure with AUC ≈ 0.8 five steps into 25).
 */
export function layoutScore(groups: SubjectMaps): LayoutScore {
  const { height: h, width: w } = groups;
  let duplicate = 0;
  const peaks = groups.maps.map((m) => {
    const n = normalizeByMax(m);
    const { labels } = components(n, h, w, otsuThreshold(n));
    const peak = labels[argmax(n)]!;
    let mass = 0,
      other = 0;
    for (let p = 0; p < h * w; p++) {
      mass += m[p]!;
      if (labels[p] && labels[p] !== peak) other += m[p]!;
    }
    duplicate = Math.max(duplicate, mass > 0 ? other / mass : 0);
    return labels.map((l) => (peak !== 0 && l === peak ? 1 : 0));
  });
  let collision = 0;
  for (let a = 0; a < peaks.length; a++)
    for (let b = a + 1; b < peaks.length; b++) {
      let inter = 0,
        union = 0;
      for (let p = 0; p < h * w; p++)
        ((inter += peaks[a]![p]! & peaks[b]![p]!), (union += peaks[a]![p]! | peaks[b]![p]!));
      collision = Math.max(collision, union ? inter / union : 0);
    }
  return { duplicate, collision, total: duplicate + collision };
}

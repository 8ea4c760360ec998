/**
 * Benchmark statistics: per-method rates with 95% intervals, and paired comparisons between methods.
 *
 * Definitions (over the rows of one method; one row = one image = one (prompt, seed)):
 *
 * - `full_success`: fraction of IMAGES in which every prompted object is present with its shape and colour and
 *   nothing else was detected (`ScoreReport.full_success`). n = images. 95% Wilson score interval over images
 *   (this treats images as independent; images of the same prompt under different seeds are only approximately so).
 * - `object_recall`: fraction of prompted OBJECTS (pooled over all images) that are present with the prompted shape,
 *   any colour (`found_shape_match`). 1 − object_recall is the neglect rate.
 * - `binding`: fraction of prompted objects present with the prompted shape AND colour.
 * - `leakage`: among prompted objects that name a colour, the fraction drawn with the right shape but in the colour
 *   of ANOTHER prompted object (`leaked`). Lower is better. Always 0 for single-object prompts.
 *
 *   The objects of one image (and the images of one prompt) are not independent, so the object-level rates get a
 *   cluster bootstrap instead of a binomial interval: the prompts are resampled with replacement (all images and
 *   objects of a drawn prompt come along), the pooled rate is recomputed, 2000 times with a fixed seed, and the
 *   interval is the 2.5th–97.5th percentile. When every resample gives the same value (e.g. no object ever leaked)
 *   the bootstrap interval has no width; then the Wilson interval with n = the number of prompts (the independent
 *   units) is reported instead.
 * - `seconds_per_image`: mean wall-clock seconds of generation per image (encode + denoise + decode), excluding the
 *   one-off compilation of graphs (recorded separately in each row).
 *
 * Paired comparison on full_success (`mcnemar`): over the (prompt, seed) pairs that both methods ran — the same
 * initial noise — b = pairs where the method succeeded and the baseline failed, c = the reverse. Exact McNemar test:
 * two-sided binomial test of b against Bin(b + c, 1/2), p = min(1, 2 · P(X ≤ min(b, c))); p = 1 when b + c = 0.
 */

/** 97.5th percentile of the standard normal distribution. */
export const Z95 = 1.959963984540054;

export interface Interval {
  /** null when there is nothing to count (n = 0). */
  rate: number | null;
  low: number | null;
  high: number | null;
}

/** Wilson score interval for `successes` out of `n` (95% by default). */
export function wilson(successes: number, n: number, z = Z95): Interval {
  if (!(n > 0)) return { rate: null, low: null, high: null };
  if (successes < 0 || successes > n) throw new Error(`wilson: ${successes} successes out of ${n}`);
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { rate: p, low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** log of the binomial pmf terms P(X = k), k = 0..n, for X ~ Bin(n, 1/2). */
function logHalfBinomialPmf(n: number, upTo: number): number[] {
  const out: number[] = [];
  let lp = -n * Math.LN2; // log P(X = 0)
  for (let k = 0; k <= upTo; k++) {
    out.push(lp);
    lp += Math.log(n - k) - Math.log(k + 1);
  }
  return out;
}

/** P(X ≤ k) for X ~ Bin(n, 1/2), exactly (summed in log space, so large n does not underflow). */
export function binomialHalfCdf(k: number, n: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  const terms = logHalfBinomialPmf(n, k);
  const m = Math.max(...terms);
  let s = 0;
  for (const t of terms) s += Math.exp(t - m);
  return Math.min(1, Math.exp(m + Math.log(s)));
}

export interface McNemar {
  /** Pairs where the first method succeeded and the second failed. */
  b: number;
  /** Pairs where the second succeeded and the first failed. */
  c: number;
  /** Exact two-sided p-value. */
  p: number;
}

/** Exact (binomial) McNemar test on the discordant counts b and c. */
export function mcnemarExact(b: number, c: number): McNemar {
  const n = b + c;
  if (n === 0) return { b, c, p: 1 };
  return { b, c, p: Math.min(1, 2 * binomialHalfCdf(Math.min(b, c), n)) };
}

/** A tiny deterministic PRNG (mulberry32) for the bootstrap. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Successes and trials of one cluster (one prompt: all its images' objects). */
export interface Cluster {
  successes: number;
  trials: number;
}

export interface BootstrapOptions {
  resamples?: number;
  seed?: number;
  z?: number;
}

/**
 * Pooled rate Σ successes / Σ trials over clusters, with a percentile cluster-bootstrap 95% interval (see the module
 * comment; Wilson over clusters when the bootstrap has no spread).
 */
export function clusterRate(clusters: readonly Cluster[], options: BootstrapOptions = {}): Interval {
  const used = clusters.filter((c) => c.trials > 0);
  const S = used.reduce((s, c) => s + c.successes, 0);
  const T = used.reduce((s, c) => s + c.trials, 0);
  if (T === 0) return { rate: null, low: null, high: null };
  const rate = S / T;
  const B = options.resamples ?? 2000;
  const rand = mulberry32(options.seed ?? 12345);
  const k = used.length;
  const values = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0,
      t = 0;
    for (let i = 0; i < k; i++) {
      const c = used[Math.floor(rand() * k)]!;
      s += c.successes;
      t += c.trials;
    }
    values[b] = s / t;
  }
  values.sort();
  const lo = quantile(values, 0.025);
  const hi = quantile(values, 0.975);
  if (hi - lo < 1e-12) {
    // No spread in the resamples: every prompt has the same rate (0 or 1, in practice). Binomial over prompts.
    const w = wilson(rate * k, k, options.z);
    return { rate, low: w.low, high: w.high };
  }
  return { rate, low: Math.min(lo, rate), high: Math.max(hi, rate) };
}

/** Linear-interpolation quantile (type 7, numpy's default) of sorted values. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = (n - 1) * q;
  const i = Math.floor(pos);
  const f = pos - i;
  return i + 1 < n ? sorted[i]! + f * (sorted[i + 1]! - sorted[i]!) : sorted[i]!;
}

// ------------------------------------------------------------------------------------------------ per-method summary

/** What stats need of a results row. */
export interface StatRow {
  prompt: string;
  seed: number;
  method: string;
  full_success: boolean;
  objects: readonly { found_shape_match: boolean; colour_correct: boolean; leaked: boolean; colour: string | null }[];
  seconds: number;
}

export interface MethodSummary {
  full_success: Interval;
  object_recall: Interval;
  binding: Interval;
  leakage: Interval;
  /** Images. */
  n: number;
  /** Prompted objects over all images. */
  objects: number;
  prompts: number;
  seconds_per_image: number | null;
}

export interface Comparison {
  method: string;
  baseline: string;
  /** (prompt, seed) pairs both ran. */
  pairs: number;
  /** Method succeeded, baseline failed. */
  method_only: number;
  /** Baseline succeeded, method failed. */
  baseline_only: number;
  /** Exact McNemar two-sided p-value. */
  p: number;
}

export interface Summary {
  methods: Record<string, MethodSummary>;
  comparisons: Comparison[];
  /** How each interval was computed (for readers of the JSON). */
  intervals: Record<'full_success' | 'object_recall' | 'binding' | 'leakage', string>;
}

export const INTERVAL_NOTES: Summary['intervals'] = {
  full_success: '95% Wilson score interval over images',
  object_recall:
    '95% percentile cluster bootstrap over prompts (2000 resamples; Wilson over prompts when it has no spread)',
  binding: '95% percentile cluster bootstrap over prompts (2000 resamples; Wilson over prompts when it has no spread)',
  leakage:
    '95% percentile cluster bootstrap over prompts, among objects that name a colour (2000 resamples; Wilson over prompts when it has no spread)',
};

/** Baselines every other method is compared with (when they ran). */
export const BASELINES = ['none', 'attend-and-excite'] as const;

export function summarizeMethod(rows: readonly StatRow[]): MethodSummary {
  const byPrompt = new Map<string, StatRow[]>();
  for (const r of rows) {
    const list = byPrompt.get(r.prompt) ?? [];
    list.push(r);
    byPrompt.set(r.prompt, list);
  }
  const clusters = (pick: (o: StatRow['objects'][number]) => boolean | null): Cluster[] =>
    [...byPrompt.values()].map((list) => {
      let successes = 0,
        trials = 0;
      for (const r of list) {
        for (const o of r.objects) {
          const v = pick(o);
          if (v === null) continue;
          trials++;
          if (v) successes++;
        }
      }
      return { successes, trials };
    });
  const n = rows.length;
  const successes = rows.filter((r) => r.full_success).length;
  const seconds = rows.map((r) => r.seconds).filter((s) => Number.isFinite(s));
  return {
    full_success: wilson(successes, n),
    object_recall: clusterRate(clusters((o) => o.found_shape_match)),
    binding: clusterRate(clusters((o) => o.found_shape_match && o.colour_correct)),
    leakage: clusterRate(clusters((o) => (o.colour === null ? null : o.leaked))),
    n,
    objects: rows.reduce((s, r) => s + r.objects.length, 0),
    prompts: byPrompt.size,
    seconds_per_image: seconds.length
      ? Math.round((1000 * seconds.reduce((a, b) => a + b, 0)) / seconds.length) / 1000
      : null,
  };
}

/** Paired full_success comparison of `method` against `baseline` over the (prompt, seed) pairs both ran. */
export function compareMethods(rows: readonly StatRow[], method: string, baseline: string): Comparison {
  const key = (r: StatRow) => `${r.seed}\u0000${r.prompt}`;
  const base = new Map<string, boolean>();
  for (const r of rows) if (r.method === baseline) base.set(key(r), r.full_success);
  let pairs = 0,
    b = 0,
    c = 0;
  for (const r of rows) {
    if (r.method !== method) continue;
    const other = base.get(key(r));
    if (other === undefined) continue;
    pairs++;
    if (r.full_success && !other) b++;
    else if (!r.full_success && other) c++;
  }
  const t = mcnemarExact(b, c);
  return { method, baseline, pairs, method_only: b, baseline_only: c, p: t.p };
}

/** Per-method summaries (in `methodOrder`) and the comparisons of every method with `none` and `attend-and-excite`. */
export function summarize(rows: readonly StatRow[], methodOrder?: readonly string[]): Summary {
  const order = methodOrder ?? [...new Set(rows.map((r) => r.method))];
  const methods: Record<string, MethodSummary> = {};
  for (const m of order) methods[m] = summarizeMethod(rows.filter((r) => r.method === m));
  const comparisons: Comparison[] = [];
  for (const baseline of BASELINES) {
    if (!order.includes(baseline)) continue;
    for (const m of order) if (m !== baseline) comparisons.push(compareMethods(rows, m, baseline));
  }
  return { methods, comparisons, intervals: INTERVAL_NOTES };
}

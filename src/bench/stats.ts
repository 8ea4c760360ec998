/**
 * Benchmark statistics: per-method rates with 95% intervals, and paired comparisons between methods.
 *
 * The design they assume (src/bench/run.ts, plan.ts): every image is one (prompt, seed) pair with its own initial noise,
 * drawn from (seed, prompt); the methods of a pair share that noise. So images are independent draws given their
 * prompt, images of one prompt share the prompt (its difficulty), and a comparison of two methods is paired.
 *
 * The metrics themselves (what each row field and rate means, and how each is summarised) are the table in
 * metrics.ts. Intervals: images of one prompt are not independent (nor are the objects of one image), so every rate
 * gets a two-way bootstrap interval over prompts and seeds (`twoWayRate`), not a binomial one: prompts and seeds are
 * resampled with replacement, every cell of a drawn (prompt, seed) comes along, the pooled rate is recomputed, 2000
 * times with a fixed seed, and the interval is the 2.5th–97.5th percentile. When every resample gives the same value
 * (e.g. no object ever leaked) the interval has no width; then the Wilson interval with n = the number of prompts is
 * reported instead.
 *
 * Paired comparison on full_success: over the (prompt, seed) pairs that both methods ran — the same initial noise —
 * b = pairs where the method succeeded and the baseline failed, c = the reverse. `p`: exact McNemar test, two-sided
 * binomial test of b against Bin(b + c, 1/2), p = min(1, 2 · P(X ≤ min(b, c))) (1 when b + c = 0); it takes the
 * pairs as independent. `p_cluster`: the exact sign-flip test that flips all pairs of a prompt together
 * (`signFlipExact`), which does not. `failure_ratio`: the method's failures ÷ the baseline's over the same pairs,
 * with a paired two-way bootstrap interval.
 */
import { mulberry32 } from '../util/random.js';

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

/** Successes and trials of one (prompt, seed) cell: one image, or one image's objects. */
export interface Cell extends Cluster {
  prompt: string;
  seed: number;
}

/**
 * The cells as a prompts × seeds grid (missing cells count 0 of 0), for the two-way bootstrap.
 * `values[k][i * seeds + j]` is quantity k of prompt i, seed j.
 */
interface Grid {
  prompts: number;
  seeds: number;
  values: Float64Array[];
}

function grid(cells: readonly { prompt: string; seed: number; values: readonly number[] }[]): Grid {
  const promptIx = new Map<string, number>();
  const seedIx = new Map<number, number>();
  for (const c of cells) {
    if (!promptIx.has(c.prompt)) promptIx.set(c.prompt, promptIx.size);
    if (!seedIx.has(c.seed)) seedIx.set(c.seed, seedIx.size);
  }
  const P = promptIx.size,
    S = seedIx.size;
  const K = cells[0]?.values.length ?? 0;
  const values = Array.from({ length: K }, () => new Float64Array(P * S));
  for (const c of cells) {
    const at = promptIx.get(c.prompt)! * S + seedIx.get(c.seed)!;
    c.values.forEach((v, k) => (values[k]![at]! += v));
  }
  return { prompts: P, seeds: S, values };
}

/**
 * Two-way ("pigeonhole") bootstrap over a prompts × seeds grid (Owen 2007; McCullagh 2000): each resample draws
 * the prompts with replacement and, independently, the seeds with replacement, and keeps every cell of the drawn
 * rows and columns (a cell drawn as prompt ×a and seed ×b counts a·b times). It respects both ways the images of a
 * benchmark are grouped — images of one prompt share the prompt, images of one seed share whatever a seed shares —
 * and is conservative when one of the two has no effect. `stat(sums)` maps the resampled sums of each quantity to
 * the statistic; returns the sorted statistics of `resamples` resamples (NaN statistics are dropped).
 */
function twoWayBootstrap(g: Grid, stat: (sums: readonly number[]) => number, options: BootstrapOptions): Float64Array {
  const B = options.resamples ?? 2000;
  const rand = mulberry32(options.seed ?? 12345);
  const { prompts: P, seeds: S, values } = g;
  const K = values.length;
  const cp = new Float64Array(P);
  const cs = new Float64Array(S);
  const sums = new Array<number>(K).fill(0);
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    cp.fill(0);
    cs.fill(0);
    for (let i = 0; i < P; i++) cp[Math.floor(rand() * P)]! += 1;
    if (S === 1) cs[0] = 1;
    else for (let j = 0; j < S; j++) cs[Math.floor(rand() * S)]! += 1;
    for (let k = 0; k < K; k++) {
      const v = values[k]!;
      let total = 0;
      for (let i = 0; i < P; i++) {
        const wi = cp[i]!;
        if (wi === 0) continue;
        let row = 0;
        for (let j = 0; j < S; j++) row += cs[j]! * v[i * S + j]!;
        total += wi * row;
      }
      sums[k] = total;
    }
    const x = stat(sums);
    if (Number.isFinite(x)) out.push(x);
  }
  return Float64Array.from(out).sort();
}

/**
 * Pooled rate Σ successes / Σ trials over (prompt, seed) cells, with a 95% percentile interval from the two-way
 * bootstrap over prompts and seeds. When no resample differs (e.g. every image succeeded), the bootstrap has no
 * width; then the Wilson interval with n = the number of prompts (the coarser grouping) is reported instead.
 */
export function twoWayRate(cells: readonly Cell[], options: BootstrapOptions = {}): Interval {
  const used = cells.filter((c) => c.trials > 0);
  const S = used.reduce((s, c) => s + c.successes, 0);
  const T = used.reduce((s, c) => s + c.trials, 0);
  if (T === 0) return { rate: null, low: null, high: null };
  const rate = S / T;
  const g = grid(used.map((c) => ({ prompt: c.prompt, seed: c.seed, values: [c.successes, c.trials] })));
  const values = twoWayBootstrap(g, ([s, t]) => s! / t!, options);
  const lo = quantile(values, 0.025);
  const hi = quantile(values, 0.975);
  if (!(hi - lo >= 1e-12)) {
    const w = wilson(rate * g.prompts, g.prompts, options.z);
    return { rate, low: w.low, high: w.high };
  }
  return { rate, low: Math.min(lo, rate), high: Math.max(hi, rate) };
}

/**
 * Pooled rate Σ successes / Σ trials over clusters, with a percentile cluster-bootstrap 95% interval over the
 * clusters (Wilson over clusters when the bootstrap has no spread). The one-way case of `twoWayRate`.
 */
export function clusterRate(clusters: readonly Cluster[], options: BootstrapOptions = {}): Interval {
  return twoWayRate(
    clusters.map((c, i) => ({ ...c, prompt: String(i), seed: 0 })),
    options,
  );
}

/**
 * Exact two-sided sign-flip (randomisation) test of a paired difference with clusters: `d[c]` is cluster c's sum of
 * per-pair differences (here: pairs the method won minus pairs it lost, over the seeds of one prompt). Under the null
 * hypothesis the two methods are exchangeable within a cluster, so each cluster's difference is as likely negated;
 * p = P(|Σ ε_c d_c| ≥ |Σ d_c|) over the 2^C sign patterns, computed exactly by convolution over the integer sums.
 * With one pair per cluster it is the exact McNemar test.
 */
export function signFlipExact(d: readonly number[]): number {
  const ds = d.map((x) => Math.abs(Math.round(x))).filter((x) => x > 0);
  const observed = Math.abs(d.reduce((s, x) => s + Math.round(x), 0));
  const span = ds.reduce((s, x) => s + x, 0);
  if (span === 0) return 1;
  // dist[v + span] = probability that the flipped sum equals v.
  let dist = new Float64Array(2 * span + 1);
  dist[span] = 1;
  for (const x of ds) {
    const next = new Float64Array(dist.length);
    for (let v = 0; v < dist.length; v++) {
      const p = dist[v]!;
      if (p === 0) continue;
      next[v + x]! += p / 2;
      next[v - x]! += p / 2;
    }
    dist = next;
  }
  let p = 0;
  for (let v = 0; v < dist.length; v++) if (Math.abs(v - span) >= observed) p += dist[v]!;
  return Math.min(1, p);
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

// ------------------------------------------------------------------------------------------------ paired comparison

/** What a paired comparison reads of a results row. */
export interface PairRow {
  prompt: string;
  seed: number;
  method: string;
  full_success: boolean;
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
  /** Exact McNemar two-sided p-value (pairs taken as independent). */
  p: number;
  /** Exact sign-flip p-value with the pairs of one prompt flipped together (respects the clustering by prompt). */
  p_cluster: number;
  /**
   * Failures of the method ÷ failures of the baseline over the same pairs (failure = not full success), with a 95%
   * interval from the paired two-way bootstrap; rate null when the baseline never failed.
   */
  failure_ratio: Interval;
}

/** Paired full_success comparison of `method` against `baseline` over the (prompt, seed) pairs both ran. */
export function compareMethods(rows: readonly PairRow[], method: string, baseline: string): Comparison {
  const key = (r: PairRow) => `${r.seed}\u0000${r.prompt}`;
  const base = new Map<string, boolean>();
  for (const r of rows) if (r.method === baseline) base.set(key(r), r.full_success);
  let b = 0,
    c = 0;
  const perPrompt = new Map<string, number>();
  const cells: { prompt: string; seed: number; values: number[] }[] = [];
  for (const r of rows) {
    if (r.method !== method) continue;
    const other = base.get(key(r));
    if (other === undefined) continue;
    const d = r.full_success && !other ? 1 : !r.full_success && other ? -1 : 0;
    if (d > 0) b++;
    else if (d < 0) c++;
    perPrompt.set(r.prompt, (perPrompt.get(r.prompt) ?? 0) + d);
    cells.push({ prompt: r.prompt, seed: r.seed, values: [r.full_success ? 0 : 1, other ? 0 : 1] });
  }
  const fm = cells.reduce((s, x) => s + x.values[0]!, 0);
  const fb = cells.reduce((s, x) => s + x.values[1]!, 0);
  let failure_ratio: Interval = { rate: null, low: null, high: null };
  if (fb > 0) {
    const values = twoWayBootstrap(grid(cells), ([m, bl]) => m! / bl!, {});
    const rate = fm / fb;
    failure_ratio = {
      rate,
      low: Math.min(quantile(values, 0.025), rate),
      high: Math.max(quantile(values, 0.975), rate),
    };
  }
  return {
    method,
    baseline,
    pairs: cells.length,
    method_only: b,
    baseline_only: c,
    p: mcnemarExact(b, c).p,
    p_cluster: signFlipExact([...perPrompt.values()]),
    failure_ratio,
  };
}

/**
 * The benchmark's metrics, declared once. Each entry of `METRICS` is a field of a results row (measured from the
 * image's score or from its generation), a statistic of the summary (a rate with its 95% interval, or a mean), the
 * column that shows it, or all three. From this one table come: the row's measured fields and their type
 * (`measureRow`, `MetricFields`), the per-method summary and its type (`summarizeMetrics`, `MetricSummary`), the
 * interval notes of summary.json (`INTERVAL_NOTES`), the columns of the terminal, Markdown and HTML tables
 * (`columns`) and the legend under them. Adding a metric is adding an entry.
 *
 * Order matters: row fields are written in table order (a re-run writes byte-identical rows), and each report
 * table shows its columns in table order.
 */
import type { GenerateResult } from '../pipeline/generate.js';
import type { ScoreReport } from '../shapes/score.js';
import { compareMethods, twoWayRate, type Cell, type Comparison, type Interval } from './stats.js';

/** What an image's row fields are measured from. */
export interface Measured {
  score: ScoreReport;
  result: GenerateResult;
  /** Milliseconds this image spent compiling graphs (its share of the batch's). */
  compileMs: number;
  /** Milliseconds the scorer took. */
  scoreMs: number;
}

/** What the statistics read of a prompted object in a row. */
export interface StatObject {
  found_shape_match: boolean;
  colour_correct: boolean;
  leaked: boolean;
  colour: string | null;
}

/**
 * A row as the statistics read it: the image's identity, its outcome and its objects, and any measured field by
 * name (rows of older benchmark versions may lack some; the statistics say so rather than guess).
 */
export interface StatRow {
  prompt: string;
  seed: number;
  method: string;
  full_success: boolean;
  objects: readonly StatObject[];
  /** Detections not matched to a prompted object (absent in rows of old benchmark versions: counted as 0). */
  extra_objects?: number;
  seconds?: number;
  /** Guided UNet passes the image cost (rows of older benchmark versions lack it). */
  guided_passes?: number;
}

/** A measured field by name (undefined when the row lacks it or it is not a finite number). */
function numberField(r: StatRow, key: string): number | undefined {
  const v = (r as unknown as Record<string, unknown>)[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export interface SeedRate {
  seed: number;
  n: number;
  rate: number;
}

/** How a metric is summarised over the rows of one method. */
type Stat =
  /** Share of images for which `success` holds, with the two-way bootstrap interval. */
  | { kind: 'image'; success: (r: StatRow) => boolean }
  /** Pooled over objects (those for which `success` is not null), with the two-way bootstrap interval. */
  | { kind: 'object'; over: string; success: (o: StatObject) => boolean | null }
  /** full_success of each seed alone. */
  | { kind: 'per-seed' }
  /**
   * Mean of `of` over the rows, rounded to `digits` decimals, under the summary key `as`. `missing`: 'skip' averages
   * the rows that have it, 'null' gives null unless every row has it.
   */
  | {
      kind: 'mean';
      as: string;
      of: (r: StatRow) => number | undefined;
      digits: number;
      missing: 'skip' | 'null';
      /** Decimals in the report's column. */
      shown: number;
    };

/** Where a metric's row value comes from. */
type From = { score: (s: ScoreReport) => unknown } | { result: (m: Measured) => unknown };

interface Metric {
  /** The row field, or the summary key of a statistic that is no row field. */
  key: string;
  /** The report column's header (with the unit), when the metric has a column. */
  label?: string;
  unit: '%' | 'count' | 'fraction' | 's' | 'passes' | 'flag' | 'object';
  from?: From;
  /** Rows of older benchmark versions lack the field (or it is written only when measured). */
  optional?: true;
  /** What it is, in the legend under the tables. */
  note: string;
  stat?: Stat;
  /** The table that shows it: the main one or the failure kinds'; the summary key nests under `group`. */
  column?: 'main' | 'failures';
  group?: 'failures';
}

const seconds = (ms: number) => round3(ms / 1000);

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The cost a generation reports, when it does (`result.cost`: UNet passes forward and backward, seconds). */
function costOf(result: GenerateResult): { unetForward?: number; unetBackward?: number } | undefined {
  return (result as { cost?: { unetForward?: number; unetBackward?: number } }).cost;
}

/** Guided UNet passes: one per sampler call, and the calls up to the comparison for every other start tried. */
function guidedPasses(r: GenerateResult): number {
  return r.timesteps.length + (r.candidate ? (r.candidate.scores.length - 1) * r.candidate.atCall : 0);
}

export const METRICS = [
  {
    key: 'full_success',
    label: 'full success %',
    unit: '%',
    from: { score: (s: ScoreReport) => s.full_success },
    note: 'full success: every prompted object with its shape and colour, nothing extra (per image)',
    stat: { kind: 'image', success: (r: StatRow) => r.full_success },
    column: 'main',
  },
  {
    key: 'per_seed',
    label: 'per seed %',
    unit: '%',
    note: 'per seed: full success of each seed alone',
    stat: { kind: 'per-seed' },
    column: 'main',
  },
  {
    key: 'object_recall',
    label: 'object recall %',
    unit: '%',
    from: { score: (s: ScoreReport) => s.object_recall },
    note: 'object recall: right shape, any colour (pooled over objects; 1 − recall is the neglect rate)',
    stat: { kind: 'object', over: 'pooled over objects', success: (o: StatObject) => o.found_shape_match },
    column: 'main',
  },
  {
    key: 'binding',
    label: 'binding %',
    unit: '%',
    from: { score: (s: ScoreReport) => s.binding },
    note: 'binding: right shape and colour (pooled over objects)',
    stat: {
      kind: 'object',
      over: 'pooled over objects',
      success: (o: StatObject) => o.found_shape_match && o.colour_correct,
    },
    column: 'main',
  },
  {
    key: 'binding_given_found',
    unit: 'fraction',
    from: { score: (s: ScoreReport) => s.binding_given_found },
    note: 'binding among the objects present (null when none is)',
  },
  {
    key: 'leakage',
    label: 'leakage %',
    unit: '%',
    from: { score: (s: ScoreReport) => s.leakage },
    note:
      "leakage: right shape in another prompted object's colour, lower is better (pooled over objects that name a " +
      'colour)',
    stat: {
      kind: 'object',
      over: 'pooled over objects that name a colour',
      success: (o: StatObject) => (o.colour === null ? null : o.leaked),
    },
    column: 'main',
  },
  {
    key: 'extra_objects',
    unit: 'count',
    from: { score: (s: ScoreReport) => s.extra_objects },
    note: 'detections matched to no prompted object',
  },
  {
    key: 'recoloured_share',
    label: 'recoloured %',
    unit: '%',
    from: {
      score: (s: ScoreReport) => {
        const present = s.objects.filter((o) => o.found_shape_match);
        return present.length ? present.filter((o) => !o.colour_correct).length / present.length : null;
      },
    },
    note: 'recoloured: drawn in a wrong colour, lower is better (pooled over the objects present with their shape)',
    stat: {
      kind: 'object',
      over: 'pooled over objects present with their shape',
      success: (o: StatObject) => (o.found_shape_match ? !o.colour_correct : null),
    },
    column: 'main',
  },
  {
    key: 'missing',
    group: 'failures',
    label: 'object missing %',
    unit: '%',
    note: 'object missing: share of images with a prompted object absent (neglect)',
    stat: { kind: 'image', success: (r: StatRow) => r.objects.some((o) => !o.found_shape_match) },
    column: 'failures',
  },
  {
    key: 'recoloured',
    group: 'failures',
    label: 'object recoloured %',
    unit: '%',
    note: 'object recoloured: share of images with a prompted object in the wrong colour (binding)',
    stat: { kind: 'image', success: (r: StatRow) => r.objects.some((o) => o.found_shape_match && !o.colour_correct) },
    column: 'failures',
  },
  {
    key: 'extra',
    group: 'failures',
    label: 'extra object %',
    unit: '%',
    note: 'extra object: share of images with something no prompted object accounts for',
    stat: { kind: 'image', success: (r: StatRow) => (r.extra_objects ?? 0) > 0 },
    column: 'failures',
  },
  {
    key: 'seconds',
    label: 's/image',
    unit: 's',
    from: { result: (m: Measured) => seconds(m.result.timings.totalMs / m.result.batch.size - m.compileMs) },
    note:
      's/image: mean generation seconds (encode + denoise + decode without compiling graphs, a batch’s share), ' +
      'moved by whatever else the machine runs',
    stat: {
      kind: 'mean',
      as: 'seconds_per_image',
      of: (r: StatRow) => r.seconds,
      digits: 3,
      missing: 'skip',
      shown: 2,
    },
    column: 'main',
  },
  {
    key: 'compile_seconds',
    unit: 's',
    from: { result: (m: Measured) => seconds(m.compileMs) },
    note: 'seconds compiling graphs during this image (first use of a method’s graphs)',
  },
  {
    key: 'batch_size',
    unit: 'count',
    optional: true,
    from: { result: (m: Measured) => m.result.batch.size },
    note: 'images generated together in one batch (seconds and timings are this image’s share)',
  },
  {
    key: 'timings',
    unit: 's',
    from: {
      result: (m: Measured) => ({
        encode: seconds(m.result.timings.encodeMs / m.result.batch.size),
        denoise: seconds(m.result.timings.denoiseMs / m.result.batch.size),
        decode: seconds(m.result.timings.decodeMs / m.result.batch.size),
        score: seconds(m.scoreMs),
      }),
    },
    note: 'seconds of each stage, this image’s share',
  },
  {
    key: 'refinement_tries',
    unit: 'count',
    from: {
      result: (m: Measured) => m.result.steps.reduce((s, st) => s + (st.method?.refinementTries ?? 0), 0),
    },
    note: 'latent-update refinement tries of gradient methods, summed over steps (0 for others)',
  },
  {
    key: 'starts',
    unit: 'count',
    optional: true,
    from: { result: (m: Measured) => m.result.candidate?.scores.length ?? 1 },
    note: 'starts (initial noises) the method tried before keeping one (1 without a choice of start)',
  },
  {
    key: 'guided_passes',
    label: 'passes/image',
    unit: 'passes',
    optional: true,
    from: { result: (m: Measured) => guidedPasses(m.result) },
    note:
      'passes/image: guided UNet passes forward per image (as the generation counts them when it reports its ' +
      'cost, else sampler calls plus the calls up to the comparison for every other start tried)',
    stat: {
      kind: 'mean',
      as: 'passes_per_image',
      of: (r: StatRow) => numberField(r, 'unet_forward') ?? r.guided_passes,
      digits: 2,
      missing: 'null',
      shown: 1,
    },
    column: 'main',
  },
  {
    key: 'unet_forward',
    unit: 'passes',
    optional: true,
    from: { result: (m: Measured) => costOf(m.result)?.unetForward },
    note: 'UNet passes forward, as the generation reports its cost (absent when it does not)',
  },
  {
    key: 'unet_backward',
    label: 'backward/image',
    unit: 'passes',
    optional: true,
    from: { result: (m: Measured) => costOf(m.result)?.unetBackward },
    note: "backward/image: UNet passes backward per image (gradient methods' loss), when the generation reports it",
    stat: {
      kind: 'mean',
      as: 'backward_per_image',
      of: (r: StatRow) => numberField(r, 'unet_backward'),
      digits: 2,
      missing: 'null',
      shown: 1,
    },
    column: 'main',
  },
] as const satisfies readonly Metric[];

// ------------------------------------------------------------------------------------------------------ types

type Entry = (typeof METRICS)[number];
type FieldEntry = Extract<Entry, { from: From }>;
type ValueOf<E> = E extends { from: { score: (s: ScoreReport) => infer V } }
  ? V
  : E extends { from: { result: (m: Measured) => infer V } }
    ? V
    : never;

/** The measured fields of a results row, as the table declares them. */
export type MetricFields = {
  [E in FieldEntry as E extends { optional: true } ? never : E['key']]: ValueOf<E>;
} & {
  [E in FieldEntry as E extends { optional: true } ? E['key'] : never]?: Exclude<ValueOf<E>, undefined>;
};

type StatEntry = Extract<Entry, { stat: Stat }>;
type SummaryKey<E> = E extends { stat: { as: infer K extends string } } ? K : E extends { key: infer K } ? K : never;
type SummaryValue<S> = S extends { kind: 'mean' }
  ? number | null
  : S extends { kind: 'per-seed' }
    ? SeedRate[]
    : Interval;

export type FailureKind = Extract<StatEntry, { group: 'failures' }>['key'];

/** Each statistic of one method, under its summary key (failure kinds under `failures`). */
export type MetricSummary = {
  [E in Exclude<StatEntry, { group: 'failures' }> as SummaryKey<E>]: SummaryValue<E['stat']>;
} & { failures: Record<FailureKind, Interval> };

const entries: readonly Metric[] = METRICS;

/** Failure kinds of one image (an image can have several), in table order. */
export const FAILURE_KINDS = entries.filter((m) => m.group === 'failures').map((m) => m.key) as FailureKind[];

// ------------------------------------------------------------------------------------------------------ rows

/**
 * The measured fields of one image's row that come `from` its score or its generation, in table order (a field
 * measured as undefined is left out). A row holds the score's fields after its objects, the generation's after its
 * detections.
 */
export function measureRow(m: Measured, from: 'score' | 'result'): Partial<MetricFields> {
  const out: Record<string, unknown> = {};
  for (const e of entries) {
    if (!e.from || !(from in e.from)) continue;
    const v = 'score' in e.from ? e.from.score(m.score) : e.from.result(m);
    if (v !== undefined) out[e.key] = v;
  }
  return out as Partial<MetricFields>;
}

// ------------------------------------------------------------------------------------------------------ summary

function objectCells(rows: readonly StatRow[], success: (o: StatObject) => boolean | null): Cell[] {
  return rows.map((r) => {
    let successes = 0,
      trials = 0;
    for (const o of r.objects) {
      const v = success(o);
      if (v === null) continue;
      trials++;
      if (v) successes++;
    }
    return { prompt: r.prompt, seed: r.seed, successes, trials };
  });
}

function perSeed(rows: readonly StatRow[]): SeedRate[] {
  const seeds = [...new Set(rows.map((r) => r.seed))].sort((a, b) => a - b);
  return seeds.map((seed) => {
    const rs = rows.filter((r) => r.seed === seed);
    return { seed, n: rs.length, rate: rs.filter((r) => r.full_success).length / rs.length };
  });
}

function mean(rows: readonly StatRow[], s: Extract<Stat, { kind: 'mean' }>): number | null {
  const values = rows.map(s.of);
  const have = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  if (have.length === 0 || (s.missing === 'null' && have.length < rows.length)) return null;
  const k = 10 ** s.digits;
  return Math.round((k * have.reduce((a, b) => a + b, 0)) / have.length) / k;
}

function statistic(rows: readonly StatRow[], s: Stat): Interval | SeedRate[] | number | null {
  switch (s.kind) {
    case 'image':
      return twoWayRate(
        rows.map((r) => ({ prompt: r.prompt, seed: r.seed, successes: s.success(r) ? 1 : 0, trials: 1 })),
      );
    case 'object':
      return twoWayRate(objectCells(rows, s.success));
    case 'per-seed':
      return perSeed(rows);
    case 'mean':
      return mean(rows, s);
  }
}

/** Every statistic of the table over the rows of one method. */
export function summarizeMetrics(rows: readonly StatRow[]): MetricSummary {
  const out: Record<string, unknown> = {};
  const failures: Record<string, unknown> = {};
  for (const e of entries) {
    if (!e.stat) continue;
    const value = statistic(rows, e.stat);
    if (e.group === 'failures') failures[e.key] = value;
    else out[e.stat.kind === 'mean' ? e.stat.as : e.key] = value;
  }
  return { ...out, failures } as MetricSummary;
}

/** One failure kind of one image (the same predicates as the statistics). */
export function failureKinds(r: Pick<StatRow, 'objects' | 'extra_objects'>): Record<FailureKind, boolean> {
  const row = { prompt: '', seed: 0, method: '', full_success: false, ...r };
  const out: Record<string, boolean> = {};
  for (const e of entries) if (e.group === 'failures' && e.stat?.kind === 'image') out[e.key] = e.stat.success(row);
  return out as Record<FailureKind, boolean>;
}

/** One method's statistics: every metric of the table, and how many images, objects, prompts and seeds. */
export type MethodSummary = MetricSummary & {
  /** Images. */
  n: number;
  /** Prompted objects over all images. */
  objects: number;
  prompts: number;
  seeds: number;
};

export function summarizeMethod(rows: readonly StatRow[]): MethodSummary {
  return {
    ...summarizeMetrics(rows),
    n: rows.length,
    objects: rows.reduce((s, r) => s + r.objects.length, 0),
    prompts: new Set(rows.map((r) => r.prompt)).size,
    seeds: new Set(rows.map((r) => r.seed)).size,
  };
}

export interface Summary {
  methods: Record<string, MethodSummary>;
  comparisons: Comparison[];
  /** How each interval and test was computed (for readers of the JSON). */
  intervals: Readonly<Record<string, string>>;
}

/** Baselines every other method is compared with (when they ran). */
export const BASELINES = ['none', 'attend-and-excite'] as const;

/**
 * Per-method summaries (in `methodOrder`) and the comparisons of every method with each baseline that ran
 * (default: `none` and `attend-and-excite`).
 */
export function summarize(
  rows: readonly StatRow[],
  methodOrder?: readonly string[],
  baselines: readonly string[] = BASELINES,
): Summary {
  const order = methodOrder ?? [...new Set(rows.map((r) => r.method))];
  const methods: Record<string, MethodSummary> = {};
  for (const m of order) methods[m] = summarizeMethod(rows.filter((r) => r.method === m));
  const comparisons: Comparison[] = [];
  for (const baseline of baselines) {
    if (!order.includes(baseline)) continue;
    for (const m of order) if (m !== baseline) comparisons.push(compareMethods(rows, m, baseline));
  }
  return { methods, comparisons, intervals: INTERVAL_NOTES };
}

const TWO_WAY =
  '95% percentile two-way bootstrap over prompts and seeds (2000 resamples; Wilson over prompts when it has no spread)';

/** How each interval and test of summary.json was computed, by summary key. */
export const INTERVAL_NOTES: Readonly<Record<string, string>> = {
  ...Object.fromEntries(
    entries.flatMap((e) =>
      e.group
        ? []
        : e.stat?.kind === 'image'
          ? [[e.key, `per image; ${TWO_WAY}`]]
          : e.stat?.kind === 'object'
            ? [[e.key, `${e.stat.over}; ${TWO_WAY}`]]
            : [],
    ),
  ),
  failures: `share of images with each failure kind; ${TWO_WAY}`,
  comparisons:
    'paired over (prompt, seed): exact McNemar (p), exact sign-flip test with the pairs of a prompt flipped together ' +
    '(p_cluster), failure ratio with a 95% paired two-way bootstrap interval',
};

// ------------------------------------------------------------------------------------------------------ columns

const pct = (x: number | null) => (x === null ? '–' : (100 * x).toFixed(1));

export function formatInterval(iv: Interval): string {
  if (iv.rate === null) return '–';
  return `${pct(iv.rate)} [${pct(iv.low)}–${pct(iv.high)}]`;
}

/** A statistic as its column shows it. */
function formatStat(s: Stat, value: unknown): string {
  switch (s.kind) {
    case 'per-seed':
      return (value as SeedRate[]).map((x) => (100 * x.rate).toFixed(0)).join(' / ');
    case 'mean':
      return value === null ? '–' : (value as number).toFixed(s.shown);
    default:
      return formatInterval(value as Interval);
  }
}

export interface Column {
  label: string;
  /** The cell of one method's summary. */
  cell(summary: MetricSummary): string;
}

/** The columns of one report table, in table order. */
export function columns(table: 'main' | 'failures'): Column[] {
  return entries
    .filter((e) => e.column === table && e.stat)
    .map((e) => {
      const stat = e.stat!;
      const key = stat.kind === 'mean' ? stat.as : e.key;
      return {
        label: e.label ?? e.key,
        cell: (s: MetricSummary) => {
          const from = e.group === 'failures' ? s.failures : s;
          return formatStat(stat, (from as Record<string, unknown>)[key]);
        },
      };
    });
}

/** The legend's sentences on the metrics, from the table's notes (those with a column), in table order. */
export function metricsLegend(): string {
  return entries
    .filter((e) => e.column)
    .map((e) => e.note)
    .join('; ');
}

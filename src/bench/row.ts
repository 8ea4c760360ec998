/**
 * One line of results.jsonl: one image of a benchmark. Its identity (prompt, seed, method, settings and key), the
 * subjects the methods targeted, what the scorer found, the measured fields of the metric table (metrics.ts), and
 * where its files lie. One validator for every reader (a local run's resume, a job queue's results).
 */
import type { ObjectReport } from '../shapes/score.js';
import type { MetricFields } from './metrics.js';
import type { BenchSettings } from './plan.js';
import type { PromptKind, Split } from './suites.js';

/**
 * Bumped when the meaning of a row changes (then old rows are not reused). 2: the initial noise comes from
 * (seed, prompt), no longer from the seed alone. Adding a field keeps the version: old rows lack it, and the
 * statistics that read it say so (null) rather than mix rows.
 */
export const BENCH_ROW_VERSION = 2;

export interface DetectionSummary {
  shape: string;
  colour: string | null;
  bbox: readonly number[];
  area: number;
  matched_to: number | null;
}

/** The fields of a row that are no metric. */
export interface RowIdentity {
  v: number;
  key: string;
  prompt: string;
  seed: number;
  /** The seed the image was generated with: `noiseSeed(seed, prompt)`. */
  noise_seed: number;
  method: string;
  settings: BenchSettings;
  settings_hash: string;
  /** Suite and split the row was first generated for (a row is reused by any suite holding the same prompt). */
  suite: string;
  split: Split | null;
  kind: PromptKind | null;
  /** Subject words (auto) and their token positions; attributes with the index of their subject. */
  subjects: { word: string; tokens: number[] }[];
  attributes: { word: string; tokens: number[]; subject: number }[];
  /** Per prompted object: what the scorer found (shape/colour match, leak, the matched detection's shape and colour). */
  objects: ObjectReport[];
  detections: DetectionSummary[];
  /** Paths relative to the output folder. */
  image: string;
  maps: string | null;
  model_dir: string;
  created: string;
}

/** One line of results.jsonl: one image. */
export type BenchRow = RowIdentity & MetricFields;

/** Whether a parsed line (or a worker's answer) is a row: what every reader of rows relies on is there. */
export function isBenchRow(v: unknown): v is BenchRow {
  if (!v || typeof v !== 'object') return false;
  const r = v as Partial<BenchRow>;
  return (
    typeof r.key === 'string' &&
    typeof r.prompt === 'string' &&
    typeof r.seed === 'number' &&
    typeof r.method === 'string' &&
    typeof r.full_success === 'boolean' &&
    Array.isArray(r.objects) &&
    typeof r.image === 'string'
  );
}

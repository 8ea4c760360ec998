/**
 * Running a benchmark: every prompt × seed × method, with one loaded model, scored by the shapes-world scorer and
 * appended to `results.jsonl` in the output folder, one line per image.
 *
 * - Independent images, paired methods: the initial noise of an image is drawn from `noiseSeed(seed, prompt)`, so
 *   every (prompt, seed) pair is its own draw (prompts of one seed do not share a layout) and every method of a pair
 *   starts from the same noise (the comparison is paired). `s2i generate PROMPT --seed <noise_seed>` reproduces an
 *   image of plain sampling.
 * - Subjects: chosen automatically (`autoSubjects`: the nouns and their adjectives; `methodTargets`).
 * - Resumable: a row's key is a hash of (prompt, seed, method, settings hash), where the settings are the sampling
 *   settings (steps, guidance, sampler, image size), a fingerprint of the model folder, and the method's full
 *   configuration as built (minus the prompt's token positions). A rerun into the same folder skips every key that
 *   is already there, so changing a method's defaults or the model reruns exactly the affected images.
 * - Crash-safe: the image is written first (atomically), then the row is appended with a single write. An
 *   interrupted run loses nothing already written; a partial last line (a crash mid-write) is dropped on resume.
 *   A lock (`.bench.lock`, proper-lockfile) keeps two runs from writing to one folder.
 *
 * Layout of the output folder: `results.jsonl`, `images/<prompt-slug>/<method>-s<seed>-<hash>.png` (the image,
 * at most 256 px on its long side) and, with `maps`, a `...-maps.png` beside it (the mean cross-attention map of
 * each subject and attribute token over the sampling steps, over the image).
 */
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { makeFolders, syncFolder } from '../io/durable.js';
import { dirname, join } from 'node:path';
import { FieldError } from '../errors.js';
import { writeFileAtomic } from '../image/png.js';
import type { StableDiffusion } from '../pipeline/stable-diffusion.js';
import { defaultSampler } from '../schedulers/index.js';
import { generateBenchImages, prepareBenchJob, type BenchImage, type PreparedBenchJob } from './image.js';
import {
  DEFAULT_BENCH_BATCH,
  modelFingerprint,
  planJob,
  type BenchOptions,
  type BenchSettings,
  type PlanItem,
} from './plan.js';
import { appendRow, readResults, RESULTS_FILE, withBenchFolder, type ReadResults } from './results.js';
import type { BenchRow } from './row.js';
import type { PromptKind, Split, Suite } from './suites.js';

export interface BenchItem {
  suite: string;
  split: Split | null;
  kind: PromptKind | null;
  row: BenchRow;
}

export interface BenchProgress {
  done: number;
  total: number;
  skipped: number;
  /** The row just generated, or null for a skipped one. */
  row: BenchRow | null;
}

export interface BenchOutcome {
  /** Every (suite prompt × seed × method) of the plan, in plan order: reused and new rows. */
  items: BenchItem[];
  generated: number;
  skipped: number;
  /** Lines of an existing results.jsonl that were not valid rows (e.g. a partial last line, dropped). */
  ignoredLines: number;
  resultsPath: string;
  settings: Omit<BenchSettings, 'method'>;
  /** Images that could not be made (a job queue's jobs that failed for good); they have no row. */
  failed?: BenchFailure[];
}

/** An image of the plan that failed for good (after its tries on a job queue). */
export interface BenchFailure {
  key: string;
  prompt: string;
  seed: number;
  method: string;
  reason: string;
  attempts: number;
}

export interface BenchHooks {
  onStart?(info: { total: number; existing: number }): void;
  onProgress?(p: BenchProgress): void;
}

/**
 * Runs (or resumes) a benchmark into `options.out` with one loaded model. Returns every row of the plan (reused and
 * new), in order: suites, then their prompts, then seeds, then methods, so an interrupted run has complete method
 * comparisons for the pairs it finished.
 */
export async function runBench(
  model: StableDiffusion,
  suites: readonly Suite[],
  options: BenchOptions,
  hooks: BenchHooks = {},
): Promise<BenchOutcome> {
  return withBenchFolder(
    options,
    () => runLocked(model, suites, options, hooks),
    () => checkBenchPlan(model, suites, options),
  );
}

/**
 * Plans the first (prompt, seed) pair's job for every method, so settings the model cannot run (e.g. an --attn-res
 * it has no attention at) fail before the output folder is created, leaving nothing behind.
 */
export function checkBenchPlan(model: StableDiffusion, suites: readonly Suite[], options: BenchOptions): void {
  const suite = suites.find((s) => s.prompts.length > 0);
  const seed = options.seeds[0];
  if (!suite || seed === undefined) return;
  const base = benchBase(model, options);
  for (const method of options.methods)
    prepareBenchJob(model, base.model, planJob({ suite, entry: suite.prompts[0]!, seed, method }, base, options));
}

/** The settings every row of a run shares: steps, guidance, the sampler, the model's image size and fingerprint. */
function benchBase(model: StableDiffusion, options: BenchOptions): Omit<BenchSettings, 'method'> {
  const sampler = options.sampler ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  const size = model.defaultImageSize;
  return {
    steps: options.steps,
    guidance: options.guidance,
    sampler,
    height: size,
    width: size,
    model: modelFingerprint(model.dir),
  };
}

/** A run's starting point: the rows already in the folder (a partial last line dropped) and the plan. */
export interface BenchStart {
  resultsPath: string;
  existing: ReadResults;
  byKey: Map<string, BenchRow>;
  base: Omit<BenchSettings, 'method'>;
  plan: PlanItem[];
}

/** Reads results.jsonl (dropping a partial last line) and lays out the plan; call it holding the folder's lock. */
export function startBench(model: StableDiffusion, suites: readonly Suite[], options: BenchOptions): BenchStart {
  const out = options.out;
  const resultsPath = join(out, RESULTS_FILE);
  const existing = readResults(resultsPath);
  if (existing.completeBytes < existing.bytes) {
    // A partial last line from an interrupted write: drop it so the next row starts on its own line.
    const fd = openSync(resultsPath, 'r+');
    try {
      ftruncateSync(fd, existing.completeBytes);
    } finally {
      closeSync(fd);
    }
  }
  const byKey = new Map(existing.rows.map((r) => [r.key, r]));

  const base = benchBase(model, options);

  const plan: PlanItem[] = [];
  for (const suite of suites) {
    const prompts = options.limit !== undefined ? suite.prompts.slice(0, options.limit) : suite.prompts;
    for (const entry of prompts)
      for (const seed of options.seeds) for (const method of options.methods) plan.push({ suite, entry, seed, method });
  }
  return { resultsPath, existing, byKey, base, plan };
}

async function runLocked(
  model: StableDiffusion,
  suites: readonly Suite[],
  options: BenchOptions,
  hooks: BenchHooks,
): Promise<BenchOutcome> {
  const out = options.out;
  const { resultsPath, existing, byKey, base, plan } = startBench(model, suites, options);
  hooks.onStart?.({ total: plan.length, existing: existing.rows.length });

  const batchSize = options.batchSize ?? DEFAULT_BENCH_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new FieldError('batchSize', `must be a positive integer, got ${batchSize}`);
  // batchSize (prompt, seed) pairs with all their methods at a time: one batch per method, rows in plan order.
  const window = batchSize * options.methods.length;
  const fd = openSync(resultsPath, 'a');
  syncFolder(out); // results.jsonl's entry, when this run created it
  const items: BenchItem[] = [];
  let generated = 0,
    skipped = 0,
    done = 0;
  try {
    for (let start = 0; start < plan.length; start += window) {
      const slice = plan
        .slice(start, start + window)
        .map((it) => ({ it, prepared: prepareBenchJob(model, base.model, planJob(it, base, options)) }));
      for (const { prepared } of slice) {
        if (!byKey.has(prepared.key)) continue;
        skipped++;
        hooks.onProgress?.({ done: ++done, total: plan.length, skipped, row: null });
      }
      const fresh = new Map<string, BenchImage>();
      for (const name of options.methods) {
        // The window's jobs of this method still to do (a key met twice is generated once).
        const todo = new Map<string, PreparedBenchJob>();
        for (const { prepared } of slice)
          if (prepared.job.method === name && !byKey.has(prepared.key)) todo.set(prepared.key, prepared);
        if (todo.size === 0) continue;
        const images = await generateBenchImages(model, [...todo.values()]);
        for (const image of images) {
          for (const f of image.files) {
            makeFolders(dirname(join(out, f.path)));
            writeFileAtomic(join(out, f.path), f.bytes);
          }
          fresh.set(image.row.key, image);
          generated++;
          hooks.onProgress?.({ done: ++done, total: plan.length, skipped, row: image.row });
        }
      }
      // Rows in plan order, each appended with a single write once its files are on disk.
      for (const { it, prepared } of slice) {
        const made = fresh.get(prepared.key);
        if (made) {
          appendRow(fd, made.row, resultsPath);
          byKey.set(prepared.key, made.row);
          fresh.delete(prepared.key);
        }
        items.push({
          suite: it.suite.name,
          split: it.suite.split,
          kind: prepared.job.kind,
          row: byKey.get(prepared.key)!,
        });
      }
    }
  } finally {
    closeSync(fd);
  }
  return { items, generated, skipped, ignoredLines: existing.ignored, resultsPath, settings: base };
}

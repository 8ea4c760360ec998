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
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import lockfile from 'proper-lockfile';
import { autoSubjects, type AutoSubjects } from '../prompt/auto-subjects.js';
import { meanMaps, tokenMap } from '../attention/render.js';
import { FieldError, UserError } from '../errors.js';
import { readInputFile } from '../io/regular-file.js';
import { onCleanup } from '../util/cleanup.js';
import { blendImages, heatmap } from '../image/colormap.js';
import { floatToRgb8 } from '../image/convert.js';
import { composeGrid } from '../image/grid.js';
import type { RgbImage } from '../image/image.js';
import { encodePng, writeFileAtomic } from '../image/png.js';
import { resizeImage, resizeMap } from '../image/resize.js';
import { buildMethod, methodPreset, methodTargets, type MethodSettings } from '../methods/registry.js';
import type { GuidanceMethod } from '../methods/types.js';
import { generateBatch, type GenerateResult } from '../pipeline/generate.js';
import type { StableDiffusion } from '../pipeline/stable-diffusion.js';
import { defaultSampler, type SamplerName } from '../schedulers/index.js';
import type { PromptObject } from '../shapes/prompt.js';
import { scoreImage } from '../shapes/score.js';
import type { Tensor } from '../tensor.js';
import { measureRow } from './metrics.js';
import { BENCH_ROW_VERSION, isBenchRow, type BenchRow } from './row.js';
import type { PromptKind, Split, Suite, SuitePrompt } from './suites.js';

export const RESULTS_FILE = 'results.jsonl';
const LOCK_FILE = '.bench.lock';
const MAX_SAVED_SIDE = 256;

export interface BenchSettings {
  steps: number;
  guidance: number;
  sampler: SamplerName;
  height: number;
  width: number;
  /** Fingerprint of the model folder (configs, tokenizer, weight files' sizes, heads and tails). */
  model: string;
  /** The method's configuration as built, without the prompt's token positions; {} for plain sampling. */
  method: Record<string, unknown>;
}

export interface BenchOptions {
  out: string;
  methods: readonly string[];
  seeds: readonly number[];
  steps: number;
  guidance: number;
  /** Default: the model's own scheduler. */
  sampler?: SamplerName;
  /** At most this many prompts of each suite (its first ones). */
  limit?: number;
  /** Record and save attention-map pictures for new rows. */
  maps?: boolean;
  /**
   * Method overrides applied to every method (mode, weights, gamma, edit steps, loop settings), for tuning runs.
   * They change the methods' configuration and so the rows' settings hash.
   */
  methodOverrides?: Omit<MethodSettings, 'steps'>;
  /**
   * (prompt, seed) pairs generated together, one batch per method (default 16). The images are those of an
   * unbatched run; only the rows' timings (a per-image share of the batch's) differ.
   */
  batchSize?: number;
}

/** Pairs per batch when BenchOptions.batchSize is not given (the shapes model's 32x32 images). */
export const DEFAULT_BENCH_BATCH = 16;

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

// ------------------------------------------------------------------------------------------------------ helpers

/** `0-63`, `0,1,2` or a mix (`0-3,10`); at most 100000 seeds, no repeats. */
export function parseSeeds(value: string, option = 'seeds'): number[] {
  const out: number[] = [];
  const bad = (why: string) => new FieldError(option, `must be seeds such as 0-63 or 0,1,2 (integers >= 0); ${why}`);
  if (value.trim() === '') throw bad('got an empty value');
  for (const part of value.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw bad(`got "${part.trim()}"`);
    const lo = Number(m[1]),
      hi = m[2] === undefined ? lo : Number(m[2]);
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi)) throw bad(`got "${part.trim()}"`);
    if (hi < lo) throw bad(`the range "${part.trim()}" runs backwards`);
    if (out.length + hi - lo + 1 > 100_000) throw bad('more than 100000 seeds');
    for (let s = lo; s <= hi; s++) {
      if (out.includes(s)) throw bad(`seed ${s} is given twice`);
      out.push(s);
    }
  }
  return out;
}

/** Method names from `a,b,c`: each must be in the registry, none twice. */
export function parseMethods(value: string, option = 'methods'): string[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new FieldError(option, 'needs at least one method name');
  const seen = new Set<string>();
  for (const n of names) {
    methodPreset(n, option);
    if (seen.has(n)) throw new FieldError(option, `: method '${n}' is listed twice`);
    seen.add(n);
  }
  return names;
}

/** JSON with object keys sorted at every level and Maps as objects (a stable text to hash). */
export function canonicalJson(value: unknown): string {
  const norm = (v: unknown): unknown => {
    if (v instanceof Map) return norm(Object.fromEntries([...v].map(([k, x]) => [String(k), x])));
    if (Array.isArray(v)) return v.map(norm);
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
    if (v && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined && typeof x !== 'function') o[k] = norm(x);
      }
      return o;
    }
    return v;
  };
  return JSON.stringify(norm(value));
}

function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * A fingerprint of a model folder (or single-file checkpoint): every file's relative path and size, the full text of
 * small files (configs, tokenizer), and the first and last 64 KiB of large ones (weights). Changes whenever the model
 * is retrained or replaced, without reading gigabytes.
 */
export function modelFingerprint(path: string): string {
  const h = createHash('sha256');
  const chunk = 64 * 1024;
  const addFile = (p: string, name: string, size: number) => {
    h.update(`${name}\u0000${size}\u0000`);
    const fd = openSync(p, 'r');
    try {
      const read = (pos: number, n: number) => {
        const buf = Buffer.alloc(n);
        const got = readSync(fd, buf, 0, n, pos);
        h.update(buf.subarray(0, got));
      };
      if (size <= 2 * chunk) read(0, size);
      else (read(0, chunk), read(size - chunk, chunk));
    } finally {
      closeSync(fd);
    }
  };
  // statSync follows symbolic links: a Hugging Face cache snapshot links its files into the blobs folder.
  const walk = (d: string, depth: number): void => {
    if (depth > 8) return;
    for (const name of readdirSync(d).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (name.startsWith('.')) continue;
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, depth + 1);
      else if (st.isFile()) addFile(p, relative(path, p), st.size);
    }
  };
  const st = statSync(path);
  if (st.isFile())
    addFile(path, basename(path), st.size); // a single-file checkpoint
  else walk(path, 0);
  return h.digest('hex').slice(0, 16);
}

/** The method's configuration without the prompt-specific parts (token positions, subject labels). */
export function methodSettings(method: GuidanceMethod | undefined): Record<string, unknown> {
  if (!method) return {};
  const config = (method as { config?: Record<string, unknown> }).config ?? {};
  const { tokenIndices: _t, subjects: _s, attributes: _a, name: _n, ...rest } = config;
  return JSON.parse(canonicalJson({ class: method.constructor.name, ...rest })) as Record<string, unknown>;
}

export function settingsHash(settings: BenchSettings): string {
  return sha256(canonicalJson({ v: BENCH_ROW_VERSION, ...settings })).slice(0, 16);
}

/**
 * The generation seed of benchmark seed `seed` for `prompt`: the first 32 bits of SHA-256 over both. Different
 * prompts get unrelated noise under the same benchmark seed; the same pair always gets the same noise.
 */
export function noiseSeed(seed: number, prompt: string): number {
  return parseInt(sha256(`s2i-bench-noise\u0000${seed}\u0000${prompt}`).slice(0, 8), 16);
}

export function rowKey(prompt: string, seed: number, method: string, settingsHashValue: string): string {
  return sha256(JSON.stringify([prompt, seed, method, settingsHashValue])).slice(0, 24);
}

function slug(prompt: string): string {
  const s = prompt
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '');
  return `${s || 'prompt'}-${sha256(prompt).slice(0, 6)}`;
}

export interface ReadResults {
  rows: BenchRow[];
  /** Lines that were not valid rows. */
  ignored: number;
  /** Byte length of the file up to and including its last newline (a partial tail lies beyond it). */
  completeBytes: number;
  bytes: number;
}

/** Rows of a results.jsonl; invalid lines (and a partial last line) are counted and skipped. */
export function readResults(path: string): ReadResults {
  if (!existsSync(path)) return { rows: [], ignored: 0, completeBytes: 0, bytes: 0 };
  const bytes = readInputFile(path, 'results file', Number.MAX_SAFE_INTEGER);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lastNl = buf.lastIndexOf(0x0a);
  const completeBytes = lastNl + 1;
  const rows: BenchRow[] = [];
  let ignored = completeBytes < buf.length ? 1 : 0;
  for (const line of buf.subarray(0, completeBytes).toString('utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (isBenchRow(v)) rows.push(v);
      else ignored++;
    } catch {
      ignored++;
    }
  }
  return { rows, ignored, completeBytes, bytes: buf.length };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * proper-lockfile removes its lock directory with rmdir (on release, and on exit and signals); ours also holds the
 * owner's pid, so removal is recursive.
 */
const lockFs = {
  ...fs,
  rmdir: (path: string, callback: (err: NodeJS.ErrnoException | null) => void) =>
    fs.rm(path, { recursive: true, force: true }, callback),
  rmdirSync: (path: string) => fs.rmSync(path, { recursive: true, force: true }),
};

/** The pid recorded in a lock (a directory holding `pid`; older runs wrote a file holding it), or null. */
function lockOwner(path: string): number | null {
  for (const file of [join(path, 'pid'), path]) {
    try {
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
    } catch {
      // not this layout
    }
  }
  return null;
}

/**
 * A lock is taken over by age only after a day: ONNX Runtime runs synchronously and blocks the refresh timer
 * (creating an SD-1.5 gradient session takes minutes), so age says little about whether the owner lives; the
 * recorded pid does.
 */
const LOCK_STALE_MS = 24 * 3600 * 1000;

/**
 * Takes the folder's lock with proper-lockfile (`.bench.lock`, a directory made atomically and kept fresh while
 * the run lasts, removed on exit and on signals). It records our pid, so the lock of a process that no longer runs
 * is taken over at once.
 */
function acquireLock(out: string): () => void {
  const path = join(out, LOCK_FILE);
  const busy = (pid: number | null) =>
    new FieldError(
      'out',
      (name) =>
        `${name} ${out}: another benchmark${pid ? ` (pid ${pid})` : ''} is writing to this folder; wait for it or use another ${name}`,
    );
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const release = lockfile.lockSync(out, {
        lockfilePath: path,
        realpath: false,
        stale: LOCK_STALE_MS,
        update: 60_000,
        // A late refresh (the event loop blocked by a long synchronous ONNX Runtime call) must not end the run:
        // ownership rests on the recorded pid, not on the lock's age.
        onCompromised: () => {},
        fs: lockFs,
      });
      // proper-lockfile removes the lock when the process exits; the cleanup handler releases it as well, so an
      // interrupted run (Ctrl-C, kill) gives it up before the process ends, whoever handles the signal.
      let released = false;
      const releaseOnce = () => {
        if (released) return;
        released = true;
        unregister();
        release();
      };
      const unregister = onCleanup(releaseOnce);
      try {
        // Writing the pid into the lock directory changes its mtime, which proper-lockfile would take for another
        // process touching its lock: put the mtime back.
        const made = fs.statSync(path);
        fs.writeFileSync(join(path, 'pid'), `${process.pid}\n`);
        fs.utimesSync(path, made.atime, made.mtime);
      } catch (e) {
        releaseOnce();
        throw e;
      }
      return releaseOnce;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED')
        throw new FieldError('out', (name) => `${name} ${out}: cannot take the lock ${path}: ${(e as Error).message}`, {
          cause: e,
        });
      const pid = lockOwner(path);
      if (pid === null || pid === process.pid || pidAlive(pid)) throw busy(pid);
      lockFs.rmdirSync(path); // its owner is gone
    }
  }
  throw busy(lockOwner(path));
}

/** The image as saved: native size, or reduced to at most 256 px on its long side. */
function smallImage(img: RgbImage): RgbImage {
  const long = Math.max(img.width, img.height);
  if (long <= MAX_SAVED_SIDE) return img;
  const s = MAX_SAVED_SIDE / long;
  return resizeImage(img, Math.max(1, Math.round(img.width * s)), Math.max(1, Math.round(img.height * s)), 'bilinear');
}

/**
 * One tile per token: the token's cross-attention map (averaged over the recorded steps, divided by its max) as a
 * jet heat map over the image, labelled with the word.
 */
export function mapsPicture(
  image: RgbImage,
  maps: readonly Tensor[],
  tokens: readonly { word: string; index: number }[],
): RgbImage | null {
  if (maps.length === 0 || tokens.length === 0) return null;
  const mean = meanMaps(maps);
  const [h, w] = mean.shape as [number, number, number];
  const k = Math.max(1, Math.ceil(64 / Math.min(image.width, image.height)));
  const base = k > 1 ? resizeImage(image, image.width * k, image.height * k, 'nearest') : smallImage(image);
  const tiles = tokens.map((t) => {
    const big = resizeMap(tokenMap(mean, t.index), w, h, base.width, base.height, 'bilinear');
    return blendImages(base, heatmap(big, base.width, base.height, { colormap: 'jet', normalize: 'max' }), 0.5);
  });
  return composeGrid(tiles, tiles.length, { pad: 2, labels: tokens.map((t) => t.word) });
}

// ------------------------------------------------------------------------------------------------------ one image

/**
 * One image of a benchmark as plain JSON: everything needed to generate and score it. The local run builds these
 * from its plan; a job queue carries them to workers (src/bench/queue.ts), which produce the same row and bytes.
 */
export interface BenchJob {
  prompt: string;
  /** What the scorer checks, in prompt order. */
  objects: PromptObject[];
  seed: number;
  method: string;
  /** Suite, split and kind the row is generated for. */
  suite: string;
  split: Split | null;
  kind: PromptKind | null;
  steps: number;
  guidance: number;
  sampler: SamplerName;
  methodOverrides?: Omit<MethodSettings, 'steps'>;
  /** Record and save the attention-map picture. */
  maps: boolean;
}

/** A job resolved against a loaded model: its method, settings and row key. */
export interface PreparedBenchJob {
  job: BenchJob;
  auto: AutoSubjects;
  method: GuidanceMethod | undefined;
  settings: BenchSettings;
  hash: string;
  key: string;
}

/** A generated image: its row and the files it refers to (paths relative to the output folder). */
export interface BenchImage {
  row: BenchRow;
  files: { path: string; bytes: Buffer }[];
}

/** The subjects and attributes the methods target in `prompt` (auto); a bad prompt is a UserError quoting it. */
export function promptSubjects(model: StableDiffusion, prompt: string): AutoSubjects {
  try {
    return autoSubjects(model.tokenizer, prompt);
  } catch (e) {
    const where = `prompt ${JSON.stringify(prompt)}`;
    if (e instanceof FieldError)
      throw new FieldError(e.field, (_, nameOf) => `${where}: ${e.messageFor(nameOf)}`, { cause: e });
    if (e instanceof UserError) throw new UserError(`${where}: ${e.message}`, { cause: e });
    throw e;
  }
}

/**
 * Builds the job's method on `model` and derives its settings and row key. `fingerprint` is
 * `modelFingerprint(model.dir)` (computed once by the caller: it reads the folder).
 */
export function prepareBenchJob(
  model: StableDiffusion,
  fingerprint: string,
  job: BenchJob,
  subjectsOf: (prompt: string) => AutoSubjects = (p) => promptSubjects(model, p),
): PreparedBenchJob {
  const auto = subjectsOf(job.prompt);
  const targets = methodTargets(auto.subjects, auto.attributes);
  const method = buildMethod(job.method, targets, { ...job.methodOverrides, steps: job.steps });
  const size = model.defaultImageSize;
  const settings: BenchSettings = {
    steps: job.steps,
    guidance: job.guidance,
    sampler: job.sampler,
    height: size,
    width: size,
    model: fingerprint,
    method: methodSettings(method),
  };
  const hash = settingsHash(settings);
  return { job, auto, method, settings, hash, key: rowKey(job.prompt, job.seed, job.method, hash) };
}

/** Where a row's image (and maps picture) lie, relative to the output folder. */
export function benchImagePaths(
  prompt: string,
  method: string,
  seed: number,
  hash: string,
): { image: string; maps: string } {
  const stem = `images/${slug(prompt)}/${method}-s${seed}-${hash.slice(0, 8)}`;
  return { image: `${stem}.png`, maps: `${stem}-maps.png` };
}

/** Generates and scores one prepared job: the row and the PNG bytes of its files. Writes nothing. */
export async function generateBenchImage(model: StableDiffusion, prepared: PreparedBenchJob): Promise<BenchImage> {
  return (await generateBenchImages(model, [prepared]))[0]!;
}

/**
 * Generates prepared jobs of one method and sampling settings as one batch (each image is the one it would be
 * alone) and scores them: rows and PNG bytes, in the order given. Writes nothing.
 */
export async function generateBenchImages(
  model: StableDiffusion,
  prepared: readonly PreparedBenchJob[],
): Promise<BenchImage[]> {
  const first = prepared[0]!.job;
  for (const { job } of prepared) {
    if (job.steps !== first.steps || job.guidance !== first.guidance || job.sampler !== first.sampler)
      throw new Error('generateBenchImages: the jobs of one batch must share steps, guidance and sampler');
    if (job.maps !== first.maps)
      throw new Error('generateBenchImages: the jobs of one batch must all record maps or none');
  }
  const nGraphs = model.graphTimings.length;
  const results = await generateBatch(
    model,
    prepared.map(({ job, method }) => ({
      prompt: job.prompt,
      seed: noiseSeed(job.seed, job.prompt),
      ...(method ? { method } : {}),
    })),
    {
      steps: first.steps,
      guidanceScale: first.guidance,
      sampler: first.sampler,
      batchSize: prepared.length,
      ...(first.maps ? { recordAttention: {} } : {}),
    },
  );
  const compileMs = model.graphTimings.slice(nGraphs).reduce((s, g) => s + g.buildMs + g.serializeMs + g.sessionMs, 0);
  return prepared.map((p, i) => benchImage(model, p, results[i]!, compileMs / prepared.length));
}

/** Scores one generated image: its row and the PNG bytes of its files. */
function benchImage(
  model: StableDiffusion,
  prepared: PreparedBenchJob,
  result: GenerateResult,
  compileMs: number,
): BenchImage {
  const { job, auto, settings, hash, key } = prepared;
  const image = floatToRgb8(result.image);
  const tScore = performance.now();
  const score = scoreImage(image, undefined, undefined, job.objects);
  const scoreMs = performance.now() - tScore;

  const paths = benchImagePaths(job.prompt, job.method, job.seed, hash);
  const saved = smallImage(image);
  const files = [{ path: paths.image, bytes: encodePng(saved.data, saved.width, saved.height) }];
  let mapsPath: string | null = null;
  if (job.maps) {
    const tokens = [
      ...auto.subjects.map((s) => ({ word: s.word, index: s.tokenIndex })),
      ...auto.attributes.map((a) => ({ word: a.attribute.word, index: a.attribute.tokenIndex })),
    ].sort((a, b) => a.index - b.index);
    const pic = mapsPicture(image, [...result.attentionMaps.values()], tokens);
    if (pic) {
      mapsPath = paths.maps;
      files.push({ path: mapsPath, bytes: encodePng(pic.data, pic.width, pic.height) });
    }
  }
  const measured = { score, result, compileMs, scoreMs };
  const row = {
    v: BENCH_ROW_VERSION,
    key,
    prompt: job.prompt,
    seed: job.seed,
    noise_seed: result.seed!,
    method: job.method,
    settings,
    settings_hash: hash,
    suite: job.suite,
    split: job.split,
    kind: job.kind,
    subjects: auto.subjects.map((s) => ({ word: s.word, tokens: [...s.tokenIndices] })),
    attributes: auto.attributes.map((a) => ({
      word: a.attribute.word,
      tokens: [...a.attribute.tokenIndices],
      subject: a.subject,
    })),
    objects: score.objects,
    ...measureRow(measured, 'score'),
    detections: score.detections.map((d) => ({
      shape: d.shape,
      colour: d.colour,
      bbox: d.bbox,
      area: d.area,
      matched_to: d.matched_to,
    })),
    ...measureRow(measured, 'result'),
    image: paths.image,
    maps: mapsPath,
    model_dir: model.dir,
    created: new Date().toISOString(),
  } as BenchRow;
  return { row, files };
}

/** Appends one row to results.jsonl (`path` names it in errors); see `appendLine`. */
export function appendRow(fd: number, row: BenchRow, path = RESULTS_FILE): void {
  appendLine(fd, path, Buffer.from(`${JSON.stringify(row)}\n`, 'utf8'));
}

// ------------------------------------------------------------------------------------------------------ the run

export interface PlanItem {
  suite: Suite;
  entry: SuitePrompt;
  seed: number;
  method: string;
}

export function planJob(it: PlanItem, base: Omit<BenchSettings, 'method'>, options: BenchOptions): BenchJob {
  return {
    prompt: it.entry.prompt,
    objects: it.entry.objects,
    seed: it.seed,
    method: it.method,
    suite: it.suite.name,
    split: it.suite.split,
    kind: it.entry.kind ?? null,
    steps: base.steps,
    guidance: base.guidance,
    sampler: base.sampler,
    ...(options.methodOverrides ? { methodOverrides: options.methodOverrides } : {}),
    maps: options.maps === true,
  };
}

/** The checks of a benchmark's options that need no model (a front end runs them before loading one). */
export function checkBenchOptions(options: Pick<BenchOptions, 'methods' | 'seeds' | 'out'>): void {
  if (options.methods.length === 0) throw new FieldError('methods', 'needs at least one method name');
  for (const m of options.methods) methodPreset(m, 'methods');
  if (options.seeds.length === 0) throw new FieldError('seeds', 'needs at least one seed');
  if (existsSync(options.out) && !statSync(options.out).isDirectory())
    throw new FieldError('out', `${options.out} exists and is not a directory`);
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
  return withBenchFolder(options, () => runLocked(model, suites, options, hooks));
}

/** Checks the plan's options, creates the output folder and holds its lock (`.bench.lock`) while `body` runs. */
export async function withBenchFolder<T>(options: BenchOptions, body: () => Promise<T>): Promise<T> {
  checkBenchOptions(options);
  const out = options.out;
  try {
    mkdirSync(join(out, 'images'), { recursive: true });
  } catch (e) {
    throw new FieldError('out', `${out}: cannot create the folder: ${(e as Error).message}`, { cause: e });
  }
  const release = acquireLock(out);
  try {
    return await body();
  } finally {
    release();
  }
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

  const sampler = options.sampler ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  const size = model.defaultImageSize;
  const base = {
    steps: options.steps,
    guidance: options.guidance,
    sampler,
    height: size,
    width: size,
    model: modelFingerprint(model.dir),
  };

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

  const subjectCache = new Map<string, AutoSubjects>();
  const subjectsOf = (prompt: string) => {
    let s = subjectCache.get(prompt);
    if (!s) subjectCache.set(prompt, (s = promptSubjects(model, prompt)));
    return s;
  };

  const batchSize = options.batchSize ?? DEFAULT_BENCH_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new FieldError('batchSize', `must be a positive integer, got ${batchSize}`);
  // batchSize (prompt, seed) pairs with all their methods at a time: one batch per method, rows in plan order.
  const window = batchSize * options.methods.length;
  const fd = openSync(resultsPath, 'a');
  const items: BenchItem[] = [];
  let generated = 0,
    skipped = 0,
    done = 0;
  try {
    for (let start = 0; start < plan.length; start += window) {
      const slice = plan
        .slice(start, start + window)
        .map((it) => ({ it, prepared: prepareBenchJob(model, base.model, planJob(it, base, options), subjectsOf) }));
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
            mkdirSync(dirname(join(out, f.path)), { recursive: true });
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

/**
 * Appends one row with a single write. When the write fails (a full disk, a file-size limit, an I/O error), the
 * file is cut back to what it held before, so no partial line is left, and the error is one line naming the file:
 * the rows already there are kept and a rerun resumes after them.
 */
export function appendLine(fd: number, path: string, line: Uint8Array): void {
  let start: number | null = null;
  try {
    start = fstatSync(fd).size;
  } catch {
    // not a file we can measure: nothing to cut back
  }
  let off = 0;
  try {
    while (off < line.length) off += writeSync(fd, line, off, line.length - off);
  } catch (e) {
    if (start !== null && off > 0) {
      try {
        ftruncateSync(fd, start);
      } catch {
        // the partial line is dropped on resume anyway
      }
    }
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'ENOSPC' ? 'no space left on the device' : code === 'EFBIG' ? 'the file is too large' : code;
    throw new UserError(
      `cannot append to ${path}: ${why} (${code}); the rows before it are kept, and a rerun resumes after them`,
      { cause: e },
    );
  }
}

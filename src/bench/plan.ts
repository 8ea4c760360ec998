/**
 * Planning a benchmark and its keys: the options, one image's job as plain JSON, the plan of (suite prompt × seed ×
 * method), and what identifies a row — the settings hash (sampling settings, the model's fingerprint, the method's
 * configuration as built), the row key, the noise seed of a (seed, prompt) pair and where a row's files lie.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { FieldError } from '../errors.js';
import {
  canonicalMethodName,
  checkOverridesTakenByAny,
  methodPreset,
  type MethodSettings,
} from '../methods/registry.js';
import { quote } from '../util/quote.js';
import type { GuidanceMethod } from '../methods/types.js';
import type { SamplerName } from '../schedulers/index.js';
import type { PromptObject } from '../shapes/prompt.js';
import { BENCH_ROW_VERSION } from './row.js';
import type { PromptKind, Split, Suite, SuitePrompt } from './suites.js';

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
export function checkBenchOptions(options: Pick<BenchOptions, 'methods' | 'seeds' | 'out' | 'methodOverrides'>): void {
  if (options.methods.length === 0) throw new FieldError('methods', 'needs at least one method name');
  for (const m of options.methods) methodPreset(m, 'methods');
  if (options.methodOverrides) checkOverridesTakenByAny(options.methods, options.methodOverrides);
  if (options.seeds.length === 0) throw new FieldError('seeds', 'needs at least one seed');
  if (existsSync(options.out) && !statSync(options.out).isDirectory())
    throw new FieldError('out', `${options.out} exists and is not a directory`);
}

/** `0-63`, `0,1,2` or a mix (`0-3,10`); at most 100000 seeds, no repeats; in the order given. */
export function parseSeeds(value: string, option = 'seeds'): number[] {
  const seen = new Set<number>();
  const bad = (why: string) => new FieldError(option, `must be seeds such as 0-63 or 0,1,2 (integers >= 0); ${why}`);
  if (value.trim() === '') throw bad('got an empty value');
  for (const part of value.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw bad(`got ${quote(part.trim())}`);
    const lo = Number(m[1]),
      hi = m[2] === undefined ? lo : Number(m[2]);
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi)) throw bad(`got ${quote(part.trim())}`);
    if (hi < lo) throw bad(`the range "${part.trim()}" runs backwards`);
    if (seen.size + hi - lo + 1 > 100_000) throw bad('more than 100000 seeds');
    for (let s = lo; s <= hi; s++) {
      if (seen.has(s)) throw bad(`seed ${s} is given twice`);
      seen.add(s);
    }
  }
  return [...seen];
}

/** Method names from `a,b,c`: each must be in the registry, none twice. */
export function parseMethods(value: string, option = 'methods'): string[] {
  const names = value
    .split(',')
    .map(canonicalMethodName)
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
 * is retrained or replaced, without reading gigabytes. Markdown files (a model card, TRAINING.md) are left out: notes
 * about a model do not change what it generates, and editing them must not make a benchmark start over.
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
      if (name.startsWith('.') || name.toLowerCase().endsWith('.md')) continue;
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

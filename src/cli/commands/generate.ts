/**
 * `s2i generate "PROMPT"`: text to image with a diffusers model folder, optionally with Attend-and-Excite, a
 * picture of the cross-attention maps, and the latents in and out as safetensors.
 *
 * Every option is checked before any work starts (one-line `s2i: error: ...`, exit 1), and nothing is written
 * until the whole run has succeeded; each file is written atomically.
 */
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readSamplingDefaults } from '../../io/model-folder.js';
import { isAbsolute, relative } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import {
  crossAttentionResolutions,
  meanMaps,
  promptTokenColumns,
  renderAttentionPicture,
  type AttentionRow,
  type TokenColumn,
} from '../../attention/render.js';
import { describeSubject, resolveSubjects, subjectsJson, type ResolvedSubjects } from '../../attention/subjects.js';
import { UserError } from '../../errors.js';
import { floatToRgb8 } from '../../image/convert.js';
import { encodePng } from '../../image/png.js';
import { checkInputFile } from '../../io/regular-file.js';
import { OutputFiles } from '../../io/outputs.js';
import { resizeNearest } from '../../image/resize.js';
import { quoteKey, SafetensorsFile, writeSafetensors } from '../../io/safetensors.js';
import { autoSubjects, type AttributeLink } from '../../attention/auto-subjects.js';
import { ATTEND_EXCITE_DEFAULTS } from '../../methods/attend-and-excite.js';
import {
  buildMethod,
  METHOD_NAMES,
  methodPreset,
  methodTargets,
  scaledLoopDefaults,
  type MethodPreset,
  type MethodSettings,
} from '../../methods/registry.js';
import type { LatentLoopConfig } from '../../methods/latent-loop.js';
import { LOSS_TERMS, type LossWeights, type SuppressMode } from '../../methods/suppress.js';
import { generate, type GenerateResult } from '../../pipeline/generate.js';
import { StableDiffusion } from '../../pipeline/stable-diffusion.js';
import {
  createSampler,
  defaultSampler,
  parseSamplerName,
  resolveSchedulerConfig,
  type SamplerName,
} from '../../schedulers/index.js';
import { shapeString, type Tensor } from '../../tensor.js';
import { checkMemory } from '../../util/memory.js';
import { defaultModelDir } from '../defaults.js';
import { interactive, parseInteger, parseNumber, parsePredictionType } from '../options.js';

interface GenerateFlags {
  model?: string;
  config?: string;
  predictionType?: string;
  negative?: string;
  steps?: string;
  guidance?: string;
  scheduler?: string;
  seed?: string;
  height?: string;
  width?: string;
  latents?: string;
  saveLatents?: string;
  out?: string;
  json?: boolean;
  method: string;
  tokens?: string;
  subjects?: string;
  maxIterToAlter?: string;
  thresholds?: string;
  scaleFactor?: string;
  attnRes?: string;
  mode?: string;
  weights?: string;
  gamma?: string;
  editSteps?: string;
  attributes?: string;
  attentionMaps?: string;
  attentionSteps?: string;
  threads?: string;
  upscale?: string;
}

/** The A&E defaults are tuned for this many steps; other step counts scale them (as the oracle did). */
const AE_REFERENCE_STEPS = 50;

// ---------------------------------------------------------------------------------------------------------------
// option parsing (no model needed)

const METHOD_ALIASES: Record<string, string> = {
  ae: 'attend-and-excite',
  'attend-excite': 'attend-and-excite',
  s2i: 'suppress',
};

function parseMethod(value: string): { name: string; preset: MethodPreset } {
  const v = value
    .trim()
    .toLowerCase()
    .replace(/[_\s]+/g, '-');
  const name = METHOD_ALIASES[v] ?? v;
  return { name, preset: methodPreset(name) };
}

/** `suppress=1,even=0.5` → partial weights. */
export function parseWeights(value: string): Partial<LossWeights> {
  const out: Partial<LossWeights> = {};
  for (const item of value.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*([^\s=]+)\s*$/.exec(item);
    if (!m)
      throw new UserError(
        `--weights must look like suppress=1,excite=1,even=0.5 (terms: ${LOSS_TERMS.join(', ')}); got "${item.trim()}"`,
      );
    const term = m[1] as keyof LossWeights;
    if (!LOSS_TERMS.includes(term))
      throw new UserError(`--weights: unknown term '${m[1]}' (terms: ${LOSS_TERMS.join(', ')})`);
    out[term] = parseNumber(m[2]!, `--weights ${term}`, 0);
  }
  return out;
}

function parseMode(value: string): SuppressMode {
  const v = value.trim().toLowerCase();
  if (v !== 'loss' && v !== 'edit' && v !== 'both')
    throw new UserError(`--mode must be loss, edit or both, got "${value}"`);
  return v;
}

function parseImageSide(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const v = parseInteger(value, flag, 1, 16384);
  if (v % 8 !== 0) throw new UserError(`${flag} must be a positive multiple of 8, got ${v}`);
  return v;
}

/** `0:0.05,10:0.5,20:0.8` → Map(call index → threshold). */
export function parseThresholds(value: string): Map<number, number> {
  const out = new Map<number, number>();
  const bad = (why: string) =>
    new UserError(`--thresholds must look like 0:0.05,10:0.5,20:0.8 (step:threshold, threshold from 0 to 1); ${why}`);
  if (value.trim() === '') throw bad('got an empty value');
  for (const item of value.split(',')) {
    const m = /^\s*(\d+)\s*:\s*([^\s:]+)\s*$/.exec(item);
    if (!m) throw bad(`got "${item.trim()}"`);
    const step = Number(m[1]);
    const thr = Number(m[2]);
    if (!Number.isSafeInteger(step)) throw bad(`got step "${m[1]}"`);
    if (!Number.isFinite(thr) || thr < 0 || thr > 1) throw bad(`got threshold "${m[2]}"`);
    if (out.has(step)) throw bad(`step ${step} is given twice`);
    out.set(step, thr);
  }
  return out;
}

function parseResolution(value: string, flag: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?$/i.exec(value);
  const h = m ? Number(m[1]) : NaN;
  const w = m ? Number(m[2] ?? m[1]) : NaN;
  if (!(h >= 1 && w >= 1 && h <= 4096 && w <= 4096))
    throw new UserError(`${flag} must be a size such as 16 or 16x16, got "${value}"`);
  return [h, w];
}

/** `0,10,49`, `all` or `mean` (the average over all steps, the default). */
function parseAttentionSteps(value: string | undefined): number[] | 'all' | 'mean' {
  if (value === undefined) return 'mean';
  const v = value.trim().toLowerCase();
  if (v === 'all' || v === 'mean') return v;
  const items = v.split(',').map((s) => s.trim());
  const out: number[] = [];
  for (const s of items) {
    const n = /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n))
      throw new UserError(`--attention-steps must be step numbers such as 0,10,49, or all, or mean; got "${value}"`);
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** `FILE` or `FILE:KEY` (KEY defaults to `latents`); a path that exists as given is always a FILE. */
function splitLatentsSpec(spec: string): { file: string; key: string } {
  if (existsSync(spec)) return { file: spec, key: 'latents' };
  const i = spec.lastIndexOf(':');
  if (i > 0 && !spec.slice(i + 1).includes('/')) return { file: spec.slice(0, i), key: spec.slice(i + 1) || 'latents' };
  return { file: spec, key: 'latents' };
}

function readLatentsFile(spec: string): { tensor: Tensor; file: string; key: string } {
  const { file, key } = splitLatentsSpec(spec);
  checkInputFile(file, '--latents'); // a FIFO would block the open
  let st: SafetensorsFile;
  try {
    st = SafetensorsFile.open(file);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`--latents: ${e.message}`, { cause: e });
    throw e;
  }
  try {
    if (!st.has(key)) {
      const names = st.names();
      const list =
        names.length === 0
          ? 'it holds no tensors'
          : `its tensors: ${names.slice(0, 20).map(quoteKey).join(', ')}${names.length > 20 ? `, ... (${names.length} in all)` : ''}`;
      throw new UserError(`--latents: ${st.path} has no tensor ${quoteKey(key)} (${list}); name one as FILE:KEY`);
    }
    const info = st.info(key);
    checkMemory(
      info.shape.reduce((a, b) => a * b, 1) * 4,
      `--latents: tensor ${quoteKey(key)} ${shapeString(info.shape)}`,
    );
    return { tensor: st.read(key), file: st.path, key };
  } finally {
    st.close();
  }
}

/** `--attributes circle:red,square:blue`: each adjective word bound to a subject word. */
function parseAttributes(
  model: StableDiffusion,
  prompt: string,
  value: string,
  subjects: ResolvedSubjects,
): AttributeLink[] {
  return value.split(',').map((item) => {
    const m = /^\s*([^:]+?)\s*:\s*([^:]+?)\s*$/.exec(item);
    if (!m)
      throw new UserError(`--attributes must look like circle:red,square:blue (noun:adjective), got "${item.trim()}"`);
    const [noun, adjective] = [m[1]!, m[2]!];
    const subject = subjects.subjects.findIndex((s) => s.word === noun.toLowerCase() || s.query === noun);
    if (subject < 0)
      throw new UserError(
        `--attributes: '${noun}' is not one of the subjects (${subjects.subjects.map((s) => s.word).join(', ')})`,
      );
    const attribute = resolveSubjects(model.tokenizer, prompt, { subjects: adjective })!.subjects[0]!;
    return { attribute, subject };
  });
}

const fmtThresholds = (m: ReadonlyMap<number, number>) => [...m].map(([k, v]) => `${k}:${v}`).join(',');

// ---------------------------------------------------------------------------------------------------------------
// the run

interface Plan {
  prompt: string;
  negative: string | undefined;
  modelDir: string;
  steps: number;
  guidance: number;
  sampler: SamplerName;
  totalCalls: number;
  seed: number;
  height: number;
  width: number;
  latents: { tensor: Tensor; file: string; key: string } | null;
  method: string;
  preset: MethodPreset;
  subjects: ResolvedSubjects | null;
  /** Auto-detected (or --attributes) attributes of the subjects, for Suppress-to-Impress. */
  attributes: AttributeLink[];
  /** Settings of a guided method (null for plain sampling), and which loop defaults were scaled from 50 steps. */
  settings: (MethodSettings & { loop: LatentLoopConfig; scaledFrom50: string[] }) | null;
  mapRes: [number, number] | null;
  attentionSteps: number[] | 'all' | 'mean';
  outImage: string;
  outLatents: string | null;
  outMaps: string | null;
  /** The output files, written to temporary files and put in place together once everything succeeded. */
  outputs: OutputFiles;
  threads: number | undefined;
  /** Nearest-neighbour enlargement of the written PNG (1: as generated). */
  upscale: number;
  notes: string[];
}

function pickAttnRes(
  available: [number, number][],
  latentH: number,
  latentW: number,
  given: [number, number] | null,
): [number, number] {
  const has = (r: [number, number]) => available.some(([h, w]) => h === r[0] && w === r[1]);
  const list = available.map(([h, w]) => `${h}x${w}`).join(', ') || 'none';
  if (given) {
    if (!has(given))
      throw new UserError(
        `--attn-res ${given[0]}x${given[1]}: the UNet has no cross-attention at that size for this image (it has: ${list})`,
      );
    return given;
  }
  // diffusers' default is 16x16 (SD at 512 px); when the UNet has none at this size, latent/4 (SD's ratio).
  const candidates: [number, number][] = [
    [16, 16],
    [Math.ceil(latentH / 4), Math.ceil(latentW / 4)],
  ];
  for (const c of candidates) if (has(c)) return c;
  if (available.length > 0) return available[Math.floor(available.length / 2)]!;
  throw new UserError('the UNet has no cross-attention layers; attention methods and maps need them');
}

async function plan(
  prompt: string,
  flags: GenerateFlags,
): Promise<{ plan: Plan; model: StableDiffusion; loadMs: number }> {
  // Everything that needs no model first, so mistakes are reported instantly.
  const modelDir = flags.model ?? defaultModelDir();
  if (modelDir === null)
    throw new UserError(
      'no --model given and no default model is installed (give --model DIR, a diffusers model folder)',
    );
  // SD's 50 steps / 7.5 unless the model recommends its own (s2i.json, e.g. the shipped shapes model).
  const recommended = existsSync(modelDir) ? readSamplingDefaults(modelDir) : {};
  const steps = parseInteger(flags.steps ?? String(recommended.steps ?? 50), '--steps', 1, 1000);
  const guidance = parseNumber(flags.guidance ?? String(recommended.guidance ?? 7.5), '--guidance');
  const samplerGiven = flags.scheduler !== undefined ? parseSamplerName(flags.scheduler, '--scheduler') : undefined;
  const seed =
    flags.seed !== undefined ? parseInteger(flags.seed, '--seed', 0, Number.MAX_SAFE_INTEGER) : randomInt(0, 2 ** 32);
  const heightGiven = parseImageSide(flags.height, '--height');
  const widthGiven = parseImageSide(flags.width, '--width');
  const { name: method, preset } = parseMethod(flags.method);
  const threads = flags.threads !== undefined ? parseInteger(flags.threads, '--threads', 1, 1024) : undefined;
  const predictionType =
    flags.predictionType !== undefined ? parsePredictionType(flags.predictionType, '--prediction-type') : undefined;
  const upscale = flags.upscale !== undefined ? parseInteger(flags.upscale, '--upscale', 1, 16) : 1;
  const guided = preset.kind !== 'none';
  const isAE = preset.kind === 'attend-and-excite';
  const isSuppress = preset.kind === 'suppress';
  for (const [flag, v] of [
    ['--max-iter-to-alter', flags.maxIterToAlter],
    ['--thresholds', flags.thresholds],
    ['--scale-factor', flags.scaleFactor],
  ] as const) {
    if (v !== undefined && !guided)
      throw new UserError(`${flag} only applies to a guidance --method (attend-and-excite, suppress, ...)`);
  }
  for (const [flag, v] of [
    ['--mode', flags.mode],
    ['--weights', flags.weights],
    ['--gamma', flags.gamma],
    ['--edit-steps', flags.editSteps],
    ['--attributes', flags.attributes],
  ] as const) {
    if (v !== undefined && !isSuppress)
      throw new UserError(`${flag} only applies to the suppress methods (--method suppress, suppress-loss, ...)`);
  }
  if (flags.attnRes !== undefined && !guided && flags.attentionMaps === undefined) {
    throw new UserError('--attn-res only applies to a guidance --method and --attention-maps');
  }
  if (flags.attentionSteps !== undefined && flags.attentionMaps === undefined)
    throw new UserError('--attention-steps needs --attention-maps FILE');
  if (isAE && flags.tokens === undefined && flags.subjects === undefined) {
    throw new UserError(
      '--method attend-and-excite needs the subjects to strengthen: --subjects cat,frog or --tokens 2,5',
    );
  }
  if (!guided && flags.attentionMaps === undefined && (flags.tokens !== undefined || flags.subjects !== undefined)) {
    throw new UserError(
      `${flags.tokens !== undefined ? '--tokens' : '--subjects'} is used by a guidance --method and --attention-maps; give one of them`,
    );
  }
  const autoWanted = flags.subjects?.trim().toLowerCase() === 'auto';
  if (autoWanted && !isSuppress && flags.attentionMaps === undefined)
    throw new UserError('--subjects auto applies to the suppress methods and --attention-maps');
  const mode = flags.mode !== undefined ? parseMode(flags.mode) : undefined;
  const weights = flags.weights !== undefined ? parseWeights(flags.weights) : undefined;
  const gamma = flags.gamma !== undefined ? parseNumber(flags.gamma, '--gamma', 0, 1) : undefined;
  const editStepsGiven =
    flags.editSteps !== undefined ? parseInteger(flags.editSteps, '--edit-steps', 0, 100000) : undefined;
  const maxIterGiven =
    flags.maxIterToAlter !== undefined
      ? parseInteger(flags.maxIterToAlter, '--max-iter-to-alter', 0, 100000)
      : undefined;
  const thresholdsGiven = flags.thresholds !== undefined ? parseThresholds(flags.thresholds) : undefined;
  const scaleFactor =
    flags.scaleFactor !== undefined
      ? parseNumber(flags.scaleFactor, '--scale-factor', 0)
      : ATTEND_EXCITE_DEFAULTS.scaleFactor;
  const attnResGiven = flags.attnRes !== undefined ? parseResolution(flags.attnRes, '--attn-res') : null;
  const attentionSteps = parseAttentionSteps(flags.attentionSteps);

  const outputs = new OutputFiles();
  const outImage = outputs.file(flags.out ?? `s2i-${seed}.png`, '--out');
  const outLatents = flags.saveLatents !== undefined ? outputs.file(flags.saveLatents, '--save-latents') : null;
  const outMaps = flags.attentionMaps !== undefined ? outputs.file(flags.attentionMaps, '--attention-maps') : null;
  const latents = flags.latents !== undefined ? readLatentsFile(flags.latents) : null;

  const t0 = performance.now();
  const model = await StableDiffusion.load(modelDir, {
    ...(threads !== undefined ? { threads } : {}),
    ...(flags.config !== undefined ? { config: flags.config } : {}),
    ...(predictionType !== undefined ? { predictionType } : {}),
  });
  const loadMs = performance.now() - t0;
  const notes: string[] = [];

  // Image size: --height/--width, else the latents file's, else the model's own.
  const f = model.scaleFactor;
  const c = model.latentChannels;
  let height = heightGiven ?? model.defaultImageSize;
  let width = widthGiven ?? model.defaultImageSize;
  if (latents) {
    const s = latents.tensor.shape;
    const shape4 = s.length === 3 ? [1, ...s] : [...s];
    const where = `--latents: tensor ${quoteKey(latents.key)} in ${latents.file}`;
    if (shape4.length !== 4 || shape4[0] !== 1 || shape4[1] !== c) {
      const want = `[1, ${c}, ${heightGiven !== undefined ? heightGiven / f : 'h'}, ${widthGiven !== undefined ? widthGiven / f : 'w'}]`;
      throw new UserError(`${where} has shape [${s.join(', ')}], expected ${want} (${c} latent channels)`);
    }
    const [, , lh, lw] = shape4 as [number, number, number, number];
    if ((heightGiven !== undefined && heightGiven !== lh * f) || (widthGiven !== undefined && widthGiven !== lw * f)) {
      throw new UserError(
        `${where} has shape [${s.join(', ')}], expected [1, ${c}, ${height / f}, ${width / f}] for a ${width}x${height} image`,
      );
    }
    height = lh * f;
    width = lw * f;
    if (height % 8 !== 0 || width % 8 !== 0) {
      throw new UserError(
        `${where} has shape [${s.join(', ')}], which makes a ${width}x${height} image; image sides must be multiples of 8`,
      );
    }
    latents.tensor = { data: latents.tensor.data, shape: shape4 };
  }
  for (const [flag, v] of [
    ['--height', height],
    ['--width', width],
  ] as const) {
    if (v % f !== 0) throw new UserError(`${flag} ${v} is not a multiple of the VAE factor ${f}`);
  }
  const latentH = height / f;
  const latentW = width / f;

  const sampler = samplerGiven ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  const probe = createSampler(sampler, resolveSchedulerConfig(sampler, model.schedulerConfig, {}), steps, {
    noise: (n) => new Float32Array(n),
  });
  const totalCalls = probe.timesteps.length;

  // Subjects: --tokens/--subjects, or found automatically (the default for the suppress methods).
  let subjects: ResolvedSubjects | null;
  let attributes: AttributeLink[] = [];
  if ((isSuppress && flags.tokens === undefined && flags.subjects === undefined) || autoWanted) {
    const auto = autoSubjects(model.tokenizer, prompt);
    subjects = { source: 'words', subjects: auto.subjects, notes: auto.notes };
    attributes = auto.attributes;
    notes.push(
      `subjects found automatically (nouns and their adjectives); override with --subjects, --tokens, --attributes`,
    );
  } else {
    subjects = resolveSubjects(model.tokenizer, prompt, { tokens: flags.tokens, subjects: flags.subjects });
  }
  if (subjects) notes.push(...subjects.notes);
  if (flags.attributes !== undefined) attributes = parseAttributes(model, prompt, flags.attributes, subjects!);

  const available = crossAttentionResolutions(model.unetConfig, latentH, latentW);
  const wantsMaps = guided || outMaps !== null;
  const mapRes = wantsMaps ? pickAttnRes(available, latentH, latentW, attnResGiven) : null;

  let settings: Plan['settings'] = null;
  if (guided) {
    const scaled = scaledLoopDefaults(steps);
    const scaledFrom50: string[] = [];
    if (steps !== AE_REFERENCE_STEPS && maxIterGiven === undefined) scaledFrom50.push('max_iter_to_alter');
    if (steps !== AE_REFERENCE_STEPS && thresholdsGiven === undefined) scaledFrom50.push('thresholds');
    if (isSuppress && steps !== AE_REFERENCE_STEPS && editStepsGiven === undefined) scaledFrom50.push('edit_steps');
    const thresholds = thresholdsGiven ?? scaled.thresholds;
    const late = [...thresholds.keys()].filter((k) => k >= totalCalls);
    if (late.length)
      notes.push(
        `--thresholds step${late.length > 1 ? 's' : ''} ${late.join(', ')} never come${late.length > 1 ? '' : 's'}: this run has steps 0..${totalCalls - 1}`,
      );
    settings = {
      steps,
      loop: {
        ...ATTEND_EXCITE_DEFAULTS,
        maxIterToAlter: maxIterGiven ?? scaled.maxIterToAlter,
        thresholds,
        scaleFactor,
      },
      attnRes: mapRes!,
      ...(mode ? { mode } : {}),
      ...(weights ? { weights } : {}),
      ...(gamma !== undefined ? { gamma } : {}),
      ...(editStepsGiven !== undefined ? { editSteps: editStepsGiven } : {}),
      scaledFrom50,
    };
  }
  if (Array.isArray(attentionSteps)) {
    const bad = attentionSteps.filter((s) => s >= totalCalls);
    if (bad.length)
      throw new UserError(
        `--attention-steps ${bad.join(', ')}: this run has steps 0..${totalCalls - 1} (${sampler}, ${steps} steps)`,
      );
  }
  return {
    plan: {
      prompt,
      negative: flags.negative,
      modelDir: model.dir,
      steps,
      guidance,
      sampler,
      totalCalls,
      seed,
      height,
      width,
      latents,
      method,
      preset,
      subjects,
      attributes,
      settings,
      mapRes,
      attentionSteps,
      outImage,
      outLatents,
      outMaps,
      outputs,
      threads,
      upscale,
      notes,
    },
    model,
    loadMs,
  };
}

/** The attention picture's rows: the mean over all steps, or the chosen steps. */
function attentionRows(result: GenerateResult, which: number[] | 'all' | 'mean'): AttentionRow[] {
  const calls = [...result.attentionMaps.keys()].sort((a, b) => a - b);
  if (which === 'mean') {
    return [
      { label: ['mean of', `${calls.length} steps`], maps: meanMaps(calls.map((i) => result.attentionMaps.get(i)!)) },
    ];
  }
  const steps = which === 'all' ? calls : which;
  return steps.map((i) => ({ label: [`step ${i}`, `t=${result.timesteps[i]}`], maps: result.attentionMaps.get(i)! }));
}

function tokenColumns(model: StableDiffusion, p: Plan): TokenColumn[] {
  if (p.subjects) {
    return p.subjects.subjects.flatMap((s) => s.tokenIndices.map((index, k) => ({ index, text: s.tokenTexts[k]! })));
  }
  return promptTokenColumns(model.tokenizer, p.prompt);
}

/** A path as the summary shows it: relative to the working directory when inside it. */
function shown(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

const sec = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

function summary(
  p: Plan,
  r: GenerateResult,
  model: StableDiffusion,
  loadMs: number,
  mapsSize: [number, number] | null,
): string {
  const L: string[] = [];
  const row = (k: string, v: string) => L.push(`${k.padEnd(10)} ${v}`);
  row('prompt', JSON.stringify(p.prompt));
  if (p.negative !== undefined) row('negative', JSON.stringify(p.negative));
  row('model', p.modelDir);
  row('sampler', `${r.sampler}, ${p.steps} steps (${r.timesteps.length} UNet calls), guidance ${p.guidance}`);
  row('timesteps', r.timesteps.join(' '));
  row('image', `${r.width}x${r.height}, latents [${r.finalLatents.shape.join(', ')}], seed ${p.seed}`);
  row(
    'start',
    p.latents ? `latents ${quoteKey(p.latents.key)} from ${shown(p.latents.file)}` : `seeded noise (seed ${p.seed})`,
  );
  if (p.subjects) row('subjects', p.subjects.subjects.map(describeSubject).join(', '));
  if (p.settings) {
    const st = p.settings;
    const loop = st.loop;
    const targets = p.subjects!.subjects.map((x) => x.tokenIndex);
    row('method', `${p.method}: ${p.preset.description}`);
    row(
      '',
      `tokens ${targets.join(', ')}${p.attributes.length ? `; attributes ${p.attributes.map((a) => `${a.attribute.word}→${p.subjects!.subjects[a.subject]!.word}`).join(', ')}` : ''}, attn_res ${st.attnRes!.join('x')}`,
    );
    if (p.preset.kind === 'suppress') {
      const w = { ...p.preset.weights!, ...st.weights };
      const on = LOSS_TERMS.filter((t) => w[t])
        .map((t) => `${t}=${w[t]}`)
        .join(',');
      const mode = st.mode ?? p.preset.mode!;
      row(
        '',
        `mode ${mode}${mode !== 'edit' ? `, weights ${on}` : ''}${mode !== 'loss' ? `, gamma ${st.gamma ?? 0}, edit steps ${st.editSteps ?? Math.max(1, Math.round((10 * p.steps) / 50))}` : ''}`,
      );
    }
    row(
      '',
      `max_iter_to_alter ${loop.maxIterToAlter}, thresholds ${fmtThresholds(loop.thresholds)}, scale_factor ${loop.scaleFactor}`,
    );
    if (st.scaledFrom50.length) {
      row(
        '',
        `(${st.scaledFrom50.join(', ')} scaled from the 50-step defaults 25 / ${fmtThresholds(ATTEND_EXCITE_DEFAULTS.thresholds)}${p.preset.kind === 'suppress' ? ' / 10' : ''} to ${p.steps} steps)`,
      );
    }
  } else row('method', 'none');
  for (const n of p.notes) row('note', n);
  if (p.settings) {
    const names = p.subjects!.subjects.map((x) => (x.occurrences > 1 ? `${x.word}#${x.occurrence}` : x.word));
    const widths = names.map((n) => Math.max(6, n.length));
    const terms =
      p.preset.kind === 'suppress'
        ? LOSS_TERMS.filter((t) =>
            r.steps.some((x) => (x.method as { terms?: Record<string, number> } | undefined)?.terms?.[t] !== undefined),
          )
        : [];
    const termW = terms.map((t) => Math.max(6, t.length));
    L.push('');
    L.push(
      `${'step'.padStart(4)} ${'t'.padStart(5)}  ${'loss'.padStart(6)}  ${names.map((n, i) => n.padStart(widths[i]!)).join('  ')}${terms.length ? '  ' + terms.map((t, i) => t.padStart(termW[i]!)).join('  ') : ''}  ${'tries'.padStart(5)}  ${'ms'.padStart(7)}`,
    );
    for (const x of r.steps) {
      const m = x.method as
        | {
            max_attention?: number[] | null;
            loss?: number | null;
            refinement_tries?: number;
            step_size?: number | null;
            terms?: Record<string, number>;
            edited?: boolean;
          }
        | undefined;
      const num = (v: number | null | undefined, w: number) =>
        (v === null || v === undefined ? '-' : v.toFixed(3)).padStart(w);
      const maxes = names.map((_, i) => num(m?.max_attention?.[i], widths[i]!)).join('  ');
      const altered = m?.step_size !== null && m?.step_size !== undefined;
      const termCols = terms.map((t, i) => num(m?.terms?.[t], termW[i]!)).join('  ');
      L.push(
        `${String(x.index).padStart(4)} ${String(x.timestep).padStart(5)}  ${num(m?.loss, 6)}${altered ? '*' : m?.edited ? 'e' : ' '} ${maxes}${terms.length ? '  ' + termCols : ''}  ${String(m?.refinement_tries || '-').padStart(5)}  ${x.ms.toFixed(0).padStart(7)}`,
      );
    }
    L.push(
      p.preset.kind === 'attend-and-excite'
        ? '(loss = 1 - the smallest max attention; * = latents updated; tries = refinement steps;'
        : '(loss = weighted mean of the terms; * = latents updated; e = attention edited; tries = refinement steps;',
    );
    L.push(' subject columns: max attention; ms includes compiling graphs on first use)');
    L.push('');
  } else {
    const ms = r.steps.map((s) => s.ms).sort((a, b) => a - b);
    row(
      'steps',
      `${ms.length} UNet calls, ${ms[Math.floor(ms.length / 2)]!.toFixed(0)} ms median (min ${ms[0]!.toFixed(0)}, max ${ms[ms.length - 1]!.toFixed(0)}, including graph compilation)`,
    );
  }
  const g = model.graphTimings;
  const build = g.reduce((s, t) => s + t.buildMs + t.serializeMs, 0);
  const sess = g.reduce((s, t) => s + t.sessionMs, 0);
  row(
    'timings',
    `total ${sec(r.timings.totalMs + loadMs)}: load ${sec(loadMs)}, text encoder ${sec(r.timings.encodeMs)}, denoise ${sec(r.timings.denoiseMs)}, decode ${sec(r.timings.decodeMs)}`,
  );
  row('', `of which ${g.length} graphs built in ${sec(build)} and ONNX Runtime sessions created in ${sec(sess)}`);
  row(
    'wrote',
    `${shown(p.outImage)} (${r.width * p.upscale}x${r.height * p.upscale} PNG${p.upscale > 1 ? `, enlarged ${p.upscale}x` : ''})`,
  );
  if (p.outLatents)
    row('', `${shown(p.outLatents)} (final latents [${r.finalLatents.shape.join(', ')}] as tensor 'latents')`);
  if (p.outMaps && mapsSize)
    row('', `${shown(p.outMaps)} (cross-attention ${p.mapRes!.join('x')}, ${mapsSize[0]}x${mapsSize[1]} PNG)`);
  return L.join('\n') + '\n';
}

function jsonReport(p: Plan, r: GenerateResult, model: StableDiffusion, loadMs: number): Record<string, unknown> {
  return {
    prompt: p.prompt,
    negative_prompt: p.negative ?? null,
    model: p.modelDir,
    settings: {
      steps: p.steps,
      guidance: p.guidance,
      scheduler: r.sampler,
      seed: p.seed,
      height: r.height,
      width: r.width,
      latents: p.latents ? { file: p.latents.file, key: p.latents.key } : null,
      method: p.method,
      threads: p.threads ?? null,
    },
    seed: p.seed,
    sampler: r.sampler,
    timesteps: r.timesteps,
    subjects: p.subjects ? subjectsJson(p.subjects) : null,
    method: p.settings
      ? {
          name: p.method,
          description: p.preset.description,
          token_indices: p.subjects!.subjects.map((x) => x.tokenIndex),
          attributes: p.attributes.map((a) => ({
            word: a.attribute.word,
            token_indices: a.attribute.tokenIndices,
            subject: p.subjects!.subjects[a.subject]!.word,
          })),
          max_iter_to_alter: p.settings.loop.maxIterToAlter,
          thresholds: Object.fromEntries(p.settings.loop.thresholds),
          scale_factor: p.settings.loop.scaleFactor,
          attn_res: p.settings.attnRes,
          ...(p.preset.kind === 'suppress'
            ? {
                mode: p.settings.mode ?? p.preset.mode,
                weights: { ...p.preset.weights, ...p.settings.weights },
                gamma: p.settings.gamma ?? 0,
                edit_steps: p.settings.editSteps ?? Math.max(1, Math.round((10 * p.steps) / 50)),
              }
            : {}),
          scaled_from_50_steps: p.settings.scaledFrom50,
        }
      : { name: 'none' },
    notes: p.notes,
    steps: r.steps.map((s) => ({ index: s.index, timestep: s.timestep, ms: s.ms, ...(s.method ?? {}) })),
    timings: {
      load_ms: loadMs,
      encode_ms: r.timings.encodeMs,
      denoise_ms: r.timings.denoiseMs,
      decode_ms: r.timings.decodeMs,
      total_ms: r.timings.totalMs + loadMs,
    },
    graphs: model.graphTimings.map((t) => ({
      key: t.key,
      build_ms: t.buildMs,
      serialize_ms: t.serializeMs,
      session_ms: t.sessionMs,
      nodes: t.nodes,
    })),
    outputs: { image: p.outImage, latents: p.outLatents, attention_maps: p.outMaps },
  };
}

async function run(prompt: string, flags: GenerateFlags): Promise<void> {
  const { plan: p, model, loadMs } = await plan(prompt, flags);
  const bar = interactive(flags.json)
    ? new SingleBar({
        format: 'generate {bar} {value}/{total} steps | {ms} ms/step | eta {eta_formatted}',
        hideCursor: true,
      })
    : null;
  let result: GenerateResult;
  try {
    bar?.start(p.totalCalls, 0, { ms: '-' });
    result = await generate(model, {
      prompt: p.prompt,
      ...(p.negative !== undefined ? { negativePrompt: p.negative } : {}),
      steps: p.steps,
      guidanceScale: p.guidance,
      sampler: p.sampler,
      seed: p.seed,
      height: p.height,
      width: p.width,
      ...(p.latents ? { initialLatents: p.latents.tensor } : {}),
      ...(p.settings
        ? { method: buildMethod(p.method, methodTargets(p.subjects!.subjects, p.attributes), p.settings) }
        : {}),
      ...(p.outMaps
        ? {
            recordAttention: {
              resolution: p.mapRes!,
              ...(Array.isArray(p.attentionSteps) ? { steps: p.attentionSteps } : {}),
            },
          }
        : {}),
      onStep: (s) => bar?.update(s.index + 1, { ms: s.ms.toFixed(0) }),
    });
  } catch (e) {
    p.outputs.abort();
    throw e;
  } finally {
    bar?.stop();
  }

  // Everything is made in memory first; files are written only once the whole run has succeeded.
  const image = floatToRgb8(result.image, { range: 'signed' });
  const written = p.upscale > 1 ? resizeNearest(image, image.width * p.upscale, image.height * p.upscale) : image;
  const png = encodePng(written.data, written.width, written.height);
  let mapsPng: Buffer | null = null;
  let mapsSize: [number, number] | null = null;
  if (p.outMaps) {
    const picture = renderAttentionPicture(image, attentionRows(result, p.attentionSteps), tokenColumns(model, p));
    mapsPng = encodePng(picture.data, picture.width, picture.height);
    mapsSize = [picture.width, picture.height];
  }
  await p.outputs.run((out) => {
    out.write(p.outImage, png);
    if (p.outLatents)
      out.writeWith(p.outLatents, (temp) =>
        writeSafetensors(
          temp,
          { latents: result.finalLatents },
          { format: 'pt', prompt: p.prompt, seed: String(p.seed), sampler: result.sampler, steps: String(p.steps) },
        ),
      );
    if (p.outMaps && mapsPng) out.write(p.outMaps, mapsPng);
  });
  await model.release();
  process.stdout.write(
    flags.json
      ? `${JSON.stringify(jsonReport(p, result, model, loadMs))}\n`
      : summary(p, result, model, loadMs, mapsSize),
  );
}

export function register(program: Command): void {
  const d = ATTEND_EXCITE_DEFAULTS;
  program
    .command('generate')
    .description('generate an image from a text prompt (optionally with Attend-and-Excite and attention maps)')
    .argument('<prompt>', 'the text prompt (quote it)')
    .option(
      '--model <path>',
      'diffusers model folder (model_index.json, unet/, vae/, ...) or single-file SD 1.x/2.x .safetensors checkpoint',
    )
    .option('--config <dir>', "a single file's configs and tokenizer: a diffusers folder without weights")
    .option(
      '--prediction-type <type>',
      'what the UNet predicts: epsilon, v_prediction, sample (default: the scheduler config; SD 2.x files: v_prediction)',
    )
    .option('--negative <text>', 'negative prompt (default: the empty prompt, as diffusers)')
    .option('--steps <n>', "inference steps (default: the model's s2i.json, else 50)")
    .option('--guidance <x>', "classifier-free guidance scale (default: the model's s2i.json, else 7.5)")
    .option('--scheduler <name>', "sampler: pndm, ddim, euler, euler-a, dpmpp-2m (default: the model's own)")
    .option('--seed <n>', 'seed of the initial noise (and of euler-a); default: a random seed, printed')
    .option('--height <px>', "image height, a multiple of 8 (default: the model's size, or the --latents size)")
    .option('--width <px>', "image width, a multiple of 8 (default: the model's size, or the --latents size)")
    .option(
      '--latents <file[:key]>',
      'start from these initial latents (safetensors tensor, key default "latents", shape [1,C,H/f,W/f])',
    )
    .option('--save-latents <file>', 'also write the final latents (before decoding) as tensor "latents"')
    .option('--out <file>', 'output PNG (default: s2i-SEED.png)')
    .option(
      '--json',
      'print one JSON object (settings, timesteps, per-step log, timings, outputs) instead of a summary',
    )
    .option('--method <name>', `guidance method: ${METHOD_NAMES.join(', ')}`, 'none')
    .option('--tokens <list>', 'subject token positions, e.g. 2,5 (0 is the start token)')
    .option(
      '--subjects <list>',
      'subject words, e.g. cat,frog (frog#2: its second occurrence), or auto (suppress: the default)',
    )
    .option(
      '--attributes <list>',
      'suppress: adjectives bound to subjects, e.g. circle:red,square:blue (default: found automatically)',
    )
    .option('--mode <mode>', 'suppress: loss (gradient), edit (attention edit, no gradient) or both')
    .option(
      '--weights <list>',
      `suppress: loss weights, e.g. suppress=1,excite=1,even=0.5,exclusive=1,bind=1 (terms: ${LOSS_TERMS.join(', ')})`,
    )
    .option('--gamma <x>', 'suppress edit mode: factor on subject attention outside its region (0: definitively zero)')
    .option(
      '--edit-steps <n>',
      'suppress edit mode: edit the guided passes of steps 1..n-1 (default 10 for 50 steps, scaled)',
    )
    .option(
      '--max-iter-to-alter <n>',
      `gradient methods: update the latents at steps below n (default ${d.maxIterToAlter} for 50 steps, scaled)`,
    )
    .option(
      '--thresholds <list>',
      `gradient methods: step:threshold refinement points (default ${fmtThresholds(d.thresholds)} for 50 steps, scaled)`,
    )
    .option('--scale-factor <x>', `gradient methods: step size of the latent update (default ${d.scaleFactor})`)
    .option('--attn-res <n>', 'A&E and --attention-maps: query resolution of the maps, e.g. 16 or 16x16 (default 16)')
    .option('--attention-maps <file>', 'write a PNG of the cross-attention map of each token over the image')
    .option(
      '--attention-steps <list>',
      'rows of the attention picture: steps such as 0,10,49, or all, or mean (default: mean)',
    )
    .option(
      '--upscale <n>',
      'write the PNG enlarged n times, nearest neighbour (for small models such as the 32x32 default)',
    )
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .addHelpText(
      'after',
      `
Description:
  Runs Stable Diffusion as diffusers' StableDiffusionPipeline does: CLIP
  encodes the prompt and the negative prompt, the UNet denoises the initial
  latents (seeded noise, or --latents) with classifier-free guidance over the
  scheduler's steps, and the VAE decodes the result, written as a PNG with
  pixels round(clamp(x/2 + 0.5, 0, 1) * 255), as diffusers converts them.
  Seeds drive s2i's own portable generator, not torch's: to reproduce a
  diffusers image exactly, pass its initial latents with --latents.

Attend-and-Excite (--method attend-and-excite):
  Before each step, strengthens the subjects' cross-attention (Chefer et al.
  2023, exactly as diffusers' StableDiffusionAttendAndExcitePipeline).
  Subjects are words of the prompt (--subjects) or token positions (--tokens,
  SOT = 0: in "a cat and a frog", cat = 2 and frog = 5). A word split into
  several tokens uses its last token (CLIP's text encoder is causal, so only
  that one has read the whole word); a repeated word uses its first
  occurrence unless written word#2. The defaults (max_iter_to_alter 25,
  thresholds ${fmtThresholds(d.thresholds)}) are meant for 50 steps; for another
  --steps, those not given are scaled by steps/50 (rounded), and the summary
  says so.

Attention maps (--attention-maps FILE):
  A picture like prompt-to-prompt's show_cross_attention: one tile per token
  (every prompt token, or only the subjects when --subjects/--tokens is
  given) showing its cross-attention map (mean over the layers at --attn-res
  and their heads, conditional pass) divided by its max, coloured and blended
  over the image, the token under it. One row for the mean over all steps,
  or one row per step with --attention-steps. Tiles are at least 128 px.

Output:
  A summary on stdout (settings, subjects, per-step A&E losses, timings,
  files written), or with --json exactly one JSON object. A progress bar goes
  to stderr when it is a terminal. Errors are one line "s2i: error: ..."
  with exit code 1 and leave no output file behind; files are written
  atomically once the run has succeeded.

Examples:
  s2i generate "a cat and a frog" --model models/sd15 --seed 7
  s2i generate "a cat and a frog" --model models/sd15 \\
      --method attend-and-excite --subjects cat,frog \\
      --attention-maps maps.png --out ae.png
  s2i generate "a cat and a frog" --model tiny-sd --steps 10 \\
      --scheduler ddim --latents init.safetensors:initial_latents \\
      --save-latents final.safetensors --json
  s2i generate "a frog and a frog" --model models/sd15 --steps 25 \\
      --method attend-and-excite --subjects frog#2
`,
    )
    .action(async (prompt: string, flags: GenerateFlags) => run(prompt, flags));
}

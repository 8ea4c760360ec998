/**
 * One text-to-image request as a person states it — a method by name with overrides, subjects as words or token
 * positions (or found automatically), an attention picture — checked, resolved against the model (its recommended
 * steps and guidance, its cross-attention resolutions), run, and handed back with every setting it used. Each
 * default and each check lives here or below, once: the CLI turns flags into a request and formats the answer.
 */
import { chooseAttentionResolution, crossAttentionResolutions } from '../attention/resolution.js';
import { meanMaps, promptTokenColumns, renderAttentionPicture, type AttentionRow } from '../attention/render.js';
import { FieldError } from '../errors.js';
import { floatToRgb8 } from '../image/convert.js';
import type { RgbImage } from '../image/image.js';
import { readSamplingDefaults } from '../io/model-folder.js';
import {
  buildMethod,
  DEFAULT_METHOD,
  METHOD_SPECS,
  checkMethodOverrides,
  methodSpec,
  methodTargets,
  promptTokenCount,
  resolveMethodSettings,
  type MethodOverrides,
  type ResolvedMethodSettings,
} from '../methods/registry.js';
import { autoSubjects, type AttributeLink } from '../prompt/auto-subjects.js';
import { resolveSubjects, type ResolvedSubjects } from '../prompt/subjects.js';
import { createSampler, defaultSampler, resolveSchedulerConfig, type SamplerName } from '../schedulers/index.js';
import type { Tensor } from '../tensor.js';
import { defaultBatchSize } from './batch-size.js';
import {
  DEFAULT_GUIDANCE,
  DEFAULT_STEPS,
  generateBatch,
  resolveImageSize,
  type BatchOptions,
  type GenerateResult,
  type SampleRequest,
  type StepInfo,
} from './generate.js';
import { StableDiffusion, type GraphTiming, type LoadOptions } from './stable-diffusion.js';

export interface GenerateRequest {
  prompt: string;
  negativePrompt?: string;
  /** Default: the model's recommended steps (its s2i.json), else DEFAULT_STEPS. */
  steps?: number;
  /** Default: the model's recommended guidance (its s2i.json), else DEFAULT_GUIDANCE. */
  guidanceScale?: number;
  /** Default: the model's own scheduler. */
  sampler?: SamplerName;
  seed?: number;
  height?: number;
  width?: number;
  /** Initial latents [1, C, h, w] or [C, h, w]; they set the image size unless height/width are given. */
  initialLatents?: Tensor;
  /** A method of the registry (default DEFAULT_METHOD: Suppress-to-Impress). */
  method?: string;
  /** Loop settings and Suppress-to-Impress's mode, weights, gamma and edit steps (defaults scaled to the steps). */
  methodOverrides?: Omit<MethodOverrides, 'attnRes'>;
  /** Subjects as token positions ('2,5'). */
  tokens?: string;
  /** Subjects as words ('cat,frog#2'), or 'auto' (the default of the suppress methods). */
  subjects?: string;
  /** Adjectives bound to subjects (Suppress-to-Impress; default: found with the subjects). */
  attributes?: readonly { subject: string; adjective: string }[];
  /** Query resolution of the maps (default: chooseAttentionResolution's). */
  attnRes?: readonly [number, number];
  /** Draw the cross-attention picture: a row for the mean over the steps, for every step, or for these steps. */
  attentionPicture?: { steps: readonly number[] | 'all' | 'mean' };
  /** How many images: seeds seed, seed+1, …, seed+images−1 (default 1). */
  images?: number;
  /** Images generated together (default: as many as fit the memory budget, at most 16; batch-size.ts). */
  batchSize?: number;
}

/** A note for the user; it names request fields through `nameOf` (a front end's own names for them). */
export type Note = (nameOf: (field: string) => string) => string;

export interface RequestHooks {
  /** Before the first step, with the number of UNet calls. */
  onStart?(totalCalls: number): void;
  onStep?(info: StepInfo): void;
}

/** One image of a request: its seed, the pipeline's result, the 8-bit image and the attention picture. */
export interface ImageRun {
  seed: number | undefined;
  result: GenerateResult;
  image: RgbImage;
  picture: RgbImage | null;
}

/**
 * A request as it ran: every resolved setting and its images. `seed`, `result`, `image` and `picture` are the
 * first image's (the only one unless `images` > 1).
 */
export interface GenerateRun extends ImageRun {
  /** Every image, in seed order. */
  images: ImageRun[];
  /** Images generated together. */
  batchSize: number;
  steps: number;
  guidance: number;
  sampler: SamplerName;
  subjects: ResolvedSubjects | null;
  /** Adjectives bound to subjects (given or found automatically); Suppress-to-Impress uses them. */
  attributes: AttributeLink[];
  /** The guidance method's settings; null for plain sampling. */
  method: ResolvedMethodSettings | null;
  /** Resolution of the maps the method reads and the picture shows; null when neither is wanted. */
  attnRes: [number, number] | null;
  /** What the user should be told about how subjects and settings were chosen. */
  notes: Note[];
}

/** The checks of a request that need no model, so a front end can report them before loading one. */
export function checkRequest(r: GenerateRequest): void {
  const caps = checkMethodOverrides(r.method ?? DEFAULT_METHOD, r.methodOverrides ?? {}).capabilities;
  const guided = caps.needsSubjects;
  const images = r.images ?? 1;
  if (!Number.isInteger(images) || images < 1 || images > 10000)
    throw new FieldError('images', `must be an integer from 1 to 10000, got ${images}`);
  if (r.seed !== undefined) {
    // Image i draws from seed + i: every one of them must be a safe integer (the generator refuses others).
    const last = Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(r.seed))
      throw new FieldError('seed', `must be an integer from ${-last} to ${last}, got ${r.seed}`);
    if (r.seed > last - (images - 1))
      throw new FieldError(
        'seed',
        (name, nameOf) =>
          `${name} ${r.seed} with ${nameOf('images')} ${images} would need seeds past ${last} (image i uses seed + i); ` +
          `give ${name} ${last - (images - 1)} or less`,
      );
  }
  if (r.batchSize !== undefined && (!Number.isInteger(r.batchSize) || r.batchSize < 1 || r.batchSize > 1024))
    throw new FieldError('batchSize', `must be an integer from 1 to 1024, got ${r.batchSize}`);
  if (images > 1 && r.initialLatents)
    throw new FieldError(
      'images',
      (name, nameOf) =>
        `${name} ${images} draws each image's noise from its own seed; ${nameOf('initialLatents')} gives one image's, so they do not go together`,
    );
  const picture = r.attentionPicture !== undefined;
  if (r.attributes !== undefined && !caps.takesAttributes)
    throw new FieldError(
      'attributes',
      (name, nameOf) =>
        `${name} only applies to the methods that take attributes (${nameOf('method')} ${namesWith('takesAttributes')})`,
    );
  if (r.attnRes !== undefined && !guided && !picture)
    throw new FieldError(
      'attnRes',
      (name, nameOf) => `${name} only applies to a guidance ${nameOf('method')} and ${nameOf('attentionPicture')}`,
    );
  if (guided && !caps.findsSubjects && r.tokens === undefined && r.subjects === undefined)
    throw new FieldError(
      'subjects',
      (name, nameOf) =>
        `${nameOf('method')} ${methodSpec(r.method ?? DEFAULT_METHOD).name} needs the subjects to strengthen: ${name} cat,frog or ${nameOf('tokens')} 2,5`,
    );
  if (!guided && !picture && (r.tokens !== undefined || r.subjects !== undefined))
    throw new FieldError(
      r.tokens !== undefined ? 'tokens' : 'subjects',
      (name, nameOf) =>
        `${name} is used by a guidance ${nameOf('method')} and ${nameOf('attentionPicture')}; give one of them`,
    );
  if (isAuto(r.subjects) && !caps.findsSubjects && !picture)
    throw new FieldError(
      'subjects',
      (name, nameOf) =>
        `${name} auto applies to the methods that find their subjects (${namesWith('findsSubjects')}) and ${nameOf('attentionPicture')}`,
    );
}

const isAuto = (subjects: string | undefined) => subjects?.trim().toLowerCase() === 'auto';

/** The methods with a capability, as an error lists them. */
function namesWith(capability: 'takesAttributes' | 'findsSubjects'): string {
  return METHOD_SPECS.filter((s) => s.capabilities[capability])
    .map((s) => s.name)
    .join(', ');
}

/** Checks the request, loads the model folder, runs the request and releases the model. */
export async function generateFromFolder(
  dir: string,
  request: GenerateRequest,
  options: LoadOptions = {},
  hooks: RequestHooks = {},
): Promise<GenerateRun & { modelDir: string; loadMs: number; graphs: GraphTiming[] }> {
  checkRequest(request);
  const t0 = performance.now();
  const model = await StableDiffusion.load(dir, options);
  const loadMs = performance.now() - t0;
  try {
    const run = await runRequest(model, request, hooks);
    return { ...run, modelDir: model.dir, loadMs, graphs: [...model.graphTimings] };
  } finally {
    await model.release();
  }
}

/** Runs a request on a loaded model. */
export async function runRequest(
  model: StableDiffusion,
  r: GenerateRequest,
  hooks: RequestHooks = {},
): Promise<GenerateRun> {
  const prepared = prepareRequest(model, r);
  hooks.onStart?.(prepared.totalCalls * Math.ceil(prepared.samples.length / prepared.batchSize));
  const results = await generateBatch(model, prepared.samples, {
    ...prepared.options,
    batchSize: prepared.batchSize,
    ...(hooks.onStep ? { onStep: hooks.onStep } : {}),
  });
  return prepared.finish(results);
}

/**
 * A request checked and resolved, not yet run: its samples (one per image, each with its own method instance), the
 * options of the batch they run in, and `finish`, which turns their results into the run. Samples of requests with
 * the same `options` (a server's queue compares `batchKey`) may run in one `generateBatch` together.
 */
export interface PreparedRequest {
  samples: SampleRequest[];
  options: Omit<BatchOptions, 'batchSize' | 'onStep'>;
  /** Requests with equal keys may share a batch: the same steps, guidance, sampler, size, method and recording. */
  batchKey: string;
  /** The request's own batch size (given, or as many of its images as fit the memory budget). */
  batchSize: number;
  /** UNet calls per batch. */
  totalCalls: number;
  /** The run, from the results of `samples` (in their order). */
  finish(results: readonly GenerateResult[]): GenerateRun;
}

/** Checks and resolves a request against a loaded model (see PreparedRequest). */
export function prepareRequest(model: StableDiffusion, r: GenerateRequest): PreparedRequest {
  checkRequest(r);
  const notes: Note[] = [];
  const name = chooseMethod(model, r, notes);
  r = { ...r, method: name };
  const recommended = readSamplingDefaults(model.dir);
  const steps = r.steps ?? recommended.steps ?? DEFAULT_STEPS;
  const guidance = r.guidanceScale ?? recommended.guidance ?? model.defaultGuidance ?? DEFAULT_GUIDANCE;
  const { height, width } = resolveImageSize(model, r);
  const sampler = r.sampler ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  const totalCalls = createSampler(sampler, resolveSchedulerConfig(sampler, model.schedulerConfig, {}), steps, {
    noise: (n) => new Float32Array(n),
  }).timesteps.length;

  const { subjects, attributes } = chooseSubjects(model, r, notes);
  const guided = checkMethodOverrides(name, r.methodOverrides ?? {}).capabilities.needsSubjects;
  const [latentH, latentW] = [height / model.scaleFactor, width / model.scaleFactor];
  const attnRes =
    guided || r.attentionPicture
      ? chooseAttentionResolution(
          crossAttentionResolutions(model.unetConfig, latentH, latentW),
          latentH,
          latentW,
          r.attnRes,
        )
      : null;
  const method = guided ? resolveMethodSettings(name, steps, { ...r.methodOverrides, attnRes: attnRes! }) : null;
  if (method) {
    const late = [...method.loop.thresholds.keys()].filter((k) => k >= totalCalls);
    if (late.length) {
      const s = late.length > 1;
      notes.push(
        (n) =>
          `${n('thresholds')} step${s ? 's' : ''} ${late.join(', ')} never come${s ? '' : 's'}: this run has steps 0..${totalCalls - 1}`,
      );
    }
  }
  const rows = r.attentionPicture?.steps;
  if (Array.isArray(rows)) {
    const bad = rows.filter((s) => s >= totalCalls);
    if (bad.length)
      throw new FieldError(
        'attentionSteps',
        `${bad.join(', ')}: this run has steps 0..${totalCalls - 1} (${sampler}, ${steps} steps)`,
      );
  }

  const count = r.images ?? 1;
  const promptTokens = promptTokenCount(model.tokenizer, r.prompt);
  const batchSize =
    r.batchSize ??
    defaultBatchSize(model, {
      images: count,
      height,
      width,
      gradient: method?.usesGradients ?? false,
    });
  const seeds = Array.from({ length: count }, (_, i) =>
    r.seed === undefined && count === 1 ? undefined : (r.seed ?? 0) + i,
  );
  const samples: SampleRequest[] = seeds.map((seed) => ({
    prompt: r.prompt,
    ...(r.negativePrompt !== undefined ? { negativePrompt: r.negativePrompt } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(r.initialLatents ? { initialLatents: r.initialLatents } : {}),
    // Each image its own method instance: methods keep per-image state (regions, logs).
    ...(method
      ? {
          method: buildMethod(name, methodTargets(subjects!.subjects, attributes, promptTokens), {
            ...r.methodOverrides,
            attnRes: attnRes!,
            steps,
          }),
        }
      : {}),
  }));
  const options: PreparedRequest['options'] = {
    steps,
    guidanceScale: guidance,
    sampler,
    height,
    width,
    ...(r.attentionPicture
      ? { recordAttention: { resolution: attnRes!, ...(Array.isArray(rows) ? { steps: rows } : {}) } }
      : {}),
  };
  const finish = (results: readonly GenerateResult[]): GenerateRun => {
    const images: ImageRun[] = results.map((result, i) => {
      const image = floatToRgb8(result.image, { range: 'signed' });
      const picture = r.attentionPicture
        ? renderAttentionPicture(
            image,
            attentionRows(result, r.attentionPicture.steps),
            tokenColumns(model, r, subjects),
          )
        : null;
      return { seed: seeds[i], result, image, picture };
    });
    return {
      ...images[0]!,
      images,
      batchSize,
      steps,
      guidance,
      sampler,
      subjects,
      attributes,
      method,
      attnRes,
      notes,
    };
  };
  // Methods are compared by name and settings: samples in one batch must choose their starts and record attention
  // alike, which the same method with the same settings does.
  const batchKey = JSON.stringify([options, name, r.methodOverrides ?? null, r.attnRes ?? null]);
  return { samples, options, batchKey, batchSize, totalCalls, finish };
}

/**
 * The method a request runs: its own, else DEFAULT_METHOD — but a prompt that names no noun gets plain sampling, with
 * a note, when no method was asked for: the default acts on subjects and should not turn a prompt into an error (an
 * explicit suppress method still reports the missing nouns).
 */
function chooseMethod(model: StableDiffusion, r: GenerateRequest, notes: Note[]): string {
  if (r.method !== undefined) return r.method;
  if (!methodSpec(DEFAULT_METHOD).capabilities.findsSubjects || r.tokens !== undefined || r.subjects !== undefined)
    return DEFAULT_METHOD;
  try {
    autoSubjects(model.tokenizer, r.prompt);
    return DEFAULT_METHOD;
  } catch (e) {
    if (!(e instanceof FieldError)) throw e;
    notes.push(
      (n) =>
        `the prompt names no noun, so plain sampling (the default method, ${DEFAULT_METHOD}, acts on subjects: name them with ${n('subjects')} or ${n('tokens')})`,
    );
    return 'none';
  }
}

/** Subjects from token positions or words, or found automatically (the suppress methods' default). */
function chooseSubjects(
  model: StableDiffusion,
  r: GenerateRequest,
  notes: Note[],
): { subjects: ResolvedSubjects | null; attributes: AttributeLink[] } {
  const finds = methodSpec(r.method ?? DEFAULT_METHOD).capabilities.findsSubjects;
  let subjects: ResolvedSubjects | null;
  let attributes: AttributeLink[] = [];
  if ((finds && r.tokens === undefined && r.subjects === undefined) || isAuto(r.subjects)) {
    const auto = autoSubjects(model.tokenizer, r.prompt);
    subjects = { source: 'words', subjects: auto.subjects, notes: auto.notes };
    attributes = auto.attributes;
    notes.push(
      (n) =>
        `subjects found automatically (nouns and their adjectives); override with ${n('subjects')}, ${n('tokens')}, ${n('attributes')}`,
    );
  } else {
    subjects = resolveSubjects(model.tokenizer, r.prompt, { tokens: r.tokens, subjects: r.subjects });
  }
  if (subjects) notes.push(...subjects.notes.map((text) => () => text));
  if (r.attributes !== undefined) {
    const list = subjects!.subjects;
    attributes = r.attributes.map(({ subject: noun, adjective }) => {
      const subject = list.findIndex((s) => s.word === noun.toLowerCase() || s.query === noun);
      if (subject < 0)
        throw new FieldError(
          'attributes',
          `: '${noun}' is not one of the subjects (${list.map((s) => s.word).join(', ')})`,
        );
      const attribute = resolveSubjects(model.tokenizer, r.prompt, { subjects: adjective })!.subjects[0]!;
      return { attribute, subject };
    });
  }
  return { subjects, attributes };
}

/** The attention picture's rows: the mean over all recorded steps, or the chosen steps. */
function attentionRows(result: GenerateResult, which: readonly number[] | 'all' | 'mean'): AttentionRow[] {
  const calls = [...result.attentionMaps.keys()].sort((a, b) => a - b);
  if (which === 'mean') {
    return [
      { label: ['mean of', `${calls.length} steps`], maps: meanMaps(calls.map((i) => result.attentionMaps.get(i)!)) },
    ];
  }
  const steps = which === 'all' ? calls : which;
  return steps.map((i) => ({ label: [`step ${i}`, `t=${result.timesteps[i]}`], maps: result.attentionMaps.get(i)! }));
}

/** The picture's columns: the subjects' tokens when subjects were named, else every prompt token. */
function tokenColumns(model: StableDiffusion, r: GenerateRequest, subjects: ResolvedSubjects | null) {
  if (subjects)
    return subjects.subjects.flatMap((s) => s.tokenIndices.map((index, k) => ({ index, text: s.tokenTexts[k]! })));
  return promptTokenColumns(model.tokenizer, r.prompt);
}

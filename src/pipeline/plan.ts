/**
 * A request resolved once against a loaded model: `plan(request, model)` answers every question the run, the
 * reports and the front ends ask — sizes, steps, guidance and sampler, the subjects with their token positions
 * and attributes, the method's settings and one instance per image, the attention resolution, the seeds and the
 * batch — in one plain object that nothing downstream needs to resolve again. `run(plan)` (run.ts) runs it.
 */
import { chooseAttentionResolution, crossAttentionResolutions } from '../attention/resolution.js';
import { FieldError, UserError } from '../errors.js';
import { readSamplingDefaults } from '../io/model-folder.js';
import {
  buildMethod,
  checkMethodOverrides,
  DEFAULT_METHOD,
  methodTargets,
  promptTokenCount,
  resolveMethodSettings,
  type MethodSpec,
  type ResolvedMethodSettings,
} from '../methods/registry.js';
import { autoSubjects, type AttributeLink, type AutoSubjects } from '../prompt/auto-subjects.js';
import { resolveSubjects, type ResolvedSubjects } from '../prompt/subjects.js';
import { createSampler, defaultSampler, resolveSchedulerConfig, type SamplerName } from '../schedulers/index.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import { quote } from '../util/quote.js';
import { defaultBatchSize } from './batch-size.js';
import {
  DEFAULT_GUIDANCE,
  DEFAULT_STEPS,
  resolveImageSize,
  type BatchOptions,
  type SampleRequest,
} from './generate.js';
import { checkRequest, isAuto, type GenerateRequest, type Note } from './request.js';
import type { StableDiffusion } from './stable-diffusion.js';

/**
 * How a benchmark states its requests, where they differ from a person's: every method gets the subjects found
 * automatically (plain sampling included: its rows name them) and one set of overrides (those a method does not take
 * are ignored, not refused), builds at its own attention resolution, and `recordMaps` records every call's maps
 * without drawing the request's picture (the benchmark draws its own). A prompt the subject finder refuses is an
 * error that quotes it.
 */
export interface BenchmarkRules {
  recordMaps: boolean;
}

/** A request with everything resolved, ready for `run` (run.ts). Each image's method instance runs once. */
export interface GenerationPlan {
  model: StableDiffusion;
  /** The request as given, with its method chosen. */
  request: GenerateRequest & { method: string };
  steps: number;
  guidance: number;
  sampler: SamplerName;
  height: number;
  width: number;
  /** UNet calls per batch (PNDM makes one more than its steps). */
  totalCalls: number;
  subjects: ResolvedSubjects | null;
  /** Adjectives bound to subjects (given or found automatically); Suppress-to-Impress uses them. */
  attributes: AttributeLink[];
  /** The prompt's tokens with the start and end tokens, as the model sees them. */
  promptTokens: number;
  /** The guidance method's settings; null for plain sampling. */
  method: ResolvedMethodSettings | null;
  /** Resolution of the maps the method reads and the picture shows; null when neither is wanted. */
  attnRes: [number, number] | null;
  /** Each image's seed, in order (undefined: the pipeline's default, for a single unseeded image). */
  seeds: (number | undefined)[];
  /** Images generated together: given, or as many of the request's images as fit the memory budget. */
  batchSize: number;
  /** One sample per image, each with its own method instance (methods keep per-image state). */
  samples: SampleRequest[];
  /** The batch's shared settings (`generateBatch`'s options but the batch size and the step hook). */
  options: Omit<BatchOptions, 'batchSize' | 'onStep'>;
  /** Plans with equal keys may share a batch: the same steps, guidance, sampler, size, method and recording. */
  batchKey: string;
  /** What the user should be told about how subjects and settings were chosen. */
  notes: Note[];
}

/** Checks and resolves a request against a loaded model; `bench`: a benchmark's rules (BenchmarkRules). */
export function plan(request: GenerateRequest, model: StableDiffusion, bench?: BenchmarkRules): GenerationPlan {
  let spec: MethodSpec | null = null;
  if (!bench) spec = checkRequest(request);
  const notes: Note[] = [];
  const found = (quoted: boolean) => findSubjects(model.tokenizer, request.prompt, quoted);
  const name = bench ? request.method! : chooseMethod(request, spec!, found, notes);
  if (spec?.name !== name) spec = checkMethodOverrides(name, bench ? {} : (request.methodOverrides ?? {}));
  const r = { ...request, method: name };
  const sampling = resolveSampling(model, r, !bench);
  const { steps, sampler, totalCalls } = sampling;
  const { subjects, attributes } = bench
    ? { subjects: asResolved(found(true)), attributes: found(true).attributes }
    : chooseSubjects(model, r, spec, found, notes);
  const guided = spec.capabilities.needsSubjects;
  const picture = !bench && r.attentionPicture !== undefined;
  const attnRes = guided || picture ? attentionResolution(model, sampling, r.attnRes) : null;
  // A benchmark's methods build at their own resolution where the rule agrees with it (its row keys hash their
  // settings as built: the pixel model's keys stay); where it does not (16x16 on the latent model, not latent/4),
  // at the rule's.
  const ownRes = chooseAttentionResolution(
    null,
    sampling.height / model.scaleFactor,
    sampling.width / model.scaleFactor,
  );
  const builtRes = attnRes === null || (bench && attnRes.join('x') === ownRes.join('x')) ? {} : { attnRes };
  const method = guided ? resolveMethodSettings(name, steps, { ...r.methodOverrides, ...builtRes }) : null;
  if (method) notes.push(...lateThresholds(method, totalCalls));
  const rows = picture ? r.attentionPicture!.steps : undefined;
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
    r.batchSize ?? defaultBatchSize(model, { ...sampling, images: count, gradient: method?.usesGradients ?? false });
  const seeds = Array.from({ length: count }, (_, i) =>
    r.seed === undefined && count === 1 ? undefined : (r.seed ?? 0) + i,
  );
  const targets = method ? methodTargets(subjects!.subjects, attributes, promptTokens) : null;
  const samples: SampleRequest[] = seeds.map((seed) => ({
    prompt: r.prompt,
    ...(r.negativePrompt !== undefined ? { negativePrompt: r.negativePrompt } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(r.initialLatents ? { initialLatents: r.initialLatents } : {}),
    // Each image its own method instance: methods keep per-image state (regions, logs).
    ...(targets ? { method: buildMethod(name, targets, { ...r.methodOverrides, ...builtRes, steps })! } : {}),
  }));
  const recordAttention = bench
    ? bench.recordMaps
      ? {}
      : null
    : picture
      ? {
          resolution: attnRes!,
          ...(Array.isArray(rows) ? { steps: rows } : {}),
          ...(r.attentionPicture!.alsoAt?.length
            ? { alsoAt: r.attentionPicture!.alsoAt.map((given) => attentionResolution(model, sampling, given)) }
            : {}),
        }
      : null;
  const options: GenerationPlan['options'] = {
    steps,
    guidanceScale: sampling.guidance,
    sampler,
    height: sampling.height,
    width: sampling.width,
    ...(recordAttention ? { recordAttention } : {}),
  };
  // Methods are compared by name and settings: samples in one batch must choose their starts and record attention
  // alike, which the same method with the same settings does.
  const batchKey = JSON.stringify([options, name, r.methodOverrides ?? null, r.attnRes ?? null]);
  return {
    model,
    request: r,
    ...sampling,
    subjects,
    attributes,
    promptTokens,
    method,
    attnRes,
    seeds,
    batchSize,
    samples,
    options,
    batchKey,
    notes,
  };
}

/** Steps, guidance (the model's recommendation, unless a benchmark gives both), sampler, image size and calls. */
function resolveSampling(model: StableDiffusion, r: GenerateRequest, recommend: boolean) {
  const recommended = recommend ? readSamplingDefaults(model.dir) : {};
  const steps = r.steps ?? recommended.steps ?? DEFAULT_STEPS;
  const guidance = r.guidanceScale ?? recommended.guidance ?? model.defaultGuidance ?? DEFAULT_GUIDANCE;
  const { height, width } = resolveImageSize(model, r);
  const sampler = r.sampler ?? defaultSampler(model.schedulerConfig, model.folder.componentDir('scheduler'));
  const totalCalls = createSampler(sampler, resolveSchedulerConfig(sampler, model.schedulerConfig, {}), steps, {
    noise: (n) => new Float32Array(n),
  }).timesteps.length;
  return { steps, guidance, sampler, height, width, totalCalls };
}

/** The maps' resolution: the given one (checked against the UNet), else chooseAttentionResolution's. */
function attentionResolution(
  model: StableDiffusion,
  size: { height: number; width: number },
  given: readonly [number, number] | undefined,
): [number, number] {
  const [latentH, latentW] = [size.height / model.scaleFactor, size.width / model.scaleFactor];
  return chooseAttentionResolution(
    crossAttentionResolutions(model.unetConfig, latentH, latentW),
    latentH,
    latentW,
    given,
  );
}

/** A note for threshold steps past the run's last call. */
function lateThresholds(method: ResolvedMethodSettings, totalCalls: number): Note[] {
  const late = [...method.loop.thresholds.keys()].filter((k) => k >= totalCalls);
  if (!late.length) return [];
  const s = late.length > 1;
  return [
    (n) =>
      `${n('thresholds')} step${s ? 's' : ''} ${late.join(', ')} never come${s ? '' : 's'}: this run has steps 0..${totalCalls - 1}`,
  ];
}

/**
 * The method a request runs: its own, else DEFAULT_METHOD — but a prompt that names no noun gets plain sampling, with
 * a note, when no method was asked for: the default acts on subjects and should not turn a prompt into an error (an
 * explicit suppress method still reports the missing nouns). `spec` is the checked method's (checkRequest).
 */
function chooseMethod(
  r: GenerateRequest,
  spec: MethodSpec,
  found: (quoted: boolean) => AutoSubjects,
  notes: Note[],
): string {
  if (r.method !== undefined) return r.method;
  if (!spec.capabilities.findsSubjects || r.tokens !== undefined || r.subjects !== undefined) return DEFAULT_METHOD;
  try {
    found(false);
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

const asResolved = (auto: AutoSubjects): ResolvedSubjects => ({
  source: 'words',
  subjects: auto.subjects,
  notes: auto.notes,
});

/** Subjects from token positions or words, or found automatically (the suppress methods' default). */
function chooseSubjects(
  model: StableDiffusion,
  r: GenerateRequest,
  spec: MethodSpec,
  found: (quoted: boolean) => AutoSubjects,
  notes: Note[],
): { subjects: ResolvedSubjects | null; attributes: AttributeLink[] } {
  let subjects: ResolvedSubjects | null;
  let attributes: AttributeLink[] = [];
  if ((spec.capabilities.findsSubjects && r.tokens === undefined && r.subjects === undefined) || isAuto(r.subjects)) {
    const auto = found(false);
    subjects = asResolved(auto);
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

/**
 * The subjects and attributes found in a prompt (autoSubjects), remembered per tokenizer for the last prompts: a
 * benchmark plans each prompt once per seed and method, and finding them parses the prompt. `quoted`: an error names
 * the prompt (a benchmark's, among many).
 */
function findSubjects(tokenizer: ClipTokenizer, prompt: string, quoted: boolean): AutoSubjects {
  let memo = FOUND.get(tokenizer);
  if (!memo) FOUND.set(tokenizer, (memo = new Map()));
  const known = memo.get(prompt);
  if (known) return known;
  let auto: AutoSubjects;
  try {
    auto = autoSubjects(tokenizer, prompt);
  } catch (e) {
    if (!quoted) throw e;
    const where = `prompt ${quote(prompt)}`;
    if (e instanceof FieldError)
      throw new FieldError(e.field, (_, nameOf) => `${where}: ${e.messageFor(nameOf)}`, { cause: e });
    if (e instanceof UserError) throw new UserError(`${where}: ${e.message}`, { cause: e });
    throw e;
  }
  if (memo.size >= FOUND_LIMIT) memo.delete(memo.keys().next().value!);
  memo.set(prompt, auto);
  return auto;
}

const FOUND = new WeakMap<ClipTokenizer, Map<string, AutoSubjects>>();
const FOUND_LIMIT = 4096;

/**
 * One text-to-image request as a person states it — a method by name with overrides, subjects as words or token
 * positions (or found automatically), an attention picture — the checks it needs no model for, and what a run of it
 * hands back with every setting it used. `plan` (plan.ts) resolves it against a model once and `run` (run.ts) runs
 * it; each default and each check lives there or here, once: the CLI turns flags into a request and formats the
 * answer.
 */
import { FieldError } from '../errors.js';
import type { RgbImage } from '../image/image.js';
import {
  DEFAULT_METHOD,
  METHOD_SPECS,
  checkMethodOverrides,
  methodSpec,
  type MethodOverrides,
  type MethodSpec,
  type ResolvedMethodSettings,
} from '../methods/registry.js';
import type { AttributeLink } from '../prompt/auto-subjects.js';
import type { ResolvedSubjects } from '../prompt/subjects.js';
import type { SamplerName } from '../schedulers/index.js';
import type { Tensor } from '../tensor.js';
import type { GenerateResult, StepInfo } from './generate.js';

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
  /**
   * Draw the cross-attention picture: a row for the mean over the steps, for every step, or for these steps; and
   * with `alsoAt`, the same rows again at each of these further resolutions (a UNet with cross-attention at several).
   */
  attentionPicture?: { steps: readonly number[] | 'all' | 'mean'; alsoAt?: readonly (readonly [number, number])[] };
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
export function checkRequest(r: GenerateRequest): MethodSpec {
  const spec = checkMethodOverrides(r.method ?? DEFAULT_METHOD, r.methodOverrides ?? {});
  const caps = spec.capabilities;
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
  return spec;
}

export const isAuto = (subjects: string | undefined) => subjects?.trim().toLowerCase() === 'auto';

/** The methods with a capability, as an error lists them. */
function namesWith(capability: 'takesAttributes' | 'findsSubjects'): string {
  return METHOD_SPECS.filter((s) => s.capabilities[capability])
    .map((s) => s.name)
    .join(', ');
}

/**
 * Every method by name, so the CLI and the benchmark build them the same way: plain sampling, Attend-and-Excite,
 * Suppress-to-Impress in its modes, one ablation per term, and the rivals expressed in the same mechanism.
 */
import { FieldError, UserError } from '../errors.js';
import { ATTEND_EXCITE_DEFAULTS, AttendAndExcite } from './attend-and-excite.js';
import { FOCUS_DEFAULTS } from './focus.js';
import type { LatentLoopConfig } from './latent-loop.js';
import {
  LOSS_TERMS,
  SUPPRESS_WEIGHTS,
  SuppressToImpress,
  type Attribute,
  type LossWeights,
  type Subject,
  type SuppressMode,
} from './suppress.js';
import type { GuidanceMethod } from './types.js';
import type { AttributeLink } from '../prompt/auto-subjects.js';
import type { Subject as PromptSubject } from '../prompt/subjects.js';

export interface MethodPreset {
  description: string;
  kind: 'none' | 'attend-and-excite' | 'suppress';
  mode?: SuppressMode;
  weights?: LossWeights;
}

const off = (term: keyof LossWeights): LossWeights => ({ ...SUPPRESS_WEIGHTS, [term]: 0 });
const zero: LossWeights = Object.fromEntries(LOSS_TERMS.map((t) => [t, 0])) as LossWeights;

export const METHODS: Record<string, MethodPreset> = {
  none: { kind: 'none', description: 'plain sampling (classifier-free guidance only)' },
  'attend-and-excite': {
    kind: 'attend-and-excite',
    description: 'Attend-and-Excite (Chefer et al. 2023), exactly as diffusers / the official code',
  },
  suppress: {
    kind: 'suppress',
    mode: 'both',
    weights: SUPPRESS_WEIGHTS,
    description: 'Suppress-to-Impress, loss and edit modes together',
  },
  'suppress-loss': {
    kind: 'suppress',
    mode: 'loss',
    weights: SUPPRESS_WEIGHTS,
    description: 'Suppress-to-Impress, gradient (loss) mode only',
  },
  'suppress-edit': {
    kind: 'suppress',
    mode: 'edit',
    weights: SUPPRESS_WEIGHTS,
    description: 'Suppress-to-Impress, attention-edit mode only (no gradients)',
  },
  'suppress-no-suppress': {
    kind: 'suppress',
    mode: 'both',
    weights: off('suppress'),
    description: 'ablation: without the suppress term',
  },
  'suppress-no-excite': {
    kind: 'suppress',
    mode: 'both',
    weights: off('excite'),
    description: 'ablation: without the excite term',
  },
  'suppress-no-even': {
    kind: 'suppress',
    mode: 'both',
    weights: off('even'),
    description: 'ablation: without the even term',
  },
  'suppress-no-exclusive': {
    kind: 'suppress',
    mode: 'both',
    weights: off('exclusive'),
    description: 'ablation: without the exclusive term',
  },
  'suppress-no-bind': {
    kind: 'suppress',
    mode: 'both',
    weights: off('bind'),
    description: 'ablation: without the bind term',
  },
  astar: {
    kind: 'suppress',
    mode: 'loss',
    weights: { ...zero, excite: 1, segregate: 1 },
    description: "rival: A-STAR-style segregation loss + A&E's excite, in A&E's loop",
  },
  initno: {
    kind: 'suppress',
    mode: 'loss',
    weights: { ...zero, excite: 1, clean: 0.1 },
    description: "rival: INITNO-style clean cross-attention loss + A&E's excite, in A&E's loop",
  },
};

export const METHOD_NAMES = Object.keys(METHODS);

export function methodPreset(name: string, option = 'method'): MethodPreset {
  const p = METHODS[name];
  if (!p) throw new FieldError(option, `: unknown method '${name}' (known: ${METHOD_NAMES.join(', ')})`);
  return p;
}

/** The step count A&E's loop defaults (and Suppress-to-Impress's edit steps) are tuned for. */
export const REFERENCE_STEPS = 50;

/** Suppress-to-Impress's edit steps at REFERENCE_STEPS. */
export const EDIT_STEPS_AT_50 = 10;

/** A&E's 50-step defaults (max_iter_to_alter 25, thresholds {0, 10, 20}) scaled to `steps`, as the oracle did. */
export function scaledLoopDefaults(steps: number): Pick<LatentLoopConfig, 'maxIterToAlter' | 'thresholds'> {
  const k = steps / REFERENCE_STEPS;
  const thresholds = new Map<number, number>();
  for (const [i, v] of ATTEND_EXCITE_DEFAULTS.thresholds) thresholds.set(Math.round(i * k), v);
  return { maxIterToAlter: Math.round(ATTEND_EXCITE_DEFAULTS.maxIterToAlter * k), thresholds };
}

/** Suppress-to-Impress's edit steps scaled to `steps` (10 of 50, at least 1). */
export function scaledEditSteps(steps: number): number {
  return Math.max(1, Math.round((EDIT_STEPS_AT_50 * steps) / REFERENCE_STEPS));
}

/** What a caller may set on a method; everything left out takes the method's default (scaled to the steps). */
export interface MethodOverrides {
  loop?: Partial<LatentLoopConfig>;
  attnRes?: readonly [number, number];
  /** Suppress-to-Impress overrides. */
  mode?: SuppressMode;
  weights?: Partial<LossWeights>;
  gamma?: number;
  /** Edit steps; default 10 of 50, scaled. */
  editSteps?: number;
}

export interface MethodSettings extends MethodOverrides {
  /** Inference steps (scales the 50-step loop defaults unless given explicitly). */
  steps: number;
}

/** A method's settings with every default filled in, and which of them were scaled from 50 steps. */
export interface ResolvedMethodSettings {
  name: string;
  preset: MethodPreset;
  loop: LatentLoopConfig;
  attnRes: readonly [number, number] | undefined;
  /** Suppress-to-Impress's settings (null for the other methods). */
  suppress: { mode: SuppressMode; weights: LossWeights; gamma: number; editSteps: number } | null;
  /** The fields whose defaults were scaled from REFERENCE_STEPS to the run's steps. */
  scaled: ('maxIterToAlter' | 'thresholds' | 'editSteps')[];
}

const LOOP_OVERRIDES = ['maxIterToAlter', 'thresholds', 'scaleFactor'] as const;
const SUPPRESS_OVERRIDES = ['mode', 'weights', 'gamma', 'editSteps'] as const;

/** Overrides the named method cannot use are FieldErrors naming them (checked before any model is loaded). */
export function checkMethodOverrides(name: string, overrides: MethodOverrides): MethodPreset {
  const preset = methodPreset(name);
  for (const field of LOOP_OVERRIDES) {
    if (overrides.loop?.[field] !== undefined && preset.kind === 'none')
      throw new FieldError(
        field,
        (name, nameOf) => `${name} only applies to a guidance ${nameOf('method')} (attend-and-excite, suppress, ...)`,
      );
  }
  for (const field of SUPPRESS_OVERRIDES) {
    if (overrides[field] !== undefined && preset.kind !== 'suppress')
      throw new FieldError(
        field,
        (name, nameOf) =>
          `${name} only applies to the suppress methods (${nameOf('method')} suppress, suppress-loss, ...)`,
      );
  }
  return preset;
}

/**
 * The named method's settings for a run of `steps` steps: the overrides, and for everything else the method's
 * defaults, the step-dependent ones scaled from 50 steps (`scaled` lists those). Overrides the method does not use
 * are ignored here (a benchmark applies one set to every method); `checkMethodOverrides` refuses them.
 */
export function resolveMethodSettings(
  name: string,
  steps: number,
  overrides: MethodOverrides = {},
): ResolvedMethodSettings {
  const preset = methodPreset(name);
  const loop: LatentLoopConfig = { ...ATTEND_EXCITE_DEFAULTS, ...scaledLoopDefaults(steps), ...overrides.loop };
  const scaled: ResolvedMethodSettings['scaled'] = [];
  if (steps !== REFERENCE_STEPS && preset.kind !== 'none') {
    if (overrides.loop?.maxIterToAlter === undefined) scaled.push('maxIterToAlter');
    if (overrides.loop?.thresholds === undefined) scaled.push('thresholds');
    if (preset.kind === 'suppress' && overrides.editSteps === undefined) scaled.push('editSteps');
  }
  const suppress =
    preset.kind === 'suppress'
      ? {
          mode: overrides.mode ?? preset.mode!,
          weights: { ...preset.weights!, ...overrides.weights },
          gamma: overrides.gamma ?? 0,
          editSteps: overrides.editSteps ?? scaledEditSteps(steps),
        }
      : null;
  return { name, preset, loop, attnRes: overrides.attnRes, suppress, scaled };
}

export interface MethodSubjects {
  subjects: readonly Subject[];
  attributes: readonly Attribute[];
}

/** Build the named method for one prompt's subjects; undefined for plain sampling. */
export function buildMethod(
  name: string,
  targets: MethodSubjects,
  settings: MethodSettings,
): GuidanceMethod | undefined {
  const { preset, loop, attnRes, suppress } = resolveMethodSettings(name, settings.steps, settings);
  if (preset.kind === 'none') return undefined;
  if (targets.subjects.length === 0) throw new UserError(`${name} needs at least one subject`);
  if (preset.kind === 'attend-and-excite') {
    return new AttendAndExcite({
      ...ATTEND_EXCITE_DEFAULTS,
      ...loop,
      tokenIndices: targets.subjects.map((s) => s.token),
      attnRes,
    });
  }
  return new SuppressToImpress({
    ...ATTEND_EXCITE_DEFAULTS,
    ...loop,
    name,
    subjects: targets.subjects,
    attributes: targets.attributes,
    ...suppress!,
    focus: FOCUS_DEFAULTS,
    attnRes,
  });
}

/** Method targets from resolved prompt subjects (explicit --tokens/--subjects) and auto-detected attributes. */
export function methodTargets(
  subjects: readonly PromptSubject[],
  attributes: readonly AttributeLink[] = [],
): MethodSubjects {
  const asTarget = (s: PromptSubject): Subject => ({ token: s.tokenIndex, tokens: s.tokenIndices, label: s.word });
  return {
    subjects: subjects.map(asTarget),
    attributes: attributes.map((a) => ({ ...asTarget(a.attribute), subject: a.subject })),
  };
}

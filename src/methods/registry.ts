/**
 * Every method by name, so the CLI and the benchmark build them the same way: plain sampling, Attend-and-Excite,
 * Suppress-to-Impress in its modes, one ablation per term, and the rivals expressed in the same mechanism.
 */
import { FieldError, UserError } from '../errors.js';
import { ATTEND_EXCITE_DEFAULTS, AttendAndExcite } from './attend-and-excite.js';
import { CARRIER_DEFAULTS } from './carriers.js';
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
  /** Suppress-to-Impress: subjects as token groups (carriers). */
  tokenGroups?: boolean;
  /** Suppress-to-Impress: starts to choose from (1: the sample's own only). */
  candidates?: number;
  /** Suppress-to-Impress: edit steps at REFERENCE_STEPS, when not the default. */
  editStepsAt50?: number;
  /** Suppress-to-Impress: the layout score that ends the search for a start early (null: try them all). */
  accept?: number | null;
}

const zero: LossWeights = Object.fromEntries(LOSS_TERMS.map((t) => [t, 0])) as LossWeights;

/** Starts Suppress-to-Impress chooses from by default (docs/method.md: tuning). */
export const DEFAULT_CANDIDATES = 4;

/**
 * The layout score at which a start is kept without trying the others (docs/method.md: tuning — the same full
 * success as trying all four, at 28–32 guided passes per image instead of 40).
 */
export const DEFAULT_ACCEPT = 0.05;

/**
 * The method a request without one runs (the CLI) and the page's first choice: Suppress-to-Impress, since it halved
 * the failures of plain sampling, Attend-and-Excite and both rivals on the held-apart shapes suites (README:
 * Results). `none` is plain sampling; library calls to `generate` without a method stay plain.
 */
export const DEFAULT_METHOD = 'suppress';

export const METHODS: Record<string, MethodPreset> = {
  none: { kind: 'none', description: 'plain sampling (classifier-free guidance only)' },
  'attend-and-excite': {
    kind: 'attend-and-excite',
    description: 'Attend-and-Excite (Chefer et al. 2023), exactly as diffusers / the official code',
  },
  suppress: {
    kind: 'suppress',
    mode: 'edit',
    tokenGroups: true,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    description:
      "Suppress-to-Impress: each subject's token group zeroed outside its own region, the cleanest of 4 starts",
  },
  'suppress-edit': {
    kind: 'suppress',
    mode: 'edit',
    tokenGroups: true,
    candidates: 1,
    description: 'Suppress-to-Impress, the attention edit alone (one start; no gradients)',
  },
  'suppress-select': {
    kind: 'suppress',
    mode: 'edit',
    tokenGroups: true,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    editStepsAt50: 0,
    description: 'ablation: choosing the start alone (no edit)',
  },
  'suppress-no-groups': {
    kind: 'suppress',
    mode: 'edit',
    tokenGroups: false,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    description: "ablation: the subjects' own tokens only (no carriers), with the choice of start",
  },
  'suppress-loss': {
    kind: 'suppress',
    mode: 'loss',
    weights: SUPPRESS_WEIGHTS,
    tokenGroups: false,
    candidates: 1,
    description: 'Suppress-to-Impress, the gradient (loss) mode of the first version',
  },
  'suppress-v1': {
    kind: 'suppress',
    mode: 'both',
    weights: SUPPRESS_WEIGHTS,
    tokenGroups: false,
    candidates: 1,
    editStepsAt50: 10,
    description: 'the first version (loss and edit modes together, subject tokens only), for comparison',
  },
  astar: {
    kind: 'suppress',
    mode: 'loss',
    weights: { ...zero, excite: 1, segregate: 1 },
    tokenGroups: false,
    candidates: 1,
    description: "rival: A-STAR-style segregation loss + A&E's excite, in A&E's loop",
  },
  initno: {
    kind: 'suppress',
    mode: 'loss',
    weights: { ...zero, excite: 1, clean: 0.1 },
    tokenGroups: false,
    candidates: 1,
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

/** Suppress-to-Impress's edit steps at REFERENCE_STEPS (9 of 25 on the shapes model's tuning split). */
export const EDIT_STEPS_AT_50 = 18;

/** The sampler call at which Suppress-to-Impress compares its starts, at REFERENCE_STEPS (5 of 25 in tuning). */
export const SELECT_AT_50 = 10;

/** A&E's 50-step defaults (max_iter_to_alter 25, thresholds {0, 10, 20}) scaled to `steps`, as the oracle did. */
export function scaledLoopDefaults(steps: number): Pick<LatentLoopConfig, 'maxIterToAlter' | 'thresholds'> {
  const k = steps / REFERENCE_STEPS;
  const thresholds = new Map<number, number>();
  for (const [i, v] of ATTEND_EXCITE_DEFAULTS.thresholds) thresholds.set(Math.round(i * k), v);
  return { maxIterToAlter: Math.round(ATTEND_EXCITE_DEFAULTS.maxIterToAlter * k), thresholds };
}

/** Suppress-to-Impress's edit steps scaled to `steps` (18 of 50 by default, at least 1 unless 0). */
export function scaledEditSteps(steps: number, at50 = EDIT_STEPS_AT_50): number {
  return at50 === 0 ? 0 : Math.max(1, Math.round((at50 * steps) / REFERENCE_STEPS));
}

/** The call at which starts are compared, scaled to `steps` (10 of 50), at least 1 and at most the last call. */
export function scaledSelectAt(steps: number): number {
  return Math.min(steps, Math.max(1, Math.round((SELECT_AT_50 * steps) / REFERENCE_STEPS)));
}

/** What a caller may set on a method; everything left out takes the method's default (scaled to the steps). */
export interface MethodOverrides {
  loop?: Partial<LatentLoopConfig>;
  attnRes?: readonly [number, number];
  /** Suppress-to-Impress overrides. */
  mode?: SuppressMode;
  weights?: Partial<LossWeights>;
  gamma?: number;
  /** Edit steps; default 18 of 50, scaled. */
  editSteps?: number;
  /** Subjects as token groups (carriers). */
  tokenGroups?: boolean;
  /** Starts to choose from (1: none). */
  candidates?: number;
  /** The sampler call at which starts are compared; default 10 of 50, scaled. */
  selectAt?: number;
  /** Stop trying starts at the first whose layout score is at most this (null: try them all). */
  accept?: number | null;
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
  suppress: {
    mode: SuppressMode;
    weights: LossWeights;
    gamma: number;
    editSteps: number;
    tokenGroups: boolean;
    selection: { candidates: number; atCall: number; accept: number | null };
  } | null;
  /** The fields whose defaults were scaled from REFERENCE_STEPS to the run's steps. */
  scaled: ('maxIterToAlter' | 'thresholds' | 'editSteps' | 'selectAt')[];
}

const LOOP_OVERRIDES = ['maxIterToAlter', 'thresholds', 'scaleFactor'] as const;
const SUPPRESS_OVERRIDES = [
  'mode',
  'weights',
  'gamma',
  'editSteps',
  'tokenGroups',
  'candidates',
  'selectAt',
  'accept',
] as const;

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
    if (preset.kind === 'suppress' && overrides.editSteps === undefined && preset.editStepsAt50 !== 0)
      scaled.push('editSteps');
    const candidates = overrides.candidates ?? preset.candidates ?? 1;
    if (preset.kind === 'suppress' && candidates > 1 && overrides.selectAt === undefined) scaled.push('selectAt');
  }
  const suppress =
    preset.kind === 'suppress'
      ? {
          mode: overrides.mode ?? preset.mode!,
          weights: { ...(preset.weights ?? SUPPRESS_WEIGHTS), ...overrides.weights },
          gamma: overrides.gamma ?? 0,
          editSteps: overrides.editSteps ?? scaledEditSteps(steps, preset.editStepsAt50),
          tokenGroups: overrides.tokenGroups ?? preset.tokenGroups ?? false,
          selection: {
            candidates: overrides.candidates ?? preset.candidates ?? 1,
            atCall: overrides.selectAt ?? scaledSelectAt(steps),
            accept: overrides.accept !== undefined ? overrides.accept : (preset.accept ?? null),
          },
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
    carriers: CARRIER_DEFAULTS,
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

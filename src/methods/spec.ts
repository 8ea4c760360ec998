/**
 * A method is one declaration: its name, what it can do, the overrides it takes (a typed schema, from which the
 * CLI's flags and help are derived), its defaults resolved once for a run's step count, and how to build it for
 * one prompt's subjects. The registry lists the specs; the CLI, the benchmark, the request and the page ask a
 * spec instead of testing names.
 */
import { UserError } from '../errors.js';
import type { LatentLoopConfig } from './latent-loop.js';
import type { GuidanceMethod } from './types.js';

/** The step count the published defaults (A&E's loop, S2I's edit steps, the rivals' schedules) are given for. */
export const REFERENCE_STEPS = 50;

/** `at50` calls of a 50-step schedule scaled to `steps` (rounded), at least `min`. */
export function scaledCall(at50: number, steps: number, min = 0): number {
  return Math.max(min, Math.round((at50 * steps) / REFERENCE_STEPS));
}

/** A subject of the prompt as a method sees it. */
export interface Subject {
  /** The token whose map represents the subject (for a multi-token word: its last token). */
  token: number;
  /** Every token of the word. */
  tokens: readonly number[];
  label: string;
}

export interface Attribute extends Subject {
  /** Index into the subjects list of the subject this attribute describes. */
  subject: number;
}

export interface MethodSubjects {
  subjects: readonly Subject[];
  attributes: readonly Attribute[];
  /** Tokens of the prompt with the start and end tokens (SynGen's "other tokens" are the rest of them). */
  promptTokens?: number;
}

/** What a front end needs to know about a method without building it. */
export interface Capabilities {
  /** Acts on subjects (every guidance method); false only for plain sampling. */
  needsSubjects: boolean;
  /** Finds its subjects (nouns and their adjectives) in the prompt when none are named. */
  findsSubjects: boolean;
  /** Uses adjectives bound to subjects. */
  takesAttributes: boolean;
  /** Chooses among several starts (initial noises) or optimises the start. */
  choosesStarts: boolean;
}

/** One override a method takes: the CLI flag that sets it and how a flag's text becomes its value. */
export interface OverrideField<T> {
  flag: string;
  /** The flag's argument as help shows it, e.g. '<n>'. */
  arg: string;
  /** Which methods it reaches, as help starts its line: 'suppress', 'gradient methods'. */
  scope: string;
  help: string;
  /** The methods it applies to, for the error when given to another: '{method}' is the method field's name. */
  appliesTo: string;
  parse(value: string): T;
  /** Fields of A&E's latent loop live under `overrides.loop`. */
  loop?: true;
}

/**
 * Everything a caller may set on some method; each method's spec says which of these it takes (its schema).
 * Left out: the method's default (scaled to the steps).
 */
export interface MethodOverrides {
  loop?: Partial<LatentLoopConfig>;
  attnRes?: readonly [number, number];
  /** Suppress-to-Impress: loss, edit or both. */
  mode?: 'loss' | 'edit' | 'both';
  /** Loss-term weights (Suppress-to-Impress's loss mode and the rivals in its loop). */
  weights?: Partial<Record<string, number>>;
  gamma?: number;
  /** Edit steps; default 18 of 50, scaled. */
  editSteps?: number;
  /** Subjects as token groups (carriers). */
  tokenGroups?: boolean;
  /** Suppress-to-Impress: whether and how the subjects' regions also read their adjectives (AttributeRegions). */
  attributeRegions?: AttributeRegions;
  /** Starts to choose from (1: none). */
  candidates?: number;
  /** The sampler call at which starts are compared; default 10 of 50, scaled. */
  selectAt?: number;
  /** Stop trying starts at the first whose layout score is at most this (null: try them all). */
  accept?: number | null;
  /**
   * At most this many guided UNet passes (forward passes of the model with the prompt, losses and comparisons of
   * starts included) per image, where the method can spend fewer (it chooses fewer starts / refinement tries).
   */
  budget?: number;
}

export type OverrideKey = Exclude<keyof MethodOverrides, 'loop' | 'attnRes'> | keyof LatentLoopConfig;

export type OverrideSchema = Partial<Record<OverrideKey, OverrideField<unknown>>>;

export interface MethodSettings extends MethodOverrides {
  /** Inference steps (scales the 50-step defaults unless given explicitly). */
  steps: number;
}

/** Settings a spec resolved for a run: `loop` for the gradient methods, the rest the method's own. */
export interface SpecSettings {
  loop: LatentLoopConfig;
  /** The method's own settings (JSON-able; reports print them). */
  own: Record<string, unknown> | null;
  /** Fields whose defaults were scaled from REFERENCE_STEPS to the run's steps. */
  scaled: string[];
  /** Whether a run with these settings takes gradients (memory, batch size). */
  usesGradients: boolean;
  /** The Suppress-to-Impress family's settings (suppress-presets.ts), where the method is one of them. */
  suppress?: import('./suppress-presets.js').SuppressSettings;
}

export interface MethodSpec {
  name: string;
  description: string;
  /** Other names the CLI and the benchmark accept. */
  aliases?: readonly string[];
  /** Where the page lists it: the main methods, or the ablations and rivals. */
  group: 'main' | 'ablation' | 'rival';
  capabilities: Capabilities;
  /** The overrides it takes (any other is refused, naming the field). */
  overrides: OverrideSchema;
  /** Defaults filled in and scaled to `steps`; `overrides` the caller's (only those in the schema matter). */
  resolve(steps: number, overrides: MethodOverrides): SpecSettings;
  /** The method for one prompt's subjects (undefined: plain sampling). */
  build(
    targets: MethodSubjects,
    settings: MethodSettings & { attnRes?: readonly [number, number] },
  ): GuidanceMethod | undefined;
}

// ------------------------------------------------------------------------------------------- override parsing

export function parseIntegerIn(flag: string, lo: number, hi: number): (value: string) => number {
  return (value) => {
    const v = /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(v) || v < lo || v > hi)
      throw new UserError(`${flag} must be an integer from ${lo} to ${hi}, got "${value}"`);
    return v;
  };
}

export function parseNumberIn(flag: string, lo: number, hi = Infinity): (value: string) => number {
  return (value) => {
    const v = value.trim() === '' ? NaN : Number(value);
    if (!Number.isFinite(v) || v < lo || v > hi)
      throw new UserError(
        `${flag} must be a number ${Number.isFinite(hi) ? `from ${lo} to ${hi}` : `>= ${lo}`}, got "${value}"`,
      );
    return v;
  };
}

export function parseOnOff(flag: string): (value: string) => boolean {
  return (value) => {
    const on = onOffWord(value);
    if (on === undefined) throw new UserError(`${flag} must be on or off, got "${value}"`);
    return on;
  };
}

/** on / true / yes → true, off / false / no → false, anything else undefined (any case, trimmed). */
export function onOffWord(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  return undefined;
}

/**
 * Whether Suppress-to-Impress's regions also read the subjects' adjectives: false, no; true, each word weighted by
 * how distinct its map is ('weighted', carriers.ts regionMaps); 'strongest', the more distinct word alone.
 */
export type AttributeRegions = boolean | 'strongest';

/** The guided-pass budget: every method may be held to one (it spends fewer starts or tries, never more). */
export const BUDGET_OVERRIDE: OverrideSchema = {
  budget: {
    flag: '--budget',
    arg: '<passes>',
    scope: 'methods that choose their start',
    appliesTo: 'the methods that choose their start ({method} suppress, suppress-select, ...)',
    help: 'at most this many guided UNet passes per image (losses and starts included); the method spends fewer starts or tries to stay within it',
    parse: parseIntegerIn('--budget', 1, 1_000_000),
  },
};

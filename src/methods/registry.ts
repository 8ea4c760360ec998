/**
 * Every method by name: the list of specs (spec.ts), from which the CLI's flags and help, the benchmark's method
 * names, the page's menu and the request's checks are derived. A new method is one file exporting its spec and
 * one line in METHOD_SPECS.
 */
import { FieldError, UserError } from '../errors.js';
import { attendAndExciteSpec, resolveLoop, scaledLoopDefaults } from './attend-and-excite.js';
import { astarSpec } from './astar.js';
import { initnoCleanSpec } from './initno-clean.js';
import { initnoSpec } from './initno.js';
import { syngenSpec } from './syngen.js';
import { divideAndBindSpec } from './divide-and-bind.js';
import { conformSpec } from './conform.js';
import type { LatentLoopConfig } from './latent-loop.js';
import {
  DEFAULT_ACCEPT,
  DEFAULT_CANDIDATES,
  EDIT_STEPS_AT_50,
  MATCHED_COST_NAME,
  SELECT_AT_50,
  scaledEditSteps,
  scaledSelectAt,
  suppressAtCost,
  SUPPRESS_SPECS,
  type SuppressSettings,
} from './suppress-presets.js';
import {
  REFERENCE_STEPS,
  type MethodOverrides,
  type MethodSettings,
  type MethodSpec,
  type MethodSubjects,
  type OverrideField,
  type OverrideKey,
  type Subject,
} from './spec.js';
import type { GuidanceMethod } from './types.js';
import type { AttributeLink } from '../prompt/auto-subjects.js';
import type { Subject as PromptSubject } from '../prompt/subjects.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';

export {
  DEFAULT_ACCEPT,
  DEFAULT_CANDIDATES,
  EDIT_STEPS_AT_50,
  REFERENCE_STEPS,
  SELECT_AT_50,
  scaledEditSteps,
  scaledLoopDefaults,
  scaledSelectAt,
};
export type { MethodOverrides, MethodSettings, MethodSpec, MethodSubjects };

/** Plain sampling: classifier-free guidance only. */
const noneSpec: MethodSpec = {
  name: 'none',
  aliases: ['plain'],
  group: 'main',
  description: 'plain sampling (classifier-free guidance only)',
  capabilities: { needsSubjects: false, findsSubjects: false, takesAttributes: false, choosesStarts: false },
  overrides: {},
  resolve: (steps) => ({ loop: resolveLoop(steps, {}).loop, own: null, scaled: [], usesGradients: false }),
  build: () => undefined,
};

/** Every method, in the order help and menus list them. */
export const METHOD_SPECS: readonly MethodSpec[] = [
  noneSpec,
  attendAndExciteSpec,
  ...SUPPRESS_SPECS,
  astarSpec,
  initnoCleanSpec,
  initnoSpec,
  syngenSpec,
  divideAndBindSpec,
  conformSpec,
];

/**
 * The method a request without one runs (the CLI) and the page's first choice: Suppress-to-Impress, since it halved
 * the failures of plain sampling, Attend-and-Excite and both rivals on the held-apart shapes suites (README:
 * Results). `none` is plain sampling; library calls to `generate` without a method stay plain.
 */
export const DEFAULT_METHOD = 'suppress';

export const METHOD_NAMES = METHOD_SPECS.map((s) => s.name);

/** Each method's preset as it was listed before specs (name → description and spec). */
export const METHODS: Readonly<Record<string, MethodSpec>> = Object.fromEntries(METHOD_SPECS.map((s) => [s.name, s]));

const ALIASES: ReadonlyMap<string, string> = new Map(
  METHOD_SPECS.flatMap((s) => (s.aliases ?? []).map((a) => [a, s.name] as const)),
);

/** A method name as a person may write it ('AE', 's2i', 'attend_and_excite') → its registry name. */
export function canonicalMethodName(name: string): string {
  const n = name
    .trim()
    .toLowerCase()
    .replace(/[_\s]+/g, '-');
  return ALIASES.get(n) ?? n;
}

const atCost = new Map<string, MethodSpec>();

/** A method by name: a registry name or alias, or `suppress@<passes>` (Suppress-to-Impress at that cost). */
export function methodSpec(name: string, option = 'method'): MethodSpec {
  const canonical = canonicalMethodName(name);
  const spec = METHODS[canonical];
  if (spec) return spec;
  const matched = MATCHED_COST_NAME.exec(canonical);
  const passes = matched ? Number(matched[1]) : NaN;
  if (Number.isSafeInteger(passes) && passes >= 1 && passes <= 1_000_000) {
    const key = `suppress@${passes}`;
    if (!atCost.has(key)) atCost.set(key, suppressAtCost(passes));
    return atCost.get(key)!;
  }
  throw new FieldError(
    option,
    `: unknown method '${name}' (known: ${METHOD_NAMES.join(', ')}, and suppress@<passes>: S2I held to that many guided passes per image)`,
  );
}

/** The same as methodSpec (the name it had). */
export const methodPreset = methodSpec;

/** Every override field any method takes, once, with the methods that take it (CLI flags are made from these). */
export function overrideFields(): { key: OverrideKey; field: OverrideField<unknown>; methods: string[] }[] {
  const out = new Map<OverrideKey, { key: OverrideKey; field: OverrideField<unknown>; methods: string[] }>();
  for (const spec of METHOD_SPECS)
    for (const [key, field] of Object.entries(spec.overrides) as [OverrideKey, OverrideField<unknown>][]) {
      const entry = out.get(key) ?? { key, field, methods: [] };
      entry.methods.push(spec.name);
      out.set(key, entry);
    }
  return [...out.values()];
}

/** The override keys given (loop fields included). */
function givenKeys(overrides: MethodOverrides): OverrideKey[] {
  const keys: OverrideKey[] = [];
  for (const [k, v] of Object.entries(overrides.loop ?? {})) if (v !== undefined) keys.push(k as OverrideKey);
  for (const [k, v] of Object.entries(overrides))
    if (v !== undefined && k !== 'loop' && k !== 'attnRes') keys.push(k as OverrideKey);
  return keys;
}

/** Overrides the named method cannot use are FieldErrors naming them (checked before any model is loaded). */
export function checkMethodOverrides(name: string, overrides: MethodOverrides): MethodSpec {
  const spec = methodSpec(name);
  const key = givenKeys(overrides).find((k) => !spec.overrides[k]);
  if (key) throw notTaken(key, () => '');
  return spec;
}

/** The error for an override no method of the run takes: where it applies, or that it is no method setting. */
function notTaken(key: OverrideKey, tail: (nameOf: (field: string) => string) => string): FieldError {
  const field = overrideFields().find((f) => f.key === key)?.field;
  return new FieldError(key, (n, nameOf) =>
    field
      ? `${n} only applies to ${field.appliesTo.replace('{method}', nameOf('method'))}${tail(nameOf)}`
      : `${n} is not a method setting`,
  );
}

/**
 * A benchmark applies one set of overrides to every method it runs, each taking the fields it has; a field that none
 * of `names` takes would change nothing, so it is a FieldError naming it, as `checkMethodOverrides` is for one method.
 */
export function checkOverridesTakenByAny(names: readonly string[], overrides: MethodOverrides): void {
  const specs = names.map((n) => methodSpec(n));
  const key = givenKeys(overrides).find((k) => !specs.some((s) => s.overrides[k]));
  if (key) throw notTaken(key, (nameOf) => `; none of ${nameOf('methods')} takes it`);
}

/** A method's settings with every default filled in, and which of them were scaled from 50 steps. */
export interface ResolvedMethodSettings {
  name: string;
  spec: MethodSpec;
  /** The spec (its description), as reports name it. */
  preset: MethodSpec;
  loop: LatentLoopConfig;
  attnRes: readonly [number, number] | undefined;
  /** The method's own settings (reports print them). */
  own: Record<string, unknown> | null;
  /** Suppress-to-Impress's settings (null for the other methods). */
  suppress: SuppressSettings | null;
  usesGradients: boolean;
  /** The fields whose defaults were scaled from REFERENCE_STEPS to the run's steps. */
  scaled: string[];
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
  const spec = methodSpec(name);
  const r = spec.resolve(steps, overrides);
  return {
    name: spec.name,
    spec,
    preset: spec,
    loop: r.loop,
    attnRes: overrides.attnRes,
    own: r.own,
    suppress: r.suppress ?? null,
    usesGradients: r.usesGradients,
    scaled: r.scaled,
  };
}

/** Build the named method for one prompt's subjects; undefined for plain sampling. */
export function buildMethod(
  name: string,
  targets: MethodSubjects,
  settings: MethodSettings,
): GuidanceMethod | undefined {
  const spec = methodSpec(name);
  if (!spec.capabilities.needsSubjects) return undefined;
  if (targets.subjects.length === 0) throw new UserError(`${spec.name} needs at least one subject`);
  return spec.build(targets, settings);
}

/**
 * Method targets from resolved prompt subjects (explicit --tokens/--subjects) and auto-detected attributes;
 * `promptTokens`: the prompt's tokens with the start and end tokens (promptTokenCount).
 */
export function methodTargets(
  subjects: readonly PromptSubject[],
  attributes: readonly AttributeLink[] = [],
  promptTokens?: number,
): MethodSubjects {
  const asTarget = (s: PromptSubject): Subject => ({ token: s.tokenIndex, tokens: s.tokenIndices, label: s.word });
  return {
    subjects: subjects.map(asTarget),
    attributes: attributes.map((a) => ({ ...asTarget(a.attribute), subject: a.subject })),
    ...(promptTokens !== undefined ? { promptTokens } : {}),
  };
}

/** The prompt's tokens with the start and end tokens, as the model sees them (truncated to its length). */
export function promptTokenCount(tokenizer: ClipTokenizer, prompt: string): number {
  const t = tokenizer.tokenize(prompt);
  return Math.min(t.untruncatedLength, t.ids.length);
}

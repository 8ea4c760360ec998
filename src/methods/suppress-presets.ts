/**
 * Suppress-to-Impress's presets (docs/method.md 4): its defaults, written once, the overrides it takes and the
 * spec of each preset — the method, its ablations, the first version — plus `suppressSpec`, with which the
 * rivals expressed in its loss loop (astar.ts, initno-clean.ts) declare themselves.
 */
import { UserError } from '../errors.js';
import { ATTEND_EXCITE_DEFAULTS, LOOP_OVERRIDES, resolveLoop } from './attend-and-excite.js';
import { CARRIER_DEFAULTS } from './carriers.js';
import { FOCUS_DEFAULTS } from './focus.js';
import { LOSS_TERMS, type LossWeights } from './loss-terms.js';
import {
  BUDGET_OVERRIDE,
  onOffWord,
  parseIntegerIn,
  parseNumberIn,
  parseOnOff,
  REFERENCE_STEPS,
  scaledCall,
  type AttributeRegions,
  type MethodSpec,
  type OverrideSchema,
} from './spec.js';
import { SUPPRESS_WEIGHTS, SuppressToImpress, type SuppressMode } from './suppress.js';

/** Starts Suppress-to-Impress chooses from by default (docs/method.md: tuning). */
export const DEFAULT_CANDIDATES = 4;

/**
 * The layout score at which a start is kept without trying the others (docs/method.md: tuning — the same full
 * success as trying all four, at 28–32 guided passes per image instead of 40).
 */
export const DEFAULT_ACCEPT = 0.05;

/**
 * Edit steps at REFERENCE_STEPS of the presets that do not set their own, `suppress` among them (9 of 25 on the
 * shapes model's tuning split). Only `suppress-v3` edits longer (V3_EDIT_STEPS_AT_50).
 */
export const EDIT_STEPS_AT_50 = 18;

/**
 * `suppress-v3`'s edit steps at REFERENCE_STEPS, chosen on the latent model's first weights at 50 steps. On the
 * shipped weights it gains nothing at 50 steps and, scaled to 23 of 25, recolours same-colour pairs at 25
 * (docs/method.md, "The edit's length").
 */
export const V3_EDIT_STEPS_AT_50 = 45;

/** The sampler call at which Suppress-to-Impress compares its starts, at REFERENCE_STEPS (5 of 25 in tuning). */
export const SELECT_AT_50 = 10;

/** Suppress-to-Impress's edit steps scaled to `steps` (18 of 50 by default, at least 1 unless 0). */
export function scaledEditSteps(steps: number, at50 = EDIT_STEPS_AT_50): number {
  return at50 === 0 ? 0 : scaledCall(at50, steps, 1);
}

/** The call at which starts are compared, scaled to `steps` (10 of 50), at least 1 and at most the last call. */
export function scaledSelectAt(steps: number): number {
  return Math.min(steps, scaledCall(SELECT_AT_50, steps, 1));
}

/** `--attribute-regions`: on / off as any switch, or `strongest`. */
export function parseAttributeRegions(value: string): AttributeRegions {
  const rule = value.trim().toLowerCase() === 'strongest' ? 'strongest' : onOffWord(value);
  if (rule === undefined) throw new UserError(`--attribute-regions must be on, strongest or off, got "${value}"`);
  return rule;
}

/** `suppress=1,even=0.5` → partial weights. */
export function parseWeights(value: string): Partial<LossWeights> {
  const terms = LOSS_TERMS.join(', ');
  const out: Partial<LossWeights> = {};
  for (const item of value.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*([^\s=]+)\s*$/.exec(item);
    if (!m)
      throw new UserError(
        `--weights must look like suppress=1,excite=1,even=0.5 (terms: ${terms}); got "${item.trim()}"`,
      );
    const term = m[1] as keyof LossWeights;
    if (!LOSS_TERMS.includes(term)) throw new UserError(`--weights: unknown term '${m[1]}' (terms: ${terms})`);
    out[term] = parseNumberIn(`--weights ${term}`, 0)(m[2]!);
  }
  return out;
}

export function parseMode(value: string): SuppressMode {
  const v = value.trim().toLowerCase();
  if (v !== 'loss' && v !== 'edit' && v !== 'both')
    throw new UserError(`--mode must be loss, edit or both, got "${value}"`);
  return v;
}

const S2I = { scope: 'suppress', appliesTo: 'the suppress methods ({method} suppress, suppress-loss, ...)' };

/** The overrides every Suppress-to-Impress preset (and rival in its loop) takes. */
export const SUPPRESS_OVERRIDES: OverrideSchema = {
  ...LOOP_OVERRIDES,
  mode: {
    ...S2I,
    flag: '--mode',
    arg: '<mode>',
    help: 'loss (gradient), edit (attention edit, no gradient) or both',
    parse: parseMode,
  },
  weights: {
    ...S2I,
    flag: '--weights',
    arg: '<list>',
    help: `loss weights, e.g. suppress=1,excite=1,even=0.5,exclusive=1,bind=1 (terms: ${LOSS_TERMS.join(', ')})`,
    parse: parseWeights,
  },
  gamma: {
    ...S2I,
    flag: '--gamma',
    arg: '<x>',
    help: 'edit mode: factor on subject attention outside its region (0: definitively zero)',
    parse: parseNumberIn('--gamma', 0, 1),
  },
  editSteps: {
    ...S2I,
    flag: '--edit-steps',
    arg: '<n>',
    help: `edit mode: edit the guided passes of steps 1..n-1 (default ${EDIT_STEPS_AT_50} at ${REFERENCE_STEPS} steps, scaled; ${V3_EDIT_STEPS_AT_50} for suppress-v3)`,
    parse: parseIntegerIn('--edit-steps', 0, 100000),
  },
  tokenGroups: {
    ...S2I,
    flag: '--token-groups',
    arg: '<on|off>',
    help: 'treat each subject with the later tokens that carry it (default on for suppress, off for the rivals)',
    parse: parseOnOff('--token-groups'),
  },
  attributeRegions: {
    ...S2I,
    flag: '--attribute-regions',
    arg: '<rule>',
    help: "with token groups, each subject's region also reads its adjectives: on (each word weighted by how distinct its map is from the other subjects'), strongest (the more distinct word alone; the default for suppress) or off (the default for suppress-v2 and the ablations)",
    parse: parseAttributeRegions,
  },
  candidates: {
    ...S2I,
    flag: '--candidates',
    arg: '<n>',
    help: `run n starts (initial noises) to --select-at and keep the cleanest layout (default ${DEFAULT_CANDIDATES} for suppress; 1: off)`,
    parse: parseIntegerIn('--candidates', 1, 64),
  },
  selectAt: {
    ...S2I,
    flag: '--select-at',
    arg: '<n>',
    help: `the sampler call at which starts are compared (default ${SELECT_AT_50} for ${REFERENCE_STEPS} steps, scaled)`,
    parse: parseIntegerIn('--select-at', 1, 1000),
  },
  accept: {
    ...S2I,
    flag: '--accept',
    arg: '<x|off>',
    help: `keep the first start whose layout score is at most x, without trying the others (default ${DEFAULT_ACCEPT} for suppress; off: try all)`,
    parse: (v) => (v.trim().toLowerCase() === 'off' ? null : parseNumberIn('--accept', 0)(v)),
  },
  ...BUDGET_OVERRIDE,
};

/** A preset of the Suppress-to-Impress machinery. */
export interface SuppressPreset {
  name: string;
  description: string;
  group: MethodSpec['group'];
  aliases?: readonly string[];
  mode: SuppressMode;
  weights?: LossWeights;
  /** Subjects as token groups (carriers). */
  tokenGroups: boolean;
  /** With token groups: regions read the adjectives too (SuppressConfig.attributeRegions). */
  attributeRegions?: AttributeRegions;
  /** Starts to choose from (1: the sample's own only). */
  candidates: number;
  /** Edit steps at REFERENCE_STEPS, when not the default. */
  editStepsAt50?: number;
  /** The layout score that ends the search for a start early (null: try them all). */
  accept?: number | null;
  /** At most this many guided passes per image (MethodOverrides.budget), when the preset itself is held to one. */
  budget?: number;
}

/** Suppress-to-Impress's resolved settings (what reports print). */
export interface SuppressSettings {
  mode: SuppressMode;
  weights: LossWeights;
  gamma: number;
  editSteps: number;
  tokenGroups: boolean;
  attributeRegions?: AttributeRegions;
  selection: { candidates: number; atCall: number; accept: number | null; budget?: number | null };
}

/** The spec of one preset. */
export function suppressSpec(p: SuppressPreset): MethodSpec {
  const resolve: MethodSpec['resolve'] = (steps, o) => {
    const { loop, scaled } = resolveLoop(steps, o);
    const candidates = o.candidates ?? p.candidates;
    const budget = o.budget ?? p.budget;
    const attributeRegions = o.attributeRegions ?? p.attributeRegions ?? false;
    if (steps !== REFERENCE_STEPS) {
      if (o.editSteps === undefined && p.editStepsAt50 !== 0) scaled.push('editSteps');
      if (candidates > 1 && o.selectAt === undefined) scaled.push('selectAt');
    }
    const suppress: SuppressSettings = {
      mode: o.mode ?? p.mode,
      weights: { ...(p.weights ?? SUPPRESS_WEIGHTS), ...o.weights } as LossWeights,
      gamma: o.gamma ?? 0,
      editSteps: o.editSteps ?? scaledEditSteps(steps, p.editStepsAt50),
      tokenGroups: o.tokenGroups ?? p.tokenGroups,
      // Only when on: the settings (and the benchmark's row hashes) of the presets without it stay as they were.
      ...(attributeRegions ? { attributeRegions } : {}),
      selection: {
        candidates,
        atCall: o.selectAt ?? scaledSelectAt(steps),
        accept: o.accept !== undefined ? o.accept : (p.accept ?? null),
        // Only when given: a budget left out leaves the settings (and the benchmark's row hashes) as they were.
        ...(budget !== undefined ? { budget } : {}),
      },
    };
    return { loop, scaled, own: { ...suppress }, suppress, usesGradients: suppress.mode !== 'edit' };
  };
  return {
    name: p.name,
    description: p.description,
    group: p.group,
    ...(p.aliases ? { aliases: p.aliases } : {}),
    capabilities: {
      needsSubjects: true,
      findsSubjects: true,
      takesAttributes: true,
      choosesStarts: p.candidates > 1,
    },
    overrides: SUPPRESS_OVERRIDES,
    resolve,
    build: (targets, settings) => {
      const r = resolve(settings.steps, settings);
      return new SuppressToImpress({
        ...ATTEND_EXCITE_DEFAULTS,
        ...r.loop,
        name: p.name,
        subjects: targets.subjects,
        attributes: targets.attributes,
        ...r.suppress!,
        carriers: CARRIER_DEFAULTS,
        focus: FOCUS_DEFAULTS,
        attnRes: settings.attnRes,
      });
    },
  };
}

const zero: LossWeights = Object.fromEntries(LOSS_TERMS.map((t) => [t, 0])) as LossWeights;

/** Weights with only the given terms on. */
export const only = (w: Partial<LossWeights>): LossWeights => ({ ...zero, ...w });

/**
 * The rule Suppress-to-Impress runs by default (issue 22, docs/method.md "The second model"): subjects as token
 * groups, each subject's region from its more distinct word — the noun group or its adjective — and the edit held to
 * 18 of 50 steps, as v2's. On the latent model the nouns' maps do not say where their objects are and the adjectives'
 * do. On the pixel model the rule is level with v2 on the held-apart prompts and costs objects on same-shape pairs
 * outside them, where identical nouns make it read the adjectives (docs/method.md, "Retuned on the second model").
 * `suppress@<passes>` shares it. v3 was the same rule with the edit to 45 of 50 (docs/method.md, "The edit's length").
 */
const S2I_RULE = { tokenGroups: true, attributeRegions: 'strongest' } as const;

/** Suppress-to-Impress and its ablations. */
export const SUPPRESS_SPECS: readonly MethodSpec[] = [
  {
    name: 'suppress',
    // suppress-v4: v3's regions with v2's edit length (docs/method.md, "The edit's length").
    aliases: ['s2i', 'suppress-v4'],
    group: 'main',
    mode: 'edit',
    ...S2I_RULE,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    description:
      "Suppress-to-Impress: each subject's token group zeroed outside its own region (from the group or its adjective, whichever is more distinct), the cleanest of 4 starts",
  },
  {
    // The default until issue 22: regions from the noun groups alone, the edit to 18 of 50 steps. The ablations
    // below (suppress-edit, suppress-select, suppress-no-groups) are ablations of this version.
    name: 'suppress-v2',
    group: 'ablation',
    mode: 'edit',
    tokenGroups: true,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    description: "the second version: regions from the subjects' token groups alone, the edit to 18 of 50 steps",
  },
  {
    // The default from issue 22 until the edit's length was measured on the shipped weights at 25 steps.
    name: 'suppress-v3',
    group: 'ablation',
    mode: 'edit',
    ...S2I_RULE,
    editStepsAt50: V3_EDIT_STEPS_AT_50,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    description: 'the third version: the default with the edit to 45 of 50 steps (23 of 25)',
  },
  {
    name: 'suppress-edit',
    group: 'main',
    mode: 'edit',
    tokenGroups: true,
    candidates: 1,
    description: 'Suppress-to-Impress, the attention edit alone (one start; no gradients)',
  },
  {
    name: 'suppress-select',
    group: 'ablation',
    mode: 'edit',
    tokenGroups: true,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    editStepsAt50: 0,
    description: 'ablation: choosing the start alone (no edit)',
  },
  {
    name: 'suppress-no-groups',
    group: 'ablation',
    mode: 'edit',
    tokenGroups: false,
    candidates: DEFAULT_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    description: "ablation: the subjects' own tokens only (no carriers), with the choice of start",
  },
  {
    name: 'suppress-loss',
    group: 'main',
    mode: 'loss',
    weights: SUPPRESS_WEIGHTS,
    tokenGroups: false,
    candidates: 1,
    description: 'Suppress-to-Impress, the gradient (loss) mode of the first version',
  },
  {
    name: 'suppress-v1',
    group: 'ablation',
    mode: 'both',
    weights: SUPPRESS_WEIGHTS,
    tokenGroups: false,
    candidates: 1,
    editStepsAt50: 10,
    description: 'the first version (loss and edit modes together, subject tokens only), for comparison',
  },
].map((p) => suppressSpec(p as SuppressPreset));

/** The most starts Suppress-to-Impress may try when held to a rival's cost (the start choice's own limit). */
export const MATCHED_MAX_CANDIDATES = 64;

/** `suppress@<passes>`: the method name of Suppress-to-Impress at a given cost. */
export const MATCHED_COST_NAME = /^suppress@(\d+)$/;

/**
 * Suppress-to-Impress at a rival's cost, `suppress@<passes>`: the same method (edit, token groups, early
 * acceptance of a clean start), allowed as many starts as fit `passes` guided UNet passes per image (up to 64)
 * instead of 4. It spends at most that (fewer where a start is accepted early), so a comparison with the rival
 * whose cost `passes` is holds S2I to no more than the rival's passes.
 */
export function suppressAtCost(passes: number): MethodSpec {
  return suppressSpec({
    name: `suppress@${passes}`,
    group: 'ablation',
    mode: 'edit',
    ...S2I_RULE,
    candidates: MATCHED_MAX_CANDIDATES,
    accept: DEFAULT_ACCEPT,
    budget: passes,
    description: `Suppress-to-Impress held to ${passes} guided UNet passes per image: as many starts as fit (at most ${MATCHED_MAX_CANDIDATES})`,
  });
}

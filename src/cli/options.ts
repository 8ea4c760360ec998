/** Parsing and validating option values: one-line UserErrors that name the option. */
import { existsSync } from 'node:fs';
import { UserError } from '../errors.js';
import { checkInputFile } from '../io/regular-file.js';
import { quoteKey, SafetensorsFile } from '../io/safetensors.js';
import { Option, type Command, type OptionValues } from '@commander-js/extra-typings';
import {
  DEFAULT_ACCEPT,
  DEFAULT_CANDIDATES,
  EDIT_STEPS_AT_50,
  REFERENCE_STEPS,
  SELECT_AT_50,
  type MethodOverrides,
} from '../methods/registry.js';
import { LOSS_TERMS, type LossWeights, type SuppressMode } from '../methods/suppress.js';
import { shapeString, type Tensor } from '../tensor.js';
import { checkMemory } from '../util/memory.js';
import { PREDICTION_TYPES, type PredictionType } from '../pipeline/stable-diffusion.js';

export function parseInteger(value: string, flag: string, lo = -(2 ** 53 - 1), hi = 2 ** 53 - 1): number {
  const v = /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(v) || v < lo || v > hi) {
    throw new UserError(
      `${flag} must be an integer${hi < 2 ** 53 - 1 ? ` from ${lo} to ${hi}` : lo > -(2 ** 53 - 1) ? ` >= ${lo}` : ''}, got "${value}"`,
    );
  }
  return v;
}

export function parseNumber(value: string, flag: string, lo = -Infinity, hi = Infinity): number {
  const v = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(v) || v < lo || v > hi) {
    const range =
      Number.isFinite(lo) && Number.isFinite(hi)
        ? ` from ${lo} to ${hi}`
        : Number.isFinite(lo)
          ? ` >= ${lo}`
          : Number.isFinite(hi)
            ? ` <= ${hi}`
            : '';
    throw new UserError(`${flag} must be a number${range}, got "${value}"`);
  }
  return v;
}

export function parsePredictionType(value: string, flag: string): PredictionType {
  const v = value.trim();
  if (!(PREDICTION_TYPES as readonly string[]).includes(v)) {
    throw new UserError(`${flag} must be one of ${PREDICTION_TYPES.join(', ')}, got "${value}"`);
  }
  return v as PredictionType;
}

// ------------------------------------------------------------------------------------------------ typed options

/** The long flag an option declares (`--steps <n>` → `--steps`). */
function flagName(flags: string): string {
  return flags.split(/[\s,|]+/).find((f) => f.startsWith('--')) ?? flags;
}

/**
 * An option whose value `parse` checks and converts as commander reads it: the option's type is `parse`'s, and a bad
 * value is a one-line UserError naming the flag, raised before any work starts.
 */
export function typedOption<const F extends string, T>(
  flags: F,
  description: string,
  parse: (value: string, flag: string) => T,
) {
  const flag = flagName(flags);
  return new Option(flags, description).argParser((v: string) => parse(v, flag));
}

/** An integer option (from `lo` to `hi`). */
export function integerOption<const F extends string>(flags: F, description: string, lo?: number, hi?: number) {
  return typedOption(flags, description, (v, flag) => parseInteger(v, flag, lo, hi));
}

/** A finite number option (from `lo` to `hi`). */
export function numberOption<const F extends string>(flags: F, description: string, lo?: number, hi?: number) {
  return typedOption(flags, description, (v, flag) => parseNumber(v, flag, lo, hi));
}

/** Whether progress bars should be drawn: only for a human watching stderr. */
export function interactive(json: boolean | undefined): boolean {
  return !json && process.stderr.isTTY === true && !process.env['CI'];
}

/**
 * The flag that sets each library field: library errors name fields (FieldError), the CLI speaks in flags.
 * A field not listed here has no flag and keeps its own name.
 */
export const FLAG_OF_FIELD: Readonly<Record<string, string>> = {
  steps: '--steps',
  guidanceScale: '--guidance',
  sampler: '--scheduler',
  seed: '--seed',
  height: '--height',
  width: '--width',
  initialLatents: '--latents',
  attentionPicture: '--attention-maps',
  attentionSteps: '--attention-steps',
  method: '--method',
  tokens: '--tokens',
  subjects: '--subjects',
  attributes: '--attributes',
  attnRes: '--attn-res',
  maxIterToAlter: '--max-iter-to-alter',
  thresholds: '--thresholds',
  scaleFactor: '--scale-factor',
  mode: '--mode',
  weights: '--weights',
  gamma: '--gamma',
  editSteps: '--edit-steps',
  tokenGroups: '--token-groups',
  candidates: '--candidates',
  selectAt: '--select-at',
  accept: '--accept',
  methods: '--methods',
  seeds: '--seeds',
  suite: '--suite',
  split: '--split',
  out: '--out',
  resume: '--resume',
  runDir: '--run',
  changeSettings: '--change-settings',
  trainBatchSize: '--batch',
  lr: '--lr',
  warmupSteps: '--warmup',
  emaDecay: '--ema-decay',
  config: '--config',
  predictionType: '--prediction-type',
  images: '--images',
  batchSize: '--batch-size',
};

/** The CLI's name for a library field. */
export const flagOf = (field: string): string => FLAG_OF_FIELD[field] ?? field;

/** `a,b,c` items matched by `re`; `expected` says what an item should look like. */
export function listItems(value: string, re: RegExp, expected: (item: string) => string): RegExpExecArray[] {
  return value.split(',').map((item) => {
    const m = re.exec(item);
    if (!m) throw new UserError(expected(item.trim()));
    return m;
  });
}

/** `suppress=1,even=0.5` → partial weights. */
export function parseWeights(value: string): Partial<LossWeights> {
  const terms = LOSS_TERMS.join(', ');
  const expected = (item: string) =>
    `--weights must look like suppress=1,excite=1,even=0.5 (terms: ${terms}); got "${item}"`;
  const out: Partial<LossWeights> = {};
  for (const [, name, v] of listItems(value, /^\s*([a-z]+)\s*=\s*([^\s=]+)\s*$/, expected)) {
    const term = name as keyof LossWeights;
    if (!LOSS_TERMS.includes(term))
      throw new UserError(`--weights: unknown term '${name}' (terms: ${LOSS_TERMS.join(', ')})`);
    out[term] = parseNumber(v!, `--weights ${term}`, 0);
  }
  return out;
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
    const [step, thr] = [Number(m[1]), Number(m[2])];
    if (!Number.isSafeInteger(step)) throw bad(`got step "${m[1]}"`);
    if (!Number.isFinite(thr) || thr < 0 || thr > 1) throw bad(`got threshold "${m[2]}"`);
    if (out.has(step)) throw bad(`step ${step} is given twice`);
    out.set(step, thr);
  }
  return out;
}

/** `16` or `16x16`: a map resolution [h, w]. */
export function parseResolution(value: string, flag: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?$/i.exec(value);
  const [h, w] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [NaN, NaN];
  if (!(h >= 1 && w >= 1 && h <= 4096 && w <= 4096))
    throw new UserError(`${flag} must be a size such as 16 or 16x16, got "${value}"`);
  return [h, w];
}

/** `FILE` or `FILE:KEY` (KEY defaults to `defaultKey`); a path that exists as given is always a FILE. */
export function readTensorSpec(
  spec: string,
  flag: string,
  defaultKey: string,
): { tensor: Tensor; file: string; key: string } {
  const i = spec.lastIndexOf(':');
  const split = !existsSync(spec) && i > 0 && !spec.slice(i + 1).includes('/');
  const [file, key] = split ? [spec.slice(0, i), spec.slice(i + 1) || defaultKey] : [spec, defaultKey];
  checkInputFile(file, flag); // a FIFO would block the open
  let st: SafetensorsFile;
  try {
    st = SafetensorsFile.open(file);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${flag}: ${e.message}`, { cause: e });
    throw e;
  }
  try {
    if (!st.has(key)) {
      const names = st.names();
      const list = names.length
        ? `its tensors: ${names.slice(0, 20).map(quoteKey).join(', ')}${names.length > 20 ? `, ... (${names.length} in all)` : ''}`
        : 'it holds no tensors';
      throw new UserError(`${flag}: ${st.path} has no tensor ${quoteKey(key)} (${list}); name one as FILE:KEY`);
    }
    const { shape } = st.info(key);
    checkMemory(shape.reduce((a, b) => a * b, 1) * 4, `${flag}: tensor ${quoteKey(key)} ${shapeString(shape)}`);
    return { tensor: st.read(key), file: st.path, key };
  } finally {
    st.close();
  }
}

// ------------------------------------------------------------------------------------------------ method flags

// The method-override flags are declared here and only here (methodOptions, loopOptions) and parsed together
// (suppressOverrides, loopOverrides): a method's settings, not the command's.

/** The Suppress-to-Impress flags `generate` and `bench` share (strings as commander gives them). */
export type SuppressFlags = {
  mode?: string;
  weights?: string;
  gamma?: string;
  editSteps?: string;
  tokenGroups?: string;
  candidates?: string;
  selectAt?: string;
  accept?: string;
};

export function parseMode(value: string): SuppressMode {
  const v = value.trim().toLowerCase();
  if (v !== 'loss' && v !== 'edit' && v !== 'both')
    throw new UserError(`--mode must be loss, edit or both, got "${value}"`);
  return v;
}

export function parseOnOff(value: string, flag: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw new UserError(`${flag} must be on or off, got "${value}"`);
}

/** The method overrides the Suppress-to-Impress flags give (only those given). */
export function suppressOverrides(flags: SuppressFlags): Omit<MethodOverrides, 'loop' | 'attnRes'> {
  const opt = <T>(value: string | undefined, parse: (v: string) => T): T | undefined =>
    value === undefined ? undefined : parse(value);
  const all = {
    mode: opt(flags.mode, parseMode),
    weights: opt(flags.weights, parseWeights),
    gamma: opt(flags.gamma, (v) => parseNumber(v, '--gamma', 0, 1)),
    editSteps: opt(flags.editSteps, (v) => parseInteger(v, '--edit-steps', 0, 100000)),
    tokenGroups: opt(flags.tokenGroups, (v) => parseOnOff(v, '--token-groups')),
    candidates: opt(flags.candidates, (v) => parseInteger(v, '--candidates', 1, 64)),
    selectAt: opt(flags.selectAt, (v) => parseInteger(v, '--select-at', 1, 1000)),
    accept: opt(flags.accept, (v) => (v.trim().toLowerCase() === 'off' ? null : parseNumber(v, '--accept', 0))),
  };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
}

/**
 * Declares the method-override flags on a command (`scope` says which methods they reach): the one place they are
 * declared; their values are parsed together by `suppressOverrides`.
 */
export function methodOptions<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
  scope: string,
): Command<A, O & SuppressFlags, G> {
  command
    .option('--mode <mode>', `${scope}: loss (gradient), edit (attention edit, no gradient) or both`)
    .option(
      '--weights <list>',
      `${scope}: loss weights, e.g. suppress=1,excite=1,even=0.5,exclusive=1,bind=1 (terms: ${LOSS_TERMS.join(', ')})`,
    )
    .option('--gamma <x>', `${scope}, edit mode: factor on subject attention outside its region (0: definitively zero)`)
    .option(
      '--edit-steps <n>',
      `${scope}, edit mode: edit the guided passes of steps 1..n-1 (default ${EDIT_STEPS_AT_50} for ${REFERENCE_STEPS} steps, scaled)`,
    )
    .option(
      '--token-groups <on|off>',
      `${scope}: treat each subject with the later tokens that carry it (default on for suppress, off for the rivals)`,
    )
    .option(
      '--candidates <n>',
      `${scope}: run n starts (initial noises) to --select-at and keep the cleanest layout (default ${DEFAULT_CANDIDATES} for suppress; 1: off)`,
    )
    .option(
      '--select-at <n>',
      `${scope}: the sampler call at which starts are compared (default ${SELECT_AT_50} for ${REFERENCE_STEPS} steps, scaled)`,
    )
    .option(
      '--accept <x|off>',
      `${scope}: keep the first start whose layout score is at most x, without trying the others (default ${DEFAULT_ACCEPT} for suppress; off: try all)`,
    );
  return command as unknown as Command<A, O & SuppressFlags, G>;
}

/** The gradient methods' loop flags `generate` takes (strings as commander gives them). */
export type LoopFlags = {
  maxIterToAlter?: string;
  thresholds?: string;
  scaleFactor?: string;
};

/** Declares the latent-update loop flags (A&E's max_iter_to_alter, thresholds, scale_factor). */
export function loopOptions<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
  defaults: { maxIterToAlter: number; thresholds: string; scaleFactor: number },
): Command<A, O & LoopFlags, G> {
  command
    .option(
      '--max-iter-to-alter <n>',
      `gradient methods: update the latents at steps below n (default ${defaults.maxIterToAlter} for ${REFERENCE_STEPS} steps, scaled)`,
    )
    .option(
      '--thresholds <list>',
      `gradient methods: step:threshold refinement points (default ${defaults.thresholds} for ${REFERENCE_STEPS} steps, scaled)`,
    )
    .option('--scale-factor <x>', `gradient methods: step size of the latent update (default ${defaults.scaleFactor})`);
  return command as unknown as Command<A, O & LoopFlags, G>;
}

/** The loop overrides the loop flags give (only those given). */
export function loopOverrides(flags: LoopFlags): NonNullable<MethodOverrides['loop']> {
  const opt = <T>(value: string | undefined, parse: (v: string) => T): T | undefined =>
    value === undefined ? undefined : parse(value);
  const loop = {
    maxIterToAlter: opt(flags.maxIterToAlter, (v) => parseInteger(v, '--max-iter-to-alter', 0, 100000)),
    thresholds: opt(flags.thresholds, parseThresholds),
    scaleFactor: opt(flags.scaleFactor, (v) => parseNumber(v, '--scale-factor', 0)),
  };
  return Object.fromEntries(Object.entries(loop).filter(([, v]) => v !== undefined));
}

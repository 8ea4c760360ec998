/** Parsing and validating option values: one-line UserErrors that name the option. */
import { existsSync } from 'node:fs';
import { UserError } from '../errors.js';
import { checkInputFile } from '../io/regular-file.js';
import { quoteKey, SafetensorsFile } from '../io/safetensors.js';
import { Option, type Command, type OptionValues } from '@commander-js/extra-typings';
import type { Command as PlainCommand } from 'commander';
import { addMethodOptions, methodFlagOfField } from './method-flags.js';
import { shapeString, type Tensor } from '../tensor.js';
import { checkMemory } from '../util/memory.js';
import { PREDICTION_TYPES, type PredictionType } from '../schedulers/config.js';
import { quote } from '../util/quote.js';

export function parseInteger(value: string, flag: string, lo = -(2 ** 53 - 1), hi = 2 ** 53 - 1): number {
  const v = /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(v) || v < lo || v > hi) {
    const tooLarge = /^\s*\d+\s*$/.test(value) && Number(value) > hi; // name the upper bound it is past
    throw new UserError(
      `${flag} must be an integer${hi < 2 ** 53 - 1 || tooLarge ? ` from ${lo} to ${hi}` : lo > -(2 ** 53 - 1) ? ` >= ${lo}` : ''}, got ${quote(value)}`,
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
    throw new UserError(`${flag} must be a number${range}, got ${quote(value)}`);
  }
  return v;
}

export function parsePredictionType(value: string, flag: string): PredictionType {
  const v = value.trim();
  if (!(PREDICTION_TYPES as readonly string[]).includes(v)) {
    throw new UserError(`${flag} must be one of ${PREDICTION_TYPES.join(', ')}, got ${quote(value)}`);
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

/**
 * Declares the methods' flags on a command: they come from the methods' specs (method-flags.ts), one Option per
 * override field, parsed into overrides by `methodOverridesFromFlags`. Their values stay strings here.
 */
export function methodOptions<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  command: Command<A, O, G>,
): Command<A, O, G> {
  addMethodOptions(command as unknown as PlainCommand);
  return command;
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
  attributeRegions: '--attribute-regions',
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
  init: '--init',
  model: '--model',
  klWeight: '--kl-weight',
  trainBatchSize: '--batch',
  lr: '--lr',
  warmupSteps: '--warmup',
  emaDecay: '--ema-decay',
  config: '--config',
  predictionType: '--prediction-type',
  images: '--images',
  batchSize: '--batch-size',
};

/** The CLI's name for a library field (the methods' fields: their specs' flags). */
export const flagOf = (field: string): string => FLAG_OF_FIELD[field] ?? methodFlagOfField()[field] ?? field;

/** `a,b,c` items matched by `re`; `expected` says what an item should look like. */
export function listItems(value: string, re: RegExp, expected: (item: string) => string): RegExpExecArray[] {
  return value.split(',').map((item) => {
    const m = re.exec(item);
    if (!m) throw new UserError(expected(item.trim()));
    return m;
  });
}

/** `16` or `16x16`: a map resolution [h, w]. */
export function parseResolution(value: string, flag: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?$/i.exec(value);
  const [h, w] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [NaN, NaN];
  if (!(h >= 1 && w >= 1 && h <= 4096 && w <= 4096))
    throw new UserError(`${flag} must be a size such as 16 or 16x16, got ${quote(value)}`);
  return [h, w];
}

/** `16x16,8x8`: one or more map resolutions, each as `parseResolution` reads it, none twice. */
export function parseResolutionList(value: string, flag: string): [number, number][] {
  const list = value.split(',').map((item) => parseResolution(item, flag));
  const seen = list.map(([h, w]) => `${h}x${w}`);
  const twice = seen.find((r, i) => seen.indexOf(r) !== i);
  if (twice) throw new UserError(`${flag} names ${twice} twice, got ${quote(value)}`);
  return list;
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

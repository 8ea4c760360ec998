/**
 * Scheduler configuration with diffusers v0.24.0 `from_config` semantics.
 *
 * A model folder's `scheduler/scheduler_config.json` names a diffusers class (`_class_name`), which picks the
 * default sampler. When another sampler is chosen, the saved dict is read the way
 * `OtherScheduler.from_config(saved)` reads it: keys the target class's `__init__` does not accept are ignored,
 * keys it accepts but the file lacks take THAT class's defaults (DDIM's `clip_sample` defaults to true,
 * `timestep_spacing` is "leading" for PNDM/DDIM but "linspace" for Euler/Euler-a/DPM-Solver, …).
 *
 * The resolved {@link SchedulerConfig} is one flat record; fields the target class does not have are set to the
 * neutral value that leaves its behaviour unchanged (and are not listed in `acceptedKeys`). Each sampler's class,
 * accepted keys, defaults and prediction types are its declaration's (samplers/, one file each).
 */
import { FieldError, UserError } from '../errors.js';
import { exists, files, isDirectory, paths, readTextFile } from '../io/files.js';
import { SAMPLER_SPECS, type SamplerName } from './samplers/index.js';
import { COMMON_DEFAULTS, type SamplerSpec } from './samplers/spec.js';

export type { SamplerName } from './samplers/index.js';
export const SAMPLER_NAMES: readonly SamplerName[] = SAMPLER_SPECS.map((s) => s.name);

/** Each sampler's declaration by name. */
export function samplerSpec(name: SamplerName): SamplerSpec<SamplerName> {
  return SAMPLER_SPECS.find((s) => s.name === name)!;
}

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
/** What a UNet predicts (diffusers' `prediction_type`). */
export const PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample'] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];
export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';

/** The diffusers class each sampler mirrors. */
export const SAMPLER_CLASS: Readonly<Record<SamplerName, string>> = Object.fromEntries(
  SAMPLER_SPECS.map((s) => [s.name, s.className]),
) as Record<SamplerName, string>;

/** A scheduler_config.json as read from disk (or any dict in that shape). */
export type RawSchedulerConfig = Readonly<Record<string, unknown>>;

/** The keys of a scheduler_config.json that the samplers use, as diffusers names them (validated below). */
export interface SchedulerConfigJson {
  readonly num_train_timesteps: number;
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: BetaSchedule;
  readonly trained_betas: readonly number[] | null;
  readonly prediction_type: PredictionType;
  readonly timestep_spacing: TimestepSpacing;
  readonly steps_offset: number;
  // PNDM / DDIM
  readonly skip_prk_steps: boolean;
  readonly set_alpha_to_one: boolean;
  readonly clip_sample: boolean;
  readonly clip_sample_range: number;
  readonly thresholding: boolean;
  readonly dynamic_thresholding_ratio: number;
  readonly sample_max_value: number;
  readonly rescale_betas_zero_snr: boolean;
  // Euler
  readonly interpolation_type: 'linear' | 'log_linear';
  readonly use_karras_sigmas: boolean;
  readonly sigma_min: number | null;
  readonly sigma_max: number | null;
  readonly timestep_type: 'discrete' | 'continuous';
  // DPM-Solver++ (2M: solver_order 2, algorithm_type dpmsolver++ are fixed by the sampler name)
  readonly solver_order: number;
  readonly algorithm_type: 'dpmsolver++';
  readonly solver_type: 'midpoint' | 'heun';
  readonly lower_order_final: boolean;
  readonly euler_at_final: boolean;
  readonly use_lu_lambdas: boolean;
  readonly lambda_min_clipped: number;
}

/** `snake_case` → `camelCase`. */
type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

/** A resolved scheduler config: diffusers' keys in camelCase (`acceptedKeys` lists the JSON names). */
export type SchedulerConfig = {
  /** The sampler this config was resolved for. */
  readonly sampler: SamplerName;
  /** The diffusers class whose `__init__` defined the accepted keys and defaults. */
  readonly className: string;
  /** The keys that class accepts (the ones that came from the file or its defaults). */
  readonly acceptedKeys: readonly string[];
} & { readonly [K in keyof SchedulerConfigJson as CamelCase<K>]: SchedulerConfigJson[K] };

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type ConfigValues = SchedulerConfigJson;
type Key = keyof ConfigValues;

/** Values for keys a class does not accept: they switch the corresponding feature off. */
const NEUTRAL: ConfigValues = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  rescale_betas_zero_snr: false,
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  sigma_min: null,
  sigma_max: null,
  timestep_type: 'discrete',
  solver_order: 2,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  use_lu_lambdas: false,
  lambda_min_clipped: Number.NEGATIVE_INFINITY,
};

const ALIASES: ReadonlyMap<string, SamplerName> = new Map(
  SAMPLER_SPECS.flatMap((s) => [s.name, ...s.aliases].map((a) => [a, s.name] as const)),
);

/**
 * Parses a user-given sampler name (case-insensitive; `_` and spaces read as `-`; a few aliases such as `plms`,
 * `euler_ancestral`, `dpm++2m`). Unknown names throw a FieldError for `sampler` listing the valid values.
 */
export function parseSamplerName(name: string): SamplerName {
  const key = name
    .trim()
    .toLowerCase()
    .replace(/[_\s]+/g, '-');
  const found = ALIASES.get(key);
  if (found === undefined) {
    throw new FieldError('sampler', `: unknown sampler "${name}"; valid samplers: ${SAMPLER_NAMES.join(', ')}`);
  }
  return found;
}

/** The sampler mirroring a diffusers scheduler class, or undefined when there is none. */
export function samplerForClassName(className: string): SamplerName | undefined {
  return SAMPLER_SPECS.find((s) => s.className === className)?.name;
}

/**
 * The sampler a model's scheduler config asks for (its `_class_name`). Throws a UserError when the class has no
 * built-in sampler, telling the user to choose one.
 */
export function defaultSampler(raw: RawSchedulerConfig, source = 'scheduler_config.json'): SamplerName {
  const cls = raw['_class_name'];
  if (typeof cls !== 'string') {
    throw new FieldError(
      'sampler',
      (name) => `${source}: "_class_name" is missing; choose a sampler with ${name} (${SAMPLER_NAMES.join(', ')})`,
    );
  }
  const s = samplerForClassName(cls);
  if (s === undefined) {
    throw new FieldError(
      'sampler',
      (name) =>
        `${source}: scheduler class "${cls}" has no built-in sampler; choose one with ${name} ` +
        `(${SAMPLER_NAMES.join(', ')}; they mirror ${SAMPLER_SPECS.map((s) => s.className).join(', ')})`,
    );
  }
  return s;
}

/**
 * Reads `scheduler_config.json` from a file path, or from a model folder (`<dir>/scheduler/scheduler_config.json`
 * or `<dir>/scheduler_config.json`). Missing or malformed files throw a UserError.
 */
export function loadSchedulerConfig(path: string): RawSchedulerConfig {
  let file = path;
  const { join } = paths;
  if (isDirectory(path)) {
    const candidates = [join(path, 'scheduler', 'scheduler_config.json'), join(path, 'scheduler_config.json')];
    const hit = candidates.find((c) => exists(c));
    if (hit === undefined) throw new UserError(`no scheduler config in ${path} (looked for ${candidates.join(', ')})`);
    file = hit;
  } else if (!exists(path)) {
    throw new UserError(`scheduler config ${path} does not exist`);
  }
  let text: string;
  try {
    text = readTextFile(files(), file);
  } catch (e) {
    throw new UserError(`cannot read scheduler config ${file}: ${(e as Error).message}`, { cause: e });
  }
  let parsed: unknown;
  try {
    // Python's json writes Infinity / -Infinity / NaN bare (e.g. lambda_min_clipped); JSON.parse does not read them.
    parsed = JSON.parse(text.replace(/(:\s*)(-?Infinity|NaN)(\s*[,}\n])/g, '$1"$2"$3'));
  } catch (e) {
    throw new UserError(`scheduler config ${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UserError(`scheduler config ${file} must hold a JSON object`);
  }
  return parsed as RawSchedulerConfig;
}

const resolvedConfigs = new WeakSet<object>();

/** True when `c` came from {@link resolveSchedulerConfig}. */
export function isResolvedConfig(c: unknown): c is SchedulerConfig {
  return typeof c === 'object' && c !== null && resolvedConfigs.has(c);
}

function fmt(v: unknown): string {
  return typeof v === 'string' ? `"${v}"` : (JSON.stringify(v) ?? String(v));
}

function oneOf<T extends string>(key: string, v: unknown, allowed: readonly T[], where: string): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new UserError(`${where}: "${key}" must be one of ${allowed.join(', ')} (got ${fmt(v)})`);
  }
  return v as T;
}

function bool(key: string, v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') throw new UserError(`${where}: "${key}" must be true or false (got ${fmt(v)})`);
  return v;
}

function num(key: string, v: unknown, where: string, check: (x: number) => boolean, what: string): number {
  let x = v;
  if (x === 'Infinity') x = Number.POSITIVE_INFINITY;
  if (x === '-Infinity') x = Number.NEGATIVE_INFINITY;
  if (typeof x !== 'number' || Number.isNaN(x) || !check(x)) {
    throw new UserError(`${where}: "${key}" must be ${what} (got ${fmt(v)})`);
  }
  return x;
}

/**
 * The defaults of a scheduler_config.json for the class it names (diffusers' `__init__` defaults; for a class
 * without a sampler here, the defaults every class shares). What `s2i info` shows for absent keys.
 */
export function schedulerConfigDefaults(className: string | null): Readonly<Record<string, unknown>> {
  const sampler = className !== null ? samplerForClassName(className) : undefined;
  // Every class here defaults to epsilon prediction and steps_offset 0; only the spacing differs between them.
  return sampler ? samplerSpec(sampler).defaults : { ...COMMON_DEFAULTS, prediction_type: 'epsilon', steps_offset: 0 };
}

const isInt = (x: number) => Number.isInteger(x);

/** The most training timesteps a scheduler config may have (SD: 1,000). */
export const MAX_TRAIN_TIMESTEPS = 100_000;

/** Every value's type and range, in place (JSON names in the messages). */
function checkValues(c: Mutable<ConfigValues>, sampler: SamplerName, where: string, pick: (k: Key) => unknown): void {
  c.num_train_timesteps = num(
    'num_train_timesteps',
    c.num_train_timesteps,
    where,
    // SD trains on 1,000; the schedule is allocated per timestep, so a typo like 1e9 must not reach it
    (x) => isInt(x) && x >= 2 && x <= MAX_TRAIN_TIMESTEPS,
    `an integer from 2 to ${MAX_TRAIN_TIMESTEPS}`,
  );
  c.beta_start = num('beta_start', c.beta_start, where, (x) => Number.isFinite(x) && x >= 0, 'a number >= 0');
  c.beta_end = num('beta_end', c.beta_end, where, (x) => Number.isFinite(x) && x >= 0, 'a number >= 0');
  c.beta_schedule = oneOf('beta_schedule', c.beta_schedule, ['linear', 'scaled_linear', 'squaredcos_cap_v2'], where);
  if (c.trained_betas !== null) {
    const tb: unknown = c.trained_betas;
    if (
      !Array.isArray(tb) ||
      tb.length !== c.num_train_timesteps ||
      tb.some((b) => typeof b !== 'number' || !(b >= 0 && b < 1))
    ) {
      throw new UserError(
        `${where}: "trained_betas" must be null or a list of num_train_timesteps (${c.num_train_timesteps}) numbers in [0, 1)`,
      );
    }
    c.trained_betas = [...(tb as number[])];
  }
  c.prediction_type = oneOf(
    'prediction_type',
    c.prediction_type,
    samplerSpec(sampler).predictionTypes,
    `${where} (sampler ${sampler})`,
  );
  c.timestep_spacing = oneOf('timestep_spacing', c.timestep_spacing, ['leading', 'linspace', 'trailing'], where);
  c.steps_offset = num('steps_offset', c.steps_offset, where, (x) => isInt(x) && x >= 0, 'an integer >= 0');
  for (const k of [
    'skip_prk_steps',
    'set_alpha_to_one',
    'clip_sample',
    'thresholding',
    'rescale_betas_zero_snr',
    'use_karras_sigmas',
    'lower_order_final',
    'euler_at_final',
    'use_lu_lambdas',
  ] as const) {
    c[k] = bool(k, c[k], where);
  }
  c.clip_sample_range = num('clip_sample_range', c.clip_sample_range, where, (x) => x > 0, 'a number > 0');
  c.dynamic_thresholding_ratio = num(
    'dynamic_thresholding_ratio',
    c.dynamic_thresholding_ratio,
    where,
    (x) => x > 0 && x <= 1,
    'a number in (0, 1]',
  );
  c.sample_max_value = num('sample_max_value', c.sample_max_value, where, (x) => x > 0, 'a number > 0');
  c.interpolation_type = oneOf('interpolation_type', c.interpolation_type, ['linear', 'log_linear'], where);
  c.timestep_type = oneOf('timestep_type', c.timestep_type, ['discrete', 'continuous'], where);
  for (const k of ['sigma_min', 'sigma_max'] as const) {
    if (c[k] !== null) c[k] = num(k, c[k], where, (x) => x > 0 && Number.isFinite(x), 'null or a number > 0');
  }
  samplerSpec(sampler).check?.(pick, where);
  c.solver_type = oneOf('solver_type', c.solver_type, ['midpoint', 'heun'], where);
  c.lambda_min_clipped = num(
    'lambda_min_clipped',
    c.lambda_min_clipped,
    where,
    (x) => !Number.isNaN(x),
    'a number (or -Infinity)',
  );
  if (c.use_karras_sigmas && c.use_lu_lambdas) {
    throw new UserError(`${where}: "use_karras_sigmas" and "use_lu_lambdas" cannot both be true`);
  }
}

/**
 * Resolves a raw scheduler config for `sampler` with diffusers' `from_config` semantics (see the module comment).
 * `overrides` (e.g. from CLI options) win over the file; an override key the sampler does not accept is a
 * UserError. Bad values throw a UserError naming the key and the valid values.
 */
export function resolveSchedulerConfig(
  sampler: SamplerName,
  raw: RawSchedulerConfig = {},
  overrides: Readonly<Record<string, unknown>> = {},
  where = 'scheduler config',
): SchedulerConfig {
  if (!SAMPLER_NAMES.includes(sampler)) parseSamplerName(String(sampler));
  const spec = samplerSpec(sampler);
  const defaults: Partial<ConfigValues> = spec.defaults;
  const accepted = Object.keys(defaults) as Key[];
  const unsupported = spec.unsupported ?? {};
  for (const k of Object.keys(overrides)) {
    if (!(accepted as string[]).includes(k)) {
      throw new UserError(
        `scheduler option "${k}" does not apply to sampler ${sampler} (${spec.className} accepts: ${accepted.join(', ')})`,
      );
    }
  }
  for (const [k, def] of Object.entries(unsupported)) {
    const v = k in overrides ? overrides[k] : raw[k];
    if (v !== undefined && v !== def) {
      throw new UserError(`${where}: "${k}" = ${fmt(v)} is not supported by sampler ${sampler} (only ${fmt(def)})`);
    }
  }
  const sets: Readonly<Record<string, unknown>> = spec.sets ?? {};
  const pick = (k: Key): unknown => {
    const v = k in overrides ? overrides[k] : k in sets ? sets[k] : raw[k];
    // A null for a key whose default is not null reads as "unset" (diffusers would pass None through).
    return v === undefined || (v === null && defaults[k] !== null) ? defaults[k] : v;
  };

  const c: Mutable<ConfigValues> = { ...NEUTRAL };
  for (const k of accepted) (c as Record<string, unknown>)[k] = pick(k);

  checkValues(c, sampler, where, pick);

  const values = Object.fromEntries(
    Object.entries(c).map(([k, v]) => [k.replace(/_([a-z])/g, (_, x: string) => x.toUpperCase()), v]),
  ) as Omit<SchedulerConfig, 'sampler' | 'className' | 'acceptedKeys'>;
  const out: SchedulerConfig = Object.freeze({
    sampler,
    className: spec.className,
    acceptedKeys: Object.freeze([...accepted]),
    ...values,
  });
  resolvedConfigs.add(out);
  return out;
}

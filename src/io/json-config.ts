/**
 * Reading the JSON files of a model folder (config.json, scheduler_config.json, model_index.json, ...) and typed
 * access to their keys. Every error names the file and the key; a missing key or a null (diffusers' "use the
 * default") takes the default when there is one.
 */
import { UserError } from '../errors.js';
import { errorCode, files, readTextFile } from './files.js';
import { describeValue, oneLine, quoteKey } from './messages.js';
import { checkRegularFile } from './regular-file.js';

/** A config or index file larger than this is not one (SD's largest, tokenizer.json, is about 2 MB). */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

export type Config = Readonly<Record<string, unknown>>;

/** Parse a JSON file that must hold an object. */
export function readJsonObject(path: string): Record<string, unknown> {
  checkRegularFile(path, MAX_JSON_BYTES);
  let text: string;
  try {
    text = readTextFile(files(), path);
  } catch (e) {
    const code = errorCode(e);
    throw new UserError(
      `${path}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${oneLine((e as Error).message)})`}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${oneLine((e as Error).message)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UserError(`${path}: must hold a JSON object, found ${describeValue(value)}`);
  }
  return value as Record<string, unknown>;
}

/**
 * The shared accessor: a missing key (or null, which diffusers writes for "use the default") takes `dflt`;
 * without a default it is an error. `check` narrows the value or returns undefined when it has the wrong type.
 */
function configValue<T>(
  config: Config,
  key: string,
  file: string,
  what: string,
  check: (v: unknown) => T | undefined,
  dflt?: T,
): T {
  const v = Object.hasOwn(config, key) ? config[key] : undefined;
  if (v === undefined || (v === null && dflt !== undefined)) {
    if (dflt !== undefined) return dflt;
    throw new UserError(`${file}: missing config key ${quoteKey(key)}`);
  }
  const t = check(v);
  if (t === undefined)
    throw new UserError(`${file}: config key ${quoteKey(key)} must be ${what}, found ${describeValue(v)}`);
  return t;
}

const asNumber = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const asInt = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined);
const asString = (v: unknown) => (typeof v === 'string' ? v : undefined);
const asBool = (v: unknown) => (typeof v === 'boolean' ? v : undefined);
const arrayOf =
  <T>(item: (v: unknown) => T | undefined) =>
  (v: unknown): T[] | undefined => {
    if (!Array.isArray(v)) return undefined;
    const out: T[] = [];
    for (const x of v) {
      const t = item(x);
      if (t === undefined) return undefined;
      out.push(t);
    }
    return out;
  };

export function configNumber(config: Config, key: string, file: string, dflt?: number): number {
  return configValue(config, key, file, 'a number', asNumber, dflt);
}

export function configInt(config: Config, key: string, file: string, dflt?: number): number {
  return configValue(config, key, file, 'an integer', asInt, dflt);
}

export function configString(config: Config, key: string, file: string, dflt?: string): string {
  return configValue(config, key, file, 'a string', asString, dflt);
}

export function configBool(config: Config, key: string, file: string, dflt?: boolean): boolean {
  return configValue(config, key, file, 'true or false', asBool, dflt);
}

export function configNumberArray(config: Config, key: string, file: string, dflt?: readonly number[]): number[] {
  return [...configValue<readonly number[]>(config, key, file, 'a list of numbers', arrayOf(asNumber), dflt)];
}

export function configIntArray(config: Config, key: string, file: string, dflt?: readonly number[]): number[] {
  return [...configValue<readonly number[]>(config, key, file, 'a list of integers', arrayOf(asInt), dflt)];
}

export function configStringArray(config: Config, key: string, file: string, dflt?: readonly string[]): string[] {
  return [...configValue<readonly string[]>(config, key, file, 'a list of strings', arrayOf(asString), dflt)];
}

/** A number or a list of numbers (diffusers' per-block settings such as `attention_head_dim`). */
export function configNumberOrArray(
  config: Config,
  key: string,
  file: string,
  dflt?: number | readonly number[],
): number | number[] {
  const check = (v: unknown) => asNumber(v) ?? arrayOf(asNumber)(v);
  const r = configValue<number | readonly number[]>(config, key, file, 'a number or a list of numbers', check, dflt);
  return typeof r === 'number' ? r : [...r];
}

/** A value that may legitimately be null or absent (returns null then). */
export function configOptionalNumber(config: Config, key: string, file: string): number | null {
  if (config[key] === undefined || config[key] === null) return null;
  return configNumber(config, key, file);
}

export function configOptionalString(config: Config, key: string, file: string): string | null {
  if (config[key] === undefined || config[key] === null) return null;
  return configString(config, key, file);
}

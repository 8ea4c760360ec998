/**
 * A diffusers model folder (what `StableDiffusionPipeline.save_pretrained` writes):
 *
 *   model_index.json                     optional here; names the pipeline and each component's class
 *   text_encoder/config.json + model.safetensors
 *   tokenizer/tokenizer_config.json, vocab.json, merges.txt
 *   unet/config.json + diffusion_pytorch_model.safetensors
 *   vae/config.json + diffusion_pytorch_model.safetensors
 *   scheduler/scheduler_config.json
 *
 * Weights may also be a variant (`diffusion_pytorch_model.fp16.safetensors`) or sharded
 * (`*.safetensors.index.json` + shards). Pickle checkpoints (.bin/.ckpt/.pt/.pth/.pkl) are refused and never
 * opened: unpickling runs arbitrary code.
 *
 * Also here: `WeightStore` (checked, usage-tracked access to a component's tensors) and typed config accessors
 * whose errors name the file and the key.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import type { WeightSource } from '../graph/graph.js';
import { numel, shapeString } from '../tensor.js';
import {
  isFloatDType,
  quoteKey,
  SafetensorsFile,
  weightSource,
  type SafetensorsDType,
  type TensorInfo,
} from './safetensors.js';

// ---------------------------------------------------------------------------------------------------------------
// pickle refusal

export const PICKLE_EXTENSIONS: readonly string[] = ['.ckpt', '.pt', '.pth', '.bin', '.pkl'];

export function isPickleFile(path: string): boolean {
  return PICKLE_EXTENSIONS.includes(extname(path).toLowerCase());
}

/** The one-line refusal for a pickle checkpoint. */
export function pickleRefusal(path: string): UserError {
  return new UserError(
    `${path}: pickle checkpoints (.ckpt/.pt/.pth/.bin/.pkl) can execute arbitrary code when loaded and are never opened; ` +
      `convert the model to safetensors first, e.g. in Python with diffusers: ` +
      `DiffusionPipeline.from_pretrained(SRC).save_pretrained(DST, safe_serialization=True)`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// JSON and config access

export type Config = Readonly<Record<string, unknown>>;

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function describeValue(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Parse a JSON file that must hold an object. */
export function readJsonObject(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
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

// ---------------------------------------------------------------------------------------------------------------
// WeightStore

export interface StoredTensorInfo extends TensorInfo {
  /** The safetensors file holding it. */
  readonly file: string;
}

/**
 * The tensors of one component, over one or more safetensors files (shards). Model code asks for each weight by
 * checkpoint key and the shape its config implies; the store checks both and remembers what was used, so that
 * leftover keys (a mismatched architecture or config) can be reported instead of silently ignored.
 */
export class WeightStore {
  private readonly byKey = new Map<string, SafetensorsFile>();
  private readonly usedKeys = new Set<string>();

  /**
   * @param label what messages call the store as a whole: the file, or the shard index.
   */
  constructor(
    readonly files: readonly SafetensorsFile[],
    readonly label: string = files[0]?.path ?? '(no files)',
  ) {
    for (const f of files) {
      for (const key of f.names()) {
        const other = this.byKey.get(key);
        if (other) throw new UserError(`${label}: weight ${quoteKey(key)} appears in both ${other.path} and ${f.path}`);
        this.byKey.set(key, f);
      }
    }
  }

  /** One safetensors file. */
  static open(path: string): WeightStore {
    const f = SafetensorsFile.open(path);
    return new WeightStore([f], f.path);
  }

  /** A sharded checkpoint: `*.safetensors.index.json` with a `weight_map` {key: shard file}. */
  static openIndex(indexPath: string): WeightStore {
    const abs = resolve(indexPath);
    const index = readJsonObject(abs);
    const map = index['weight_map'];
    if (typeof map !== 'object' || map === null || Array.isArray(map)) {
      throw new UserError(`${abs}: missing or malformed "weight_map" (expected {key: shard file})`);
    }
    const shardNames = new Set<string>();
    for (const [key, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard === '' || shard.includes('/') || shard.includes('\\')) {
        throw new UserError(
          `${abs}: weight_map entry ${quoteKey(key)} must name a shard file in the same folder, found ${describeValue(shard)}`,
        );
      }
      shardNames.add(shard);
    }
    if (shardNames.size === 0) throw new UserError(`${abs}: weight_map is empty`);
    const files: SafetensorsFile[] = [];
    try {
      for (const shard of shardNames) {
        const p = join(dirname(abs), shard);
        if (isPickleFile(p)) throw pickleRefusal(p);
        if (!existsSync(p)) throw new UserError(`${abs}: shard ${quoteKey(shard)} is missing (${p})`);
        files.push(SafetensorsFile.open(p));
      }
      const store = new WeightStore(files, abs);
      // The index must agree with the shards' own headers.
      for (const [key, shard] of Object.entries(map as Record<string, string>)) {
        const f = store.byKey.get(key);
        if (!f || basename(f.path) !== shard)
          throw new UserError(`${abs}: weight_map puts ${quoteKey(key)} in ${shard}, but that shard does not hold it`);
      }
      return store;
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }

  keys(): string[] {
    return [...this.byKey.keys()];
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  private fileOf(key: string): SafetensorsFile {
    const f = this.byKey.get(key);
    if (!f) throw new UserError(`missing weight ${quoteKey(key)} in ${this.label}`);
    return f;
  }

  info(key: string): StoredTensorInfo {
    const f = this.fileOf(key);
    return { ...f.info(key), file: f.path };
  }

  dtypeOf(key: string): SafetensorsDType {
    return this.fileOf(key).info(key).dtype;
  }

  shapeOf(key: string): readonly number[] {
    return this.fileOf(key).info(key).shape;
  }

  /** Every tensor with its file, in file then header order. */
  tensorInfos(): StoredTensorInfo[] {
    return this.files.flatMap((f) => f.infos().map((t) => ({ ...t, file: f.path })));
  }

  /**
   * Number of parameters: elements of the floating-point tensors. Integer tensors are buffers (such as CLIP's
   * `position_ids`), not parameters, matching what torch's `num_parameters()` counts.
   */
  paramCount(): number {
    let n = 0;
    for (const t of this.tensorInfos()) if (isFloatDType(t.dtype)) n += numel(t.shape);
    return n;
  }

  /** Element counts per on-disk dtype. */
  dtypeCounts(): Partial<Record<SafetensorsDType, number>> {
    const out: Partial<Record<SafetensorsDType, number>> = {};
    for (const t of this.tensorInfos()) out[t.dtype] = (out[t.dtype] ?? 0) + numel(t.shape);
    return out;
  }

  /** Total size of the files. */
  fileBytes(): number {
    return this.files.reduce((s, f) => s + f.fileSize, 0);
  }

  /**
   * The weight `key` as a graph weight source, checked against the shape the config implies. Marks it used.
   */
  source(key: string, expectedShape: readonly number[]): WeightSource {
    const f = this.fileOf(key);
    const t = f.info(key);
    if (t.shape.length !== expectedShape.length || t.shape.some((d, i) => d !== expectedShape[i])) {
      throw new UserError(
        `weight ${quoteKey(key)} in ${f.path} has shape ${shapeString(t.shape)}, the config expects ${shapeString(expectedShape)}`,
      );
    }
    if (!isFloatDType(t.dtype))
      throw new UserError(`weight ${quoteKey(key)} in ${f.path} is ${t.dtype}, expected a floating-point tensor`);
    this.usedKeys.add(key);
    return weightSource(f, key);
  }

  /** Read a float tensor now (marks it used). */
  readFloat32(key: string): Float32Array {
    const f = this.fileOf(key);
    this.usedKeys.add(key);
    return f.readFloat32(key);
  }

  /** Read an integer tensor now (marks it used). */
  readInt64(key: string): BigInt64Array {
    const f = this.fileOf(key);
    this.usedKeys.add(key);
    return f.readInt64(key);
  }

  /** Count a key as used without reading it (a buffer the model recomputes, say). */
  markUsed(key: string): void {
    this.fileOf(key);
    this.usedKeys.add(key);
  }

  used(): string[] {
    return this.keys().filter((k) => this.usedKeys.has(k));
  }

  unused(): string[] {
    return this.keys().filter((k) => !this.usedKeys.has(k));
  }

  /**
   * Fail when the checkpoint holds weights the model did not ask for: that means the config and the weights
   * describe different architectures. `ignore` exempts keys that are expected to be left over.
   */
  assertAllUsed(ignore: (key: string) => boolean = () => false): void {
    const extra = this.unused().filter((k) => !ignore(k));
    if (extra.length === 0) return;
    const SHOWN = 5;
    const names = extra.slice(0, SHOWN).map(quoteKey).join(', ');
    const more = extra.length > SHOWN ? ` and ${extra.length - SHOWN} more` : '';
    throw new UserError(
      `${this.label}: ${extra.length} unexpected weight${extra.length === 1 ? '' : 's'} not used by the model (${names}${more}); ` +
        `the config and the weights do not describe the same architecture`,
    );
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the folder

/** The components a Stable Diffusion pipeline needs, in the order they are shown. */
export const SD_COMPONENTS = ['text_encoder', 'tokenizer', 'unet', 'vae', 'scheduler'] as const;
export type SdComponentName = (typeof SD_COMPONENTS)[number];

/** Components that carry weights (the others are configuration and vocabulary). */
const WEIGHTED: ReadonlySet<string> = new Set(['text_encoder', 'unet', 'vae']);

const CONFIG_FILES = ['config.json', 'scheduler_config.json', 'tokenizer_config.json', 'preprocessor_config.json'];
const CONFIG_FILE_OF: Readonly<Record<string, string>> = {
  scheduler: 'scheduler_config.json',
  tokenizer: 'tokenizer_config.json',
};
const WEIGHT_BASENAMES = ['diffusion_pytorch_model', 'model'];

export interface OpenModelOptions {
  /** Weights variant, e.g. 'fp16' for `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function listFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** Where a component's weights are: one file, or a shard index. */
export type WeightLocation = { kind: 'file'; path: string } | { kind: 'index'; path: string };

/**
 * Find a component's safetensors weights. Preference: the requested variant (if any), else the plain file, else
 * a sharded index; with no variant requested and no plain file, a single variant file is taken (diffusers would
 * make the user name it, but there is nothing to choose between). Returns null when there are no weights at all;
 * throws the pickle refusal when only pickle weights exist.
 */
/** Sampling settings a model folder recommends (`s2i.json` beside model_index.json); absent keys are absent. */
export interface SamplingDefaults {
  steps?: number;
  guidance?: number;
}

export const SAMPLING_DEFAULTS_FILE = 's2i.json';

/**
 * A model's recommended `steps` / `guidance` from its `s2i.json`, or {} when it has none (every diffusers
 * checkpoint). SD's 50 steps and guidance 7.5 suit SD, not a small pixel-space model trained for 25 steps.
 */
export function readSamplingDefaults(dir: string): SamplingDefaults {
  const path = join(dir, SAMPLING_DEFAULTS_FILE);
  if (!existsSync(path)) return {};
  const c = readJsonObject(path);
  const out: SamplingDefaults = {};
  const steps = configOptionalNumber(c, 'steps', path);
  if (steps !== null) {
    if (!Number.isInteger(steps) || steps < 1)
      throw new UserError(`${path}: config key 'steps' must be a positive integer, found ${steps}`);
    out.steps = steps;
  }
  const guidance = configOptionalNumber(c, 'guidance', path);
  if (guidance !== null) out.guidance = guidance;
  return out;
}

export function findWeights(dir: string, variant?: string): WeightLocation | null {
  const files = listFiles(dir);
  const has = (name: string) => files.includes(name);
  const pick = (names: string[]): WeightLocation | null => {
    for (const n of names) {
      if (!has(n)) continue;
      return n.endsWith('.json') ? { kind: 'index', path: join(dir, n) } : { kind: 'file', path: join(dir, n) };
    }
    return null;
  };

  if (variant !== undefined) {
    const found = pick(
      WEIGHT_BASENAMES.flatMap((b) => [
        `${b}.${variant}.safetensors`,
        `${b}.safetensors.index.${variant}.json`,
        `${b}.${variant}.safetensors.index.json`,
      ]),
    );
    if (found) return found;
    const plain = pick(WEIGHT_BASENAMES.flatMap((b) => [`${b}.safetensors`, `${b}.safetensors.index.json`]));
    if (plain || files.some((f) => f.endsWith('.safetensors'))) {
      const available = files.filter((f) => f.endsWith('.safetensors') || f.endsWith('.index.json')).join(', ');
      throw new UserError(`${dir}: no '${variant}' variant of the weights (found: ${available})`);
    }
  } else {
    const found = pick(WEIGHT_BASENAMES.flatMap((b) => [`${b}.safetensors`, `${b}.safetensors.index.json`]));
    if (found) return found;
    const variants = files.filter((f) =>
      WEIGHT_BASENAMES.some((b) => new RegExp(`^${b}\\.[A-Za-z0-9_-]+\\.safetensors$`).test(f)),
    );
    if (variants.length === 1) return { kind: 'file', path: join(dir, variants[0]!) };
    if (variants.length > 1) {
      throw new UserError(
        `${dir}: several weight variants (${variants.join(', ')}) and no plain file; choose one with a variant option`,
      );
    }
  }
  const pickle = files.find((f) => isPickleFile(f) || /\.bin\.index\.json$/.test(f));
  if (pickle) throw pickleRefusal(join(dir, pickle));
  return null;
}

export class Component {
  private store: WeightStore | null = null;

  constructor(
    readonly name: string,
    readonly dir: string,
    /** The config file read (config.json, scheduler_config.json, tokenizer_config.json ...). */
    readonly configPath: string,
    readonly config: Config,
    /** Class name from the config (`_class_name`, `architectures[0]`, `tokenizer_class`) or model_index.json. */
    readonly className: string | null,
    /** Where the weights are; null for components without weights (tokenizer, scheduler). */
    readonly weightLocation: WeightLocation | null,
  ) {}

  get hasWeights(): boolean {
    return this.weightLocation !== null;
  }

  /** The component's weights, opened (headers only) on first call; later calls return the same store. */
  weights(): WeightStore {
    if (!this.store) {
      const loc = this.weightLocation;
      if (!loc) throw new UserError(`${this.dir}: component '${this.name}' has no weights`);
      this.store = loc.kind === 'file' ? WeightStore.open(loc.path) : WeightStore.openIndex(loc.path);
    }
    return this.store;
  }

  close(): void {
    this.store?.close();
  }
}

export class ModelFolder {
  private readonly cache = new Map<string, Component>();

  constructor(
    /** Absolute path of the folder. */
    readonly dir: string,
    /** Parsed model_index.json, or null when the folder has none. */
    readonly index: Config | null,
    private readonly options: OpenModelOptions = {},
  ) {}

  /** The pipeline class named by model_index.json. */
  get pipelineClass(): string | null {
    const c = this.index?.['_class_name'];
    return typeof c === 'string' ? c : null;
  }

  get diffusersVersion(): string | null {
    const v = this.index?.['_diffusers_version'];
    return typeof v === 'string' ? v : null;
  }

  /** The [library, class] model_index.json gives a component, or null (absent, or no index). */
  private indexEntry(name: string): [string, string] | null {
    const e = this.index?.[name];
    if (Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'string') return [e[0], e[1]];
    return null;
  }

  /**
   * Components this folder has: those model_index.json lists with a class, else the known subfolders that
   * exist. Standard SD components first.
   */
  componentNames(): string[] {
    let names: string[];
    if (this.index) {
      names = Object.keys(this.index).filter((k) => !k.startsWith('_') && this.indexEntry(k) !== null);
    } else {
      names = SD_COMPONENTS.filter((c) => isDir(join(this.dir, c)));
    }
    const order = (n: string) => {
      const i = (SD_COMPONENTS as readonly string[]).indexOf(n);
      return i < 0 ? SD_COMPONENTS.length : i;
    };
    return names.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  }

  /**
   * Whether the model has this component (per model_index.json when there is one). A component the index lists
   * but whose folder is missing still counts: `component()` then reports the broken folder instead of the
   * caller silently running without it.
   */
  has(name: string): boolean {
    return this.componentNames().includes(name);
  }

  /** The folder of a component (for readers with their own files, such as the tokenizer); UserError if missing. */
  componentDir(name: string): string {
    const dir = join(this.dir, name);
    if (!isDir(dir)) this.missing(name, dir);
    return dir;
  }

  private missing(name: string, dir: string): never {
    const entry = this.indexEntry(name);
    if (entry)
      throw new UserError(
        `${this.dir}: model_index.json lists '${name}' (${entry[1]}) but the folder ${dir} is missing`,
      );
    if (this.index && Object.hasOwn(this.index, name))
      throw new UserError(`${this.dir}: model_index.json says this model has no '${name}'`);
    throw new UserError(`${this.dir}: the model has no '${name}' component (no folder ${dir})`);
  }

  /** A component's folder, config and (lazily) weights; a UserError when it is missing or broken. */
  component(name: string): Component {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const dir = join(this.dir, name);
    const entry = this.indexEntry(name);
    if (!isDir(dir)) this.missing(name, dir);
    const expected = CONFIG_FILE_OF[name] ?? 'config.json';
    const configName = [expected, ...CONFIG_FILES].find((f) => existsSync(join(dir, f)));
    if (!configName) throw new UserError(`${dir}: no config file (expected ${expected})`);
    const configPath = join(dir, configName);
    const config = readJsonObject(configPath);

    const fromConfig = [
      config['_class_name'],
      Array.isArray(config['architectures']) ? config['architectures'][0] : undefined,
      config['tokenizer_class'],
    ];
    const className = (fromConfig.find((c) => typeof c === 'string') as string | undefined) ?? entry?.[1] ?? null;

    const weightLocation = name === 'tokenizer' || name === 'scheduler' ? null : findWeights(dir, this.options.variant);
    if (!weightLocation && WEIGHTED.has(name)) {
      throw new UserError(
        `${dir}: no weights found (expected diffusion_pytorch_model.safetensors or model.safetensors)`,
      );
    }
    const c = new Component(name, dir, configPath, config, className, weightLocation);
    this.cache.set(name, c);
    return c;
  }

  close(): void {
    for (const c of this.cache.values()) c.close();
  }
}

/**
 * Open a diffusers model folder. Reads model_index.json (if any) only; components are read on request.
 * Refuses pickle checkpoints, given either directly or as the only weights in the folder.
 */
export function openModelFolder(dir: string, options: OpenModelOptions = {}): ModelFolder {
  const abs = resolve(dir);
  let st;
  try {
    st = statSync(abs);
  } catch {
    throw new UserError(`${abs}: model folder not found`);
  }
  if (!st.isDirectory()) {
    if (isPickleFile(abs)) throw pickleRefusal(abs);
    if (abs.toLowerCase().endsWith('.safetensors')) {
      throw new UserError(
        `${abs}: is a single-file checkpoint; s2i needs a diffusers model folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)`,
      );
    }
    throw new UserError(`${abs}: not a folder; s2i needs a diffusers model folder`);
  }

  const indexPath = join(abs, 'model_index.json');
  const index = existsSync(indexPath) ? readJsonObject(indexPath) : null;
  const folder = new ModelFolder(abs, index, options);
  if (!index && folder.componentNames().length === 0) {
    const files = listFiles(abs);
    const pickle = files.find(isPickleFile);
    if (pickle) throw pickleRefusal(join(abs, pickle));
    throw new UserError(
      `${abs}: not a diffusers model folder (no model_index.json and none of ${SD_COMPONENTS.map((c) => `${c}/`).join(', ')})`,
    );
  }
  return folder;
}

/**
 * A diffusers model folder (what `StableDiffusionPipeline.save_pretrained` writes), its layout only:
 *
 *   model_index.json                     optional here; names the pipeline and each component's class
 *   text_encoder/config.json + model.safetensors
 *   tokenizer/tokenizer_config.json, vocab.json, merges.txt
 *   unet/config.json + diffusion_pytorch_model.safetensors
 *   vae/config.json + diffusion_pytorch_model.safetensors
 *   scheduler/scheduler_config.json
 *
 * Reading the configs is json-config.ts's job, finding the weights find-weights.ts's, reading them
 * weight-store.ts's. Pickle checkpoints (.bin/.ckpt/.pt/.pth/.pkl) are refused and never opened.
 */
import { UserError } from '../errors.js';
import { exists, files, paths } from './files.js';
import { findWeights, listFiles, type WeightLocation } from './find-weights.js';
import { configOptionalNumber, readJsonObject, type Config } from './json-config.js';
import { isPickleFile, pickleRefusal } from './pickle.js';
import { WeightStore } from './weight-store.js';

const { join, resolve } = paths;

// ---------------------------------------------------------------------------------------------------------------
// the folder

/** The components a Stable Diffusion pipeline needs (SDXL's second encoder too), in the order they are shown. */
export const SD_COMPONENTS = [
  'text_encoder',
  'tokenizer',
  'text_encoder_2',
  'tokenizer_2',
  'unet',
  'vae',
  'scheduler',
] as const;
export type SdComponentName = (typeof SD_COMPONENTS)[number];

/** Components that carry weights (the others are configuration and vocabulary). */
const WEIGHTED: ReadonlySet<string> = new Set(['text_encoder', 'text_encoder_2', 'unet', 'vae']);

const CONFIG_FILES = ['config.json', 'scheduler_config.json', 'tokenizer_config.json', 'preprocessor_config.json'];
const CONFIG_FILE_OF: Readonly<Record<string, string>> = {
  scheduler: 'scheduler_config.json',
  tokenizer: 'tokenizer_config.json',
  tokenizer_2: 'tokenizer_config.json',
};

export interface OpenModelOptions {
  /** Weights variant, e.g. 'fp16' for `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
  /**
   * Components whose weights (and possibly config) come from elsewhere: a converted single-file checkpoint, for
   * which the folder only gives what the file lacks, as diffusers' `from_single_file(..., config=DIR)` uses one.
   */
  overrides?: ReadonlyMap<string, ComponentOverride>;
}

export interface ComponentOverride {
  /** The weights (closed with the folder). */
  weights: WeightStore;
  /** A config to use instead of the folder's file, and what messages call it. */
  config?: { json: Config; path: string; className: string };
}

function isDir(p: string): boolean {
  try {
    return files().stat(p).kind === 'directory';
  } catch {
    return false;
  }
}

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
  if (!exists(path)) return {};
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
    /** Weights already opened elsewhere (a converted single-file checkpoint). */
    store: WeightStore | null = null,
  ) {
    this.store = store;
  }

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
    const override = this.options.overrides?.get(name);
    if (override?.config) {
      const { json, path, className } = override.config;
      const loc: WeightLocation = { kind: 'file', path: override.weights.label };
      const c = new Component(name, dir, path, json, className, loc, override.weights);
      this.cache.set(name, c);
      return c;
    }
    const entry = this.indexEntry(name);
    if (!isDir(dir)) this.missing(name, dir);
    const expected = CONFIG_FILE_OF[name] ?? 'config.json';
    const configName = [expected, ...CONFIG_FILES].find((f) => exists(join(dir, f)));
    if (!configName) throw new UserError(`${dir}: no config file (expected ${expected})`);
    const configPath = join(dir, configName);
    const config = readJsonObject(configPath);

    const fromConfig = [
      config['_class_name'],
      Array.isArray(config['architectures']) ? config['architectures'][0] : undefined,
      config['tokenizer_class'],
    ];
    const className = (fromConfig.find((c) => typeof c === 'string') as string | undefined) ?? entry?.[1] ?? null;

    const provided = override?.weights ?? null;
    const weightLocation: WeightLocation | null = provided
      ? { kind: 'file', path: provided.label }
      : name === 'tokenizer' || name === 'tokenizer_2' || name === 'scheduler'
        ? null
        : findWeights(dir, this.options.variant);
    if (!weightLocation && WEIGHTED.has(name)) {
      throw new UserError(
        `${dir}: no weights found (expected diffusion_pytorch_model.safetensors or model.safetensors)`,
      );
    }
    const c = new Component(name, dir, configPath, config, className, weightLocation, provided);
    this.cache.set(name, c);
    return c;
  }

  close(): void {
    for (const c of this.cache.values()) c.close();
    for (const o of this.options.overrides?.values() ?? []) o.weights.close();
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
    st = files().stat(abs);
  } catch {
    throw new UserError(`${abs}: model folder not found`);
  }
  if (st.kind !== 'directory') {
    if (isPickleFile(abs)) throw pickleRefusal(abs);
    if (abs.toLowerCase().endsWith('.safetensors')) {
      throw new UserError(
        `${abs}: is a single-file checkpoint; s2i needs a diffusers model folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)`,
      );
    }
    throw new UserError(`${abs}: not a folder; s2i needs a diffusers model folder`);
  }

  const indexPath = join(abs, 'model_index.json');
  const index = exists(indexPath) ? readJsonObject(indexPath) : null;
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

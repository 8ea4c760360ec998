/**
 * `s2i info` run (declared in info.ts): what a model folder or a single-file checkpoint holds, read from its
 * configs and safetensors headers only (no tensor data is read, so this is instant even for multi-GB
 * checkpoints).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CLIP_TEXT_DEFAULTS, UNET_DEFAULTS, VAE_DEFAULTS } from '../../models/config.js';
import { schedulerConfigDefaults } from '../../schedulers/config.js';
import {
  configInt,
  configIntArray,
  configNumber,
  configNumberOrArray,
  configOptionalNumber,
  configOptionalString,
  configString,
  configStringArray,
  readJsonObject,
  type Config,
} from '../../io/json-config.js';
import { SD_COMPONENTS, type Component } from '../../io/model-folder.js';
import { openModel } from '../../io/open-model.js';
import { checkModel } from '../../pipeline/stable-diffusion.js';
import type { InfoFlags } from './info.js';

export interface ComponentInfo {
  name: string;
  class: string | null;
  dir: string;
  /** The settings that matter for this component (see the summarise* functions). */
  config: Record<string, unknown>;
  /** null for components without weights. */
  parameters: number | null;
  /** Element counts per on-disk dtype. */
  dtypes: Record<string, number> | null;
  weightFiles: string[];
  /** Size of the weight files on disk. */
  fileBytes: number | null;
  /** Parameters held as float32 (what the runtime uses). */
  float32Bytes: number | null;
}

/** How a single-file checkpoint was read. */
export interface SingleFileSummary {
  layout: 'ldm';
  /** 'SD 1.x' (OpenAI CLIP text encoder), 'SD 2.x' (OpenCLIP) or 'SDXL' (both). */
  family: string;
  textEncoder: 'clip' | 'open-clip' | 'sdxl';
  /** Where the configs came from: inferred from the weights over the shipped folder, or the user's --config. */
  configs: 'inferred' | 'given';
  configDir: string;
  /** Keys of the file not used on purpose (EMA weights, schedule buffers, OpenCLIP's unused last layer). */
  skippedKeys: number;
  fileBytes: number;
}

export interface ModelInfo {
  model: string;
  /** Set for a single-file checkpoint. */
  singleFile: SingleFileSummary | null;
  pipeline: string | null;
  diffusersVersion: string | null;
  components: Record<string, ComponentInfo>;
  /** Components listed in model_index.json that s2i does not use (safety_checker, feature_extractor, ...). */
  ignored: string[];
  total: { parameters: number; fileBytes: number; float32Bytes: number };
}

// Absent keys show the defaults the library uses (models/config.ts and schedulers/config.ts hold them, once).
function summariseUnet(c: Config, f: string): Record<string, unknown> {
  const U = UNET_DEFAULTS;
  return {
    sample_size: configInt(c, 'sample_size', f, U.sample_size),
    in_channels: configInt(c, 'in_channels', f, U.in_channels),
    out_channels: configInt(c, 'out_channels', f, U.out_channels),
    block_out_channels: configIntArray(c, 'block_out_channels', f, [...U.block_out_channels]),
    layers_per_block: configNumberOrArray(c, 'layers_per_block', f, U.layers_per_block),
    attention_head_dim: configNumberOrArray(c, 'attention_head_dim', f, U.attention_head_dim),
    cross_attention_dim: configNumberOrArray(c, 'cross_attention_dim', f, U.cross_attention_dim),
    down_block_types: configStringArray(c, 'down_block_types', f, [...U.down_block_types]),
    mid_block_type: configOptionalString(c, 'mid_block_type', f) ?? U.mid_block_type,
    up_block_types: configStringArray(c, 'up_block_types', f, [...U.up_block_types]),
    // SDXL's keys, shown where the config has them
    transformer_layers_per_block: Object.hasOwn(c, 'transformer_layers_per_block')
      ? configNumberOrArray(c, 'transformer_layers_per_block', f, U.transformer_layers_per_block)
      : undefined,
    addition_embed_type: configOptionalString(c, 'addition_embed_type', f) ?? undefined,
  };
}

function summariseTextEncoder(c: Config, f: string): Record<string, unknown> {
  const T = CLIP_TEXT_DEFAULTS;
  return {
    hidden_size: configInt(c, 'hidden_size', f, T.hidden_size),
    num_hidden_layers: configInt(c, 'num_hidden_layers', f, T.num_hidden_layers),
    num_attention_heads: configInt(c, 'num_attention_heads', f, T.num_attention_heads),
    intermediate_size: configInt(c, 'intermediate_size', f, T.intermediate_size),
    vocab_size: configInt(c, 'vocab_size', f, T.vocab_size),
    max_position_embeddings: configInt(c, 'max_position_embeddings', f, T.max_position_embeddings),
    hidden_act: configString(c, 'hidden_act', f, T.hidden_act),
  };
}

/** SDXL's second encoder: CLIPTextModelWithProjection, so its projection width too. */
function summariseTextEncoder2(c: Config, f: string): Record<string, unknown> {
  return {
    ...summariseTextEncoder(c, f),
    projection_dim: configInt(c, 'projection_dim', f, CLIP_TEXT_DEFAULTS.projection_dim),
  };
}

function summariseVae(c: Config, f: string): Record<string, unknown> {
  const V = VAE_DEFAULTS;
  return {
    block_out_channels: configIntArray(c, 'block_out_channels', f, [...V.block_out_channels]),
    latent_channels: configInt(c, 'latent_channels', f, V.latent_channels),
    scaling_factor: configNumber(c, 'scaling_factor', f, V.scaling_factor),
  };
}

function summariseScheduler(c: Config, f: string): Record<string, unknown> {
  const cls = configOptionalString(c, '_class_name', f);
  const d = schedulerConfigDefaults(cls);
  const str = (key: string) => configOptionalString(c, key, f) ?? (d[key] as string | undefined) ?? null;
  const num = (key: string) => configOptionalNumber(c, key, f) ?? (d[key] as number | undefined) ?? null;
  return {
    class: cls,
    num_train_timesteps: num('num_train_timesteps'),
    beta_schedule: str('beta_schedule'),
    beta_start: num('beta_start'),
    beta_end: num('beta_end'),
    prediction_type: str('prediction_type'),
    // The default differs per scheduler class: null for a class without a sampler here.
    timestep_spacing: str('timestep_spacing'),
    steps_offset: num('steps_offset'),
  };
}

/** A special token in tokenizer_config.json is a string or an AddedToken object {content, ...}. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)['content'] === 'string') {
    return (v as Record<string, string>)['content']!;
  }
  return null;
}

function summariseTokenizer(comp: Component): Record<string, unknown> {
  const c = comp.config;
  const f = comp.configPath;
  let vocabSize: number | null = null;
  const vocabPath = join(comp.dir, 'vocab.json');
  const fastPath = join(comp.dir, 'tokenizer.json');
  if (existsSync(vocabPath)) {
    vocabSize = Object.keys(readJsonObject(vocabPath)).length;
  } else if (existsSync(fastPath)) {
    const model = readJsonObject(fastPath)['model'];
    const vocab = typeof model === 'object' && model !== null ? (model as Record<string, unknown>)['vocab'] : undefined;
    if (typeof vocab === 'object' && vocab !== null) vocabSize = Object.keys(vocab).length;
  }
  let pad = tokenText(c['pad_token']);
  const mapPath = join(comp.dir, 'special_tokens_map.json');
  if (pad === null && existsSync(mapPath)) pad = tokenText(readJsonObject(mapPath)['pad_token']);
  return {
    class: configOptionalString(c, 'tokenizer_class', f),
    vocab_size: vocabSize,
    model_max_length: configOptionalNumber(c, 'model_max_length', f),
    pad_token: pad,
    // Shown as written: CLIP's tokenizer lower-cases whatever it says (transformers ignores the key), as generate does.
    do_lower_case: Object.hasOwn(c, 'do_lower_case') ? c['do_lower_case'] : undefined,
  };
}

function summarise(comp: Component): Record<string, unknown> {
  const f = comp.configPath;
  switch (comp.name) {
    case 'unet':
      return summariseUnet(comp.config, f);
    case 'text_encoder':
      return summariseTextEncoder(comp.config, f);
    case 'text_encoder_2':
      return summariseTextEncoder2(comp.config, f);
    case 'vae':
      return summariseVae(comp.config, f);
    case 'scheduler':
      return summariseScheduler(comp.config, f);
    case 'tokenizer':
    case 'tokenizer_2':
      return summariseTokenizer(comp);
    default:
      return {};
  }
}

export interface ModelInfoOptions {
  variant?: string;
  /** For a single file: its config folder (--config). */
  config?: string;
}

/** Everything `s2i info` reports, for one model folder or single-file checkpoint (configs and headers only). */
export function modelInfo(path: string, options: ModelInfoOptions = {}): ModelInfo {
  const { folder, singleFile } = openModel(path, {
    ...(options.variant !== undefined ? { variant: options.variant } : {}),
    ...(options.config !== undefined ? { configDir: options.config } : {}),
  });
  try {
    // The same judgement as generate's: a model one refuses, the other refuses too (and with the same message).
    checkModel(folder);
    const names = folder.componentNames();
    const used = names.filter((n) => (SD_COMPONENTS as readonly string[]).includes(n));
    const info: ModelInfo = {
      model: singleFile ? singleFile.file : folder.dir,
      singleFile: singleFile && {
        layout: 'ldm',
        family: singleFile.familyName,
        textEncoder: singleFile.textEncoderLayout,
        configs: singleFile.inferred ? 'inferred' : 'given',
        configDir: singleFile.configDir,
        skippedKeys: singleFile.skippedKeys.length,
        fileBytes: singleFile.fileBytes,
      },
      pipeline: folder.pipelineClass,
      diffusersVersion: folder.diffusersVersion,
      components: {},
      ignored: names.filter((n) => !used.includes(n)),
      total: { parameters: 0, fileBytes: 0, float32Bytes: 0 },
    };
    for (const name of used) {
      const comp = folder.component(name);
      const ci: ComponentInfo = {
        name,
        class: comp.className,
        dir: comp.dir,
        config: summarise(comp),
        parameters: null,
        dtypes: null,
        weightFiles: [],
        fileBytes: null,
        float32Bytes: null,
      };
      if (comp.hasWeights) {
        const w = comp.weights();
        ci.parameters = w.paramCount();
        ci.dtypes = w.dtypeCounts();
        ci.weightFiles = w.files.map((f) => f.path);
        // A single file's components share it: each is counted by the bytes of its own tensors.
        ci.fileBytes = singleFile ? w.tensorBytes() : w.fileBytes();
        ci.float32Bytes = ci.parameters * 4;
        info.total.parameters += ci.parameters;
        info.total.fileBytes += ci.fileBytes;
        info.total.float32Bytes += ci.float32Bytes;
      }
      info.components[name] = ci;
    }
    if (singleFile) info.total.fileBytes = singleFile.fileBytes;
    return info;
  } finally {
    folder.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// text output

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

const fmtInt = (n: number) => n.toLocaleString('en-US');

function fmtValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(fmtValue).join(', ')}]`;
  if (typeof v === 'string') return v;
  return String(v);
}

/** Lay out rows as left-aligned columns (numeric columns right-aligned). */
function table(rows: string[][], rightAligned: ReadonlySet<number>): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

export function formatModelInfo(info: ModelInfo): string {
  const lines: string[] = [];
  lines.push(`model     ${info.model}`);
  const sf = info.singleFile;
  if (sf) {
    const encoder = {
      clip: 'OpenAI CLIP text encoder',
      'open-clip': 'OpenCLIP text encoder',
      sdxl: 'OpenAI CLIP ViT-L and OpenCLIP ViT-bigG text encoders',
    }[sf.textEncoder];
    lines.push(`format    single-file checkpoint, LDM layout: ${sf.family} (${encoder})`);
    lines.push(
      `configs   ${sf.configs === 'inferred' ? `inferred from the weights over ${sf.configDir}` : sf.configDir}`,
    );
    if (sf.skippedKeys > 0)
      lines.push(`skipped   ${sf.skippedKeys} keys (EMA weights, schedule buffers, unused layers, CLIP's logit_scale)`);
  }
  if (info.pipeline)
    lines.push(`pipeline  ${info.pipeline}${info.diffusersVersion ? ` (diffusers ${info.diffusersVersion})` : ''}`);
  lines.push('');

  const rows: string[][] = [['component', 'class', 'parameters', 'dtype on disk', 'file size', 'float32 memory']];
  for (const c of Object.values(info.components)) {
    rows.push([
      c.name,
      c.class ?? '?',
      c.parameters === null ? '-' : fmtInt(c.parameters),
      c.dtypes
        ? Object.entries(c.dtypes)
            .sort((a, b) => b[1] - a[1])
            .map(([d]) => d)
            .join('+')
        : '-', // most common first
      c.fileBytes === null ? '-' : formatBytes(c.fileBytes),
      c.float32Bytes === null ? '-' : formatBytes(c.float32Bytes),
    ]);
  }
  rows.push([
    'total',
    '',
    fmtInt(info.total.parameters),
    '',
    formatBytes(info.total.fileBytes),
    formatBytes(info.total.float32Bytes),
  ]);
  lines.push(...table(rows, new Set([2, 4, 5])));
  lines.push('');

  const width = Math.max(...Object.keys(info.components).map((n) => n.length));
  for (const c of Object.values(info.components)) {
    const entries = Object.entries(c.config).filter(([, v]) => v !== undefined);
    if (entries.length === 0) continue;
    const prefix = c.name.padEnd(width);
    const blank = ' '.repeat(width);
    // Block-type lists are long; give each its own line.
    const long = entries.filter(([k]) => k.endsWith('_block_types'));
    const short = entries.filter(([k]) => !k.endsWith('_block_types'));
    lines.push(`${prefix}  ${short.map(([k, v]) => `${k} ${fmtValue(v)}`).join(', ')}`);
    for (const [k, v] of long) lines.push(`${blank}  ${k} ${fmtValue(v)}`);
  }
  if (info.ignored.length) {
    lines.push('');
    lines.push(`not used by s2i: ${info.ignored.join(', ')}`);
  }
  return lines.join('\n') + '\n';
}

/** JSON is written in snake_case: every key converted, except the configs' (config.json's own) and dtype names. */
function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k.replace(/([a-z0-9])([A-Z])/g, (_, a: string, b: string) => `${a}_${b.toLowerCase()}`),
      k === 'config' || k === 'dtypes' ? v : snakeKeys(v),
    ]),
  );
}

/** The command's action: the model described as a table, or as JSON with --json. */
export function run(opts: InfoFlags): void {
  const info = modelInfo(opts.model, {
    ...(opts.variant !== undefined ? { variant: opts.variant } : {}),
    ...(opts.config !== undefined ? { config: opts.config } : {}),
  });
  process.stdout.write(opts.json ? `${JSON.stringify(snakeKeys(info), null, 2)}\n` : formatModelInfo(info));
}

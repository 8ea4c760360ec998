/**
 * Models for the speed benchmark: SD-1.5's UNet architecture with random weights (no download), and the tiny
 * oracle model's real weights.
 *
 * Random weights follow PyTorch's default initialisation scale (what diffusers' modules get when built from a
 * config): Linear/Conv weights and biases U(−1/√fan_in, 1/√fan_in), norm scales 1 and shifts 0. Each tensor is
 * drawn from its own generator seeded by (seed, key), so a tensor is the same whichever order it is asked for
 * and `RandomWeights` can hand it out on demand. `ensureRandomSafetensors` writes them once to a cached
 * safetensors file, so the benchmark (and the PyTorch reference) can load SD-1.5-size weights through the real
 * loading path.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { Graph, shapeSize, type WeightSource } from '../../src/graph/graph.js';
import { parseUNetConfig } from '../../src/models/config.js';
import type { ParamFn, WeightProvider } from '../../src/models/params.js';
import { unet2dCondition, type UNetConfig } from '../../src/models/unet.js';

/**
 * diffusers' runwayml/stable-diffusion-v1-5 `unet/config.json` (the architecture; 859,520,964 parameters).
 */
export const SD15_UNET_CONFIG_JSON: Readonly<Record<string, unknown>> = Object.freeze({
  _class_name: 'UNet2DConditionModel',
  _diffusers_version: '0.6.0',
  act_fn: 'silu',
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
});

export const SD15_PARAMS = 859_520_964;

/** SDXL base 1.0's `unet/config.json` (configs/stable-diffusion-xl; 2,567,463,684 parameters). */
export const SDXL_UNET_CONFIG_JSON: Readonly<Record<string, unknown>> = Object.freeze(
  JSON.parse(
    readFileSync(new URL('../../configs/stable-diffusion-xl/unet/config.json', import.meta.url), 'utf8'),
  ) as Record<string, unknown>,
);

export function sd15UNetConfig(): UNetConfig {
  return parseUNetConfig({ ...SD15_UNET_CONFIG_JSON }, 'SD-1.5 unet config');
}

/** Every UNet weight (diffusers key → shape), found by recording the model once with a shape-only ParamFn. */
export function unetParameterShapes(cfg: UNetConfig, contextDim = cfg.crossAttentionDim[0]!): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const g = new Graph('input');
  const p: ParamFn = (name, shape) => {
    shapes.set(name, [...shape]);
    return g.getParam(name) ?? g.param(name, { shape, read: () => new Float32Array(0) });
  };
  // Weight shapes do not depend on the sample size; the smallest size the down-sampling allows keeps this cheap.
  const s = 2 ** (cfg.blockOutChannels.length - 1);
  const add = cfg.addition;
  unet2dCondition(cfg, p, {
    sample: g.input('x', [1, cfg.inChannels, s, s]),
    timestep: g.input('t', [1]),
    encoderHiddenStates: g.input('c', [1, 1, contextDim]),
    ...(add
      ? { textEmbeds: g.input('e', [1, add.inputDim - 6 * add.timeEmbedDim]), timeIds: g.input('i', [1, 6]) }
      : {}),
  });
  return shapes;
}

/** FNV-1a of the key mixed with the seed: one independent stream per tensor. */
function streamSeed(seed: number, key: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

const isNorm = (key: string) =>
  /(^|\.)(norm\d*|norm_out|conv_norm_out|layer_norm\d*|final_layer_norm|group_norm)\.(weight|bias)$/.test(key);

function fanIn(shape: readonly number[]): number {
  let n = 1;
  for (let i = 1; i < shape.length; i++) n *= shape[i]!;
  return n;
}

/** Fill `out` with the tensor `key`'s random values (see the module comment). */
export function fillRandom(
  out: Float32Array,
  key: string,
  shape: readonly number[],
  allShapes: ReadonlyMap<string, readonly number[]>,
  seed: number,
): Float32Array {
  if (isNorm(key)) return out.fill(key.endsWith('.weight') ? 1 : 0);
  let bound: number;
  if (key.endsWith('.bias')) {
    const w = allShapes.get(key.slice(0, -'bias'.length) + 'weight');
    bound = w ? 1 / Math.sqrt(fanIn(w)) : 0;
  } else {
    bound = shape.length >= 2 ? 1 / Math.sqrt(fanIn(shape)) : 0;
  }
  // xorshift32: quality is irrelevant here, speed is not (SD-1.5 has 860 M weights).
  let x = streamSeed(seed, key);
  const scale = (2 * bound) / 4294967296;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) * scale - bound;
  }
  return out;
}

/** A WeightProvider that makes each tensor on demand from a seeded generator (never stored). */
export class RandomWeights implements WeightProvider {
  constructor(
    readonly shapes: ReadonlyMap<string, readonly number[]>,
    readonly seed = 0,
  ) {}

  source(key: string, expectedShape: readonly number[]): WeightSource {
    const shape = this.shapes.get(key);
    if (!shape) throw new Error(`RandomWeights: no weight '${key}'`);
    if (shape.length !== expectedShape.length || shape.some((d, i) => d !== expectedShape[i])) {
      throw new Error(`RandomWeights: '${key}' is [${shape}], expected [${expectedShape}]`);
    }
    return { shape, read: () => fillRandom(new Float32Array(shapeSize(shape)), key, shape, this.shapes, this.seed) };
  }
}

export function defaultBenchCache(): string {
  return process.env['S2I_BENCH_CACHE'] ?? join(homedir(), '.cache', 's2i', 'bench');
}

/**
 * A diffusers-style UNet folder (`config.json` + `diffusion_pytorch_model.safetensors`, all F32) with random
 * weights for `configJson`, written once into `dir` (streamed, never all in memory; atomically renamed into
 * place). Returns the folder.
 */
export function ensureRandomUNetFolder(
  dir: string,
  configJson: Readonly<Record<string, unknown>>,
  seed = 0,
  log: (s: string) => void = () => {},
): string {
  const file = join(dir, 'diffusion_pytorch_model.safetensors');
  if (existsSync(file) && existsSync(join(dir, 'config.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  const cfg = parseUNetConfig({ ...configJson }, `${dir}/config.json`);
  const shapes = unetParameterShapes(cfg);
  const keys = [...shapes.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', s2i_random_seed: String(seed) } };
  let offset = 0;
  for (const k of keys) {
    const bytes = shapeSize(shapes.get(k)!) * 4;
    header[k] = { dtype: 'F32', shape: shapes.get(k), data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json, 'utf8'));
    let done = 0;
    for (const k of keys) {
      const shape = shapes.get(k)!;
      const data = fillRandom(new Float32Array(shapeSize(shape)), k, shape, shapes, seed);
      writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      done += data.byteLength;
      if (data.byteLength > 50e6) log(`  random weights: ${(done / 1e9).toFixed(2)} / ${(offset / 1e9).toFixed(2)} GB`);
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(configJson, null, 2) + '\n');
  return dirname(file);
}

/**
 * A whole Stable Diffusion checkpoint as one original-layout (LDM) `.safetensors` file with random weights, the
 * way a new user's downloaded file looks: SD-1.5 (`model.diffusion_model.*`, `first_stage_model.*`,
 * `cond_stage_model.transformer.*`, 4.3 GB) or SDXL base (`conditioner.embedders.0/1.*`, 13.9 GB), all F32, keys
 * and shapes as in the released files (the mappings of test/support/ldm.ts). Values as in weights.ts (PyTorch's
 * default initialisation scale, one stream per diffusers key), streamed to disk: never all in memory. For
 * measuring whole `s2i generate` runs (peak RSS of plain sampling against a method) without a model hub.
 *
 *   tsx tools/perf/single-file.ts sd15|sdxl [FILE]     (default: ~/.cache/s2i/bench/<family>-random.safetensors)
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Graph, shapeSize } from '../../src/graph/graph.js';
import { clipTextModel } from '../../src/models/clip.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig } from '../../src/models/config.js';
import type { ParamFn } from '../../src/models/params.js';
import { unet2dCondition } from '../../src/models/unet.js';
import { vaeDecode, vaeEncode } from '../../src/models/vae.js';
import { clipToOpenClip, unetToLdm, vaeToLdm } from '../../test/support/ldm.js';
import { defaultBenchCache, fillRandom } from './weights.js';

export type RandomFamily = 'sd15' | 'sdxl';

/** One tensor of the file: its LDM name, and the diffusers key(s) whose random values it holds (stacked). */
interface Entry {
  name: string;
  shape: number[];
  dtype: 'F32' | 'I64';
  /** diffusers keys whose values are written one after the other (OpenCLIP's in_proj stacks q, k, v). */
  parts: string[];
}

const configsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'configs');

/** Every weight (diffusers key → shape) a model asks for, by walking it once with a recording ParamFn. */
function shapesOf(build: (p: ParamFn, g: Graph) => void): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const g = new Graph('input');
  build((name, shape) => {
    shapes.set(name, [...shape]);
    return g.getParam(name) ?? g.param(name, { shape, read: () => new Float32Array(0) });
  }, g);
  return shapes;
}

/** The file's entries, and every diffusers key's shape under a component prefix (for the random values). */
function layout(family: RandomFamily): { entries: Entry[]; shapes: Map<string, number[]> } {
  const dir = join(configsDir, family === 'sd15' ? 'stable-diffusion-v1' : 'stable-diffusion-xl');
  const json = (c: string) => JSON.parse(readFileSync(join(dir, c, 'config.json'), 'utf8')) as Record<string, unknown>;
  const entries: Entry[] = [];
  const shapes = new Map<string, number[]>();
  const add = (prefix: string, map: Map<string, number[]>) => {
    for (const [k, s] of map) shapes.set(prefix + k, s);
  };
  const unetCfg = parseUNetConfig(json('unet'), 'unet');
  const addition = unetCfg.addition;
  const unet = shapesOf((p, g) =>
    unet2dCondition(unetCfg, p, {
      sample: g.input('x', [1, 4, 8, 8]),
      timestep: g.input('t', [1]),
      encoderHiddenStates: g.input('c', [1, 1, unetCfg.crossAttentionDim[0]!]),
      ...(addition
        ? {
            textEmbeds: g.input('e', [1, addition.inputDim - 6 * addition.timeEmbedDim]),
            timeIds: g.input('i', [1, 6]),
          }
        : {}),
    }),
  );
  add('unet.', unet);
  const attentionUp = unetCfg.upBlockTypes.map((t) => t === 'CrossAttnUpBlock2D');
  for (const [k, s] of unet)
    entries.push({
      name: unetToLdm(k, unetCfg.layersPerBlock[0]!, attentionUp),
      shape: s,
      dtype: 'F32',
      parts: [`unet.${k}`],
    });
  const vaeCfg = parseVaeConfig(json('vae'), 'vae');
  const vae = shapesOf((p, g) => {
    vaeDecode(vaeCfg, p, g.input('z', [1, 4, 1, 1]));
    vaeEncode(vaeCfg, p, g.input('x', [1, 3, 8, 8]));
  });
  add('vae.', vae);
  for (const [k, s] of vae) {
    // LDM stores the VAE's attention projections as 1x1 convolutions
    const conv = /attentions\.0\.to_(q|k|v|out\.0)\.weight$/.test(k);
    entries.push({
      name: vaeToLdm(k, vaeCfg.blockOutChannels.length),
      shape: conv ? [...s, 1, 1] : s,
      dtype: 'F32',
      parts: [`vae.${k}`],
    });
  }
  const clipL = shapesOf((p, g) =>
    clipTextModel(parseClipTextConfig(json('text_encoder'), 'te'), p, g.input('ids', [1, 1], 'int64')),
  );
  add('text.', clipL);
  const clipPrefix = family === 'sd15' ? 'cond_stage_model.transformer.' : 'conditioner.embedders.0.transformer.';
  for (const [k, s] of clipL) entries.push({ name: clipPrefix + k, shape: s, dtype: 'F32', parts: [`text.${k}`] });
  entries.push({ name: `${clipPrefix}text_model.embeddings.position_ids`, shape: [1, 77], dtype: 'I64', parts: [] });
  if (family === 'sdxl') {
    const cfg2 = parseClipTextConfig(json('text_encoder_2'), 'te2');
    const bigG = shapesOf((p, g) => clipTextModel(cfg2, p, g.input('ids', [1, 1], 'int64')));
    add('text2.', bigG);
    const p2 = 'conditioner.embedders.1.model.';
    for (const [k, s] of bigG) {
      const name = clipToOpenClip(k);
      if (name)
        entries.push({
          name: name.replace('cond_stage_model.model.', p2),
          shape: s,
          dtype: 'F32',
          parts: [`text2.${k}`],
        });
      const m = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/.exec(k);
      if (m) {
        const qkv = ['q', 'k', 'v'].map((x) => `text2.${k.replace('.q_proj.', `.${x}_proj.`)}`);
        entries.push({
          name: `${p2}transformer.resblocks.${m[1]}.attn.in_proj_${m[2]}`,
          shape: [3 * s[0]!, ...s.slice(1)],
          dtype: 'F32',
          parts: qkv,
        });
      }
    }
    const width = cfg2.hiddenSize;
    shapes.set('text2.text_projection.weight', [width, width]);
    entries.push(
      { name: `${p2}text_projection`, shape: [width, width], dtype: 'F32', parts: ['text2.text_projection.weight'] },
      { name: `${p2}logit_scale`, shape: [], dtype: 'F32', parts: [] },
    );
  }
  return { entries, shapes };
}

/** Write `family`'s random single file to `file` unless it is there; returns the path. */
export function ensureRandomSingleFile(
  family: RandomFamily,
  file?: string,
  log: (s: string) => void = () => {},
): string {
  const path = file ?? join(defaultBenchCache(), `${family}-random.safetensors`);
  if (existsSync(path)) return path;
  mkdirSync(dirname(path), { recursive: true });
  const { entries, shapes } = layout(family);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', s2i_random_seed: '0' } };
  let offset = 0;
  for (const e of entries) {
    const bytes = shapeSize(e.shape) * (e.dtype === 'I64' ? 8 : 4);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json, 'utf8'));
    let done = 0;
    for (const e of entries) {
      let data: Uint8Array;
      if (e.dtype === 'I64')
        data = new Uint8Array(BigInt64Array.from({ length: shapeSize(e.shape) }, (_, i) => BigInt(i)).buffer);
      else if (e.parts.length === 0) data = new Uint8Array(4 * shapeSize(e.shape));
      else {
        const out = new Float32Array(shapeSize(e.shape));
        let at = 0;
        for (const k of e.parts) {
          const s = shapes.get(k)!;
          fillRandom(out.subarray(at, at + shapeSize(s)), k, s, shapes, 0);
          at += shapeSize(s);
        }
        data = new Uint8Array(out.buffer);
      }
      writeSync(fd, data);
      done += data.byteLength;
      if (data.byteLength > 50e6)
        log(`  random ${family} file: ${(done / 1e9).toFixed(2)} / ${(offset / 1e9).toFixed(2)} GB`);
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  return path;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const family = process.argv[2];
  if (family !== 'sd15' && family !== 'sdxl') {
    console.error('usage: tsx tools/perf/single-file.ts sd15|sdxl [FILE]');
    process.exit(2);
  }
  console.log(ensureRandomSingleFile(family, process.argv[3], (s) => console.error(s)));
}

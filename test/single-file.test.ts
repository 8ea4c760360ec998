/**
 * Single-file SD 1.x / 2.x checkpoints (issue 15): the oracle's tiny-sd in the LDM layout (written by diffusers'
 * own conversion script) against the same weights as a diffusers folder — key for key and bit for bit, then
 * goldens b, c, f and g from the file; the SD 2.x OpenCLIP mapping on a file made from the oracle's weights;
 * standard SD-1.5 / SD-2.x architectures inferred from full-size (sparse, all-zero) headers; and bad files.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import { Graph } from '../src/graph/graph.js';
import { openModelFolder } from '../src/io/model-folder.js';
import { openModel } from '../src/io/open-model.js';
import { readSafetensors, SafetensorsFile } from '../src/io/safetensors.js';
import { clipTextModel, type ClipTextConfig } from '../src/models/clip.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig } from '../src/models/config.js';
import type { ParamFn } from '../src/models/params.js';
import { unet2dCondition } from '../src/models/unet.js';
import { vaeDecode, vaeEncode, type VaeConfig } from '../src/models/vae.js';
import { AttendAndExcite, ATTEND_EXCITE_DEFAULTS } from '../src/methods/attend-and-excite.js';
import { generate } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { maxAbsDiff, type Int64Tensor, type Tensor } from '../src/tensor.js';
import { ensureBuilt, expectOneLineError, s2i } from './support/cli.js';
import { expectGolden } from './support/golden.js';
import {
  clipToOpenClip,
  toBfloat16,
  toHalf,
  unetToLdm,
  vaeToLdm,
  writeRawSafetensors,
  type RawTensor,
} from './support/ldm.js';
import { goldenPath, oracleDir, singleFileDir, tinySdDir } from './support/oracle.js';

const FILE = join(singleFileDir, 'tiny-sd.safetensors');
const CONFIG = join(singleFileDir, 'tiny-sd-config');
const PROMPTS = ['a cat and a frog', 'A photo of a Cat sitting on a RED chair.', ''];

const tmp = mkdtempSync(join(tmpdir(), 's2i-single-file-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Golden = Record<string, Tensor | Int64Tensor>;
const f32 = (g: Golden, k: string) => g[k]!.data as Float32Array;
const manifest = JSON.parse(readFileSync(join(oracleDir, 'goldens', 'manifest.json'), 'utf8')) as {
  cases: { id: string; tolerance: Record<string, unknown>; params: Record<string, unknown> }[];
};
const caseOf = (id: string) => manifest.cases.find((c) => c.id === id)!;
const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Every tensor of the oracle's single file, with its bytes. */
function oracleTensors(): RawTensor[] {
  const f = SafetensorsFile.open(FILE);
  try {
    return f.infos().map((t) => {
      const a = f.readAny(t.name);
      return {
        name: t.name,
        dtype: t.dtype === 'I64' ? 'I64' : 'F32',
        shape: t.shape,
        bytes: new Uint8Array(bytesOf(a.data)),
      };
    });
  } finally {
    f.close();
  }
}

describe('the oracle single file (SD 1.x layout) with its config folder', () => {
  it('converts to exactly the folder: the same diffusers keys, shapes and bytes', () => {
    const { folder, singleFile } = openModel(FILE, { configDir: CONFIG });
    const ref = openModelFolder(tinySdDir);
    try {
      expect(singleFile).toMatchObject({ textEncoderLayout: 'clip', family: 'stable-diffusion-v1', inferred: false });
      for (const c of ['unet', 'vae', 'text_encoder']) {
        const a = folder.component(c).weights();
        const b = ref.component(c).weights();
        expect(a.keys().sort(), c).toEqual(b.keys().sort());
        for (const k of b.keys()) {
          expect(a.shapeOf(k), k).toEqual(b.shapeOf(k));
          const same =
            b.dtypeOf(k) === 'I64'
              ? bytesOf(a.readInt64(k)).equals(bytesOf(b.readInt64(k)))
              : bytesOf(a.readFloat32(k)).equals(bytesOf(b.readFloat32(k)));
          expect(same, k).toBe(true);
        }
      }
    } finally {
      folder.close();
      ref.close();
    }
  });

  describe('goldens from the single file', () => {
    let model: StableDiffusion;
    beforeAll(async () => {
      model = await StableDiffusion.load(FILE, { config: CONFIG });
    });
    afterAll(async () => {
      await model?.release();
    });

    it('b: the text encoder', async () => {
      const b = readSafetensors(goldenPath('b_text_encoder'));
      const atol = caseOf('b_text_encoder').tolerance['atol'] as number;
      let worst = 0;
      for (let r = 0; r < PROMPTS.length; r++) {
        const e = await model.encodePrompt(PROMPTS[r]!);
        worst = Math.max(
          worst,
          maxAbsDiff(e.data, f32(b, 'last_hidden_state').subarray(r * 77 * 32, (r + 1) * 77 * 32)),
        );
      }
      expectGolden('single file: b text encoder last_hidden_state (max abs)', worst, atol);
    });

    it('c: the UNet noise prediction at t=981', async () => {
      const c = readSafetensors(goldenPath('c_unet'));
      const s = await model.unetAccess(32, 32, 77).compile('test:single-file:c', (g, unet) => {
        const { noisePred } = unet({
          sample: g.input('sample', [2, 4, 32, 32]),
          timestep: g.input('timestep', [2]),
          encoderHiddenStates: g.input('context', [2, 77, 32]),
        });
        g.output('noise_pred', noisePred);
      });
      const res = await s.run({
        sample: { data: f32(c, 'latent_model_input'), shape: [2, 4, 32, 32] },
        timestep: { data: Float32Array.of(981, 981), shape: [2] },
        context: { data: f32(c, 'encoder_hidden_states'), shape: [2, 77, 32] },
      });
      expectGolden(
        'single file: c UNet t=981 noise_pred (max abs)',
        maxAbsDiff(res['noise_pred']!.data, f32(c, 'noise_pred')),
        caseOf('c_unet').tolerance['atol'] as number,
      );
    });

    it('f: 10-step PNDM text-to-image, final latents and decoded image', async () => {
      const f = readSafetensors(goldenPath('f_txt2img'));
      const tol = caseOf('f_txt2img').tolerance['pndm'] as { final_latents: { atol: number }; image: { atol: number } };
      const r = await generate(model, {
        prompt: PROMPTS[0]!,
        steps: 10,
        guidanceScale: 7.5,
        sampler: 'pndm',
        initialLatents: { data: f32(f, 'initial_latents'), shape: [1, 4, 32, 32] },
      });
      expectGolden(
        'single file: f PNDM final latents (max abs)',
        maxAbsDiff(r.finalLatents.data, f32(f, 'pndm.final_latents')),
        tol.final_latents.atol,
      );
      expect(maxAbsDiff(r.image.data, f32(f, 'pndm.decoded_raw'))).toBeLessThanOrEqual(2 * tol.image.atol);
    });

    it('g: Attend-and-Excite, 10 steps, final latents', async () => {
      const g = readSafetensors(goldenPath('g_attend_and_excite_diffusers'));
      const gCase = caseOf('g_attend_and_excite_diffusers');
      const p = gCase.params as {
        token_indices: number[];
        max_iter_to_alter: number;
        thresholds: Record<string, number>;
        scale_factor: number;
        attn_res: number[];
      };
      const r = await generate(model, {
        prompt: PROMPTS[0]!,
        steps: 10,
        guidanceScale: 7.5,
        sampler: 'pndm',
        initialLatents: { data: f32(g, 'initial_latents'), shape: [1, 4, 32, 32] },
        method: new AttendAndExcite({
          ...ATTEND_EXCITE_DEFAULTS,
          tokenIndices: p.token_indices,
          maxIterToAlter: p.max_iter_to_alter,
          thresholds: new Map(Object.entries(p.thresholds).map(([k, v]) => [Number(k), v])),
          scaleFactor: p.scale_factor,
          attnRes: [p.attn_res[0]!, p.attn_res[1]!],
        }),
      });
      expectGolden(
        'single file: g A&E final latents (max abs)',
        maxAbsDiff(r.finalLatents.data, f32(g, 'final_latents')),
        (gCase.tolerance['final_latents'] as { atol: number }).atol,
      );
    });
  });
});

/** The oracle's weights with the text encoder in OpenCLIP's layout (SD 2.x), an extra last block and the projection. */
function openClipFile(dtype: 'F32' | 'F16' | 'BF16'): string {
  const text = openModelFolder(tinySdDir).component('text_encoder').weights();
  const out: RawTensor[] = [];
  const enc = (a: Float32Array): Uint8Array =>
    new Uint8Array(bytesOf(dtype === 'F16' ? toHalf(a) : dtype === 'BF16' ? toBfloat16(a) : a));
  for (const t of oracleTensors()) {
    if (t.name.startsWith('cond_stage_model.')) continue;
    if (t.dtype === 'F32' && dtype !== 'F32')
      out.push({
        ...t,
        dtype,
        bytes: enc(new Float32Array(t.bytes!.buffer, t.bytes!.byteOffset, t.bytes!.length / 4)),
      });
    else out.push(t);
  }
  for (const k of text.keys()) {
    if (k === 'text_model.embeddings.position_ids') continue;
    const name = clipToOpenClip(k);
    if (name) out.push({ name, dtype, shape: text.shapeOf(k), bytes: enc(text.readFloat32(k)) });
  }
  for (let i = 0; i < 4; i++) {
    const layer = `text_model.encoder.layers.${Math.min(i, 2)}.self_attn`;
    for (const kind of ['weight', 'bias']) {
      const parts = ['q', 'k', 'v'].map((p) => text.readFloat32(`${layer}.${p}_proj.${kind}`));
      const stacked = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) (stacked.set(p, at), (at += p.length));
      // Block 3 is OpenCLIP's last: SD 2.x stops at the penultimate one, so its values must not matter.
      if (i === 3) stacked.fill(7);
      out.push({
        name: `cond_stage_model.model.transformer.resblocks.${i}.attn.in_proj_${kind}`,
        dtype,
        shape: kind === 'weight' ? [96, 32] : [96],
        bytes: enc(stacked),
      });
    }
  }
  // the last block's other parameters (garbage on purpose), the projection and logit scale CLIPTextModel has not
  for (const t of [...out]) {
    const m = /^cond_stage_model\.model\.transformer\.resblocks\.2\.(?!attn\.in_proj)(.+)$/.exec(t.name);
    if (m)
      out.push({
        ...t,
        name: `cond_stage_model.model.transformer.resblocks.3.${m[1]}`,
        bytes: enc(new Float32Array(t.shape.reduce((a, b) => a * b, 1)).fill(7)),
      });
  }
  out.push({
    name: 'cond_stage_model.model.text_projection',
    dtype,
    shape: [32, 32],
    bytes: enc(new Float32Array(1024).fill(3)),
  });
  out.push({ name: 'cond_stage_model.model.logit_scale', dtype, shape: [], bytes: enc(Float32Array.of(4.6)) });
  text.close();
  const path = join(tmp, `openclip-${dtype}.safetensors`);
  writeRawSafetensors(path, out);
  return path;
}

describe('SD 2.x single files: the OpenCLIP text encoder', () => {
  it('splits in_proj into q/k/v, renames, drops the last block: the same text embeddings as the folder', async () => {
    const path = openClipFile('F32');
    const single = await StableDiffusion.load(path, { config: CONFIG });
    const folder = await StableDiffusion.load(tinySdDir);
    try {
      expect(single.singleFile).toMatchObject({ textEncoderLayout: 'open-clip', family: 'stable-diffusion-v2' });
      // 6 tensors of OpenCLIP's block 3 (in_proj x2, ln_1 x2, ... ) plus text_projection and logit_scale are unused
      expect(single.singleFile!.skippedKeys).toEqual(
        expect.arrayContaining(['cond_stage_model.model.transformer.resblocks.3.attn.in_proj_weight']),
      );
      for (const p of PROMPTS) {
        const a = await single.encodePrompt(p);
        const b = await folder.encodePrompt(p);
        expect(bytesOf(a.data).equals(bytesOf(b.data)), p).toBe(true);
      }
    } finally {
      await single.release();
      await folder.release();
    }
  });

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`reads ${dtype} weights, kept half (Cast in the graph) or converted first: the same embeddings`, async () => {
      const path = openClipFile(dtype);
      const kept = await StableDiffusion.load(path, { config: CONFIG, halfWeights: 'keep' });
      const converted = await StableDiffusion.load(path, { config: CONFIG, halfWeights: 'float32' });
      const folder = await StableDiffusion.load(tinySdDir);
      try {
        for (const p of PROMPTS) {
          const a = await kept.encodePrompt(p);
          const b = await converted.encodePrompt(p);
          expect(bytesOf(a.data).equals(bytesOf(b.data)), p).toBe(true);
          // and they are the rounded weights' embeddings: close to float32's, not equal
          const d = maxAbsDiff(a.data, (await folder.encodePrompt(p)).data);
          expect(d).toBeGreaterThan(0);
          expect(d).toBeLessThan(dtype === 'F16' ? 5e-2 : 2e-1);
        }
      } finally {
        await kept.release();
        await converted.release();
        await folder.release();
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// standard architectures, inferred from full-size headers (sparse files of zeros: no disk, no data read)

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

function standardFile(family: 'v1' | 'v2', dtype: 'F32' | 'F16'): string {
  const cfgDir = join('configs', `stable-diffusion-${family}`);
  const json = (c: string) => JSON.parse(readFileSync(join(cfgDir, c, 'config.json'), 'utf8'));
  const unetCfg = parseUNetConfig(json('unet'), 'unet');
  const vaeCfg: VaeConfig = parseVaeConfig(json('vae'), 'vae');
  const textCfg: ClipTextConfig = parseClipTextConfig(json('text_encoder'), 'text');
  const out: RawTensor[] = [];
  const unet = shapesOf((p, g) =>
    unet2dCondition(unetCfg, p, {
      sample: g.input('x', [1, 4, 8, 8]),
      timestep: g.input('t', [1]),
      encoderHiddenStates: g.input('c', [1, 1, unetCfg.crossAttentionDim[0]!]),
    }),
  );
  const attentionUp = unetCfg.upBlockTypes.map((t) => t === 'CrossAttnUpBlock2D');
  for (const [k, s] of unet) out.push({ name: unetToLdm(k, 2, attentionUp), dtype, shape: s });
  const vae = shapesOf((p, g) => {
    vaeDecode(vaeCfg, p, g.input('z', [1, 4, 1, 1]));
    vaeEncode(vaeCfg, p, g.input('x', [1, 3, 8, 8]));
  });
  for (const [k, s] of vae) {
    // LDM stores the VAE's attention projections as 1x1 convolutions
    const conv = /attentions\.0\.to_(q|k|v|out\.0)\.weight$/.test(k);
    out.push({ name: vaeToLdm(k, 4), dtype, shape: conv ? [...s, 1, 1] : s });
  }
  const layers = family === 'v2' ? textCfg.numHiddenLayers + 1 : textCfg.numHiddenLayers;
  const text = shapesOf((p, g) =>
    clipTextModel({ ...textCfg, numHiddenLayers: layers }, p, g.input('ids', [1, 1], 'int64')),
  );
  for (const [k, s] of text) {
    if (family === 'v1') {
      out.push({ name: `cond_stage_model.transformer.${k}`, dtype, shape: s });
      continue;
    }
    const name = clipToOpenClip(k);
    if (name) out.push({ name, dtype, shape: s });
    const m = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/.exec(k);
    if (m)
      out.push({
        name: `cond_stage_model.model.transformer.resblocks.${m[1]}.attn.in_proj_${m[2]}`,
        dtype,
        shape: [3 * s[0]!, ...s.slice(1)],
      });
  }
  if (family === 'v1')
    out.push({ name: 'cond_stage_model.transformer.text_model.embeddings.position_ids', dtype: 'I64', shape: [1, 77] });
  else
    out.push(
      { name: 'cond_stage_model.model.text_projection', dtype, shape: [1024, 1024] },
      { name: 'cond_stage_model.model.logit_scale', dtype, shape: [] },
    );
  out.push(
    { name: 'alphas_cumprod', dtype: 'F32', shape: [1000] },
    { name: 'model_ema.decay', dtype: 'F32', shape: [] },
  );
  const path = join(tmp, `sd-${family}-${dtype}.safetensors`);
  writeRawSafetensors(path, out);
  return path;
}

describe('standard architectures, inferred from the weights (full-size headers, no data)', () => {
  it('SD 1.x: the SD-1.5 configs, CLIP text encoder, shipped tokenizer and scheduler', async () => {
    const path = standardFile('v1', 'F16');
    const model = await StableDiffusion.load(path);
    try {
      expect(model.singleFile).toMatchObject({
        family: 'stable-diffusion-v1',
        inferred: true,
        textEncoderLayout: 'clip',
      });
      expect(model.singleFile!.skippedKeys.sort()).toEqual(['alphas_cumprod', 'model_ema.decay']);
      expect(model.unetConfig).toMatchObject({
        blockOutChannels: [320, 640, 1280, 1280],
        layersPerBlock: [2, 2, 2, 2],
        numAttentionHeads: [8, 8, 8, 8],
        crossAttentionDim: [768, 768, 768, 768],
        useLinearProjection: false,
        sampleSize: 64,
      });
      expect(model.textConfig).toMatchObject({
        hiddenSize: 768,
        numHiddenLayers: 12,
        numAttentionHeads: 12,
        hiddenAct: 'quick_gelu',
      });
      expect(model.vaeConfig).toMatchObject({
        blockOutChannels: [128, 256, 512, 512],
        latentChannels: 4,
        scalingFactor: 0.18215,
      });
      expect(model.defaultImageSize).toBe(512);
      expect(model.schedulerConfig['prediction_type']).toBe('epsilon');
      expect(model.tokenizer.padId).toBe(49407);
    } finally {
      await model.release();
    }
  });

  it('SD 2.x: OpenCLIP-H penultimate layer, 64-wide heads, v-prediction at 768 px unless told epsilon', async () => {
    const path = standardFile('v2', 'F32');
    const model = await StableDiffusion.load(path);
    try {
      expect(model.singleFile).toMatchObject({ family: 'stable-diffusion-v2', textEncoderLayout: 'open-clip' });
      expect(model.unetConfig).toMatchObject({
        numAttentionHeads: [5, 10, 20, 20],
        crossAttentionDim: [1024, 1024, 1024, 1024],
        useLinearProjection: true,
      });
      expect(model.textConfig).toMatchObject({
        hiddenSize: 1024,
        numHiddenLayers: 23,
        numAttentionHeads: 16,
        hiddenAct: 'gelu',
      });
      expect(model.defaultImageSize).toBe(768);
      expect(model.schedulerConfig['prediction_type']).toBe('v_prediction');
      expect(model.tokenizer.padId).toBe(0); // SD 2.x pads with "!"
    } finally {
      await model.release();
    }
    const base = await StableDiffusion.load(path, { predictionType: 'epsilon' });
    expect(base.defaultImageSize).toBe(512);
    expect(base.schedulerConfig['prediction_type']).toBe('epsilon');
    await base.release();
  });

  it('s2i info describes a single file: layout, family, components, dtypes', () => {
    ensureBuilt();
    const path = standardFile('v1', 'F16');
    const r = s2i(['info', '--model', path, '--json']);
    expect(r.stderr).toBe('');
    const info = JSON.parse(r.stdout);
    expect(info.single_file).toMatchObject({
      layout: 'ldm',
      family: 'SD 1.x',
      text_encoder: 'clip',
      configs: 'inferred',
      skipped_keys: 2,
    });
    expect(info.components.unet.parameters).toBe(859_520_964);
    expect(info.components.unet.dtypes).toEqual({ F16: 859_520_964 });
    expect(info.components.unet.config).toMatchObject({
      block_out_channels: [320, 640, 1280, 1280],
      cross_attention_dim: 768,
    });
    expect(info.components.text_encoder.parameters).toBe(123_060_480);
    const table = s2i(['info', '--model', path]);
    expect(table.stdout).toMatch(/format\s+single-file checkpoint, LDM layout: SD 1\.x \(OpenAI CLIP text encoder\)/);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('bad single files give one line', () => {
  beforeAll(ensureBuilt);

  it('a truncated file', () => {
    const p = join(tmp, 'truncated.safetensors');
    copyFileSync(FILE, p);
    truncateSync(p, 17_000_000);
    expectOneLineError(s2i(['info', '--model', p]), p, 'truncated');
    expectOneLineError(s2i(['generate', 'a cat', '--model', p, '--config', CONFIG, '--steps', '1']), p, 'truncated');
  });

  it('a missing UNet key names the key', () => {
    const p = join(tmp, 'missing-key.safetensors');
    writeRawSafetensors(
      p,
      oracleTensors().filter((t) => t.name !== 'model.diffusion_model.input_blocks.1.0.in_layers.2.weight'),
    );
    const r = s2i(['generate', 'a cat', '--model', p, '--config', CONFIG, '--steps', '1', '--out', join(tmp, 'x.png')]);
    expectOneLineError(r, "missing weight 'down_blocks.0.resnets.0.conv1.weight'", p);
  });

  it('an unknown key, an SDXL file without its second text encoder, a diffusers component file', () => {
    const extra = join(tmp, 'extra.safetensors');
    writeRawSafetensors(extra, [
      ...oracleTensors(),
      { name: 'model.diffusion_model.foo.weight', dtype: 'F32', shape: [1], bytes: new Uint8Array(4) },
    ]);
    expectOneLineError(
      s2i(['info', '--model', extra]),
      "'model.diffusion_model.foo.weight'",
      'no SD 1.x/2.x/XL conversion rule',
    );
    const xl = join(tmp, 'xl.safetensors');
    writeRawSafetensors(xl, [
      { name: 'conditioner.embedders.0.transformer.x', dtype: 'F32', shape: [1] },
      { name: 'model.diffusion_model.x', dtype: 'F32', shape: [1] },
    ]);
    expectOneLineError(s2i(['info', '--model', xl]), "not SDXL base's two text encoders");
    const component = join(tmp, 'diffusion_pytorch_model.safetensors');
    copyFileSync(join(tinySdDir, 'unet', 'diffusion_pytorch_model.safetensors'), component);
    expectOneLineError(s2i(['info', '--model', component]), "one diffusers component's weights");
  });

  it('a pickle .ckpt is refused without being opened', () => {
    const p = join(tmp, 'model.ckpt');
    writeFileSync(p, 'not even a pickle');
    expectOneLineError(s2i(['info', '--model', p]), 'pickle', 'never opened');
    expectOneLineError(s2i(['generate', 'a cat', '--model', p]), 'pickle');
  });

  it('a non-standard architecture without --config asks for it', () => {
    expectOneLineError(s2i(['info', '--model', FILE]), 'not a standard SD 1.x architecture', '--config DIR');
    expectOneLineError(s2i(['generate', 'a', '--model', tinySdDir, '--config', CONFIG]), 'single-file');
    expectOneLineError(
      s2i(['generate', 'a', '--model', FILE, '--config', CONFIG, '--prediction-type', 'x0']),
      '--prediction-type',
    );
  });

  it('library errors are UserErrors', async () => {
    await expect(StableDiffusion.load(FILE)).rejects.toBeInstanceOf(UserError);
  });
});

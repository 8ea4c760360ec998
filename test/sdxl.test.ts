/**
 * SDXL against its golden oracle (test/fixtures/sdxl-oracle, made by diffusers v0.24.0 / transformers 4.30.0 on
 * diffusers' own tiny SDXL test model; see its PROVENANCE.md): both tokenizers, the prompt and pooled embeddings
 * (with a negative prompt and with force_zeros_for_empty_prompt), the time ids, the UNet at two timesteps and with
 * other time ids, and 10-step EulerDiscrete text-to-image — from the diffusers folder and from the original-layout
 * single files (F32, and F16 against the goldens of the float16-rounded weights).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseAttentionResolution, crossAttentionResolutions } from '../src/attention/resolution.js';
import { Graph } from '../src/graph/graph.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { clipTextModel } from '../src/models/clip.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig } from '../src/models/config.js';
import type { ParamFn } from '../src/models/params.js';
import { unet2dCondition } from '../src/models/unet.js';
import { vaeDecode, vaeEncode } from '../src/models/vae.js';
import type { WeightStore } from '../src/io/weight-store.js';
import { generate } from '../src/pipeline/generate.js';
import { runRequest } from '../src/pipeline/run.js';
import { defaultTimeIds } from '../src/pipeline/sdxl.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { maxAbsDiff, type Int64Tensor, type Tensor } from '../src/tensor.js';
import { resetMemoryBudget, setMemoryBudget } from '../src/util/memory.js';
import { ensureBuilt, expectOneLineError, s2i } from './support/cli.js';
import { expectGolden } from './support/golden.js';
import { clipToOpenClip, unetToLdm, vaeToLdm, writeRawSafetensors, type RawTensor } from './support/ldm.js';
import { repoRoot } from './support/oracle.js';

const dir = join(repoRoot, 'test', 'fixtures', 'sdxl-oracle');
const folderDir = join(dir, 'tiny-sdxl');
const fileF32 = join(dir, 'single-file', 'tiny-sdxl.safetensors');
const fileF16 = join(dir, 'single-file', 'tiny-sdxl-f16.safetensors');
type Golden = Record<string, Tensor | Int64Tensor>;
const golden = (name: string): Golden => readSafetensors(join(dir, 'goldens', `${name}.safetensors`));
const manifest = JSON.parse(readFileSync(join(dir, 'goldens', 'manifest.json'), 'utf8')) as Record<
  string,
  { tolerance: Record<string, { atol: number }>; prompts?: string[] }
>;
const atol = (c: string, name: string) => manifest[c]!.tolerance[name]!.atol;
const f32 = (g: Golden, k: string): Float32Array => {
  const t = g[k];
  if (!t) throw new Error(`golden tensor ${k} missing`);
  return t.data as Float32Array;
};
const rows = (g: Golden, k: string): number[][] => {
  const t = g[k]! as Int64Tensor;
  const n = t.shape[1]!;
  const all = Array.from(t.data, Number);
  return Array.from({ length: t.shape[0]! }, (_, i) => all.slice(i * n, (i + 1) * n));
};
const PROMPT = 'a cat and a frog';
const NEGATIVE = 'blurry, low quality';
const LATENT = [1, 4, 32, 32];

/** A golden tensor and its tolerance, by case and name (the F16 file's are in h_f16_weights as `case.name`). */
type Ref = (c: 'b_text' | 'd_unet' | 'e_txt2img', name: string) => { data: Float32Array; atol: number };
const f32Goldens: Ref = (c, name) => ({ data: f32(golden(c), name), atol: atol(c, name) });
const f16Goldens: Ref = (c, name) => ({
  data: f32(golden('h_f16_weights'), `${c}.${name}`),
  atol: atol('h_f16_weights', `${c}.${name}`),
});

/** The goldens every form of the model must meet: b (text), d (UNet), e (txt2img). */
function goldenSuite(label: string, load: () => Promise<StableDiffusion>, ref: Ref) {
  describe(label, () => {
    let model: StableDiffusion;
    beforeAll(async () => {
      model = await load();
    });
    afterAll(async () => {
      await model?.release();
    });
    const check = (c: Parameters<Ref>[0], name: string, got: ArrayLike<number>) => {
      const r = ref(c, name);
      expectGolden(`${label}: ${c} ${name}`, maxAbsDiff(got, r.data), r.atol);
    };

    it('prompt_embeds and pooled_prompt_embeds, with a negative prompt and with zeros for none', async () => {
      const [cond, uncond] = await model.encodePrompts([PROMPT, NEGATIVE]);
      expect(cond!.shape).toEqual([1, 77, 64]);
      check('b_text', 'neg.prompt_embeds', cond!.data);
      check('b_text', 'neg.negative_prompt_embeds', uncond!.data);
      check('b_text', 'neg.pooled_prompt_embeds', model.pooledEmbedding(cond!).data);
      check('b_text', 'neg.negative_pooled_prompt_embeds', model.pooledEmbedding(uncond!).data);
      const zero = model.zeroNegativeEmbedding()!;
      expect(zero.data.every((v) => v === 0)).toBe(true);
      expect(model.pooledEmbedding(zero).data.every((v) => v === 0)).toBe(true);
    });

    it('UNet noise_pred at t=999 and t=500, and with other time ids', async () => {
      const inputs = golden('d_unet');
      const ctx = await model.encodePrompts([NEGATIVE, PROMPT]);
      const context = new Float32Array(2 * 77 * 64);
      context.set(ctx[0]!.data, 0);
      context.set(ctx[1]!.data, 77 * 64);
      const textEmbeds = new Float32Array(64);
      textEmbeds.set(model.pooledEmbedding(ctx[0]!).data, 0);
      textEmbeds.set(model.pooledEmbedding(ctx[1]!).data, 32);
      const session = await model.unetAccess(32, 32, 77).compile('test:explicit-time-ids', (g, build) => {
        const { noisePred } = build({
          sample: g.input('sample', [2, 4, 32, 32]),
          timestep: g.input('timestep', [2]),
          encoderHiddenStates: g.input('context', [2, 77, 64]),
          textEmbeds: g.input('text_embeds', [2, 32]),
          timeIds: g.input('time_ids', [2, 6]),
        });
        g.output('noise_pred', noisePred);
      });
      for (const [name, t] of [
        ['t999', 999],
        ['t500', 500],
        ['t500_custom_ids', 500],
      ] as const) {
        const out = await session.run({
          sample: { data: f32(inputs, 'sample'), shape: [2, 4, 32, 32] },
          timestep: { data: new Float32Array([t, t]), shape: [2] },
          context: { data: context, shape: [2, 77, 64] },
          text_embeds: { data: textEmbeds, shape: [2, 32] },
          time_ids: { data: f32(inputs, `${name}.time_ids`), shape: [2, 6] },
        });
        check('d_unet', `${name}.noise_pred`, out['noise_pred']!.data);
      }
    });

    it('10-step EulerDiscrete txt2img (default sampler, leading spacing): every step, final latents, image', async () => {
      const e = golden('e_txt2img');
      const r = await generate(model, {
        prompt: PROMPT,
        negativePrompt: NEGATIVE,
        steps: 10,
        initialLatents: { data: f32(e, 'initial_latents'), shape: LATENT },
      });
      expect(r.sampler).toBe('euler');
      expect([...r.timesteps]).toEqual([...f32(e, 'timesteps')]);
      const per = ref('e_txt2img', 'latents_per_step');
      const n = 4 * 32 * 32;
      expect(r.latentsPerStep.length).toBe(10);
      let worst = 0;
      r.latentsPerStep.forEach((l, i) => {
        worst = Math.max(worst, maxAbsDiff(l.data, per.data.subarray(i * n, (i + 1) * n)));
      });
      expectGolden(`${label}: e_txt2img latents_per_step (worst step)`, worst, per.atol);
      check('e_txt2img', 'final_latents', r.finalLatents.data);
      check('e_txt2img', 'decoded_raw', r.image.data);
    });
  });
}

describe('SDXL tokenizers and time ids', () => {
  let model: StableDiffusion;
  beforeAll(async () => {
    model = await StableDiffusion.load(folderDir);
  });
  afterAll(async () => {
    await model?.release();
  });

  it('both tokenizers: ids exactly (tokenizer_2 pads with "!")', () => {
    const a = golden('a_tokens');
    const prompts = manifest['a_tokens']!.prompts!;
    expect(prompts.map((p) => model.tokenize(p))).toEqual(rows(a, 'ids'));
    expect(prompts.map((p) => model.xl!.tokenizer2.tokenize(p, { maxLength: 77 }).ids)).toEqual(rows(a, 'ids_2'));
  });

  it('add_time_ids: original size, crop top-left, target size', () => {
    const c = golden('c_time_ids');
    expect([...defaultTimeIds(64, 64)]).toEqual([...f32(c, 'default')]);
    expect([...defaultTimeIds(1024, 1024)]).toEqual([...f32(c, 'sdxl_1024')]);
  });

  it('the model: defaults from its configs', () => {
    expect(model.defaultImageSize).toBe(64);
    expect(model.defaultGuidance).toBe(5);
    expect(model.xl!.forceZerosForEmptyPrompt).toBe(true);
    expect(model.contextWidth).toBe(64);
  });

  it('10-step txt2img without a negative prompt: zero negative embeddings (force_zeros_for_empty_prompt)', async () => {
    const f = golden('f_txt2img_zero_neg');
    const r = await generate(model, {
      prompt: PROMPT,
      steps: 10,
      initialLatents: { data: f32(f, 'initial_latents'), shape: LATENT },
    });
    const c = 'f_txt2img_zero_neg';
    expectGolden(
      'folder: zero-negative final_latents',
      maxAbsDiff(r.finalLatents.data, f32(f, 'final_latents')),
      atol(c, 'final_latents'),
    );
    expectGolden(
      'folder: zero-negative decoded_raw',
      maxAbsDiff(r.image.data, f32(f, 'decoded_raw')),
      atol(c, 'decoded_raw'),
    );
  });
});

goldenSuite('folder', () => StableDiffusion.load(folderDir), f32Goldens);
goldenSuite('single file F32', () => StableDiffusion.load(fileF32, { config: folderDir }), f32Goldens);
goldenSuite('single file F16', () => StableDiffusion.load(fileF16, { config: folderDir }), f16Goldens);

describe('SDXL single files', () => {
  it('every converted key is the folder weight, bit for bit (text_projection read transposed)', async () => {
    const file = await StableDiffusion.load(fileF32, { config: folderDir });
    const folder = await StableDiffusion.load(folderDir);
    try {
      const stores = (m: StableDiffusion) => (m as unknown as { weights: Record<string, WeightStore | null> }).weights;
      for (const c of ['text', 'text2', 'unet', 'vae']) {
        const a = stores(file)[c]!;
        const b = stores(folder)[c]!;
        const keys = b.keys().filter((k) => !k.endsWith('position_ids'));
        expect(
          a
            .keys()
            .filter((k) => !k.endsWith('position_ids'))
            .sort(),
        ).toEqual([...keys].sort());
        for (const k of keys) expect(maxAbsDiff(a.readFloat32(k), b.readFloat32(k)), `${c} ${k}`).toBe(0);
      }
      expect(file.singleFile!.familyName).toBe('SDXL');
      expect(file.singleFile!.skippedKeys).toEqual(['conditioner.embedders.1.model.logit_scale']);
    } finally {
      await file.release();
      await folder.release();
    }
  });

  it('without --config: a non-standard SDXL is refused in one line naming the option', async () => {
    await expect(StableDiffusion.load(fileF32)).rejects.toThrow(/not a standard SDXL architecture.*config/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// SDXL base at full size, inferred from a header (a sparse file of zeros: no disk, no data read)

const tmp = mkdtempSync(join(tmpdir(), 's2i-sdxl-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

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

/** sd_xl_base_1.0.safetensors' header (its key layout and shapes), from the shipped configs. */
function sdxlBaseFile(dtype: 'F16' | 'F32'): string {
  const cfgDir = join(repoRoot, 'configs', 'stable-diffusion-xl');
  const json = (c: string) => JSON.parse(readFileSync(join(cfgDir, c, 'config.json'), 'utf8'));
  const unetCfg = parseUNetConfig(json('unet'), 'unet');
  const vaeCfg = parseVaeConfig(json('vae'), 'vae');
  const out: RawTensor[] = [];
  const unet = shapesOf((p, g) =>
    unet2dCondition(unetCfg, p, {
      sample: g.input('x', [1, 4, 8, 8]),
      timestep: g.input('t', [1]),
      encoderHiddenStates: g.input('c', [1, 1, 2048]),
      textEmbeds: g.input('e', [1, 1280]),
      timeIds: g.input('i', [1, 6]),
    }),
  );
  const attentionUp = unetCfg.upBlockTypes.map((t) => t === 'CrossAttnUpBlock2D');
  for (const [k, s] of unet) out.push({ name: unetToLdm(k, 2, attentionUp), dtype, shape: s });
  const vae = shapesOf((p, g) => {
    vaeDecode(vaeCfg, p, g.input('z', [1, 4, 1, 1]));
    vaeEncode(vaeCfg, p, g.input('x', [1, 3, 8, 8]));
  });
  for (const [k, s] of vae) {
    const conv = /attentions\.0\.to_(q|k|v|out\.0)\.weight$/.test(k);
    out.push({ name: vaeToLdm(k, 4), dtype, shape: conv ? [...s, 1, 1] : s });
  }
  const text1 = parseClipTextConfig(json('text_encoder'), 'text_encoder');
  for (const [k, s] of shapesOf((p, g) => clipTextModel(text1, p, g.input('ids', [1, 1], 'int64'))))
    out.push({ name: `conditioner.embedders.0.transformer.${k}`, dtype, shape: s });
  out.push({
    name: 'conditioner.embedders.0.transformer.text_model.embeddings.position_ids',
    dtype: 'I64',
    shape: [1, 77],
  });
  const text2 = parseClipTextConfig(json('text_encoder_2'), 'text_encoder_2');
  for (const [k, s] of shapesOf((p, g) => clipTextModel(text2, p, g.input('ids', [1, 1], 'int64')))) {
    const name = clipToOpenClip(k);
    if (name)
      out.push({ name: name.replace('cond_stage_model.model.', 'conditioner.embedders.1.model.'), dtype, shape: s });
    const m = /^text_model\.encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/.exec(k);
    if (m)
      out.push({
        name: `conditioner.embedders.1.model.transformer.resblocks.${m[1]}.attn.in_proj_${m[2]}`,
        dtype,
        shape: [3 * s[0]!, ...s.slice(1)],
      });
  }
  out.push(
    { name: 'conditioner.embedders.1.model.text_projection', dtype, shape: [1280, 1280] },
    { name: 'conditioner.embedders.1.model.logit_scale', dtype, shape: [] },
  );
  const path = join(tmp, `sdxl-base-${dtype}.safetensors`);
  writeRawSafetensors(path, out);
  return path;
}

describe('SDXL base, inferred from a full-size header (no data)', () => {
  it('configs, parameter counts, 1024 px, Euler with leading spacing, both tokenizers', async () => {
    const model = await StableDiffusion.load(sdxlBaseFile('F16'));
    try {
      expect(model.singleFile).toMatchObject({
        family: 'stable-diffusion-xl',
        textEncoderLayout: 'sdxl',
        inferred: true,
      });
      expect(model.unetConfig).toMatchObject({
        blockOutChannels: [320, 640, 1280],
        downBlockTypes: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
        numAttentionHeads: [5, 10, 20],
        transformerLayersPerBlock: [1, 2, 10],
        crossAttentionDim: [2048, 2048, 2048],
        addition: { timeEmbedDim: 256, inputDim: 2816 },
        useLinearProjection: true,
        sampleSize: 128,
      });
      expect(model.textConfig).toMatchObject({ hiddenSize: 768, numHiddenLayers: 12, hiddenAct: 'quick_gelu' });
      expect(model.xl!.text2Config).toMatchObject({
        hiddenSize: 1280,
        numHiddenLayers: 32,
        numAttentionHeads: 20,
        hiddenAct: 'gelu',
        projectionDim: 1280,
      });
      expect(model.vaeConfig).toMatchObject({ blockOutChannels: [128, 256, 512, 512], scalingFactor: 0.13025 });
      const stores = (model as unknown as { weights: Record<string, WeightStore> }).weights;
      // SDXL base 1.0's published sizes
      expect(stores['unet']!.paramCount()).toBe(2_567_463_684);
      expect(stores['text']!.paramCount()).toBe(123_060_480);
      expect(stores['text2']!.paramCount()).toBe(694_659_840);
      expect(stores['vae']!.paramCount()).toBe(83_653_863);
      expect(model.defaultImageSize).toBe(1024);
      expect(model.defaultGuidance).toBe(5);
      expect(model.schedulerConfig['_class_name']).toBe('EulerDiscreteScheduler');
      expect(model.schedulerConfig['timestep_spacing']).toBe('leading');
      expect(model.tokenizer.padId).toBe(49407);
      expect(model.xl!.tokenizer2.padId).toBe(0); // "!"
      expect(model.singleFile!.skippedKeys).toEqual(['conditioner.embedders.1.model.logit_scale']);
      // The attention rule: at 1024 px SDXL has cross-attention at 64x64 and 32x32 (none at 16x16); latent/4,
      // SD's ratio, is 32x32: 60 of its 70 cross-attention layers.
      const available = crossAttentionResolutions(model.unetConfig, 128, 128);
      expect(available).toEqual([
        [64, 64],
        [32, 32],
      ]);
      expect(chooseAttentionResolution(available, 128, 128)).toEqual([32, 32]);
      expect(chooseAttentionResolution(crossAttentionResolutions(model.unetConfig, 96, 96), 96, 96)).toEqual([24, 24]);
    } finally {
      await model.release();
    }
  });

  it('the memory budget refuses a 1024 px image that cannot fit before anything is compiled', async () => {
    const model = await StableDiffusion.load(sdxlBaseFile('F16'));
    const estimate = (e: unknown) => /needs an estimated (\d+) GB/.exec((e as Error).message)?.[1];
    try {
      // 3.47 B float32 parameters (12.9 GB) and the 1024 px decode: plain sampling and S2I (edit mode: the
      // self-attention keeps its fused kernel) need the same; A&E's backward pass keeps every head's 4096x4096
      // self-attention probabilities.
      setMemoryBudget('15G');
      const plain = await generate(model, { prompt: 'a cat and a frog', steps: 1, seed: 0 }).catch((e: unknown) => e);
      expect((plain as Error).message).toMatch(
        /^a 1024x1024 image \(VAE decoder activations at 1024x1024\) needs an estimated 15 GB, more than the memory budget of 15 GB \(--max-memory 15G\); raise it/,
      );
      const s2iRun = await runRequest(model, { prompt: 'a cat and a frog', steps: 1, seed: 0 }).catch(
        (e: unknown) => e,
      );
      expect(estimate(s2iRun)).toBe('15');
      setMemoryBudget('16G');
      const ae = await runRequest(model, {
        prompt: 'a cat and a frog',
        steps: 1,
        seed: 0,
        method: 'attend-and-excite',
        subjects: 'cat,frog',
      }).catch((e: unknown) => e);
      expect((ae as Error).message).toMatch(
        /^a 1024x1024 image \(UNet self-attention at 64x64\) needs an estimated 17 GB, more than the memory budget of 16 GB/,
      );
      expect(model.graphTimings).toEqual([]); // refused before any graph was built or any weight read
    } finally {
      resetMemoryBudget();
      await model.release();
    }
  });

  it('s2i info on a full-size SDXL file; s2i generate refuses what the budget cannot hold, in one line', () => {
    ensureBuilt();
    const file = sdxlBaseFile('F16');
    const info = s2i(['info', '--model', file, '--json']);
    expect(info.stderr).toBe('');
    const json = JSON.parse(info.stdout);
    expect(json.single_file).toMatchObject({ family: 'SDXL', text_encoder: 'sdxl' });
    expect(json.components.text_encoder_2.parameters).toBe(694_659_840);
    expect(json.components.unet.parameters).toBe(2_567_463_684);
    const out = join(tmp, 'refused.png');
    const r = s2i([
      'generate',
      'a cat and a frog',
      '--model',
      file,
      '--seed',
      '0',
      '--out',
      out,
      '--max-memory',
      '12G',
    ]);
    expectOneLineError(r, 'a 1024x1024 image', 'more than the memory budget of 12 GB (--max-memory 12G)');
    expect(existsSync(out)).toBe(false);
  });

  it('a refiner checkpoint (OpenCLIP alone as embedder 0) is refused in one line', async () => {
    const path = join(tmp, 'refiner.safetensors');
    writeRawSafetensors(path, [
      { name: 'conditioner.embedders.0.model.token_embedding.weight', dtype: 'F16', shape: [49408, 1280] },
      { name: 'model.diffusion_model.input_blocks.0.0.weight', dtype: 'F16', shape: [384, 4, 3, 3] },
    ]);
    await expect(StableDiffusion.load(path)).rejects.toThrow(/is an SDXL refiner .*s2i runs text-to-image models/);
    const folder = join(tmp, 'refiner-folder');
    mkdirSync(folder);
    writeFileSync(
      join(folder, 'model_index.json'),
      JSON.stringify({ _class_name: 'StableDiffusionXLImg2ImgPipeline', requires_aesthetics_score: true }),
    );
    await expect(StableDiffusion.load(folder)).rejects.toThrow(/is an SDXL refiner/);
  });
});

describe('methods on SDXL (the tiny model: cross-attention only at 16x16 for 64 px)', () => {
  let model: StableDiffusion;
  beforeAll(async () => {
    model = await StableDiffusion.load(folderDir);
  });
  afterAll(async () => {
    await model?.release();
  });

  it('Attend-and-Excite and Suppress-to-Impress run, read 16x16 maps, and repeat exactly', async () => {
    for (const method of ['attend-and-excite', 'suppress']) {
      const request = {
        prompt: 'a red cat and a blue frog',
        steps: 4,
        seed: 3,
        method,
        subjects: 'cat,frog',
        attentionPicture: { steps: 'mean' as const },
      };
      const a = await runRequest(model, request);
      expect(a.attnRes).toEqual([16, 16]);
      expect(a.guidance).toBe(5);
      expect(a.sampler).toBe('euler');
      expect(a.result.attentionMaps.size).toBeGreaterThan(0);
      expect(a.result.image.data.every(Number.isFinite)).toBe(true);
      const b = await runRequest(model, request);
      expect(maxAbsDiff(a.result.image.data, b.result.image.data), method).toBe(0);
    }
  });

  it('S2I compiles one guided UNet graph, editing or not (each session holds its own copy of the weights)', async () => {
    const fresh = await StableDiffusion.load(folderDir);
    try {
      const r = await runRequest(fresh, {
        prompt: 'a red cat and a blue frog',
        steps: 10,
        seed: 5,
        subjects: 'cat,frog',
      });
      expect(r.result.steps.some((s) => s.method?.edited)).toBe(true);
      expect(r.result.steps.some((s) => !s.method?.edited)).toBe(true);
      const guided = fresh.graphTimings.filter((t) => /^unet:.*:guided:/.test(t.key)).map((t) => t.key);
      expect(guided).toEqual(['unet:32x32:77:guided:b1:rec=16x16:edit=1']);
    } finally {
      await fresh.release();
    }
  });

  it('a context row no prompt of this model produced has no pooled embedding: an error, not a guess', async () => {
    const session = await model.unetAccess(32, 32, 77).compile('test:unknown-row', (g, build) => {
      const { noisePred } = build({
        sample: g.input('sample', [1, 4, 32, 32]),
        timestep: g.input('timestep', [1]),
        encoderHiddenStates: g.input('context', [1, 77, 64]),
      });
      g.output('noise_pred', noisePred);
    });
    const feeds = {
      sample: { data: new Float32Array(4 * 32 * 32), shape: [1, 4, 32, 32] },
      timestep: { data: new Float32Array([500]), shape: [1] },
      context: { data: new Float32Array(77 * 64).fill(0.5), shape: [1, 77, 64] },
    };
    await expect(session.run(feeds)).rejects.toThrow(/not a prompt embedding this model produced/);
  });
});

describe('the CLI on SDXL', () => {
  beforeAll(ensureBuilt);

  it('s2i info and s2i generate take an SDXL single file', () => {
    const info = s2i(['info', '--model', fileF16, '--config', folderDir, '--json']);
    expect(info.stderr).toBe('');
    const json = JSON.parse(info.stdout);
    expect(json.single_file).toMatchObject({ family: 'SDXL', text_encoder: 'sdxl', configs: 'given' });
    expect(Object.keys(json.components)).toEqual([
      'text_encoder',
      'tokenizer',
      'text_encoder_2',
      'tokenizer_2',
      'unet',
      'vae',
      'scheduler',
    ]);
    const out = join(tmp, 'cli.png');
    const r = s2i([
      'generate',
      'a cat and a frog',
      '--model',
      fileF16,
      '--config',
      folderDir,
      '--steps',
      '2',
      '--seed',
      '1',
      '--out',
      out,
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/sampler\s+euler, 2 steps \(2 UNet calls\), guidance 5/);
    expect(r.stdout).toMatch(/image\s+64x64/);
  });
});

describe('the SDXL oracle fixtures', () => {
  it('every file is byte-identical to its recorded checksum (SHA256SUMS)', () => {
    const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+\*?/, 2) as [string, string]);
    expect(sums.map(([, f]) => f)).toContain('single-file/tiny-sdxl-f16.safetensors');
    const bad = sums.filter(
      ([hash, f]) =>
        createHash('sha256')
          .update(readFileSync(join(dir, f)))
          .digest('hex') !== hash,
    );
    expect(bad.map(([, f]) => f)).toEqual([]);
  });
});

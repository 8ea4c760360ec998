/**
 * The Stable Diffusion pipeline through the library API against the golden oracle (tiny-sd):
 * b (text encoder), c (UNet noise prediction and every intermediate), d (the 11 cross-attention maps and the
 * 16x16 A&E aggregate), f (10-step PNDM and DDIM text-to-image from given latents), and determinism.
 * One model is loaded for the whole file; its compiled graphs are reused between tests.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttentionStore } from '../src/attention/store.js';
import { Graph, type Value } from '../src/graph/graph.js';
import * as op from '../src/graph/ops.js';
import { compile } from '../src/graph/runtime.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { clipTextModel } from '../src/models/clip.js';
import { graphParams } from '../src/models/params.js';
import { generate, type GenerateResult } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { maxAbsDiff, type Int64Tensor, type Tensor } from '../src/tensor.js';
import { goldenPath, oracleDir, tinySdDir } from './support/oracle.js';
import { expectGolden } from './support/golden.js';

type Golden = Record<string, Tensor | Int64Tensor>;
interface Tol {
  atol: number;
}
interface ManifestCase {
  id: string;
  tolerance: Record<string, unknown> & Partial<Tol>;
}
const manifest = JSON.parse(readFileSync(join(oracleDir, 'goldens', 'manifest.json'), 'utf8')) as {
  cases: ManifestCase[];
};
const tolerance = (id: string) => manifest.cases.find((c) => c.id === id)!.tolerance;

const f32 = (g: Golden, k: string): Float32Array => {
  const t = g[k];
  if (!t) throw new Error(`golden tensor ${k} missing`);
  return t.data as Float32Array;
};
const ints = (g: Golden, k: string): number[] => Array.from(g[k]!.data as BigInt64Array, Number);
const maxOf = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};
const PROMPT = 'a cat and a frog';

let model: StableDiffusion;
let f: Golden;

beforeAll(async () => {
  model = await StableDiffusion.load(tinySdDir);
  f = readSafetensors(goldenPath('f_txt2img'));
});
afterAll(async () => {
  await model?.release();
});

describe('case f: txt2img, 10 steps, guidance 7.5, from initial_latents', () => {
  const tol = tolerance('f_txt2img') as Record<'pndm' | 'ddim', { final_latents: Tol; image: Tol }>;
  const runs = new Map<string, GenerateResult>();
  const run = (sampler: 'pndm' | 'ddim') =>
    generate(model, {
      prompt: PROMPT,
      steps: 10,
      guidanceScale: 7.5,
      sampler,
      initialLatents: { data: f32(f, 'initial_latents'), shape: [1, 4, 32, 32] },
    });

  for (const s of ['pndm', 'ddim'] as const) {
    it(`${s}: timesteps, every step's latents, final latents, decoded image`, async () => {
      const r = await run(s);
      runs.set(s, r);
      expect([...r.timesteps]).toEqual(ints(f, `${s}.timesteps`));
      const per = f32(f, `${s}.latents_per_step`);
      const n = 4 * 32 * 32;
      expect(r.latentsPerStep.length).toBe(per.length / n);
      // Errors grow along the trajectory; every step must stay within the final tolerance.
      const atol = tol[s].final_latents.atol;
      r.latentsPerStep.forEach((l, i) =>
        expect(maxAbsDiff(l.data, per.subarray(i * n, (i + 1) * n)), `step ${i}`).toBeLessThanOrEqual(atol),
      );
      expectGolden(
        `f ${s.toUpperCase()} 10 steps: final latents (max abs)`,
        maxAbsDiff(r.finalLatents.data, f32(f, `${s}.final_latents`)),
        atol,
      );
      // decoded_raw = 2 * (image - 0.5) before clamping, so its tolerance is twice the image's.
      expect(r.image.shape).toEqual([1, 3, 64, 64]);
      expect(maxAbsDiff(r.image.data, f32(f, `${s}.decoded_raw`))).toBeLessThanOrEqual(2 * tol[s].image.atol);
      // The [0, 1] NHWC image as diffusers' decode_latents makes it.
      const img = f32(f, `${s}.image`);
      const ours = new Float32Array(img.length);
      for (let c = 0; c < 3; c++)
        for (let p = 0; p < 64 * 64; p++)
          ours[p * 3 + c] = Math.min(1, Math.max(0, r.image.data[c * 4096 + p]! / 2 + 0.5));
      expectGolden(
        `f ${s.toUpperCase()} 10 steps: decoded image in [0, 1] (max abs)`,
        maxAbsDiff(ours, img),
        tol[s].image.atol,
      );
    });
  }

  it('is deterministic: the same inputs give bit-identical latents and image', async () => {
    const first = runs.get('pndm') ?? (await run('pndm'));
    const again = await run('pndm');
    expect(Buffer.from(again.finalLatents.data.buffer).equals(Buffer.from(first.finalLatents.data.buffer))).toBe(true);
    again.latentsPerStep.forEach((l, i) =>
      expect(Buffer.from(l.data.buffer).equals(Buffer.from(first.latentsPerStep[i]!.data.buffer))).toBe(true),
    );
    expect(Buffer.from(again.image.data.buffer).equals(Buffer.from(first.image.data.buffer))).toBe(true);
    // Seeded noise too.
    const a = await generate(model, { prompt: PROMPT, steps: 2, seed: 5, sampler: 'euler-a' });
    const b = await generate(model, { prompt: PROMPT, steps: 2, seed: 5, sampler: 'euler-a' });
    expect(Buffer.from(a.finalLatents.data.buffer).equals(Buffer.from(b.finalLatents.data.buffer))).toBe(true);
  });
});

describe('case b: CLIP text encoder', () => {
  const b = readSafetensors(goldenPath('b_text_encoder'));
  const atol = (tolerance('b_text_encoder') as unknown as Tol).atol;
  const prompts = ['a cat and a frog', 'A photo of a Cat sitting on a RED chair.', ''];
  const rows = 77 * 32;

  it('model.encodePrompt gives last_hidden_state (and the golden input_ids)', async () => {
    let worst = 0;
    for (let r = 0; r < prompts.length; r++) {
      expect(model.tokenize(prompts[r]!)).toEqual(ints(b, 'input_ids').slice(r * 77, (r + 1) * 77));
      const e = await model.encodePrompt(prompts[r]!);
      expect(e.shape).toEqual([1, 77, 32]);
      expect(
        maxAbsDiff(e.data, f32(b, 'last_hidden_state').subarray(r * rows, (r + 1) * rows)),
        prompts[r],
      ).toBeLessThanOrEqual(atol);
      worst = Math.max(worst, maxAbsDiff(e.data, f32(b, 'last_hidden_state').subarray(r * rows, (r + 1) * rows)));
    }
    expectGolden('b text encoder: last_hidden_state, 3 prompts (max abs)', worst, atol);
  });

  it('every hidden state matches', async () => {
    const g = new Graph('initializer');
    const ids = g.input('input_ids', [1, 77], 'int64');
    const out = clipTextModel(model.textConfig, graphParams(g, model.folder.component('text_encoder').weights()), ids);
    expect(out.hiddenStates.length).toBe(4);
    out.hiddenStates.forEach((h, i) => g.output(`h${i}`, h));
    const session = await compile(g);
    try {
      for (let r = 0; r < prompts.length; r++) {
        const res = await session.run({
          input_ids: { data: b['input_ids']!.data.slice(r * 77, (r + 1) * 77) as BigInt64Array, shape: [1, 77] },
        });
        for (let i = 0; i < 4; i++) {
          const gold = f32(b, `hidden_states.${i}`).subarray(r * rows, (r + 1) * rows);
          expect(maxAbsDiff(res[`h${i}`]!.data, gold), `prompt ${r} hidden_states.${i}`).toBeLessThanOrEqual(atol);
        }
      }
    } finally {
      await session.release();
    }
  });
});

describe('cases c and d: UNet forward, intermediates and cross-attention maps', () => {
  const c = readSafetensors(goldenPath('c_unet'));
  const d = readSafetensors(goldenPath('d_cross_attention'));
  const tc = tolerance('c_unet') as unknown as Tol & { case2: Tol };
  const td = tolerance('d_cross_attention') as unknown as Tol & { aggregate16_cond: Tol };
  const layers = (
    manifest.cases.find((x) => x.id === 'd_cross_attention') as unknown as { params: { layers: string[] } }
  ).params.layers;
  const intermediates = [
    ...'time_proj time_embedding conv_in down_blocks.0 down_blocks.1 down_blocks.2 mid_block up_blocks.0 up_blocks.1 up_blocks.2 conv_norm_out conv_out'.split(
      ' ',
    ),
  ];

  async function unetSession() {
    return model.unetAccess(32, 32, 77).compile('test:pipeline:c+d', (g, unet) => {
      const sample = g.input('sample', [2, 4, 32, 32]);
      const timestep = g.input('timestep', [2]);
      const context = g.input('context', [2, 77, 32]);
      const inter = new Map<string, Value>();
      const store = new AttentionStore({ kind: 'cross', resolution: [16, 16] });
      const { noisePred } = unet(
        { sample, timestep, encoderHiddenStates: context },
        {
          intermediates: inter,
          attentionHook: (layer, probs) => {
            if (layer.kind === 'cross') g.output(`probs.${layer.name}`, op.identity(probs));
            store.hook(layer, probs);
          },
        },
      );
      g.output('noise_pred', noisePred);
      for (const [k, v] of inter) g.output(`intermediate.${k}`, op.identity(v));
      g.output('aggregate16_cond', store.aggregate({ resolution: [16, 16], batchIndex: 1 }));
    });
  }

  it('c: noise_pred, every intermediate, and case2 (t=501)', async () => {
    const s = await unetSession();
    const feeds = (prefix: string, t: number) => ({
      sample: { data: f32(c, `${prefix}latent_model_input`), shape: [2, 4, 32, 32] },
      timestep: { data: Float32Array.of(t, t), shape: [2] },
      context: { data: f32(c, `${prefix}encoder_hidden_states`), shape: [2, 77, 32] },
    });
    expect(ints(c, 'timestep')).toEqual([981]);
    const res = await s.run(feeds('', 981));
    expectGolden(
      'c UNet t=981: noise_pred (max abs)',
      maxAbsDiff(res['noise_pred']!.data, f32(c, 'noise_pred')),
      tc.atol,
    );
    let worstIntermediate = 0;
    for (const k of intermediates) {
      const gold = f32(c, `intermediate.${k}`);
      worstIntermediate = Math.max(worstIntermediate, maxAbsDiff(res[`intermediate.${k}`]!.data, gold) / maxOf(gold));
      expect(
        res[`intermediate.${k}`]!.shape.reduce((a, b) => a * b, 1),
        k,
      ).toBe(gold.length);
      // The manifest suggests rtol ~1e-4 of each tensor's largest value for intermediates.
      expect(maxAbsDiff(res[`intermediate.${k}`]!.data, gold) / maxOf(gold), k).toBeLessThanOrEqual(1e-4);
    }
    expectGolden('c UNet: 12 intermediates (max abs / max |golden|)', worstIntermediate, 1e-4);
    expect(ints(c, 'case2.timestep')).toEqual([501]);
    const res2 = await s.run(feeds('case2.', 501));
    expectGolden(
      'c UNet t=501: noise_pred (max abs)',
      maxAbsDiff(res2['noise_pred']!.data, f32(c, 'case2.noise_pred')),
      tc.case2.atol,
    );
  });

  it('d: the 11 cross-attention probability maps and the 16x16 conditional aggregate', async () => {
    const s = await unetSession();
    const res = await s.run({
      sample: { data: f32(c, 'latent_model_input'), shape: [2, 4, 32, 32] },
      timestep: { data: Float32Array.of(981, 981), shape: [2] },
      context: { data: f32(c, 'encoder_hidden_states'), shape: [2, 77, 32] },
    });
    expect(layers.length).toBe(11);
    let worst = 0;
    for (const name of layers) {
      const ours = res[`probs.${name}`];
      expect(ours, name).toBeDefined();
      // ours [batch, heads, queries, keys] is laid out as the golden's [batch*heads, queries, keys]
      expect(maxAbsDiff(ours!.data, f32(d, `probs.${name}`)), name).toBeLessThanOrEqual(td.atol);
      worst = Math.max(worst, maxAbsDiff(ours!.data, f32(d, `probs.${name}`)));
    }
    expectGolden('d 11 cross-attention probability maps (max abs)', worst, td.atol);
    expect(res['aggregate16_cond']!.shape).toEqual([16, 16, 77]);
    expectGolden(
      'd 16x16 aggregated conditional map (max abs)',
      maxAbsDiff(res['aggregate16_cond']!.data, f32(d, 'aggregate16_cond')),
      td.aggregate16_cond.atol,
    );
  });
});

/**
 * Attend-and-Excite against the oracle on tiny-sd: case d's `ae.*` (one batch-1 forward with gradients: the 16x16
 * aggregate, A&E's x100 softmax, the smoothed per-subject maxima, the loss, d loss / d latent and the updated
 * latent), the Gaussian kernel bit for bit, and the 10-step runs of cases g (diffusers' pipeline) and g2 (the
 * official code), which agree with each other exactly.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttentionStore } from '../src/attention/store.js';
import { gradients } from '../src/graph/autodiff.js';
import * as op from '../src/graph/ops.js';
import { readSafetensors } from '../src/io/safetensors.js';
import {
  AttendAndExcite,
  ATTEND_EXCITE_DEFAULTS,
  attendExciteLoss,
  subjectMaps,
} from '../src/methods/attend-and-excite.js';
import { gaussianKernel } from '../src/methods/smoothing.js';
import { generate, type GenerateResult } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { maxAbsDiff, type Int64Tensor, type Tensor } from '../src/tensor.js';
import { goldenPath, oracleDir, tinySdDir } from './support/oracle.js';
import { expectGolden } from './support/golden.js';

type Golden = Record<string, Tensor | Int64Tensor>;
interface ManifestCase {
  id: string;
  tolerance: Record<string, unknown>;
  params: Record<string, unknown>;
}
const manifest = JSON.parse(readFileSync(join(oracleDir, 'goldens', 'manifest.json'), 'utf8')) as {
  cases: ManifestCase[];
};
const caseOf = (id: string) => manifest.cases.find((c) => c.id === id)!;
const f32 = (g: Golden, k: string): Float32Array => {
  const t = g[k];
  if (!t) throw new Error(`golden tensor ${k} missing`);
  return t.data as Float32Array;
};
const maxOf = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};

/** Max-attention values are in [0, 1]; the float32-vs-float64 spread of the reference is ~1e-6. */
const MAX_ATTENTION_ATOL = 1e-4;

let model: StableDiffusion;
beforeAll(async () => {
  model = await StableDiffusion.load(tinySdDir);
});
afterAll(async () => {
  await model?.release();
});

describe('case d: the A&E machinery on one forward pass (t=981)', () => {
  const d = readSafetensors(goldenPath('d_cross_attention'));
  const tol = caseOf('d_cross_attention').tolerance as {
    atol: number;
    aggregate16_cond: { atol: number };
    ae: { grad_latent_rtol: number };
  };
  const params = caseOf('d_cross_attention').params as { token_indices: number[] };

  it('the Gaussian kernel is the official one, bit for bit', () => {
    const k = gaussianKernel(ATTEND_EXCITE_DEFAULTS.kernelSize, ATTEND_EXCITE_DEFAULTS.sigma);
    expect(Buffer.from(k.buffer).equals(Buffer.from(f32(d, 'ae.gaussian_kernel').slice().buffer))).toBe(true);
  });

  it('aggregate16, softmax100, max_attention_per_index, loss, grad_latent, updated_latent', async () => {
    expect(params.token_indices).toEqual([2, 5]);
    const session = await model.unetAccess(32, 32, 77).compile('test:ae:d', (g, unet) => {
      const sample = g.input('sample', [1, 4, 32, 32]);
      const timestep = g.input('timestep', [1]);
      const context = g.input('context', [1, 77, 32]);
      const store = new AttentionStore({ kind: 'cross', resolution: [16, 16] });
      unet({ sample, timestep, encoderHiddenStates: context }, { attentionHook: store.hook });
      const maps = store.aggregate({ resolution: [16, 16], batchIndex: 0 });
      const cfg = ATTEND_EXCITE_DEFAULTS;
      const perSubject = op.reduceMax(subjectMaps(maps, params.token_indices, cfg), [1, 2], false);
      const loss = attendExciteLoss(perSubject);
      g.output('aggregate16', op.identity(maps));
      g.output('softmax100', op.softmax(op.mul(op.slice(maps, [1], [76], [2]), 100), -1));
      g.output('max_attention', op.identity(perSubject));
      g.output('loss', op.identity(loss));
      g.output('grad', gradients(loss, [sample])[0]!);
    });
    const x = f32(d, 'ae.latent');
    const r = await session.run({
      sample: { data: x, shape: [1, 4, 32, 32] },
      timestep: { data: Float32Array.of(981), shape: [1] },
      context: { data: f32(d, 'ae.encoder_hidden_states'), shape: [1, 77, 32] },
    });
    expectGolden(
      'A&E: 16x16 aggregate (max abs)',
      maxAbsDiff(r['aggregate16']!.data, f32(d, 'ae.aggregate16')),
      tol.aggregate16_cond.atol,
    );
    expect(maxAbsDiff(r['softmax100']!.data, f32(d, 'ae.softmax100_tokens1to75'))).toBeLessThanOrEqual(tol.atol);
    expectGolden(
      'A&E: max attention per subject (max abs)',
      maxAbsDiff(r['max_attention']!.data, f32(d, 'ae.max_attention_per_index')),
      MAX_ATTENTION_ATOL,
    );
    expect(Math.abs(r['loss']!.data[0]! - f32(d, 'ae.loss')[0]!)).toBeLessThanOrEqual(MAX_ATTENTION_ATOL);
    const gold = f32(d, 'ae.grad_latent');
    const grad = r['grad']!.data;
    expect(maxOf(gold)).toBeGreaterThan(0);
    expectGolden(
      'A&E: d loss / d latent through the UNet (max abs / max |golden|)',
      maxAbsDiff(grad, gold) / maxOf(gold),
      tol.ae.grad_latent_rtol,
    );
    // _update_latent at step 0: x - 20 * sqrt(1.0) * grad, in float32.
    const updated = x.map((v, i) => v - Math.fround(20 * grad[i]!));
    expect(maxAbsDiff(updated, f32(d, 'ae.updated_latent'))).toBeLessThanOrEqual(
      20 * tol.ae.grad_latent_rtol * maxOf(gold) + 1e-6,
    );
  });
});

describe('cases g and g2: 10-step Attend-and-Excite (PNDM, guidance 7.5, tokens 2 and 5)', () => {
  const g = readSafetensors(goldenPath('g_attend_and_excite_diffusers'));
  const g2 = readSafetensors(goldenPath('g2_attend_and_excite_official'));
  const gCase = caseOf('g_attend_and_excite_diffusers');
  const gTol = gCase.tolerance as { final_latents: { atol: number } };
  const g2Tol = caseOf('g2_attend_and_excite_official').tolerance as { final_latents: { atol: number } };
  const p = gCase.params as {
    token_indices: number[];
    max_iter_to_alter: number;
    thresholds: Record<string, number>;
    scale_factor: number;
    attn_res: number[];
    events: [string, unknown][];
  };
  let ae: AttendAndExcite;
  let result: GenerateResult;

  beforeAll(async () => {
    ae = new AttendAndExcite({
      ...ATTEND_EXCITE_DEFAULTS,
      tokenIndices: p.token_indices,
      maxIterToAlter: p.max_iter_to_alter,
      thresholds: new Map(Object.entries(p.thresholds).map(([k, v]) => [Number(k), v])),
      scaleFactor: p.scale_factor,
      attnRes: [p.attn_res[0]!, p.attn_res[1]!],
    });
    expect(Buffer.from(f32(g, 'initial_latents').buffer).equals(Buffer.from(f32(g2, 'initial_latents').buffer))).toBe(
      true,
    );
    result = await generate(model, {
      prompt: 'a cat and a frog',
      steps: 10,
      guidanceScale: 7.5,
      sampler: 'pndm',
      initialLatents: { data: f32(g, 'initial_latents'), shape: [1, 4, 32, 32] },
      method: ae,
    });
  });

  it('final latents match diffusers (g) and the official code (g2)', () => {
    expect([...result.timesteps]).toEqual(Array.from(g['timesteps']!.data as BigInt64Array, Number));
    expectGolden(
      'A&E pipeline g (iterative refinement): final latents (max abs)',
      maxAbsDiff(result.finalLatents.data, f32(g, 'final_latents')),
      gTol.final_latents.atol,
    );
    expectGolden(
      'A&E official code g2: final latents (max abs)',
      maxAbsDiff(result.finalLatents.data, f32(g2, 'final_latents')),
      g2Tol.final_latents.atol,
    );
  });

  it('latents after each step match (the goldens skip call 0)', () => {
    const n = 4 * 32 * 32;
    for (const [gold, atol] of [
      [f32(g, 'latents_per_step'), gTol.final_latents.atol],
      [f32(g2, 'latents_per_step'), g2Tol.final_latents.atol],
    ] as const) {
      expect(gold.length / n).toBe(10);
      expect(result.latentsPerStep.length).toBe(11);
      result.latentsPerStep
        .slice(1)
        .forEach((l, i) =>
          expect(maxAbsDiff(l.data, gold.subarray(i * n, (i + 1) * n)), `call ${i + 1}`).toBeLessThanOrEqual(atol),
        );
    }
  });

  it('all 36 max-attention evaluations, in call order, match both references', () => {
    const evals = ae.maxAttentionLog;
    expect(evals.length).toBe(36);
    const ours = Float32Array.from(evals.flat());
    expectGolden(
      'A&E g: max attention at every call (max abs)',
      maxAbsDiff(ours, f32(g, 'max_attention_all_calls')),
      MAX_ATTENTION_ATOL,
    );
    expect(maxAbsDiff(ours, f32(g2, 'max_attention_all_calls'))).toBeLessThanOrEqual(MAX_ATTENTION_ATOL);
    // The same phases as the reference's log: latent updates and refinements at the same calls.
    const phases = (events: { kind: string }[]) => events.map((e) => e.kind).filter((k) => k !== 'evaluate');
    const refPhases = p.events
      .map(([k]) => k)
      .filter((k) => k === 'update_latent' || k === 'refinement_start' || k === 'refinement_end');
    expect(phases(ae.events)).toEqual(refPhases);
  });

  it('the per-step log (GenerateResult.steps[].method) carries max attention, loss and refinement tries', () => {
    expect(result.steps.length).toBe(11);
    for (const s of result.steps) {
      const m = s.method!;
      expect(m.maxAttention!.length).toBe(2);
      expect(m.loss).toBeCloseTo(Math.max(0, 1 - Math.min(...m.maxAttention!)), 5);
      expect(m.stepSize === null).toBe(s.index >= p.max_iter_to_alter);
    }
    // Refinement ran at calls 2 (threshold 0.5: 3 tries) and 4 (0.8: stopped after 20), as the official stdout says.
    expect(result.steps.map((s) => s.method!.refinementTries)).toEqual([0, 0, 3, 0, 20, 0, 0, 0, 0, 0, 0]);
  });
});

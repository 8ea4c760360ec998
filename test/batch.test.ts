/**
 * Batched generation gives every sample its batch-1 image: for plain sampling, Attend-and-Excite and
 * Suppress-to-Impress (loss, edit and both modes), on the oracle's tiny SD and on the shipped shapes model,
 * each image of a batch of prompts with different subjects (1, 2 and 3 subjects, with and without attributes)
 * equals its own batch-1 run within float32 rounding: final latents within 1e-4, PNG pixels within one level,
 * the same refinement tries at every call. Also: the batched gradient is each sample's own gradient.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { autoSubjects } from '../src/prompt/auto-subjects.js';
import { floatToRgb8 } from '../src/image/convert.js';
import { ATTEND_EXCITE_DEFAULTS, evaluateAttendExcite } from '../src/methods/attend-and-excite.js';
import { alterLatents, type EvalRequest, type LatentLoopConfig, type LoopEvent } from '../src/methods/latent-loop.js';
import { buildMethod, methodTargets } from '../src/methods/registry.js';
import { defaultBatchSize } from '../src/pipeline/batch-size.js';
import { generate, generateBatch, type GenerateResult, type SampleRequest } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { maxAbsDiff } from '../src/tensor.js';
import { GaussianRng } from '../src/util/random.js';
import { repoRoot, tinySdDir } from './support/oracle.js';

// suppress: edit + token groups + the choice of start; suppress-v1: loss and edit modes together (mode both).
const METHODS = ['none', 'attend-and-excite', 'suppress-loss', 'suppress-edit', 'suppress', 'suppress-v1'] as const;

interface Case {
  name: string;
  dir: string;
  steps: number;
  guidance: number;
  prompts: string[];
}

const CASES: Case[] = [
  {
    name: 'tiny-sd (oracle)',
    dir: tinySdDir,
    steps: 4,
    guidance: 7.5,
    prompts: ['a cat and a frog', 'a dog, a green cat and a frog'],
  },
  {
    name: 'shapes (shipped)',
    dir: join(repoRoot, 'models', 'shapes'),
    steps: 8,
    guidance: 5,
    prompts: [
      'a red circle and a blue square',
      'a green triangle',
      'a yellow square, a purple circle and an orange triangle',
    ],
  },
];

/** Largest difference of two images' 8-bit pixels. */
function pixelDiff(a: GenerateResult, b: GenerateResult): number {
  const x = floatToRgb8(a.image).data;
  const y = floatToRgb8(b.image).data;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

for (const c of CASES) {
  describe(`batched = one at a time: ${c.name}`, () => {
    let model: StableDiffusion;
    beforeAll(async () => {
      model = await StableDiffusion.load(c.dir);
    });
    afterAll(async () => {
      await model?.release();
    });

    const requests = (method: string): SampleRequest[] =>
      c.prompts.map((prompt, i) => {
        const auto = autoSubjects(model.tokenizer, prompt);
        const m = buildMethod(method, methodTargets(auto.subjects, auto.attributes), {
          steps: c.steps,
          // Few refinement tries keep the test short; the thresholds still stop samples at different tries.
          loop: { maxRefinementSteps: 2 },
        });
        return { prompt, seed: 40 + i, ...(m ? { method: m } : {}) };
      });

    for (const method of METHODS) {
      it(method, async () => {
        const shared = { steps: c.steps, guidanceScale: c.guidance };
        const batched = await generateBatch(model, requests(method), shared);
        const alone: GenerateResult[] = [];
        for (const r of requests(method)) alone.push(await generate(model, { ...r, ...shared }));
        expect(batched.map((r) => r.batch)).toEqual(c.prompts.map((_, index) => ({ size: c.prompts.length, index })));
        batched.forEach((b, i) => {
          const a = alone[i]!;
          expect(a.batch).toEqual({ size: 1, index: 0 });
          expect(maxAbsDiff(b.finalLatents.data, a.finalLatents.data), `${c.prompts[i]}: final latents`).toBeLessThan(
            1e-4,
          );
          expect(pixelDiff(b, a), `${c.prompts[i]}: pixels`).toBeLessThanOrEqual(1);
          expect(b.steps.map((s) => s.method?.refinementTries ?? 0)).toEqual(
            a.steps.map((s) => s.method?.refinementTries ?? 0),
          );
          expect(b.steps.map((s) => s.method?.edited ?? false)).toEqual(a.steps.map((s) => s.method?.edited ?? false));
          b.steps.forEach((s, k) => {
            const la = a.steps[k]!.method;
            if (la?.loss !== null && la?.loss !== undefined) expect(s.method!.loss!).toBeCloseTo(la.loss, 4);
          });
        });
      });
    }

    // (on the shapes model, whose case has three prompts)
    if (c.prompts.length === 3)
      it('batches of two over three samples: the same images as one batch of three', async () => {
        const shared = { steps: c.steps, guidanceScale: c.guidance };
        const one = await generateBatch(model, requests('suppress'), shared);
        const two = await generateBatch(model, requests('suppress'), { ...shared, batchSize: 2 });
        expect(two.map((r) => r.batch)).toEqual([
          { size: 2, index: 0 },
          { size: 2, index: 1 },
          { size: 1, index: 0 },
        ]);
        two.forEach((r, i) => expect(maxAbsDiff(r.finalLatents.data, one[i]!.finalLatents.data)).toBeLessThan(1e-4));
      });
  });
}

describe('the batched loss gradient is each sample’s own gradient (tiny-sd)', () => {
  it('two samples with different subjects in one pass = each alone', async () => {
    const model = await StableDiffusion.load(tinySdDir);
    try {
      const unet = model.unetAccess(32, 32, 77);
      const [cond1, cond2] = await model.encodePrompts(['a cat and a frog', 'a dog, a green cat and a frog']);
      const rng = new GaussianRng(5);
      const items = [
        { tokenIndices: [2, 5], cond: cond1!, latent: rng.normal(4 * 32 * 32) },
        { tokenIndices: [2, 5, 9], cond: cond2!, latent: rng.normal(4 * 32 * 32) },
      ];
      const cfg = { ...ATTEND_EXCITE_DEFAULTS, attnRes: [16, 16] as const };
      const both = await evaluateAttendExcite(unet, 801, cfg, items, true);
      for (const [i, item] of items.entries()) {
        const [alone] = await evaluateAttendExcite(unet, 801, cfg, [item], true);
        const g = alone!.grad!;
        let scale = 0;
        for (const v of g) scale = Math.max(scale, Math.abs(v));
        expect(scale).toBeGreaterThan(0);
        expect(maxAbsDiff(both[i]!.grad!, g) / scale).toBeLessThan(1e-4);
        expect(both[i]!.loss).toBeCloseTo(alone!.loss, 5);
        expect(both[i]!.maxAttention.length).toBe(item.tokenIndices.length);
      }
    } finally {
      await model.release();
    }
  });
});

describe('the latent loop over a batch', () => {
  // loss(x) = x[0], gradient 1: each update lowers the loss by the step size (0.25 · sqrt(1)).
  const cfg: LatentLoopConfig = {
    maxIterToAlter: 3,
    thresholds: new Map([[0, 0.5]]),
    scaleFactor: 0.25,
    scaleRange: [1, 1],
    maxRefinementSteps: 5,
  };
  const evaluate = (log: EvalRequest[][]) => async (requests: readonly EvalRequest[]) => {
    log.push([...requests]);
    return requests.map((r) => ({ loss: r.latent[0]!, ...(r.withGrad ? { grad: Float32Array.of(1) } : {}) }));
  };
  const starts = [0.2, 0.9, 2.0]; // no refinement; 3 tries; stopped at 5 tries

  it('runs each sample as alone, batching the evaluations needed at the same time; finished samples are masked', async () => {
    const log: EvalRequest[][] = [];
    const events: LoopEvent[][] = starts.map(() => []);
    const together = await alterLatents(
      cfg,
      0,
      10,
      starts.map((x) => Float32Array.of(x)),
      evaluate(log),
      events,
    );
    for (const [s, x] of starts.entries()) {
      const own: LoopEvent[][] = [[]];
      const [alone] = await alterLatents(cfg, 0, 10, [Float32Array.of(x)], evaluate([]), own);
      expect(together[s]!.latent).toEqual(alone!.latent);
      expect(together[s]!.tries).toBe(alone!.tries);
      expect(together[s]!.final.loss).toBe(alone!.final.loss);
      expect(events[s]).toEqual(own[0]);
    }
    expect(together.map((r) => r.tries)).toEqual([0, 3, 5]);
    // Every pass holds only the samples still at work, in sample order, all asking for a gradient.
    expect(log.map((reqs) => reqs.map((r) => r.sample))).toEqual([[0, 1, 2], [1, 2], [1, 2], [1, 2], [2], [2]]);
    expect(log.flat().every((r) => r.withGrad)).toBe(true);
  });
});

describe('the default batch size', () => {
  const model = (channels: number, factor: number, parameters: number) =>
    ({ unetConfig: { blockOutChannels: [channels] }, scaleFactor: factor, parameterCount: parameters }) as never;
  const sd15 = model(320, 8, 1.07e9);
  const shapes = model(32, 1, 4.1e6);
  const GB = 1024 ** 3;

  it('as many images as fit the budget, at most 16 and at least 1', () => {
    const at = (m: never, gradient: boolean, budget: number, size = 512, images = 100) =>
      defaultBatchSize(m, { images, height: size, width: size, gradient }, budget);
    // SD-1.5 at 512 px: 4.0 GB of weights, 0.75 GB per image for plain sampling, ~10.75 GB with gradients.
    expect(at(sd15, false, 12 * GB)).toBe(10);
    expect(at(sd15, true, 12 * GB)).toBe(1);
    expect(at(sd15, true, 32 * GB)).toBe(2);
    // self-attention grows with the square of the latent cells: 768 px costs 5x 512 px per image
    expect(at(sd15, false, 12 * GB, 768)).toBe(2);
    expect(at(shapes, true, 12 * GB, 32)).toBe(16);
    expect(at(shapes, true, 12 * GB, 32, 3)).toBe(3);
    expect(at(sd15, false, 1 * GB)).toBe(1);
  });
});

describe('compiled graphs kept per model (LoadOptions.maxSessions)', () => {
  it('holds at most maxSessions, least recently used dropped; a dropped graph is compiled again, the image unchanged', async () => {
    const request = { prompt: 'a cat and a frog', seed: 7, steps: 3, guidanceScale: 7.5 };
    const free = await StableDiffusion.load(tinySdDir);
    const one = await StableDiffusion.load(tinySdDir, { maxSessions: 1 });
    try {
      const want = await generate(free, request);
      expect(free.sessionCount).toBeGreaterThan(1); // text encoder and UNet at least
      const first = await generate(one, request);
      expect(one.sessionCount).toBe(1);
      const compiled = one.graphTimings.length;
      const again = await generate(one, request);
      expect(one.graphTimings.length).toBe(2 * compiled); // every graph was dropped and compiled again
      for (const got of [first, again]) expect(maxAbsDiff(got.image.data, want.image.data)).toBe(0);
    } finally {
      await free.release();
      await one.release();
    }
    await expect(StableDiffusion.load(tinySdDir, { maxSessions: 0 })).rejects.toThrow(
      /^maxSessions must be a whole number of at least 1, got 0$/,
    );
  });
});

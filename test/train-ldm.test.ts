/**
 * The latent shapes model's training pieces, on tiny weights: the AutoencoderKL's training step overfits a fixed
 * batch, its folder round-trips and its encoder→decoder runs; one step of the latent task (text encoder + UNet on
 * the VAE's 16x16 latents) trains, resumes and exports a model folder that generates 64x64 images through the VAE
 * with attention maps at both cross-attention resolutions; a new run starts from those exported weights (--init).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { parseVaeConfig } from '../src/models/config.js';
import { generate } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { sampleBatch } from '../src/shapes/generate.js';
import { ldmVaeConfigJson } from '../src/shapes/ldm.js';
import { Rng } from '../src/shapes/rng.js';
import { readVaeFolder, writeVaeFolder } from '../src/shapes/tasks.js';
import { SHAPES_TRAIN_DEFAULTS, trainShapes } from '../src/shapes/train.js';
import { AdamW } from '../src/train/adamw.js';
import { initParams } from '../src/train/init.js';
import { VAE_PREFIX, VaeEncoder, vaeParameterShapes, VaeTrainingStep } from '../src/train/vae.js';
import { GaussianRng } from '../src/util/random.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 's2i-ldm-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The shipped VAE's layout (three blocks: ×4) at a fraction of its width. */
const microJson = { ...ldmVaeConfigJson(0.5), block_out_channels: [8, 8, 8], norm_num_groups: 4 };
const micro = parseVaeConfig(microJson, 'micro vae');

describe('AutoencoderKL training', () => {
  it('a few AdamW steps on a fixed batch reduce the loss; the folder round-trips; encode→decode keeps the shape', async () => {
    const S = 16;
    const shapes = vaeParameterShapes(micro, S);
    const params = initParams(shapes, 3);
    const step = await VaeTrainingStep.create(micro, params, 2, S, 1e-6);
    const batch = {
      images: sampleBatch(new Rng(1), 2, { size: S, minObjectSize: 5, maxObjectSize: 8 }).images,
      noise: new GaussianRng(2).normal(2 * 4 * 4 * 4),
    };
    const adam = new AdamW({ lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    const losses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { loss, mse, kl, grads } = await step.run(params, batch);
      expect(Number.isFinite(mse) && Number.isFinite(kl)).toBe(true);
      losses.push(loss);
      adam.update(params, grads, 3e-3, () => true);
    }
    await step.release();
    expect(losses[losses.length - 1]!).toBeLessThan(0.5 * losses[0]!);

    const dir = join(tmp(), 'vae');
    const weights = new Map(
      [...shapes].map(([k, s]) => [k.slice(VAE_PREFIX.length), { data: params.get(k)!, shape: s }]),
    );
    writeVaeFolder(dir, microJson, weights, { step: '20' });
    const back = readVaeFolder(dir);
    expect(back.cfg.scalingFactor).toBe(0.5);
    for (const [k, v] of params)
      expect(Buffer.from(back.weights.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);

    const enc = await VaeEncoder.create(micro, params, 2, S, { decode: true });
    const { mean } = await enc.encode(batch.images);
    expect(mean.length).toBe(2 * 4 * 4 * 4);
    const recon = await enc.roundTrip(batch.images);
    await enc.release();
    expect(recon.length).toBe(batch.images.length);
    let se = 0;
    for (let i = 0; i < recon.length; i++) se += (recon[i]! - batch.images[i]!) ** 2;
    // the trained weights reconstruct their batch better than the loss of the first step
    expect(se / recon.length).toBeLessThan(losses[0]!);
  });
});

describe('latent model training (shapes-ldm)', () => {
  it('one step trains and resumes; the export generates 64x64 through the VAE, maps at 16x16 and 8x8', async () => {
    const vaeDir = join(tmp(), 'vae');
    const shapes = vaeParameterShapes(micro, 64);
    const params = initParams(shapes, 4);
    writeVaeFolder(
      vaeDir,
      microJson,
      new Map([...shapes].map(([k, s]) => [k.slice(VAE_PREFIX.length), { data: params.get(k)!, shape: s }])),
      {},
    );
    const options = {
      ...SHAPES_TRAIN_DEFAULTS,
      model: 'shapes-ldm' as const,
      vae: vaeDir,
      batchSize: 1,
      sampleEvery: 0,
      checkpointEvery: 1,
      warmupSteps: 2,
      runDir: tmp(),
    };
    await trainShapes({ ...options, steps: 1 });
    await trainShapes({ ...options, steps: 2 }, { resume: true });
    const file = SafetensorsFile.open(join(options.runDir, 'checkpoint.safetensors'));
    expect(file.metadata['step']).toBe('2');
    const ema = new Map(
      file
        .names()
        .filter((n) => n.startsWith('ema/'))
        .map((n) => [n.slice(4), file.readFloat32(n)]),
    );
    file.close();
    const { taskFor } = await import('../src/shapes/tasks.js');
    const modelDir = join(tmp(), 'model');
    await taskFor(options).export(modelDir, ema, { step: '2' });
    const model = await StableDiffusion.load(modelDir);
    try {
      for (const res of [
        [16, 16],
        [8, 8],
      ] as const) {
        const r = await generate(model, {
          prompt: 'a red circle and a blue square',
          steps: 2,
          seed: 0,
          recordAttention: { resolution: res },
        });
        expect(r.image.shape).toEqual([1, 3, 64, 64]);
        expect(r.image.data.every(Number.isFinite)).toBe(true);
        expect(r.attentionMaps.size).toBeGreaterThan(0);
        expect([...r.attentionMaps.values()][0]!.shape.slice(0, 2)).toEqual(res);
      }
    } finally {
      await model.release();
    }
    // --init: a new run starts from the exported weights at the step they record, with fresh optimiser state.
    const continued = { ...options, runDir: tmp(), init: modelDir };
    const state = await trainShapes({ ...continued, steps: 3 });
    expect(state.step).toBe(3);
    expect(state.adam.step).toBe(1);
    await expect(trainShapes({ ...continued, runDir: tmp(), init: vaeDir, steps: 3 })).rejects.toThrow(/init/);
  });
});

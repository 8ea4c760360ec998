/**
 * Training on the project's own engine: a micro model overfits a fixed batch (the loss falls), and a training
 * run stopped and resumed from its checkpoint ends bit-identical to one run straight through; the exported
 * folder loads and generates.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { parseClipTextConfig, parseUNetConfig } from '../src/models/config.js';
import { generate } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { noiseSchedule } from '../src/schedulers/index.js';
import { sampleBatch } from '../src/shapes/generate.js';
import { shapesSchedulerConfigJson } from '../src/shapes/model.js';
import { Rng } from '../src/shapes/rng.js';
import { exportShapesModel, SHAPES_TRAIN_DEFAULTS, trainShapes } from '../src/shapes/train.js';
import { AdamW } from '../src/train/adamw.js';
import { parameterShapes, TrainingStep, type TextToImageConfig } from '../src/train/diffusion.js';
import { initParams } from '../src/train/init.js';
import { GaussianRng } from '../src/util/random.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 's2i-train-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const micro: TextToImageConfig = {
  tokens: 8,
  text: parseClipTextConfig(
    {
      vocab_size: 40,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      max_position_embeddings: 8,
    },
    'micro text',
  ),
  unet: parseUNetConfig(
    {
      sample_size: 16,
      in_channels: 3,
      out_channels: 3,
      block_out_channels: [32, 32],
      layers_per_block: 1,
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D'],
      up_block_types: ['CrossAttnUpBlock2D', 'UpBlock2D'],
      cross_attention_dim: 32,
      attention_head_dim: 2,
    },
    'micro unet',
  ),
};

describe('training', () => {
  it('a few AdamW steps on a micro model reduce the loss on a fixed batch', async () => {
    const params = initParams(parameterShapes(micro), 1);
    const B = 4;
    const step = await TrainingStep.create(micro, params, B);
    const schedule = noiseSchedule(shapesSchedulerConfigJson());
    const batch = sampleBatch(new Rng(5), B, { size: 16, minObjectSize: 5, maxObjectSize: 8 });
    const noise = new GaussianRng(3).normal(batch.images.length);
    const timesteps = Float32Array.of(100, 300, 500, 700);
    const inputs = {
      ids: BigInt64Array.from({ length: B * micro.tokens }, (_, i) => BigInt(i % 40)),
      noisy: schedule.addNoise(batch.images, noise, timesteps),
      timesteps,
      target: schedule.velocity(batch.images, noise, timesteps),
      weights: new Float32Array(B).fill(1),
    };
    const adam = new AdamW({ lr: 2e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    const losses: number[] = [];
    for (let i = 0; i < 25; i++) {
      const { loss, grads } = await step.run(params, inputs);
      losses.push(loss);
      adam.update(params, grads, 2e-3, () => true);
    }
    await step.release();
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]!).toBeLessThan(0.6 * losses[0]!);
  });

  it('a run stopped and resumed from its checkpoint equals one run straight through, and its export generates', async () => {
    const options = { ...SHAPES_TRAIN_DEFAULTS, batchSize: 2, sampleEvery: 0, checkpointEvery: 2, warmupSteps: 2 };
    const straight = tmp();
    await trainShapes({ ...options, runDir: straight, steps: 3 });
    const resumed = tmp();
    await trainShapes({ ...options, runDir: resumed, steps: 2 });
    await expect(trainShapes({ ...options, runDir: resumed, steps: 3 })).rejects.toThrow(/pass resume to continue it/);
    await trainShapes({ ...options, runDir: resumed, steps: 3 }, { resume: true });
    const a = SafetensorsFile.open(join(straight, 'checkpoint.safetensors'));
    const b = SafetensorsFile.open(join(resumed, 'checkpoint.safetensors'));
    expect(a.metadata['step']).toBe('3');
    expect(b.metadata['step']).toBe('3');
    expect(a.names().sort()).toEqual(b.names().sort());
    for (const name of a.names())
      expect(Buffer.from(a.readFloat32(name).buffer).equals(Buffer.from(b.readFloat32(name).buffer))).toBe(true);
    const ema = new Map(
      a
        .names()
        .filter((n) => n.startsWith('ema/'))
        .map((n) => [n.slice(4), a.readFloat32(n)]),
    );
    a.close();
    b.close();
    const modelDir = join(tmp(), 'model');
    exportShapesModel(modelDir, ema, (await import('../src/shapes/model.js')).shapesModelConfig());
    const model = await StableDiffusion.load(modelDir);
    const r = await generate(model, { prompt: 'a red circle', steps: 3, seed: 0 });
    expect(r.image.shape).toEqual([1, 3, 32, 32]);
    expect(r.image.data.every(Number.isFinite)).toBe(true);
    await model.release();
  });
});

/** `s2i info` through the built CLI (dist/), as a user runs it. */
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, expectOneLineError, s2i as runS2i } from './support/cli.js';
import { tinySdDir } from './support/oracle.js';

const tmp = mkdtempSync(join(tmpdir(), 's2i-cli-info-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(ensureBuilt);
const s2i = (...args: string[]) => runS2i(args);

describe('s2i info', () => {
  it('describes tiny-sd as JSON', () => {
    const r = s2i('info', '--model', tinySdDir, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.pipeline).toBe('StableDiffusionPipeline');
    expect(Object.keys(info.components)).toEqual(['text_encoder', 'tokenizer', 'unet', 'vae', 'scheduler']);
    const { unet, text_encoder: te, vae, tokenizer, scheduler } = info.components;
    expect(unet.class).toBe('UNet2DConditionModel');
    expect(unet.parameters).toBe(2_164_452);
    expect(unet.float32_bytes).toBe(2_164_452 * 4);
    expect(unet.dtypes).toEqual({ F32: 2_164_452 });
    expect(unet.file_bytes).toBe(statSync(join(tinySdDir, 'unet', 'diffusion_pytorch_model.safetensors')).size);
    expect(unet.config).toMatchObject({
      sample_size: 32,
      in_channels: 4,
      out_channels: 4,
      block_out_channels: [32, 64, 64],
      layers_per_block: 2,
      attention_head_dim: 4,
      cross_attention_dim: 32,
      down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
      up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    });
    expect(te.parameters).toBe(1_621_696); // position_ids (I64) are a buffer, not a parameter
    expect(te.dtypes).toEqual({ I64: 77, F32: 1_621_696 });
    expect(te.config).toMatchObject({
      hidden_size: 32,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      vocab_size: 49408,
      max_position_embeddings: 77,
      hidden_act: 'quick_gelu',
    });
    expect(vae.config).toEqual({ block_out_channels: [32, 64], latent_channels: 4, scaling_factor: 0.18215 });
    expect(tokenizer).toMatchObject({
      parameters: null,
      config: { vocab_size: 49408, model_max_length: 77, pad_token: '<|endoftext|>' },
    });
    expect(scheduler.config).toMatchObject({
      class: 'PNDMScheduler',
      beta_schedule: 'scaled_linear',
      prediction_type: 'epsilon',
      timestep_spacing: 'leading',
    });
    expect(info.total.parameters).toBe(2_164_452 + 1_621_696 + vae.parameters);
  });

  it('prints a table by default', () => {
    const r = s2i('info', '--model', tinySdDir);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/unet\s+UNet2DConditionModel\s+2,164,452\s+F32/);
    expect(r.stdout).toMatch(/text_encoder\s+CLIPTextModel\s+1,621,696\s+F32\+I64/);
    expect(r.stdout).toContain('scaling_factor 0.18215');
  });

  it('fails with one line for a missing folder', () => {
    const p = join(tmp, 'nope');
    expectOneLineError(s2i('info', '--model', p), p, 'not found');
  });

  it('fails with one line for a truncated safetensors file', () => {
    // A whole model but for the UNet's weights: info judges a model as generate does (every component is read).
    const dir = join(tmp, 'truncated');
    cpSync(tinySdDir, dir, { recursive: true });
    const weights = readFileSync(join(tinySdDir, 'unet', 'diffusion_pytorch_model.safetensors'));
    const p = join(dir, 'unet', 'diffusion_pytorch_model.safetensors');
    writeFileSync(p, weights.subarray(0, weights.length >> 1));
    expectOneLineError(s2i('info', '--model', dir), p, 'truncated');
  });

  it('fails with one line for a pickle checkpoint', () => {
    const p = join(tmp, 'model.ckpt');
    writeFileSync(p, 'x');
    expectOneLineError(s2i('info', '--model', p), p, 'pickle');
  });
});

/**
 * The committed latent model (models/shapes-ldm) as shipped: its VAE's encode→decode round trip keeps renders
 * scoring right; maps recorded at a further resolution in the same pass (`alsoAt`, `--attn-res 16,8`) are the ones a
 * run recording only that resolution gets; and a benchmark builds its methods at the resolution rule's 16x16 there
 * (latent/4 would be 4x4), while on the pixel model it keeps building them as before (their row keys unchanged).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { methodSettings } from '../src/bench/plan.js';
import { floatToRgb8 } from '../src/image/convert.js';
import { parseResolutionList } from '../src/cli/options.js';
import { generate } from '../src/pipeline/generate.js';
import { plan } from '../src/pipeline/plan.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { sampleBatch } from '../src/shapes/generate.js';
import { Rng } from '../src/shapes/rng.js';
import { scoreImage } from '../src/shapes/score.js';
import { readVaeFolder } from '../src/shapes/tasks.js';
import { decodePng } from '../src/image/png.js';
import { VaeEncoder } from '../src/train/vae.js';
import { ensureBuilt, s2i } from './support/cli.js';

const LDM = 'models/shapes-ldm';
const tmp = mkdtempSync(join(tmpdir(), 's2i-ldm-model-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('models/shapes-ldm', () => {
  it('VAE: encode→decode of 8 renders (64x64, 1-3 objects) still scores every one fully right', async () => {
    const { cfg, weights } = readVaeFolder(`${LDM}/vae`);
    const n = 8;
    const batch = sampleBatch(new Rng(22), n, { size: 64 });
    const vae = await VaeEncoder.create(cfg, weights, n, 64, { decode: true });
    const recon = await vae.roundTrip(batch.images);
    await vae.release();
    const per = 3 * 64 * 64;
    const right = batch.scenes.filter((scene, b) => {
      const image = floatToRgb8({ data: recon.subarray(b * per, (b + 1) * per), shape: [1, 3, 64, 64] });
      const truth = scene.objects.map((o) => ({ shape: o.shape, colour: o.colour }));
      return scoreImage(image, undefined, undefined, truth).full_success;
    });
    expect(right.length).toBe(n);
    // not the identity: the round trip goes through 4x16x16 latents
    const mse = recon.reduce((s, v, i) => s + (v - batch.images[i]!) ** 2, 0) / recon.length;
    expect(mse).toBeGreaterThan(0);
    expect(mse).toBeLessThan(0.05);
  });

  it('maps at a further resolution (alsoAt) are those a run recording only that resolution gets', async () => {
    const model = await StableDiffusion.load(LDM);
    try {
      const shared = { prompt: 'a red circle and a blue square', steps: 3, seed: 5 };
      const both = await generate(model, { ...shared, recordAttention: { resolution: [16, 16], alsoAt: [[8, 8]] } });
      const only8 = await generate(model, { ...shared, recordAttention: { resolution: [8, 8] } });
      const at8 = both.attentionMapsAt?.get('8x8');
      expect([...both.attentionMaps.keys()]).toEqual([0, 1, 2]);
      expect([...at8!.keys()]).toEqual([0, 1, 2]);
      expect(both.attentionMaps.get(0)!.shape.slice(0, 2)).toEqual([16, 16]);
      for (const i of [0, 1, 2]) {
        const a = at8!.get(i)!;
        const b = only8.attentionMaps.get(i)!;
        expect(a.shape).toEqual(b.shape);
        expect(Math.max(...a.data.map((v, k) => Math.abs(v - b.data[k]!)))).toBeLessThan(1e-6);
      }
      // The same image up to float rounding (graphs with other outputs are fused and rounded differently: 5e-5 here).
      expect(Math.max(...both.image.data.map((v, k) => Math.abs(v - only8.image.data[k]!)))).toBeLessThan(1e-3);
      expect(only8.attentionMapsAt).toBeUndefined();
    } finally {
      await model.release();
    }
  });

  it('a benchmark builds methods at 16x16 on the latent model and as before (latent/4 = 8x8) on the pixel one', async () => {
    const request = { prompt: 'a red circle and a blue square', seed: 0, steps: 50, guidanceScale: 7.5 };
    for (const [dir, res] of [
      [LDM, [16, 16]],
      ['models/shapes', undefined],
    ] as const) {
      const model = await StableDiffusion.load(dir);
      try {
        for (const method of ['attend-and-excite', 'suppress', 'conform']) {
          const p = plan({ ...request, method }, model, { recordMaps: false });
          expect(p.method!.attnRes, `${dir} ${method}`).toEqual(res);
          expect(methodSettings(p.samples[0]!.method)['attnRes'], `${dir} ${method}`).toEqual(res);
        }
      } finally {
        await model.release();
      }
    }
  });

  it('--attn-res takes one size or a list', () => {
    expect(parseResolutionList('16', '--attn-res')).toEqual([[16, 16]]);
    expect(parseResolutionList('16x16,8', '--attn-res')).toEqual([
      [16, 16],
      [8, 8],
    ]);
    expect(() => parseResolutionList('16,16x16', '--attn-res')).toThrow(/--attn-res names 16x16 twice/);
    expect(() => parseResolutionList('16,', '--attn-res')).toThrow(/--attn-res must be a size/);
  });

  it('s2i generate --attention-maps --attn-res 16,8 draws both levels; a list without the picture is refused', () => {
    ensureBuilt();
    const maps = join(tmp, 'maps.png');
    const args = ['generate', 'a red circle and a blue square', '--model', LDM, '--steps', '2', '--seed', '0'];
    const one = s2i([...args, '--out', join(tmp, 'a.png'), '--attention-maps', maps, '--json']);
    expect(one.code, one.stderr).toBe(0);
    const oneRow = decodePng(maps);
    const two = s2i([...args, '--out', join(tmp, 'b.png'), '--attention-maps', maps, '--attn-res', '16,8']);
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toMatch(/cross-attention 16x16 and 8x8/);
    const twoRows = decodePng(maps);
    expect(twoRows.width).toBeGreaterThanOrEqual(oneRow.width);
    expect(twoRows.height).toBe(2 * oneRow.height);
    const bad = s2i([...args, '--out', join(tmp, 'c.png'), '--attn-res', '16,8']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe(
      's2i: error: --attn-res with several sizes is for --attention-maps FILE (give one size otherwise)',
    );
  });
});

/**
 * The attention-resolution rule (src/attention/resolution.ts) on the three UNets it must serve: SD-1.5 (16x16 at
 * 512 px, Attend-and-Excite's attn_res), the pixel-space shapes model (8x8, its only cross-attention level) and the
 * latent shapes model (16x16 of 16/8/4: sixteen cells across the image, as on SD at 512 px — latent/4 would be 4x4).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { chooseAttentionResolution, crossAttentionResolutions } from '../../src/attention/resolution.js';
import { parseUNetConfig } from '../../src/models/config.js';
import { ldmUNetConfigJson } from '../../src/shapes/ldm.js';

const unetOf = (path: string) =>
  parseUNetConfig(JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>, path);

function rule(cfg: ReturnType<typeof unetOf>, latent: number): { available: number[][]; chosen: number[] } {
  const available = crossAttentionResolutions(cfg, latent, latent);
  return { available, chosen: chooseAttentionResolution(available, latent, latent) };
}

describe('attention resolution rule', () => {
  it('SD-1.5 at 512 px: cross-attention at 64/32/16/8, maps at 16x16; at 768 px diffusers’ image/32 (24x24)', () => {
    const sd = unetOf('configs/stable-diffusion-v1/unet/config.json');
    expect(rule(sd, 64)).toEqual({
      available: [
        [64, 64],
        [32, 32],
        [16, 16],
        [8, 8],
      ],
      chosen: [16, 16],
    });
    expect(rule(sd, 96).chosen).toEqual([24, 24]);
  });

  it('the pixel-space shapes model (32x32): its only level, 8x8', () => {
    expect(rule(unetOf('models/shapes/unet/config.json'), 32)).toEqual({ available: [[8, 8]], chosen: [8, 8] });
  });

  it('the latent shapes model (16x16 latents): levels 16/8/4, maps at 16x16, and 8x8 when asked', () => {
    const ldm = parseUNetConfig(ldmUNetConfigJson(), 'shapes-ldm unet');
    expect(rule(ldm, 16)).toEqual({
      available: [
        [16, 16],
        [8, 8],
        [4, 4],
      ],
      chosen: [16, 16],
    });
    expect(chooseAttentionResolution(crossAttentionResolutions(ldm, 16, 16), 16, 16, [8, 8])).toEqual([8, 8]);
    expect(() => chooseAttentionResolution(crossAttentionResolutions(ldm, 16, 16), 16, 16, [2, 2])).toThrow(
      /no cross-attention at that size.*16x16, 8x8, 4x4/,
    );
  });
});

/**
 * The picture of docs/method.md's "The second model: maps at two resolutions": for each prompt, plain sampling and
 * Suppress-to-Impress on the latent model (models/shapes-ldm, its own defaults: 50 DDIM steps, guidance 7.5), each
 * subject's cross-attention map at 16x16 (the resolution the methods read there) and at 8x8, at a few steps, beside
 * the image; and the pixel model's (models/shapes, its only level, 8x8) for the first prompt and the same seed. The maps are
 * what `s2i generate --attention-maps FILE --attn-res 16,8` draws: the subject token's column of the conditional
 * pass's cross-attention (mean over the layers at that size and their heads; after Suppress-to-Impress's edit where
 * it edits), divided by its max.
 *
 *   npx tsx scripts/ldm-maps.ts --out docs/images/ldm-maps.png
 *
 * One row per (prompt, method, model, resolution; `px` rows: the pixel model): the image, then each subject's map at each step (steps as
 * fractions of the run, so the pixel model's 25 steps are compared at the same points of its schedule).
 */
import '../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { parseArgs } from 'node:util';
import { tokenMap } from '../src/attention/render.js';
import { overlayHeatmap } from '../src/image/colormap.js';
import { composeGrid } from '../src/image/grid.js';
import type { RgbImage } from '../src/image/image.js';
import { writePng } from '../src/image/png.js';
import { resizeImage } from '../src/image/resize.js';
import { readSamplingDefaults } from '../src/io/model-folder.js';
import { runRequest } from '../src/pipeline/run.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import type { Tensor } from '../src/tensor.js';

const { values } = parseArgs({
  options: {
    prompts: {
      type: 'string',
      default: 'a red circle and a blue square|an orange circle, a yellow triangle and a purple square',
    },
    seed: { type: 'string', default: '0' },
    /** Points of the run, as fractions of its steps. */
    at: { type: 'string', default: '0.04,0.2,0.5' },
    latent: { type: 'string', default: 'models/shapes-ldm' },
    pixel: { type: 'string', default: 'models/shapes' },
    side: { type: 'string', default: '64' },
    out: { type: 'string', default: 'docs/images/ldm-maps.png' },
  },
});
const prompts = values.prompts!.split('|');
const seed = Number(values.seed);
const fractions = values.at!.split(',').map(Number);
const SIDE = Number(values.side);
const METHODS = [
  ['none', 'plain'],
  ['suppress', 'S2I'],
] as const;

const tiles: RgbImage[] = [];
const labels: string[] = [];
const blank = (): RgbImage => ({ data: new Uint8Array(SIDE * SIDE * 3).fill(255), width: SIDE, height: SIDE });
const cols = 1 + Math.max(...prompts.map((p) => p.split(/,| and /).length)) * fractions.length;

/** One row: the image and each subject's map at each chosen step, padded to `cols` tiles. */
function row(label: string, image: RgbImage, byCall: Map<number, Tensor>, subjects: { word: string; token: number }[]) {
  const big = resizeImage(image, SIDE, SIDE, 'nearest');
  const start = tiles.length;
  tiles.push(big);
  labels.push(label);
  const calls = [...byCall.keys()].sort((a, b) => a - b);
  for (const s of subjects)
    for (const call of calls) {
      const maps = byCall.get(call)!;
      const [h, w] = maps.shape as [number, number, number];
      tiles.push(
        overlayHeatmap(big, tokenMap(maps, s.token), w, h, { normalize: 'max', alpha: 0.55, resize: 'nearest' }),
      );
      labels.push(`${s.word} ${call}`);
    }
  while (tiles.length - start < cols) (tiles.push(blank()), labels.push(''));
}

for (const [dir, prefix] of [
  [values.latent!, ''],
  [values.pixel!, 'px '],
] as const) {
  const model = await StableDiffusion.load(dir);
  // The pixel model for the first prompt only (the picture stays small).
  for (const prompt of dir === values.latent ? prompts : prompts.slice(0, 1)) {
    for (const [method, short] of METHODS) {
      // The model's own steps and guidance (its s2i.json), as `s2i generate` uses them.
      const request = { prompt, seed, method, subjects: 'auto' };
      const steps = readSamplingDefaults(dir).steps ?? 50;
      const calls = fractions.map((f) => Math.min(steps - 1, Math.round(f * steps)));
      const alsoAt = dir === values.latent ? { alsoAt: [[8, 8] as const] } : {};
      const run = await runRequest(model, { ...request, attentionPicture: { steps: calls, ...alsoAt } });
      const subjects = run.subjects!.subjects.map((s) => ({ word: s.word, token: s.tokenIndex }));
      const res = run.attnRes!.join('x');
      row(`${prefix}${short} ${res}`, run.image, run.result.attentionMaps, subjects);
      for (const [at, maps] of run.result.attentionMapsAt ?? [])
        row(`${prefix}${short} ${at}`, run.image, maps, subjects);
      process.stdout.write(`${dir} ${method} "${prompt}" seed ${seed}: ${run.steps} steps, maps at calls ${calls}\n`);
    }
  }
  await model.release();
}
writePng(values.out!, composeGrid(tiles, cols, { pad: 2, labels }));
process.stdout.write(`wrote ${values.out}\n`);

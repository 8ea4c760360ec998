/**
 * The exact scorer at 64x64 (the latent model's world), on generated ground truth: the rows of the 32x32 table
 * (test/unit/shapes-score.test.ts), with blur and the low-resolution round trip scaled with the image (σ ×2,
 * 32x32 instead of 16x16) so that each row degrades the objects as much as at 32x32. 200 images per row (the 32x32 table has 1,000–3,000).
 */
import { describe, expect, it } from 'vitest';
import { gaussianBlur } from '../../src/image/filter.js';
import type { RgbImage } from '../../src/image/image.js';
import { resizeBilinear } from '../../src/image/resize.js';
import {
  addNoise,
  colourShift,
  driftObjectColours,
  renderScene,
  Rng,
  sampleImage,
  scoreImage,
  type ExampleOptions,
} from '../../src/shapes/index.js';

type Degrade = (img: RgbImage, rng: Rng) => RgbImage;
const N = 200;

function fullSuccess(seed: number, degrade: Degrade, options: ExampleOptions = {}): number {
  const rng = new Rng(seed);
  const noise = new Rng(seed + 1);
  let ok = 0;
  for (let i = 0; i < N; i++) {
    const { scene } = sampleImage(rng, { size: 64, ...options });
    const img = { data: renderScene(scene), width: 64, height: 64 };
    const truth = scene.objects.map((o) => ({ shape: o.shape, colour: o.colour }));
    if (scoreImage(degrade(img, noise), undefined, undefined, truth).full_success) ok++;
  }
  return ok / N;
}

const rows: [string, Degrade, number, ExampleOptions?][] = [
  ['clean, 1-3 objects', (img) => img, 0.995],
  [
    'clean, same-colour/shape pairs, 1-4 objects',
    (img) => img,
    0.995,
    { allowSameColour: true, allowSameShape: true, maxObjects: 4 },
  ],
  ['gaussian blur sigma 1.4', (img) => gaussianBlur(img, 1.4), 0.99],
  ['pixel noise sigma 15', (img, r) => addNoise(img, 15, r), 0.99],
  ['pixel noise sigma 30', (img, r) => addNoise(img, 30, r), 0.98],
  ['colour shift (gain 0.85-1.05, offsets +-20)', (img, r) => colourShift(img, r), 0.99],
  ['object colours drift dark (gain 0.7-1, +-25)', (img, r) => driftObjectColours(img, r), 0.96],
  ['stress: pixel noise sigma 45', (img, r) => addNoise(img, 45, r), 0.95],
  ['stress: gaussian blur sigma 3', (img) => gaussianBlur(img, 3), 0.9],
  [
    'stress: 32x32 round trip + noise 15 + shift',
    (img, r) => colourShift(addNoise(resizeBilinear(resizeBilinear(img, 32, 32), 64, 64), 15, r), r),
    0.9,
  ],
];

describe('scorer accuracy at 64x64 on ground-truth renders', () => {
  const table: string[] = [];
  rows.forEach(([name, degrade, min, options], i) => {
    it(`${name}: >= ${(100 * min).toFixed(1)}% (${N} images)`, () => {
      const a = fullSuccess(100 + i, degrade, options);
      table.push(`| ${name} | ${(100 * a).toFixed(1)}% |`);
      expect(a).toBeGreaterThanOrEqual(min);
    });
  });
  it('prints the table', () => console.log(`\n[scorer accuracy, 64x64]\n${table.join('\n')}\n`));
});

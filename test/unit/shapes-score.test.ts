import { describe, expect, it } from 'vitest';
import { gaussianBlur } from '../../src/image/filter.js';
import type { RgbImage } from '../../src/image/image.js';
import { resizeBilinear } from '../../src/image/resize.js';
import {
  addNoise,
  colourShift,
  COLOURS,
  detectObjects,
  driftObjectColours,
  maxWeightAssignment,
  renderScene,
  Rng,
  sampleImage,
  type Scene,
  scoreImage,
  type ExampleOptions,
} from '../../src/shapes/index.js';

const toImage = (scene: Scene): RgbImage => ({ data: renderScene(scene), width: scene.width, height: scene.height });
const objectsOf = (scene: Scene) => scene.objects.map((o) => ({ shape: o.shape, colour: o.colour }));

type Degrade = (img: RgbImage, rng: Rng) => RgbImage;

/** Fraction of images (and of objects) scored fully right against their ground truth. */
function accuracy(
  n: number,
  seed: number,
  degrade: Degrade,
  options: ExampleOptions = {},
): { images: number; objects: number } {
  const rng = new Rng(seed);
  const noise = new Rng(seed + 1);
  let ok = 0,
    objOk = 0,
    objN = 0;
  for (let i = 0; i < n; i++) {
    const { scene } = sampleImage(rng, options);
    const report = scoreImage(degrade(toImage(scene), noise), undefined, undefined, objectsOf(scene));
    if (report.full_success) ok++;
    objN += report.objects.length;
    objOk += report.objects.filter((o) => o.found_shape_match && o.colour_correct).length;
  }
  return { images: ok / n, objects: objOk / objN };
}

const measured: string[] = [];
const record = (name: string, n: number, a: { images: number; objects: number }): void => {
  const line = `${name.padEnd(44)} ${(100 * a.images).toFixed(1).padStart(5)}% of ${n} images fully right, ${(100 * a.objects).toFixed(2)}% of objects`;
  measured.push(line);
  console.log(`[scorer accuracy] ${line}`);
};

describe('scorer accuracy on ground-truth renders', () => {
  it('clean renders: >= 99.5% full success (3000 images)', () => {
    const a = accuracy(3000, 1, (img) => img);
    record('clean', 3000, a);
    expect(a.images).toBeGreaterThanOrEqual(0.995);
  });

  it('clean renders with same-colour and same-shape pairs, 1–4 objects (1000 images)', () => {
    const a = accuracy(1000, 2, (img) => img, { allowSameColour: true, allowSameShape: true, maxObjects: 4 });
    record('clean, same-colour/shape pairs, 1-4 objects', 1000, a);
    expect(a.images).toBeGreaterThanOrEqual(0.995);
  });

  const degradations: [string, Degrade, number][] = [
    ['gaussian blur sigma 0.7', (img) => gaussianBlur(img, 0.7), 0.995],
    ['pixel noise sigma 15', (img, r) => addNoise(img, 15, r), 0.995],
    ['pixel noise sigma 30', (img, r) => addNoise(img, 30, r), 0.98],
    ['colour shift (gain 0.85-1.05, offsets +-20)', (img, r) => colourShift(img, r), 0.995],
    ['blur 0.7 + noise 15 + colour shift', (img, r) => colourShift(addNoise(gaussianBlur(img, 0.7), 15, r), r), 0.98],
    ['object colours drift dark (gain 0.7-1, +-25)', (img, r) => driftObjectColours(img, r), 0.96],
    // Stress levels beyond the brief, to show where it starts to break:
    ['stress: pixel noise sigma 45', (img, r) => addNoise(img, 45, r), 0.95],
    ['stress: gaussian blur sigma 1.5', (img) => gaussianBlur(img, 1.5), 0.97],
    [
      'stress: 16x16 round trip + noise 15 + shift',
      (img, r) => colourShift(addNoise(resizeBilinear(resizeBilinear(img, 16, 16), 32, 32), 15, r), r),
      0.93,
    ],
  ];
  for (const [name, degrade, min] of degradations) {
    it(`${name}: >= ${(100 * min).toFixed(1)}% (1000 images)`, () => {
      const a = accuracy(1000, 3, degrade);
      record(name, 1000, a);
      expect(a.images).toBeGreaterThanOrEqual(min);
    });
  }

  it('works at 64x64 too', () => {
    const a = accuracy(200, 4, (img, r) => addNoise(gaussianBlur(img, 1.4), 15, r), { size: 64 });
    record('64x64, blur 1.4 + noise 15', 200, a);
    expect(a.images).toBeGreaterThanOrEqual(0.98);
  });

  it('prints the table', () => {
    console.log(`\n[scorer accuracy]\n${measured.join('\n')}\n`);
  });
});

describe('failure detection', () => {
  it('reports a removed object as missing (neglect)', () => {
    const rng = new Rng(21);
    let checked = 0;
    while (checked < 300) {
      const { scene } = sampleImage(rng, { minObjects: 2, maxObjects: 3 });
      const k = rng.int(0, scene.objects.length - 1);
      const shown: Scene = { ...scene, objects: scene.objects.filter((_, i) => i !== k) };
      const r = scoreImage(toImage(shown), undefined, undefined, objectsOf(scene));
      const n = scene.objects.length;
      expect(r.full_success).toBe(false);
      expect(r.object_recall).toBeCloseTo((n - 1) / n, 9);
      expect(r.binding).toBeCloseTo((n - 1) / n, 9);
      expect(r.objects.map((o) => o.found)).toEqual(scene.objects.map((_, i) => i !== k));
      expect(r.extra_objects).toBe(0);
      checked++;
    }
  });

  it('reports a recoloured object as a binding failure, not as neglect', () => {
    const rng = new Rng(22);
    for (let t = 0; t < 300; t++) {
      const { scene } = sampleImage(rng, { minObjects: 1, maxObjects: 3 });
      const k = rng.int(0, scene.objects.length - 1);
      const unused = COLOURS.filter((c) => !scene.objects.some((o) => o.colour === c));
      const shown: Scene = {
        ...scene,
        objects: scene.objects.map((o, i) => (i === k ? { ...o, colour: rng.pick(unused) } : o)),
      };
      const r = scoreImage(toImage(shown), undefined, undefined, objectsOf(scene));
      expect(r.full_success).toBe(false);
      expect(r.object_recall).toBe(1);
      expect(r.binding).toBeLessThan(1);
      expect(r.objects[k]).toMatchObject({
        found: true,
        found_shape_match: true,
        colour_correct: false,
        leaked: false,
      });
      expect(r.objects[k]!.detected_colour).toBe(shown.objects[k]!.colour);
      expect(r.leakage).toBe(0);
    }
  });

  const twoObjects = (a: [string, string], b: [string, string]): Scene => ({
    width: 32,
    height: 32,
    objects: [
      { shape: a[1] as 'circle', colour: a[0] as 'red', x: 2, y: 2, size: 12 },
      { shape: b[1] as 'circle', colour: b[0] as 'red', x: 18, y: 18, size: 12 },
    ],
  });

  it('counts colour taken from another prompted object as leakage, and swapped colours as two leaks', () => {
    const prompt = 'a red circle and a blue square';
    const leak = scoreImage(toImage(twoObjects(['blue', 'circle'], ['blue', 'square'])), undefined, undefined, prompt);
    expect(leak).toMatchObject({
      object_recall: 1,
      binding: 0.5,
      leakage: 0.5,
      full_success: false,
      extra_objects: 0,
      prompt,
    });
    expect(leak.objects.map((o) => o.leaked)).toEqual([true, false]);
    const swap = scoreImage(toImage(twoObjects(['blue', 'circle'], ['red', 'square'])), undefined, undefined, prompt);
    expect(swap).toMatchObject({
      object_recall: 1,
      binding: 0,
      binding_given_found: 0,
      leakage: 1,
      full_success: false,
    });
    const right = scoreImage(toImage(twoObjects(['red', 'circle'], ['blue', 'square'])), undefined, undefined, prompt);
    expect(right).toMatchObject({ object_recall: 1, binding: 1, leakage: 0, full_success: true });
  });

  it('reports an unrequested object as extra, and a wrong shape as not found-as-shape', () => {
    const extra = scoreImage(
      toImage(twoObjects(['red', 'circle'], ['green', 'triangle'])),
      undefined,
      undefined,
      'a red circle',
    );
    expect(extra).toMatchObject({ object_recall: 1, binding: 1, extra_objects: 1, full_success: false });
    expect(extra.detections.find((d) => d.matched_to === null)).toMatchObject({ colour: 'green', shape: 'triangle' });
    const wrongShape = scoreImage(
      toImage(twoObjects(['red', 'triangle'], ['blue', 'square'])),
      undefined,
      undefined,
      'a red circle and a blue square',
    );
    expect(wrongShape.objects[0]).toMatchObject({
      found: true,
      found_shape_match: false,
      colour_correct: true,
      detected_shape: 'triangle',
    });
    expect(wrongShape).toMatchObject({ object_recall: 0.5, binding: 0.5, full_success: false, extra_objects: 0 });
  });

  it('accepts colourless prompts and explicit object lists', () => {
    const img = toImage(twoObjects(['red', 'circle'], ['blue', 'square']));
    expect(scoreImage(img, undefined, undefined, 'a circle and a square').full_success).toBe(true);
    expect(scoreImage(img.data, 32, 32, [{ shape: 'square' }, { shape: 'circle', colour: 'red' }]).full_success).toBe(
      true,
    );
    expect(scoreImage(img, undefined, undefined, { objects: [{ shape: 'triangle' }] })).toMatchObject({
      object_recall: 0,
      extra_objects: 2,
    });
  });

  it('finds nothing in blank, tinted or noisy empty images', () => {
    const blank: RgbImage = { data: new Uint8Array(32 * 32 * 3).fill(255), width: 32, height: 32 };
    expect(detectObjects(blank)).toEqual([]);
    const r = scoreImage(blank, undefined, undefined, 'a red circle');
    expect(r).toMatchObject({
      object_recall: 0,
      binding: 0,
      binding_given_found: null,
      full_success: false,
      extra_objects: 0,
    });
    expect(r.objects[0]!.found).toBe(false);
    const rng = new Rng(5);
    for (let i = 0; i < 50; i++) {
      const noisy = colourShift(addNoise(blank, 30, rng), rng);
      expect(detectObjects(noisy)).toEqual([]);
    }
  });

  it('reports dark/grey blobs with colour null', () => {
    const img = toImage(twoObjects(['red', 'circle'], ['blue', 'square']));
    for (let y = 18; y < 30; y++)
      for (let x = 18; x < 30; x++) img.data.fill(40, (y * 32 + x) * 3, (y * 32 + x) * 3 + 3);
    const r = scoreImage(img, undefined, undefined, 'a red circle and a square');
    expect(r.detections.find((d) => d.colour === null)).toMatchObject({
      shape: 'square',
      bbox: [18, 18, 12, 12],
      area: 144,
    });
    expect(r.full_success).toBe(true); // the square's colour was not asked for
    expect(scoreImage(img, undefined, undefined, 'a red circle and a blue square').objects[1]).toMatchObject({
      found_shape_match: true,
      colour_correct: false,
      detected_colour: null,
    });
  });

  it('reports geometry: bbox, area, centroid, shape confidence', () => {
    const [circle, square] = detectObjects(toImage(twoObjects(['red', 'circle'], ['blue', 'square']))).sort(
      (a, b) => a.bbox[0] - b.bbox[0],
    );
    expect(circle).toMatchObject({
      colour: 'red',
      shape: 'circle',
      bbox: [2, 2, 12, 12],
      centroid: [8, 8],
      shape_iou: 1,
    });
    expect(square).toMatchObject({
      colour: 'blue',
      shape: 'square',
      bbox: [18, 18, 12, 12],
      area: 144,
      shape_iou: 1,
      shape_confidence: 1,
    });
    expect(circle!.shape_confidence).toBeGreaterThan(0.5);
  });
});

describe('maxWeightAssignment', () => {
  it('matches brute force on random small problems', () => {
    const rng = new Rng(8);
    const perms = (items: number[], k: number): number[][] =>
      k === 0
        ? [[]]
        : items.flatMap((x) =>
            perms(
              items.filter((y) => y !== x),
              k - 1,
            ).map((p) => [x, ...p]),
          );
    for (let t = 0; t < 200; t++) {
      const n = rng.int(1, 4),
        m = rng.int(n, 5);
      const w = Array.from({ length: n }, () => Array.from({ length: m }, () => rng.int(0, 3) + rng.float() * 0.1));
      const best = Math.max(...perms([...Array(m).keys()], n).map((p) => p.reduce((s, j, i) => s + w[i]![j]!, 0)));
      const got = maxWeightAssignment(w);
      expect(new Set(got).size).toBe(n);
      expect(got.reduce((s, j, i) => s + w[i]![j]!, 0)).toBeCloseTo(best, 9);
    }
    expect(maxWeightAssignment([])).toEqual([]);
  });
});

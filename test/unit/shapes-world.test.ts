import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { rgb8ToFloat } from '../../src/image/convert.js';
import {
  captionFor,
  COLOURS,
  PALETTE,
  parsePrompt,
  renderScene,
  Rng,
  sampleBatch,
  sampleExample,
  sampleImage,
  sampleScene,
  type Scene,
  shapeMask,
  SHAPES,
} from '../../src/shapes/index.js';

describe('Rng', () => {
  it('is xoshiro128** (reference outputs for state 1, 2, 3, 4)', () => {
    const r = Rng.fromState([1, 2, 3, 4]);
    expect([r.uint32(), r.uint32(), r.uint32(), r.uint32(), r.uint32(), r.uint32()]).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492,
    ]);
  });

  it('is deterministic per seed, differs across seeds, and pins the seeding (same numbers on every platform)', () => {
    const seq = (seed: number | string) => {
      const r = new Rng(seed);
      return Array.from({ length: 5 }, () => r.uint32());
    };
    expect(seq(42)).toEqual(seq(42));
    expect(seq(42)).not.toEqual(seq(43));
    expect(seq(-1)).not.toEqual(seq(2 ** 32 - 1)); // the high half of the seed counts
    expect(seq(2 ** 40)).not.toEqual(seq(0));
    expect(seq('abc')).toEqual(seq('abc'));
    expect(new Rng(0).getState()).toMatchInlineSnapshot(`
      [
        2462723854,
        1020716019,
        454327756,
        1275600319,
      ]
    `);
    expect(() => new Rng(0.5)).toThrow();
  });

  it('gives the expected distributions', () => {
    const r = new Rng(7);
    let sum = 0,
      sq = 0,
      lo = Infinity,
      hi = -Infinity;
    const ints = new Array<number>(6).fill(0);
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const f = r.float();
      ((lo = Math.min(lo, f)), (hi = Math.max(hi, f)));
      const z = r.normal();
      ((sum += z), (sq += z * z));
      ints[r.int(0, 5)]!++;
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    expect(Math.abs(sum / n)).toBeLessThan(0.03);
    expect(Math.abs(sq / n - 1)).toBeLessThan(0.05);
    for (const c of ints) expect(Math.abs(c / n - 1 / 6)).toBeLessThan(0.015);
    const w = [0, 0, 0];
    for (let i = 0; i < 10000; i++) w[r.weighted([1, 0, 3])]!++;
    expect(w[1]).toBe(0);
    expect(w[2]! / 10000).toBeCloseTo(0.75, 1);
    const a = r.shuffle([1, 2, 3, 4, 5]);
    expect([...a].sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

function overlaps(s: Scene, gap: (i: number, j: number) => number): boolean {
  const o = s.objects;
  for (let i = 0; i < o.length; i++) {
    for (let j = i + 1; j < o.length; j++) {
      const a = o[i]!,
        b = o[j]!,
        g = gap(i, j);
      const apart =
        a.x + a.size + g <= b.x || b.x + b.size + g <= a.x || a.y + a.size + g <= b.y || b.y + b.size + g <= a.y;
      if (!apart) return true;
    }
  }
  return false;
}

describe('scene sampler', () => {
  it('is reproducible from the seed', () => {
    const a = Array.from({ length: 20 }, (_, i) => sampleExample(new Rng(100 + i)));
    const b = Array.from({ length: 20 }, (_, i) => sampleExample(new Rng(100 + i)));
    expect(a).toEqual(b);
    // Pinned: the same seed must give the same data on every platform and after refactors (re-pin deliberately).
    expect(sampleExample(new Rng(1))).toMatchInlineSnapshot(`
      {
        "caption": "a red circle and a purple square",
        "scene": {
          "height": 32,
          "objects": [
            {
              "colour": "red",
              "shape": "circle",
              "size": 10,
              "x": 17,
              "y": 1,
            },
            {
              "colour": "purple",
              "shape": "square",
              "size": 14,
              "x": 9,
              "y": 14,
            },
          ],
          "width": 32,
        },
      }
    `);
  });

  it('follows the default rules: 1–3 objects (30/40/30%), 8–14 px, inside, no overlap, distinct colours and shapes', () => {
    const rng = new Rng(5);
    const counts = [0, 0, 0, 0];
    const n = 3000;
    let touching = 0;
    for (let i = 0; i < n; i++) {
      const s = sampleScene(rng);
      counts[s.objects.length]!++;
      const ok =
        s.objects.every(
          (o) => o.size >= 8 && o.size <= 14 && o.x >= 0 && o.y >= 0 && o.x + o.size <= 32 && o.y + o.size <= 32,
        ) &&
        new Set(s.objects.map((o) => o.colour)).size === s.objects.length &&
        new Set(s.objects.map((o) => o.shape)).size === s.objects.length &&
        !overlaps(s, () => 0);
      if (!ok) expect.fail(`scene ${i} breaks the rules: ${JSON.stringify(s)}`);
      if (overlaps(s, () => 1)) touching++;
    }
    expect(counts[0]).toBe(0);
    expect(counts[1]! / n).toBeCloseTo(0.3, 1);
    expect(counts[2]! / n).toBeCloseTo(0.4, 1);
    expect(counts[3]! / n).toBeCloseTo(0.3, 1);
    expect(touching).toBeGreaterThan(0); // touching is allowed, and happens
  });

  it('allows same-colour and same-shape pairs on request, keeping same-colour objects 2 px apart', () => {
    const rng = new Rng(6);
    let sameColour = 0,
      sameShape = 0;
    for (let i = 0; i < 2000; i++) {
      const s = sampleScene(rng, { allowSameColour: true, allowSameShape: true, minObjects: 2, maxObjects: 4 });
      expect(s.objects.length).toBeGreaterThanOrEqual(2);
      expect(s.objects.length).toBeLessThanOrEqual(4);
      if (new Set(s.objects.map((o) => o.colour)).size < s.objects.length) sameColour++;
      if (new Set(s.objects.map((o) => o.shape)).size < s.objects.length) sameShape++;
      expect(overlaps(s, (a, b) => (s.objects[a]!.colour === s.objects[b]!.colour ? 2 : 0))).toBe(false);
    }
    expect(sameColour).toBeGreaterThan(200);
    expect(sameShape).toBeGreaterThan(500);
  });

  it('scales object sizes with the image size and validates options', () => {
    const s = sampleScene(new Rng(1), { size: 64, minObjects: 3, maxObjects: 3 });
    for (const o of s.objects) (expect(o.size).toBeGreaterThanOrEqual(16), expect(o.size).toBeLessThanOrEqual(28));
    expect(() => sampleScene(new Rng(1), { maxObjects: 4 })).toThrow(UserError);
    expect(() => sampleScene(new Rng(1), { maxObjects: 4 })).toThrow(/distinct shapes/);
    expect(() => sampleScene(new Rng(1), { minObjects: 3, maxObjects: 2 })).toThrow(/maxObjects/);
    expect(() => sampleScene(new Rng(1), { countWeights: [1, 2] })).toThrow(/countWeights/);
    expect(() =>
      sampleScene(new Rng(1), { size: 32, minObjects: 6, maxObjects: 6, allowSameShape: true, minObjectSize: 16 }),
    ).toThrow(/cannot place/);
  });
});

describe('renderer', () => {
  it('draws palette colours on white with crisp edges; pixel counts equal the masks', () => {
    const rng = new Rng(11);
    const allowed = new Set([...Object.values(PALETTE), [255, 255, 255]].map((c) => c.join(',')));
    for (let i = 0; i < 200; i++) {
      const { scene, image } = sampleImage(rng);
      const counts = new Map<string, number>();
      const stray: string[] = [];
      for (let p = 0; p < image.length; p += 3) {
        const key = `${image[p]},${image[p + 1]},${image[p + 2]}`;
        if (!allowed.has(key)) stray.push(key);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      expect(stray).toEqual([]);
      for (const o of scene.objects) {
        const want = shapeMask(o.shape, o.size).reduce((a, b) => a + b, 0);
        expect(counts.get(PALETTE[o.colour].join(','))).toBe(want);
      }
    }
  });

  it('has the expected masks: full square, inscribed circle, upward triangle', () => {
    const area = (m: Uint8Array) => m.reduce((a, b) => a + b, 0);
    expect(area(shapeMask('square', 10))).toBe(100);
    expect(area(shapeMask('circle', 10)) / 100).toBeCloseTo(Math.PI / 4, 1);
    const tri = shapeMask('triangle', 10);
    expect(area(tri) / 100).toBeCloseTo(0.5, 1);
    const row = (m: Uint8Array, y: number) => m.subarray(y * 10, y * 10 + 10).reduce((a, b) => a + b, 0);
    expect(row(tri, 9)).toBe(10); // full base at the bottom
    expect(row(tri, 1)).toBeLessThanOrEqual(2); // apex at the top
    expect(row(shapeMask('circle', 10), 0)).toBeLessThan(row(shapeMask('circle', 10), 5));
  });

  it('renders a hand-made scene exactly', () => {
    const scene: Scene = { width: 8, height: 8, objects: [{ shape: 'square', colour: 'red', x: 1, y: 2, size: 3 }] };
    const img = renderScene(scene);
    const at = (x: number, y: number) => [...img.subarray((y * 8 + x) * 3, (y * 8 + x) * 3 + 3)];
    expect(at(1, 2)).toEqual([...PALETTE.red]);
    expect(at(3, 4)).toEqual([...PALETTE.red]);
    expect(at(4, 4)).toEqual([255, 255, 255]);
    expect(at(1, 1)).toEqual([255, 255, 255]);
  });
});

describe('captions', () => {
  it('lists objects in order with articles, commas and "and"', () => {
    expect(captionFor([{ shape: 'circle', colour: 'red' }])).toBe('a red circle');
    expect(
      captionFor([
        { shape: 'circle', colour: 'orange' },
        { shape: 'square', colour: 'blue' },
      ]),
    ).toBe('an orange circle and a blue square');
    expect(
      captionFor([
        { shape: 'triangle', colour: 'green' },
        { shape: 'circle', colour: 'yellow' },
        { shape: 'square', colour: 'purple' },
      ]),
    ).toBe('a green triangle, a yellow circle and a purple square');
    expect(
      captionFor([{ shape: 'circle', colour: 'red' }, { shape: 'circle', colour: 'red' }, { shape: 'square' }]),
    ).toBe('two red circles and a square');
  });

  it('adds "a photo of" style prefixes sometimes, and always parses back to the scene objects', () => {
    const rng = new Rng(3);
    const prefixes = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const { scene, caption } = sampleExample(rng, { allowSameColour: i % 2 === 0, allowSameShape: i % 2 === 0 });
      const prefix = /^(a photo of|an image of|a picture of) /.exec(caption)?.[1] ?? '';
      prefixes.set(prefix, (prefixes.get(prefix) ?? 0) + 1);
      expect(parsePrompt(caption).objects).toEqual(scene.objects.map((o) => ({ shape: o.shape, colour: o.colour })));
    }
    expect(prefixes.get('')! / 1000).toBeCloseTo(0.7, 1);
    expect(prefixes.size).toBe(4);
    const { caption } = sampleExample(new Rng(3), { prefixProbability: 0 });
    expect(caption).not.toMatch(/ of /);
  });
});

describe('parsePrompt', () => {
  it('parses captions and user prompts', () => {
    expect(parsePrompt('a red circle and a blue square').objects).toEqual([
      { shape: 'circle', colour: 'red' },
      { shape: 'square', colour: 'blue' },
    ]);
    expect(parsePrompt('A photo of a green triangle, a yellow circle and a purple square.').objects).toEqual([
      { shape: 'triangle', colour: 'green' },
      { shape: 'circle', colour: 'yellow' },
      { shape: 'square', colour: 'purple' },
    ]);
    expect(parsePrompt('  an image of an orange   circle, and a square  ').objects).toEqual([
      { shape: 'circle', colour: 'orange' },
      { shape: 'square' },
    ]);
    expect(parsePrompt('two red circles and 3 blue triangles').objects).toEqual([
      ...Array(2).fill({ shape: 'circle', colour: 'red' }),
      ...Array(3).fill({ shape: 'triangle', colour: 'blue' }),
    ]);
    expect(parsePrompt('photo of one circle').objects).toEqual([{ shape: 'circle' }]);
    expect(parsePrompt('a circle, a square, a triangle').objects).toHaveLength(3);
    expect(
      parsePrompt('a photo of a photo of a circle'.replace('a photo of a photo of ', 'a photo of ')).objects,
    ).toHaveLength(1);
  });

  it('rejects what it cannot parse with a UserError quoting the prompt and the reason', () => {
    const cases: [string, RegExp][] = [
      ['', /it is empty/],
      ['a hexagon', /unknown word "hexagon"/],
      ['a red circle with a blue square', /unexpected word "with"/],
      ['red circle', /needs an article or a count/],
      ['a red', /names no shape/],
      ['a red circles', /plural after "a"/],
      ['two red circle', /needs the plural "circles"/],
      ['a big red circle', /unknown word "big"/],
      ['a red circle and', /ends with a separator/],
      ['and a red circle', /starts with "and"/],
      ['a red circle,, a blue square', /two separators/],
      ['a red circle; a blue square', /unexpected character ";"/],
      ['a photo of', /names no objects/],
      ['a cat', /unknown word "cat"/],
    ];
    for (const [prompt, why] of cases) {
      let err: unknown;
      try {
        parsePrompt(prompt);
      } catch (e) {
        err = e;
      }
      expect(err, prompt).toBeInstanceOf(UserError);
      expect((err as Error).message, prompt).toMatch(why);
      expect((err as Error).message).toContain(`"${prompt}"`);
      expect((err as Error).message).not.toContain('\n');
    }
  });
});

describe('sampleBatch', () => {
  it('renders [B,3,H,W] floats in [-1,1] equal to the 8-bit renders, with captions and scenes', () => {
    const batch = sampleBatch(new Rng(9), 16);
    expect(batch.shape).toEqual([16, 3, 32, 32]);
    expect(batch.images.length).toBe(16 * 3 * 32 * 32);
    expect(batch.captions).toHaveLength(16);
    // Same seed, one at a time: identical scenes and captions, identical pixels.
    const rng = new Rng(9);
    for (let b = 0; b < 16; b++) {
      const ex = sampleImage(rng);
      expect(batch.captions[b]).toBe(ex.caption);
      expect(batch.scenes[b]).toEqual(ex.scene);
      const want = rgb8ToFloat({ data: ex.image, width: 32, height: 32 });
      expect(batch.images.subarray(b * 3072, (b + 1) * 3072)).toEqual(want);
    }
    let lo = Infinity,
      hi = -Infinity;
    for (const v of batch.images) ((lo = Math.min(lo, v)), (hi = Math.max(hi, v)));
    expect(lo).toBeGreaterThanOrEqual(-1);
    expect(hi).toBe(1);
  });

  it('uses every shape and colour', () => {
    const batch = sampleBatch(new Rng(2), 200);
    const objs = batch.scenes.flatMap((s) => s.objects);
    expect(new Set(objs.map((o) => o.shape))).toEqual(new Set(SHAPES));
    expect(new Set(objs.map((o) => o.colour))).toEqual(new Set(COLOURS));
  });
});

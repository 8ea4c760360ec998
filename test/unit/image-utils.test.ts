import { describe, expect, it } from 'vitest';
import {
  blendImages,
  colormap,
  composeGrid,
  createImage,
  drawText,
  floatToRgb8,
  gaussianBlur,
  glyphPixel,
  heatmap,
  normalizeMap,
  overlayHeatmap,
  resizeBilinear,
  resizeMap,
  resizeNearest,
  rgb8ToFloat,
  textWidth,
  type RgbImage,
} from '../../src/image/index.js';

const px = (img: RgbImage, x: number, y: number): number[] => [
  ...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3),
];

describe('floatToRgb8 / rgb8ToFloat', () => {
  it('maps [-1, 1] like diffusers: round(clamp(x/2+0.5, 0, 1) * 255), channel-first to interleaved', () => {
    // [3, 1, 4]: R plane, G plane, B plane
    const data = Float32Array.from([-1, 0, 1, 2, /* G */ -2, 0.5, -0.5, NaN, /* B */ 0.999, -0.999, 0.2, -0.2]);
    const img = floatToRgb8({ data, shape: [3, 1, 4] });
    expect(img.width).toBe(4);
    expect(img.height).toBe(1);
    expect(px(img, 0, 0)).toEqual([0, 0, 255]);
    expect(px(img, 1, 0)).toEqual([128, 191, 0]); // 127.5 rounds up; 0.75*255 = 191.25
    expect(px(img, 2, 0)).toEqual([255, 64, 153]);
    expect(px(img, 3, 0)).toEqual([255, 0, 102]); // clamp above 1; NaN -> 0
  });

  it('maps [0, 1] with range "unit" and picks an image from a batch', () => {
    const data = new Float32Array(2 * 3 * 2 * 2);
    data.fill(0.5, 12, 16); // batch 1, R plane
    const img = floatToRgb8({ data, shape: [2, 3, 2, 2] }, { range: 'unit', index: 1 });
    expect(px(img, 1, 1)).toEqual([128, 0, 0]);
    expect(() => floatToRgb8({ data, shape: [2, 3, 2, 2] }, { index: 2 })).toThrow(/outside batch/);
    expect(() => floatToRgb8({ data: new Float32Array(4), shape: [1, 2, 2] })).toThrow(/3 channels/);
  });

  it('rgb8ToFloat inverts floatToRgb8 exactly on 8-bit values', () => {
    const img = createImage(3, 2);
    img.data.forEach((_, i) => (img.data[i] = (i * 41) % 256));
    for (const range of ['signed', 'unit'] as const) {
      const f = rgb8ToFloat(img, range);
      expect(f.length).toBe(18);
      expect(floatToRgb8({ data: f, shape: [3, 2, 3] }, { range }).data).toEqual(img.data);
    }
    const f = rgb8ToFloat(img);
    expect(f[0]).toBeCloseTo(-1, 6);
    expect(Math.max(...f)).toBeLessThanOrEqual(1);
  });
});

describe('resize', () => {
  const map = Float32Array.from([0, 1, 2, 3]);

  it('bilinear follows PyTorch align_corners=False', () => {
    const up = resizeMap(map, 2, 2, 4, 4, 'bilinear');
    expect([...up]).toEqual([0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3]);
    const down = resizeMap(
      Float32Array.from({ length: 16 }, (_, i) => i),
      4,
      4,
      2,
      2,
      'bilinear',
    );
    expect([...down]).toEqual([2.5, 4.5, 10.5, 12.5]);
  });

  it('nearest uses half-pixel centres (nearest-exact) and copies for integer upscales', () => {
    expect([...resizeMap(map, 2, 2, 4, 4, 'nearest')]).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
    expect([...resizeMap(Float32Array.from([0, 1, 2]), 3, 1, 2, 1, 'nearest')]).toEqual([0, 2]);
  });

  it('resizes RGB images, rounding bytes', () => {
    const img = createImage(2, 1, [0, 0, 0]);
    img.data.set([255, 255, 255], 3);
    const big = resizeBilinear(img, 4, 1);
    expect(big.data.length).toBe(12);
    expect(px(big, 1, 0)).toEqual([64, 64, 64]); // 0.25 * 255 = 63.75
    const n = resizeNearest(img, 4, 2);
    expect(px(n, 1, 1)).toEqual([0, 0, 0]);
    expect(px(n, 2, 1)).toEqual([255, 255, 255]);
  });
});

describe('heat maps', () => {
  it('colormaps run from dark blue to dark red (turbo, jet) or black to white (gray)', () => {
    const dark = (c: readonly number[]): boolean => c[0]! + c[1]! + c[2]! < 160;
    expect(dark(colormap(0, 'turbo'))).toBe(true);
    const blue = colormap(0.15, 'turbo'),
      green = colormap(0.45, 'turbo'),
      red = colormap(0.85, 'turbo');
    expect(blue[2]).toBeGreaterThan(Math.max(blue[0], blue[1]));
    expect(green[1]).toBeGreaterThan(Math.max(green[0], green[2]));
    expect(red[0]).toBeGreaterThan(Math.max(red[1], red[2]));
    expect(colormap(1, 'turbo')[0]).toBeGreaterThan(100);
    expect(colormap(0, 'jet')).toEqual([0, 0, 128]);
    expect(colormap(0.5, 'jet')).toEqual([128, 255, 128]);
    expect(colormap(1, 'jet')).toEqual([128, 0, 0]);
    expect(colormap(0.5, 'gray')).toEqual([128, 128, 128]);
    expect(colormap(Number.NaN, 'gray')).toEqual([0, 0, 0]);
    expect(colormap(7, 'gray')).toEqual([255, 255, 255]);
  });

  it('normalises min-max, by max, or not at all', () => {
    expect([...normalizeMap(Float32Array.from([2, 4, 6]), 'minmax')]).toEqual([0, 0.5, 1]);
    expect([...normalizeMap(Float32Array.from([2, 4, 8]), 'max')]).toEqual([0.25, 0.5, 1]);
    expect([...normalizeMap(Float32Array.from([-1, 0.5, 3]), 'none')]).toEqual([0, 0.5, 1]);
    expect([...normalizeMap(Float32Array.from([5, 5]), 'minmax')]).toEqual([0, 0]);
  });

  it('heatmap colours each value; overlay resizes and blends', () => {
    const hm = heatmap(Float32Array.from([0, 1]), 2, 1, { colormap: 'gray' });
    expect([...hm.data]).toEqual([0, 0, 0, 255, 255, 255]);
    const base = createImage(4, 4, [200, 100, 0]);
    const att = Float32Array.from([0, 0, 0, 1]); // 2x2 map, hot bottom-right
    const over = overlayHeatmap(base, att, 2, 2, { colormap: 'gray', alpha: 0.5 });
    expect(over.width).toBe(4);
    expect(px(over, 0, 0)).toEqual([100, 50, 0]);
    expect(px(over, 3, 3)).toEqual([228, 178, 128]);
    const add = overlayHeatmap(base, att, 2, 2, { colormap: 'gray', mode: 'add' });
    expect(px(add, 3, 3)).toEqual([255, 199, 143]); // (200+255, 100+255, 0+255) / 455 * 255
    expect(blendImages(base, createImage(4, 4, [0, 0, 0]), 0.25).data[0]).toBe(150);
  });
});

describe('font and grid', () => {
  it('has 5x7 glyphs for printable ASCII', () => {
    // 'I': a vertical bar in the middle column, serifs at top and bottom.
    for (let row = 0; row < 7; row++) expect(glyphPixel('I', 2, row)).toBe(true);
    expect(glyphPixel('I', 0, 3)).toBe(false);
    expect(glyphPixel(' ', 2, 3)).toBe(false);
    expect(glyphPixel('\u00e9', 2, 0)).toBe(glyphPixel('?', 2, 0)); // non-ASCII draws as '?'
    expect(textWidth('abc')).toBe(17);
    expect(textWidth('abc', 2)).toBe(34);
    expect(textWidth('')).toBe(0);
  });

  it('draws text clipped to the image', () => {
    const img = createImage(8, 8);
    drawText(img, 'I', 1, 0, [255, 0, 0]);
    expect(px(img, 3, 3)).toEqual([255, 0, 0]); // column 2 of the glyph
    expect(px(img, 1, 3)).toEqual([255, 255, 255]);
    drawText(img, 'WWWW', -3, 5); // clipped, no throw
  });

  it('composes tiles with padding and labels under each tile', () => {
    const red = createImage(10, 10, [255, 0, 0]);
    const blue = createImage(10, 6, [0, 0, 255]);
    const g = composeGrid([red, blue, red], 2, { pad: 2, background: [0, 255, 0] });
    expect(g.width).toBe(2 * 10 + 3 * 2);
    expect(g.height).toBe(2 * 10 + 3 * 2);
    expect(px(g, 0, 0)).toEqual([0, 255, 0]);
    expect(px(g, 2, 2)).toEqual([255, 0, 0]);
    expect(px(g, 14, 2)).toEqual([0, 0, 255]);
    expect(px(g, 14, 10)).toEqual([0, 255, 0]); // below the shorter tile
    expect(px(g, 16, 16)).toEqual([0, 255, 0]); // empty fourth cell

    const labelled = composeGrid([red, blue], 2, { pad: 1, labels: ['red', 'circles'] });
    // cells widen to the longest label: "circles" = 7 * 6 - 1 = 41 px
    expect(labelled.width).toBe(2 * 41 + 3);
    expect(labelled.height).toBe(10 + 2 + 7 + 2);
    let dark = 0;
    for (let y = 13; y < 20; y++) for (let x = 0; x < labelled.width; x++) if (px(labelled, x, y)[0] === 0) dark++;
    expect(dark).toBeGreaterThan(40); // label pixels drawn in the strip under the tiles
  });
});

describe('gaussianBlur', () => {
  it('keeps flat images flat and spreads an impulse symmetrically', () => {
    const flat = createImage(5, 5, [10, 20, 30]);
    expect(gaussianBlur(flat, 1).data).toEqual(flat.data);
    const img = createImage(9, 9, [0, 0, 0]);
    img.data.set([255, 255, 255], (4 * 9 + 4) * 3);
    const b = gaussianBlur(img, 0.7);
    expect(px(b, 3, 4)).toEqual(px(b, 5, 4));
    expect(px(b, 4, 3)).toEqual(px(b, 4, 5));
    expect(px(b, 4, 4)[0]).toBeLessThan(255);
    expect(px(b, 4, 4)[0]).toBeGreaterThan(px(b, 3, 4)[0]!);
    expect(gaussianBlur(img, 0).data).toEqual(img.data);
  });
});

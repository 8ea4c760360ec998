/** Subjects as token groups (src/methods/carriers.ts) on hand-made maps. */
import { describe, expect, it } from 'vitest';
import {
  components,
  correlation,
  findCarriers,
  groupMaps,
  groupTokens,
  layoutScore,
  regionMaps,
  tokenColumn,
} from '../../src/methods/carriers.js';

const H = 4;
const W = 4;

/** [H, W, T] maps from one H*W column per token (rows of each pixel need not sum to 1 for these tests). */
function mapsOf(columns: number[][]): { data: Float32Array; shape: number[] } {
  const T = columns.length;
  const data = new Float32Array(H * W * T);
  columns.forEach((col, k) => col.forEach((v, p) => (data[p * T + k] = v)));
  return { data, shape: [H, W, T] };
}

const blob = (cells: number[], value = 1, rest = 0.05) =>
  Array.from({ length: H * W }, (_, p) => (cells.includes(p) ? value : rest));
const TOP_LEFT = [0, 1, 4, 5];
const BOTTOM_RIGHT = [10, 11, 14, 15];
const uniform = () => new Array<number>(H * W).fill(0.1);

describe('carriers', () => {
  it('correlation: 1 for the same pattern at another scale, −1 for its inverse, 0 for a constant map', () => {
    const a = Float32Array.from(blob(TOP_LEFT));
    expect(
      correlation(
        a,
        a.map((v) => 3 * v + 1),
      ),
    ).toBeCloseTo(1, 6);
    expect(
      correlation(
        a,
        a.map((v) => -v),
      ),
    ).toBeCloseTo(-1, 6);
    expect(correlation(a, new Float32Array(H * W).fill(2))).toBe(0);
  });

  it('later tokens whose maps follow a subject carry it; earlier, reserved, start and unrelated tokens do not', () => {
    // 0 start, 1 "a" (A's pattern, but before A), 2 subject A, 3 follows A, 4 attribute (A's pattern, reserved),
    // 5 subject B, 6 follows B, 7 uniform, 8 follows A more weakly than it follows nobody else
    const maps = mapsOf([
      blob(TOP_LEFT),
      blob(TOP_LEFT),
      blob(TOP_LEFT),
      blob(TOP_LEFT, 0.6, 0.1),
      blob(TOP_LEFT),
      blob(BOTTOM_RIGHT),
      blob(BOTTOM_RIGHT, 0.5, 0.02),
      uniform(),
      blob([0, 1, 4, 5, 10], 0.5, 0.1),
    ]);
    const groups = findCarriers(
      maps,
      [
        { token: 2, tokens: [2] },
        { token: 5, tokens: [5] },
      ],
      [4],
    );
    expect(groups[0]).toEqual({ own: [2], carriers: [3, 8] });
    expect(groups[1]).toEqual({ own: [5], carriers: [6] });
    expect(groupTokens(groups[0]!)).toEqual([2, 3, 8]);
    // a stricter threshold drops the weak follower
    const strict = findCarriers(maps, [{ token: 2, tokens: [2] }], [4], { minCorrelation: 0.95 });
    expect(strict[0]!.carriers).toEqual([3]);
  });

  it('a token is given to the subject it follows most, and multi-token subjects keep all their tokens', () => {
    const maps = mapsOf([
      uniform(),
      blob(TOP_LEFT),
      blob(TOP_LEFT),
      blob(BOTTOM_RIGHT),
      blob([10, 11, 14, 15, 5], 1, 0.05),
    ]);
    const groups = findCarriers(
      maps,
      [
        { token: 2, tokens: [1, 2] },
        { token: 3, tokens: [3] },
      ],
      [],
    );
    expect(groups[0]).toEqual({ own: [2, 1], carriers: [] });
    expect(groups[1]).toEqual({ own: [3], carriers: [4] });
  });

  it('group maps sum the group columns; smoothing keeps a constant map constant', () => {
    const maps = mapsOf([uniform(), blob(TOP_LEFT), blob(TOP_LEFT, 0.5, 0), uniform()]);
    const groups = [{ own: [1], carriers: [2] }];
    const raw = groupMaps(maps, groups, false).maps[0]!;
    const expected = tokenColumn(maps, 1).map((v, p) => v + tokenColumn(maps, 2)[p]!);
    expect([...raw]).toEqual([...expected]);
    const flat = groupMaps(mapsOf([uniform(), uniform()]), [{ own: [1], carriers: [] }], true).maps[0]!;
    for (const v of flat) expect(v).toBeCloseTo(0.1, 6);
    const smooth = groupMaps(maps, groups, true).maps[0]!;
    expect(smooth[5]!).toBeLessThan(raw[5]!); // the blob loses to its outside neighbours
    expect(smooth[2]!).toBeGreaterThan(raw[2]!);
  });

  it('components: 4-connected blobs above a threshold', () => {
    const v = Float32Array.from(blob([0, 1, 5, 10, 15]));
    const { labels, count } = components(v, H, W, 0.5);
    expect(count).toBe(3); // {0,1,5}, {10}, {15} (10 and 15 touch only diagonally)
    expect(labels[0]).toBe(labels[5]);
    expect(labels[10]).not.toBe(labels[15]);
    expect(labels[2]).toBe(0);
  });

  it('layout score: a second blob of one subject is a duplicate; two subjects on one blob collide', () => {
    const single = groupMaps(
      mapsOf([uniform(), blob(TOP_LEFT), blob(BOTTOM_RIGHT)]),
      [
        { own: [1], carriers: [] },
        { own: [2], carriers: [] },
      ],
      false,
    );
    expect(layoutScore(single)).toEqual({ duplicate: 0, collision: 0, total: 0 });

    // subject 1: a strong blob top-left and a weaker one bottom-right → duplicate = the weak blob's mass share
    const twoBlobs = Array.from({ length: H * W }, (_, p) =>
      TOP_LEFT.includes(p) ? 1 : BOTTOM_RIGHT.includes(p) ? 0.6 : 0,
    );
    const dup = layoutScore(groupMaps(mapsOf([uniform(), twoBlobs]), [{ own: [1], carriers: [] }], false));
    expect(dup.duplicate).toBeCloseTo(2.4 / 6.4, 6);
    expect(dup.collision).toBe(0);

    const same = groupMaps(
      mapsOf([uniform(), blob(TOP_LEFT), blob(TOP_LEFT)]),
      [
        { own: [1], carriers: [] },
        { own: [2], carriers: [] },
      ],
      false,
    );
    expect(layoutScore(same).collision).toBe(1);
  });

  describe('regionMaps: the words that say where get the say', () => {
    const groups = [
      { own: [2], carriers: [] },
      { own: [4], carriers: [] },
    ];
    const argmaxOf = (m: Float32Array) => m.indexOf(Math.max(...m));
    const half = (cells: number[]) => blob(cells, 1, 0.5);

    it('nouns spread over both objects alike: each region follows its adjective', () => {
      // 0 start, 1 "red", 2 "circle", 3 "blue", 4 "square": both nouns' maps are the same two blobs
      const both = blob([...TOP_LEFT, ...BOTTOM_RIGHT]);
      const maps = mapsOf([uniform(), blob(TOP_LEFT), both, blob(BOTTOM_RIGHT), both]);
      const r = regionMaps(maps, groups, [[1], [3]], false);
      expect(TOP_LEFT).toContain(argmaxOf(r.maps[0]!));
      expect(BOTTOM_RIGHT).toContain(argmaxOf(r.maps[1]!));
      // the groups' maps alone cannot tell the subjects apart
      const g = groupMaps(maps, groups, false);
      expect(correlation(g.maps[0]!, g.maps[1]!)).toBeCloseTo(1, 6);
    });

    it("nouns apart, adjectives alike: the nouns decide (the pixel model's case)", () => {
      const alike = half([...TOP_LEFT, ...BOTTOM_RIGHT]);
      const maps = mapsOf([uniform(), alike, blob(TOP_LEFT), alike, blob(BOTTOM_RIGHT)]);
      const r = regionMaps(maps, groups, [[1], [3]], false);
      const g = groupMaps(maps, groups, false);
      // the adjectives are identical across subjects (correlation 1): weight 0, the region is the group's map
      for (const i of [0, 1]) {
        const unit = g.maps[i]!.map((v, _, a) => v / a.reduce((x, y) => x + y, 0));
        const w = (1 - correlation(g.maps[0]!, g.maps[1]!)) ** 2;
        r.maps[i]!.forEach((v, p) => expect(v).toBeCloseTo(w * unit[p]!, 6));
      }
    });

    it("'strongest': each subject's more distinct word alone, not a mix", () => {
      // the nouns lean to their own objects a little, the adjectives a lot: both words get weight when mixed
      const lean = (own: number[], other: number[]) =>
        Array.from({ length: H * W }, (_, p) => (own.includes(p) ? 1 : other.includes(p) ? 0.3 : 0.05));
      const maps = mapsOf([
        uniform(),
        blob(TOP_LEFT),
        lean(TOP_LEFT, BOTTOM_RIGHT),
        blob(BOTTOM_RIGHT),
        lean(BOTTOM_RIGHT, TOP_LEFT),
      ]);
      const mixed = regionMaps(maps, groups, [[1], [3]], false, 'weighted');
      const strongest = regionMaps(maps, groups, [[1], [3]], false, 'strongest');
      const adjective = [Float32Array.from(blob(TOP_LEFT)), Float32Array.from(blob(BOTTOM_RIGHT))];
      for (const i of [0, 1]) {
        expect(correlation(strongest.maps[i]!, adjective[i]!)).toBeCloseTo(1, 6);
        expect(correlation(mixed.maps[i]!, adjective[i]!)).toBeLessThan(0.999);
      }
      // where the nouns are the distinct words (the pixel model's case), the group's map as without adjectives
      const alike = half([...TOP_LEFT, ...BOTTOM_RIGHT]);
      const apart = mapsOf([uniform(), alike, blob(TOP_LEFT), alike, blob(BOTTOM_RIGHT)]);
      const g = groupMaps(apart, groups, false);
      const r = regionMaps(apart, groups, [[1], [3]], false, 'strongest');
      for (const i of [0, 1]) expect(correlation(r.maps[i]!, g.maps[i]!)).toBeCloseTo(1, 6);
    });

    it('one subject, or words all alike: the group map as before', () => {
      const maps = mapsOf([uniform(), blob(TOP_LEFT), blob(BOTTOM_RIGHT)]);
      expect(regionMaps(maps, [groups[0]!], [[1]], true)).toEqual(groupMaps(maps, [groups[0]!], true));
      const same = mapsOf([uniform(), blob(TOP_LEFT), blob(TOP_LEFT), blob(TOP_LEFT), blob(TOP_LEFT)]);
      const r = regionMaps(same, groups, [[1], [3]], false);
      expect(argmaxOf(r.maps[0]!)).toBe(argmaxOf(groupMaps(same, groups, false).maps[0]!));
      expect(Math.max(...r.maps[1]!)).toBeGreaterThan(0);
    });
  });
});

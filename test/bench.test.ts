/**
 * The benchmark: prompt suites (balanced, deterministic, disjoint splits), prompt files, the statistics against
 * hand-computed values, a tiny end-to-end run on tiny-sd through the library (results.jsonl, resume, a crash's
 * partial line, the summary's shape), and the CLI through the built binary.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchSummary, failures, formatSummaryMarkdown, renderHtmlReport, renderPngGrid } from '../src/bench/report.js';
import { floatToRgb8 } from '../src/image/convert.js';
import { readPng } from '../src/image/png.js';
import { generate } from '../src/pipeline/generate.js';
import {
  canonicalJson,
  checkBenchOptions,
  modelFingerprint,
  noiseSeed,
  parseMethods,
  parseSeeds,
} from '../src/bench/plan.js';
import { readResults } from '../src/bench/results.js';
import { runBench } from '../src/bench/run.js';
import { failureKinds, summarize, type StatRow } from '../src/bench/metrics.js';
import type { BenchRow } from '../src/bench/row.js';
import {
  binomialHalfCdf,
  clusterRate,
  compareMethods,
  mcnemarExact,
  signFlipExact,
  twoWayRate,
  wilson,
} from '../src/bench/stats.js';
import { builtinSuitePrompts, loadSuite, readPromptFile, type Suite, type SuitePrompt } from '../src/bench/suites.js';
import { UserError } from '../src/errors.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { parsePrompt } from '../src/shapes/prompt.js';
import { COLOURS, SHAPES } from '../src/shapes/world.js';
import { ensureBuilt, s2i as runS2i } from './support/cli.js';
import { tinySdDir } from './support/oracle.js';

const tmp = mkdtempSync(join(tmpdir(), 's2i-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ------------------------------------------------------------------------------------------------------ suites

/** Per position: how often each shape and each colour occurs. */
function positionCounts(
  prompts: readonly SuitePrompt[],
): { shapes: Map<string, number>; colours: Map<string, number> }[] {
  const k = prompts[0]!.objects.length;
  return Array.from({ length: k }, (_, j) => {
    const shapes = new Map<string, number>(),
      colours = new Map<string, number>();
    for (const p of prompts) {
      const o = p.objects[j]!;
      shapes.set(o.shape, (shapes.get(o.shape) ?? 0) + 1);
      colours.set(o.colour!, (colours.get(o.colour!) ?? 0) + 1);
    }
    return { shapes, colours };
  });
}

function expectBalanced(prompts: readonly SuitePrompt[]): void {
  for (const { shapes, colours } of positionCounts(prompts)) {
    expect([...shapes.keys()].sort()).toEqual([...SHAPES].sort());
    expect([...colours.keys()].sort()).toEqual([...COLOURS].sort());
    expect(new Set(shapes.values()).size).toBe(1);
    expect(new Set(colours.values()).size).toBe(1);
  }
}

describe('prompt suites', () => {
  const sizes = { 'shapes-1': [6, 12, 1], 'shapes-2': [48, 96, 2], 'shapes-3': [48, 96, 3] } as const;

  for (const [name, [nTuning, nHeld, objects]] of Object.entries(sizes) as [
    keyof typeof sizes,
    readonly [number, number, number],
  ][]) {
    it(`${name}: sizes, balance in every position and split (and each held-apart half), disjoint splits`, () => {
      const tuning = loadSuite(name, 'tuning').prompts;
      const held = loadSuite(name, 'held-apart').prompts;
      expect(tuning).toHaveLength(nTuning);
      expect(held).toHaveLength(nHeld);
      const t = new Set(tuning.map((p) => p.prompt));
      expect(t.size).toBe(nTuning);
      expect(new Set(held.map((p) => p.prompt)).size).toBe(nHeld);
      expect(held.filter((p) => t.has(p.prompt))).toEqual([]);
      expect(loadSuite(name, 'all').prompts.map((p) => p.prompt)).toEqual([...tuning, ...held].map((p) => p.prompt));
      for (const set of [tuning, held, held.slice(0, nHeld / 2), held.slice(nHeld / 2)]) expectBalanced(set);
      for (const p of [...tuning, ...held]) {
        expect(p.objects).toHaveLength(objects);
        expect(parsePrompt(p.prompt).objects).toEqual(p.objects);
      }
    });
  }

  it('two-object and three-object suites include same-shape and same-colour prompts, in the same mix in both splits', () => {
    for (const name of ['shapes-2', 'shapes-3'] as const) {
      for (const split of ['tuning', 'held-apart'] as const) {
        const ps = loadSuite(name, split).prompts;
        const kinds = (k: string) => ps.filter((p) => p.kind === k);
        expect(kinds('distinct').length).toBe(ps.length / 2);
        expect(kinds('same-shape').length).toBe(ps.length / 4);
        expect(kinds('same-colour').length).toBe(ps.length / 4);
        for (const p of kinds('same-shape')) {
          const shapes = p.objects.map((o) => o.shape);
          expect(new Set(shapes).size).toBe(shapes.length - 1);
          expect(new Set(p.objects.map((o) => o.colour)).size).toBe(shapes.length);
        }
        for (const p of kinds('same-colour')) {
          expect(new Set(p.objects.map((o) => o.colour)).size).toBe(p.objects.length - 1);
          expect(new Set(p.objects.map((o) => o.shape)).size).toBe(p.objects.length);
        }
      }
    }
    expect(
      loadSuite('shapes-2', 'tuning').prompts.some((p) => /^a (\w+) circle and an? (\w+) circle$/.test(p.prompt)),
    ).toBe(true);
  });

  it('is deterministic and frozen (changing a suite must be a decision: update these fingerprints)', () => {
    const fp = (name: 'shapes-1' | 'shapes-2' | 'shapes-3') =>
      createHash('sha256')
        .update(
          builtinSuitePrompts(name)
            .map((p) => `${p.split}\t${p.prompt}`)
            .join('\n'),
        )
        .digest('hex')
        .slice(0, 16);
    expect(builtinSuitePrompts('shapes-2')).toEqual(builtinSuitePrompts('shapes-2'));
    expect(fp('shapes-1')).toBe('8d1488fc20d70cda');
    expect(fp('shapes-2')).toBe('00900c6d57e45529');
    expect(fp('shapes-3')).toBe('79d018db08210caa');
  });

  it('reads FILE.jsonl prompts; a bad line is a UserError naming the file and line', () => {
    const good = join(tmp, 'good.jsonl');
    writeFileSync(
      good,
      '{"prompt": "a red circle and a blue square"}\n\n{"prompt": "two green triangles", "note": "x"}\n',
    );
    const ps = readPromptFile(good);
    expect(ps.map((p) => p.prompt)).toEqual(['a red circle and a blue square', 'two green triangles']);
    expect(ps[1]!.objects).toEqual([
      { shape: 'triangle', colour: 'green' },
      { shape: 'triangle', colour: 'green' },
    ]);
    const cases: [string, RegExp][] = [
      ['{"prompt": "a red circle"}\n{"prompt": "a red blob"}\n', /bad\.jsonl:2: cannot parse prompt "a red blob"/],
      ['{"prompt": "a red circle"}\nnot json\n', /bad\.jsonl:2: not valid JSON/],
      ['{"text": "a red circle"}\n', /bad\.jsonl:1: the object has no string field "prompt"/],
      ['["a red circle"]\n', /bad\.jsonl:1: expected a JSON object/],
      ['\n\n', /holds no prompts/],
    ];
    const bad = join(tmp, 'bad.jsonl');
    for (const [text, message] of cases) {
      writeFileSync(bad, text);
      expect(() => readPromptFile(bad)).toThrow(UserError);
      expect(() => readPromptFile(bad)).toThrow(message);
    }
    expect(() => loadSuite(join(tmp, 'missing.jsonl'))).toThrow(/no such file/);
    expect(() => loadSuite('shapes-9')).toThrow(/unknown suite "shapes-9"/);
    expect(() => loadSuite(good, 'tuning')).toThrow(/^split applies to the built-in suites/);
  });

  it('parses --seeds and --methods', () => {
    expect(parseSeeds('0-3')).toEqual([0, 1, 2, 3]);
    expect(parseSeeds('0,1,2')).toEqual([0, 1, 2]);
    expect(parseSeeds('5, 0-1')).toEqual([5, 0, 1]);
    for (const bad of ['', '3-1', '1,1', 'a', '-1']) expect(() => parseSeeds(bad)).toThrow(UserError);
    expect(parseMethods('none, suppress-edit')).toEqual(['none', 'suppress-edit']);
    expect(() => parseMethods('none,bogus')).toThrow(/^methods: unknown method 'bogus'/);
    expect(() => parseMethods('none,none')).toThrow(/listed twice/);
  });
});

// ------------------------------------------------------------------------------------------------------ statistics

describe('statistics', () => {
  it('Wilson score intervals match hand-computed values', () => {
    // z = 1.959964: 0/10 → [0, 0.2775]; 5/10 → [0.2366, 0.7634]; 8/10 → [0.4902, 0.9433]; 3/3 → [0.4385, 1]
    const cases: [number, number, number, number][] = [
      [0, 10, 0, 0.27753],
      [5, 10, 0.23659, 0.76341],
      [8, 10, 0.49016, 0.94331],
      [3, 3, 0.4385, 1],
    ];
    for (const [s, n, lo, hi] of cases) {
      const w = wilson(s, n);
      expect(w.rate).toBeCloseTo(s / n, 12);
      expect(w.low!).toBeCloseTo(lo, 4);
      expect(w.high!).toBeCloseTo(hi, 4);
    }
    expect(wilson(0, 0)).toEqual({ rate: null, low: null, high: null });
  });

  it('exact McNemar: two-sided binomial on the discordant pairs', () => {
    expect(binomialHalfCdf(1, 10)).toBeCloseTo(11 / 1024, 14);
    expect(mcnemarExact(1, 9).p).toBeCloseTo(22 / 1024, 14); // 2 · (1 + 10) / 2^10
    expect(mcnemarExact(9, 1).p).toBeCloseTo(22 / 1024, 14);
    expect(mcnemarExact(0, 5).p).toBeCloseTo(2 / 32, 14);
    expect(mcnemarExact(2, 8).p).toBeCloseTo((2 * 56) / 1024, 14); // 2 · (1 + 10 + 45) / 2^10
    expect(mcnemarExact(3, 3).p).toBe(1);
    expect(mcnemarExact(0, 0)).toEqual({ b: 0, c: 0, p: 1 });
    // large n stays finite and near the normal approximation (2 Φ(−19.5/15.81) ≈ 0.2177)
    const big = mcnemarExact(480, 520).p;
    expect(big).toBeGreaterThan(0.2);
    expect(big).toBeLessThan(0.24);
  });

  it('object-level rates: pooled, with a deterministic cluster bootstrap, Wilson over prompts when it has no spread', () => {
    const clusters = [
      { successes: 2, trials: 2 },
      { successes: 1, trials: 2 },
      { successes: 0, trials: 2 },
      { successes: 2, trials: 3 },
    ];
    const a = clusterRate(clusters);
    expect(a.rate).toBeCloseTo(5 / 9, 12);
    expect(a).toEqual(clusterRate(clusters));
    expect(a.low!).toBeLessThan(a.rate!);
    expect(a.high!).toBeGreaterThan(a.rate!);
    expect(a.low!).toBeGreaterThanOrEqual(0);
    expect(a.high!).toBeLessThanOrEqual(1);
    const all = clusterRate([
      { successes: 2, trials: 2 },
      { successes: 2, trials: 2 },
      { successes: 2, trials: 2 },
    ]);
    expect(all.rate).toBe(1);
    expect(all.low!).toBeCloseTo(0.4385, 4); // Wilson 3/3
    expect(all.high).toBe(1);
    expect(clusterRate([{ successes: 0, trials: 0 }]).rate).toBeNull();
  });

  it('per-method summary and paired comparisons over the same (prompt, seed) pairs', () => {
    const obj = (ok: boolean, colourOk = ok, leaked = false) => ({
      found_shape_match: ok,
      colour_correct: colourOk,
      leaked,
      colour: 'red',
    });
    const row = (
      method: string,
      prompt: string,
      seed: number,
      success: boolean,
      objects = [obj(success), obj(success)],
    ): StatRow => ({ method, prompt, seed, full_success: success, objects, seconds: 2 });
    const rows: StatRow[] = [];
    // none: succeeds on pairs 0,1; suppress on 0,2,3,4; attend-and-excite on 1 (+ one pair only it ran)
    for (let i = 0; i < 5; i++) {
      const p = `p${i % 3}`,
        s = i;
      rows.push(row('none', p, s, i < 2, i < 2 ? [obj(true), obj(true)] : [obj(true, false, true), obj(false)]));
      rows.push(row('suppress', p, s, i !== 1));
      rows.push(row('attend-and-excite', p, s, i === 1));
    }
    rows.push(row('attend-and-excite', 'p9', 0, true));
    const s = summarize(rows, ['none', 'attend-and-excite', 'suppress']);
    expect(s.methods['none']!.n).toBe(5);
    expect(s.methods['none']!.full_success.rate).toBeCloseTo(2 / 5, 12);
    expect(s.methods['none']!.object_recall.rate).toBeCloseTo(7 / 10, 12); // 2·2 + 3·1 of 10 objects
    expect(s.methods['none']!.binding.rate).toBeCloseTo(4 / 10, 12);
    expect(s.methods['none']!.leakage.rate).toBeCloseTo(3 / 10, 12);
    expect(s.methods['none']!.prompts).toBe(3);
    expect(s.methods['none']!.seconds_per_image).toBe(2);
    expect(s.methods['attend-and-excite']!.n).toBe(6);
    const c = compareMethods(rows, 'suppress', 'none');
    expect(c).toEqual({
      method: 'suppress',
      baseline: 'none',
      pairs: 5,
      method_only: 3,
      baseline_only: 1,
      p: mcnemarExact(3, 1).p,
      // per prompt (won − lost): p0 +1, p1 0 (one each), p2 +1 → flips of [1, 1]: P(|sum| ≥ 2) = 1/2
      p_cluster: 0.5,
      failure_ratio: expect.objectContaining({ rate: 1 / 3 }) as unknown,
    });
    expect(c.failure_ratio.low!).toBeLessThanOrEqual(1 / 3);
    expect(c.failure_ratio.high!).toBeGreaterThanOrEqual(1 / 3);
    expect(mcnemarExact(3, 1).p).toBeCloseTo(0.625, 12); // 2 · (1 + 4) / 16
    const vsAe = s.comparisons.find((x) => x.method === 'suppress' && x.baseline === 'attend-and-excite')!;
    expect(vsAe).toMatchObject({ pairs: 5, method_only: 4, baseline_only: 1 });
    expect(s.comparisons.map((x) => `${x.method}/${x.baseline}`)).toEqual([
      'attend-and-excite/none',
      'suppress/none',
      'none/attend-and-excite',
      'suppress/attend-and-excite',
    ]);
  });

  it('two-way bootstrap over prompts and seeds: pooled rate, deterministic, wider than one-way when seeds differ', () => {
    // 6 prompts × 4 seeds; seed 0 fails everywhere, the others succeed: a seed effect a one-way bootstrap cannot see.
    const cells = [];
    for (let p = 0; p < 6; p++)
      for (let seed = 0; seed < 4; seed++)
        cells.push({ prompt: `p${p}`, seed, successes: seed === 0 ? 0 : 1, trials: 1 });
    const two = twoWayRate(cells);
    expect(two.rate).toBeCloseTo(0.75, 12);
    expect(twoWayRate(cells)).toEqual(two);
    const oneWay = clusterRate(
      [0, 1, 2, 3, 4, 5].map((p) => ({ successes: 3, trials: 4, prompt: `p${p}` })), // every prompt 3 of 4
    );
    expect(oneWay.rate).toBe(0.75);
    expect(oneWay.high! - oneWay.low!).toBeLessThan(two.high! - two.low!);
    expect(two.low!).toBeLessThan(0.75);
    expect(two.high!).toBeGreaterThanOrEqual(0.75);
    // with one seed it is the prompt (cluster) bootstrap
    const single = [0, 1, 2, 3].map((p) => ({ prompt: `p${p}`, seed: 0, successes: p % 2, trials: 1 }));
    expect(twoWayRate(single)).toEqual(clusterRate(single));
  });

  it('exact sign-flip test: McNemar with one pair per prompt, prompts flipped as units otherwise', () => {
    for (const [b, c] of [
      [1, 9],
      [0, 5],
      [2, 8],
      [3, 3],
      [7, 2],
    ] as const) {
      const d = [...new Array<number>(b).fill(1), ...new Array<number>(c).fill(-1), 0, 0];
      expect(signFlipExact(d)).toBeCloseTo(mcnemarExact(b, c).p, 12);
    }
    expect(signFlipExact([])).toBe(1);
    expect(signFlipExact([0, 0])).toBe(1);
    // two prompts that each won 4 of 4: all 2^2 patterns → |sum| ∈ {8, 0, 0, 8}: p = 1/2 (McNemar on 8 pairs: 1/128)
    expect(signFlipExact([4, 4])).toBeCloseTo(0.5, 12);
    expect(mcnemarExact(8, 0).p).toBeCloseTo(1 / 128, 12);
    // 10 prompts, each won 2: only the all-same patterns reach |20|: p = 2 / 2^10
    expect(signFlipExact(new Array<number>(10).fill(2))).toBeCloseTo(2 / 1024, 12);
  });

  it('failure kinds of an image', () => {
    const o = (found: boolean, colour: boolean) => ({
      found_shape_match: found,
      colour_correct: colour,
      leaked: false,
      colour: 'red',
    });
    expect(failureKinds({ objects: [o(true, true), o(false, false)], extra_objects: 0 })).toEqual({
      missing: true,
      recoloured: false,
      extra: false,
    });
    expect(failureKinds({ objects: [o(true, false)], extra_objects: 2 })).toEqual({
      missing: false,
      recoloured: true,
      extra: true,
    });
  });

  it('model fingerprints: single-file checkpoints, and symbolic links as in the Hugging Face cache', () => {
    const dir = join(tmp, 'fp');
    const real = join(dir, 'real', 'unet');
    const linked = join(dir, 'linked', 'unet');
    mkdirSync(real, { recursive: true });
    mkdirSync(linked, { recursive: true });
    const blob = join(dir, 'blob.bin');
    writeFileSync(blob, Buffer.alloc(200_000, 7));
    copyFileSync(blob, join(real, 'w.safetensors'));
    symlinkSync(blob, join(linked, 'w.safetensors'));
    const a = modelFingerprint(join(dir, 'real'));
    expect(modelFingerprint(join(dir, 'linked'))).toBe(a);
    // Notes about the model do not change it; its files do.
    writeFileSync(join(dir, 'real', 'TRAINING.md'), '# how it was made\n');
    writeFileSync(join(real, 'README.MD'), 'notes');
    expect(modelFingerprint(join(dir, 'real'))).toBe(a);
    writeFileSync(join(real, 'config.json'), '{}');
    expect(modelFingerprint(join(dir, 'real'))).not.toBe(a);
    rmSync(join(real, 'config.json'));
    expect(modelFingerprint(join(dir, 'real'))).toBe(a);
    writeFileSync(join(real, 'w.safetensors'), Buffer.alloc(200_000, 8));
    expect(modelFingerprint(join(dir, 'real'))).not.toBe(a);
    expect(modelFingerprint(blob)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('every (prompt, seed) pair draws its own noise; a pair always the same', () => {
    expect(noiseSeed(0, 'a red circle')).toBe(noiseSeed(0, 'a red circle'));
    expect(noiseSeed(0, 'a red circle')).not.toBe(noiseSeed(0, 'a blue circle'));
    expect(noiseSeed(0, 'a red circle')).not.toBe(noiseSeed(1, 'a red circle'));
    const seeds = new Set<number>();
    for (let s = 0; s < 50; s++) for (const p of ['a', 'b', 'c']) seeds.add(noiseSeed(s, p));
    expect(seeds.size).toBe(150);
    for (const v of seeds) expect(Number.isInteger(v) && v >= 0 && v < 2 ** 32).toBe(true);
  });

  it('describes failures object by object', () => {
    const o = (over: Partial<BenchRow['objects'][number]>) => ({
      shape: 'circle' as const,
      colour: 'red' as const,
      found: true,
      found_shape_match: true,
      colour_correct: true,
      leaked: false,
      detection: 0,
      detected_shape: 'circle' as const,
      detected_colour: 'red' as const,
      ...over,
    });
    expect(
      failures({
        objects: [
          o({}),
          o({ found: false, found_shape_match: false, colour_correct: false, shape: 'square', colour: 'blue' }),
        ],
        extra_objects: 1,
      }),
    ).toEqual(['missing blue square', '+1 extra']);
    expect(
      failures({ objects: [o({ colour_correct: false, leaked: true, detected_colour: 'blue' })], extra_objects: 0 }),
    ).toEqual(['red circle → blue (leak)']);
  });

  it('hashes settings canonically (key order, Maps)', () => {
    expect(canonicalJson({ b: 1, a: new Map([[10, 0.5]]), c: undefined })).toBe('{"a":{"10":0.5},"b":1}');
  });
});

// ------------------------------------------------------------------------------------------------------ end to end

describe('bench on tiny-sd', () => {
  let model: StableDiffusion;
  beforeAll(async () => {
    model = await StableDiffusion.load(tinySdDir);
  });
  afterAll(async () => model?.release());

  const suite: Suite = {
    name: 'tiny',
    split: null,
    prompts: ['a red circle and a blue square', 'a green triangle'].map((prompt) => ({
      prompt,
      objects: parsePrompt(prompt).objects,
    })),
  };
  const options = { methods: ['none', 'suppress-edit'], seeds: [0], steps: 2, guidance: 7.5, sampler: 'ddim' as const };

  it('writes one row per image, resumes without new rows, drops a partial last line, and summarises', async () => {
    const out = join(tmp, 'run');
    const first = await runBench(model, [suite], { ...options, out });
    expect(first.generated).toBe(4);
    const results = join(out, 'results.jsonl');
    const text = readFileSync(results, 'utf8');
    const rows = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as BenchRow);
    expect(rows.map((r) => `${r.method}|${r.prompt}`)).toEqual([
      'none|a red circle and a blue square',
      'suppress-edit|a red circle and a blue square',
      'none|a green triangle',
      'suppress-edit|a green triangle',
    ]);
    for (const r of rows) {
      expect(r.seed).toBe(0);
      expect(r.settings).toMatchObject({ steps: 2, guidance: 7.5, sampler: 'ddim', height: 64, width: 64 });
      expect(r.objects).toHaveLength(parsePrompt(r.prompt).objects.length);
      expect(typeof r.full_success).toBe('boolean');
      expect(r.seconds).toBeGreaterThan(0);
      expect(existsSync(join(out, r.image))).toBe(true);
      expect(r.noise_seed).toBe(noiseSeed(0, r.prompt));
      expect(r).toMatchObject({ starts: 1, guided_passes: 2 }); // 2 DDIM calls, one start
    }
    // The image is the plain pipeline's at the row's noise seed (what `s2i generate --seed` reproduces).
    const direct = await generate(model, {
      prompt: rows[0]!.prompt,
      seed: rows[0]!.noise_seed,
      steps: 2,
      guidanceScale: 7.5,
      sampler: 'ddim',
    });
    expect(readPng(join(out, rows[0]!.image)).data).toEqual(floatToRgb8(direct.image).data);
    expect(rows[0]!.settings.method).toEqual({});
    expect(rows[1]!.settings.method).toMatchObject({ class: 'SuppressToImpress', mode: 'edit' });
    expect(rows[1]!.subjects.map((s) => s.word)).toEqual(['circle', 'square']);
    expect(rows[1]!.attributes.map((a) => [a.word, a.subject])).toEqual([
      ['red', 0],
      ['blue', 1],
    ]);

    // Resume: nothing new, file untouched.
    const again = await runBench(model, [suite], { ...options, out });
    expect(again.generated).toBe(0);
    expect(again.skipped).toBe(4);
    expect(readFileSync(results, 'utf8')).toBe(text);

    // A crash mid-write leaves a partial line: it is ignored and dropped; another setting adds rows.
    appendFileSync(results, '{"v":1,"key":"abc","prompt":"a red ci');
    expect(readResults(results)).toMatchObject({ ignored: 1 });
    const third = await runBench(model, [suite], { ...options, out, seeds: [0, 1], methods: ['none'] });
    expect(third).toMatchObject({ generated: 2, skipped: 2, ignoredLines: 1 });
    const after = readResults(results);
    expect(after.ignored).toBe(0);
    expect(after.rows).toHaveLength(6);
    expect(readFileSync(results, 'utf8').startsWith(text)).toBe(true);
    expect(existsSync(join(out, '.bench.lock'))).toBe(false);

    const summary = benchSummary(first, { methods: options.methods, seeds: options.seeds, model: tinySdDir });
    expect(Object.keys(summary.methods)).toEqual(['none', 'suppress-edit']);
    for (const m of Object.values(summary.methods)) {
      expect(m.n).toBe(2);
      for (const k of ['full_success', 'object_recall', 'binding', 'leakage'] as const)
        expect(Object.keys(m[k]).sort()).toEqual(['high', 'low', 'rate']);
      expect(m.seconds_per_image).toBeGreaterThan(0);
    }
    expect(summary.comparisons).toEqual([
      expect.objectContaining({ method: 'suppress-edit', baseline: 'none', pairs: 2 }),
    ]);
    expect(formatSummaryMarkdown(summary)).toMatch(/\| method \| n \| full success % \|/);
    const html = renderHtmlReport(summary, first.items, out);
    expect(html.match(/data:image\/png;base64,/g)).toHaveLength(4);
    // The README picture: a caption strip and a framed, enlarged cell per image, the same rows for every method.
    const grid = renderPngGrid(summary, first.items, out, { rowsPerSuite: 1, scale: 2 });
    const tile = readPng(join(out, first.items[0]!.row.image));
    expect(grid.height).toBeGreaterThan(2 * tile.height + 4);
    expect(grid.width).toBeGreaterThan(summary.run.methods.length * (2 * tile.width + 4));
  });
  it('the folder lock (proper-lockfile): a dead owner is taken over, a live one refused, released after the run', async () => {
    const out = join(tmp, 'locked');
    const lock = join(out, '.bench.lock');
    const one = { ...options, methods: ['none'], out };
    const suiteOne: Suite = { ...suite, prompts: suite.prompts.slice(1) };
    mkdirSync(lock, { recursive: true });
    writeFileSync(join(lock, 'pid'), `${process.ppid}\n`); // alive: another run holds it
    await expect(runBench(model, [suiteOne], one)).rejects.toThrow(/another benchmark \(pid \d+\) is writing/);
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    writeFileSync(join(lock, 'pid'), dead.stdout); // its owner is gone: taken over at once
    expect((await runBench(model, [suiteOne], one)).generated).toBe(1);
    expect(existsSync(lock)).toBe(false);
    writeFileSync(lock, dead.stdout); // the older layout: a file holding the pid
    expect((await runBench(model, [suiteOne], one)).skipped).toBe(1);
    expect(existsSync(lock)).toBe(false);
  });
  it('settings that cannot run fail before the output folder is made; an override no listed method takes is refused', async () => {
    const out = join(tmp, 'never-made');
    const bad = { ...options, out, methodOverrides: { attnRes: [3, 3] as const } };
    await expect(runBench(model, [suite], bad)).rejects.toThrow(/no cross-attention at that size/);
    expect(existsSync(out)).toBe(false);
    const gamma = { ...options, methods: ['none', 'attend-and-excite'], out, methodOverrides: { gamma: 0.5 } };
    await expect(runBench(model, [suite], gamma)).rejects.toThrow(
      /^gamma only applies to .*; none of methods takes it$/,
    );
    expect(existsSync(out)).toBe(false);
    // Taken by one of the methods: the others ignore it (one set of overrides for the whole run).
    expect(() => checkBenchOptions({ ...gamma, methods: ['none', 'suppress'] })).not.toThrow();
  });
});

// ------------------------------------------------------------------------------------------------------ CLI

describe('s2i bench', () => {
  beforeAll(ensureBuilt);

  const s2i = (...args: string[]) => runS2i(['bench', ...args], { cwd: tmp });
  /** One prompt file × `none` × seed 0 with DDIM on `model`, summarised as JSON into `out`; more flags after. */
  const benchOne = (file: string, model: string, out: string, ...flags: string[]) =>
    s2i(
      '--suite',
      file,
      '--methods',
      'none',
      '--seeds',
      '0',
      '--scheduler',
      'ddim',
      '--model',
      model,
      '--out',
      out,
      '--json',
      ...flags,
    );

  it('runs a prompt file and prints one JSON object', () => {
    const file = join(tmp, 'one.jsonl');
    writeFileSync(file, '{"prompt": "a red circle and a blue square"}\n');
    const out = join(tmp, 'cli');
    const r = benchOne(file, tinySdDir, out, '--steps', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j.methods)).toEqual(['none']);
    expect(j.methods.none).toMatchObject({
      n: 1,
      full_success: { rate: expect.any(Number), low: expect.any(Number), high: expect.any(Number) },
    });
    expect(j.comparisons).toEqual([]);
    expect(j.run).toMatchObject({ steps: 2, sampler: 'ddim', seeds: [0], images: 1, generated: 1 });
    expect(existsSync(join(out, 'summary.md'))).toBe(true);
    expect(readPng(join(out, 'grid.png')).width).toBeGreaterThan(0);
    expect(readResults(join(out, 'results.jsonl')).rows).toHaveLength(1);
  });

  it("runs at the model's s2i.json steps and guidance unless given, as generate does", () => {
    // tiny-sd's components, linked, plus an s2i.json recommending 2 steps at guidance 3.
    const model = join(tmp, 'tiny-sd-recommends');
    mkdirSync(model);
    for (const entry of ['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae'])
      symlinkSync(join(tinySdDir, entry), join(model, entry));
    writeFileSync(join(model, 's2i.json'), '{"steps": 2, "guidance": 3}\n');
    const file = join(tmp, 'one-recommended.jsonl');
    writeFileSync(file, '{"prompt": "a red circle"}\n');
    const run = (out: string, ...flags: string[]) => {
      const r = benchOne(file, model, join(tmp, out), ...flags);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout).run;
    };
    expect(run('recommended')).toMatchObject({ steps: 2, guidance: 3 });
    expect(run('given', '--steps', '1', '--guidance', '4')).toMatchObject({ steps: 1, guidance: 4 });
  });

  it('a bad --methods value is a one-line error with exit code 1, before any model is loaded', () => {
    const r = s2i('--suite', 'shapes-2', '--methods', 'none,suppres', '--model', join(tmp, 'no-such-model'));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^s2i: error: --methods: unknown method 'suppres' \(known: none, attend-and-excite, .*\)\n$/,
    );
  });
});

/**
 * Suppress-to-Impress: each term does what it says on hand-made maps, the focus regions are what the method
 * defines, the edit keeps rows normalised, and the whole method runs end to end on tiny-sd.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { multiplicativeEditor } from '../src/attention/editors.js';
import { gradients } from '../src/graph/autodiff.js';
import { Graph } from '../src/graph/graph.js';
import { compile } from '../src/graph/runtime.js';
import { ATTEND_EXCITE_DEFAULTS } from '../src/methods/attend-and-excite.js';
import { FOCUS_DEFAULTS, focusRegions, otsuThreshold, peakComponent } from '../src/methods/focus.js';
import {
  outsideMassShare,
  SUPPRESS_WEIGHTS,
  suppressLossTerms,
  SuppressToImpress,
  type LossTerm,
  type LossWeights,
  type SuppressMode,
} from '../src/methods/suppress.js';
import { candidateSeed, generate, generateBatch } from '../src/pipeline/generate.js';
import { buildMethod } from '../src/methods/registry.js';
import { CARRIER_DEFAULTS } from '../src/methods/carriers.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { repoRoot, tinySdDir } from './support/oracle.js';

const H = 8;
const W = 8;

/** A blob: value `v` on the rectangle [y0, y1) × [x0, x1), `rest` elsewhere. */
function blob(y0: number, y1: number, x0: number, x1: number, v = 1, rest = 0): Float32Array {
  const m = new Float32Array(H * W).fill(rest);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * W + x] = v;
  return m;
}

function stack(maps: Float32Array[]): Float32Array {
  const out = new Float32Array(maps.length * H * W);
  maps.forEach((m, i) => out.set(m, i * H * W));
  return out;
}

const only = (term: LossTerm): LossWeights => ({
  suppress: 0,
  excite: 0,
  even: 0,
  exclusive: 0,
  bind: 0,
  clean: 0,
  segregate: 0,
  [term]: 1,
});

/** Evaluate one term (and its gradient w.r.t. the subject maps) on given maps and regions. */
async function term(
  name: LossTerm,
  subjects: Float32Array[],
  owned: Float32Array[],
  attributes: { maps: Float32Array[]; links: number[] } | null = null,
  components?: Float32Array[],
) {
  const g = new Graph();
  const n = subjects.length;
  const A = g.input('A', [n, H, W]);
  const O = g.input('O', [n, H, W]);
  const C = g.input('C', [n, H, W]);
  const attr = attributes ? g.input('attr', [attributes.maps.length, H, W]) : null;
  const { total } = suppressLossTerms(
    { subjects: A, attributes: attr, links: attributes?.links ?? [], owned: O, components: C },
    only(name),
  );
  g.output('loss', total);
  g.output('grad', gradients(total, [A])[0]!);
  const session = await compile(g);
  const feeds: Record<string, { data: Float32Array; shape: number[] }> = {
    A: { data: stack(subjects), shape: [n, H, W] },
    O: { data: stack(owned), shape: [n, H, W] },
    C: { data: stack(components ?? owned), shape: [n, H, W] },
  };
  if (attributes) feeds['attr'] = { data: stack(attributes.maps), shape: [attributes.maps.length, H, W] };
  const out = await session.run(feeds);
  await session.release();
  return { loss: out['loss']!.data[0]!, grad: out['grad']!.data };
}

describe('focus regions', () => {
  it("Otsu's threshold separates a bimodal map", () => {
    const values = Float32Array.from({ length: 100 }, (_, i) => (i < 70 ? 0.1 + (i % 5) * 0.01 : 0.8 + (i % 5) * 0.02));
    const t = otsuThreshold(values);
    expect(t).toBeGreaterThan(0.14); // the smallest foreground value lies above the low cluster
    expect(t).toBeLessThan(0.8);
  });

  it('keeps only the connected component holding the peak', () => {
    const m = blob(1, 3, 1, 3, 1, 0.05);
    m.set([0.9, 0.9], 6 * W + 5); // a second, disconnected blob
    const comp = peakComponent(m, H, W, 0.5, 1 * W + 1);
    expect([...comp].reduce((a, b) => a + b, 0)).toBe(4);
    expect(comp[6 * W + 5]).toBe(0);
    const r = focusRegions({ height: H, width: W, maps: [m] });
    expect(r.owned[0]![2 * W + 2]).toBeGreaterThan(0.99);
    expect(r.owned[0]![6 * W + 5]).toBe(0); // the second blob is outside the focus region
  });

  it('ownership gives a contested pixel to the subject with the larger normalised map', () => {
    const a = blob(0, 4, 0, 5, 1, 0.02);
    const b = blob(0, 4, 3, 8, 1, 0.02);
    a[1 * W + 3] = 0.95; // both cover column 3–4; a is a bit weaker at (1,3)
    b[1 * W + 3] = 1;
    const r = focusRegions({ height: H, width: W, maps: [a, b] }, FOCUS_DEFAULTS);
    expect(r.owned[1]![1 * W + 3]!).toBeGreaterThan(r.owned[0]![1 * W + 3]!);
    expect(r.owned[0]![1 * W + 0]!).toBeGreaterThan(0.99);
    expect(r.owned[1]![1 * W + 0]!).toBe(0);
  });
});

describe('loss terms on hand-made maps', () => {
  const region = blob(2, 6, 2, 6);

  it('suppress: zero for a map wholly inside its region, and its gradient pushes outside mass down', async () => {
    expect((await term('suppress', [blob(3, 5, 3, 5)], [region])).loss).toBeCloseTo(0, 6);
    const leaky = blob(3, 5, 3, 5, 1, 0.1);
    const r = await term('suppress', [leaky], [region]);
    expect(r.loss).toBeCloseTo(0.48, 5); // 48 outside pixels at 0.1 of a total mass of 10
    expect(r.grad.every(Number.isFinite)).toBe(true);
    expect(r.grad[0]!).toBeGreaterThan(0); // outside: descending lowers it
    expect(r.grad[3 * W + 3]!).toBeLessThan(0); // inside: descending raises it
  });

  it('excite: 1 - the weakest subject peak', async () => {
    const r = await term('excite', [blob(3, 5, 3, 5, 0.9), blob(0, 2, 0, 2, 0.4)], [region, region]);
    expect(r.loss).toBeCloseTo(0.6, 5);
    expect(r.grad.slice(H * W).some((v) => v < 0)).toBe(true); // raise the weak subject's peak
  });

  it('even: zero for a flat region, positive for a peaked one', async () => {
    const hard = blob(2, 6, 2, 6);
    expect((await term('even', [blob(2, 6, 2, 6, 0.7)], [hard])).loss).toBeLessThan(0.01);
    const peaked = blob(2, 6, 2, 6, 0.2);
    peaked[3 * W + 3] = 1;
    const r = await term('even', [peaked], [hard]);
    expect(r.loss).toBeGreaterThan(0.5);
    expect(r.grad.every(Number.isFinite)).toBe(true);
  });

  it('exclusive: maximal (1/2) for identical maps, zero for disjoint ones', async () => {
    const a = blob(1, 4, 1, 4, 0.8);
    expect((await term('exclusive', [a, a], [region, region])).loss).toBeCloseTo(0.5, 5);
    expect((await term('exclusive', [a, blob(5, 8, 5, 8)], [region, region])).loss).toBeCloseTo(0, 6);
    const r = await term('exclusive', [a, blob(2, 5, 2, 5)], [region, region]);
    expect(r.loss).toBeGreaterThan(0);
    expect(r.grad.every(Number.isFinite)).toBe(true);
  });

  it("bind: zero when the attribute sits on its noun's region, one when it sits elsewhere", async () => {
    const subjects = [blob(2, 6, 2, 6)];
    expect((await term('bind', subjects, [region], { maps: [blob(3, 5, 3, 5)], links: [0] })).loss).toBeCloseTo(0, 6);
    expect((await term('bind', subjects, [region], { maps: [blob(0, 1, 0, 2)], links: [0] })).loss).toBeCloseTo(1, 5);
  });

  it("clean (INITNO): the largest activation outside the peak's component", async () => {
    const m = blob(2, 4, 2, 4, 0.9, 0.05);
    m[7 * W + 7] = 0.6;
    const comp = [blob(2, 4, 2, 4)];
    // counted only when it exceeds the weakest pixel inside the component
    expect((await term('clean', [m], [region], null, comp)).loss).toBeCloseTo(0, 6);
    m[2 * W + 2] = 0.5;
    expect((await term('clean', [m], [region], null, comp)).loss).toBeCloseTo(0.6, 5);
  });
});

describe('the attention edit', () => {
  it('keeps rows summing to 1, zeroes the subject outside its region, and leaves other columns in proportion', async () => {
    const g = new Graph();
    const q = 16;
    const t = 6;
    const probs = g.input('probs', [2, 2, q, t]);
    const editor = multiplicativeEditor(g, 2);
    const edited = editor.hook(
      { name: 'x', kind: 'cross', place: 'mid', height: 4, width: 4, heads: 2, keyLength: t, index: 0 },
      probs,
    )!;
    g.output('edited', edited);
    const session = await compile(g);
    const raw = new Float32Array(2 * 2 * q * t);
    for (let r = 0; r < 2 * 2 * q; r++) {
      let s = 0;
      for (let k = 0; k < t; k++) s += raw[r * t + k] = 0.1 + ((r * 7 + k * 3) % 11) / 10;
      for (let k = 0; k < t; k++) raw[r * t + k]! /= s;
    }
    const factor = new Float32Array(2 * q * t).fill(1);
    const subject = 2;
    for (let p = 0; p < q; p++) if (p >= 8) factor[q * t + p * t + subject] = 0; // conditional half: zero outside region p < 8
    const out = (
      await session.run({
        probs: { data: raw, shape: [2, 2, q, t] },
        attention_edit_4x4: { data: factor, shape: [2, 1, q, t] },
      })
    )['edited']!.data;
    for (let r = 0; r < 2 * 2 * q; r++) {
      let s = 0;
      for (let k = 0; k < t; k++) s += out[r * t + k]!;
      expect(s).toBeCloseTo(1, 5);
    }
    for (let head = 0; head < 2; head++) {
      for (let p = 0; p < q; p++) {
        const row = ((1 * 2 + head) * q + p) * t;
        if (p >= 8) expect(out[row + subject]).toBe(0);
        expect(out[row + 0]! / out[row + 1]!).toBeCloseTo(raw[row + 0]! / raw[row + 1]!, 5);
      }
    }
    // the unconditional half is unchanged
    for (let i = 0; i < 2 * q * t; i++) expect(out[i]!).toBeCloseTo(raw[i]!, 6);
    await session.release();
  });
});

describe('Suppress-to-Impress on tiny-sd', () => {
  let model: StableDiffusion;
  beforeAll(async () => {
    model = await StableDiffusion.load(tinySdDir);
  });
  const base = {
    prompt: 'a cat and a frog',
    steps: 6,
    guidanceScale: 7.5,
    seed: 3,
    recordAttention: { resolution: [16, 16] as const },
  };
  const subjects = [
    { token: 2, tokens: [2], label: 'cat' },
    { token: 5, tokens: [5], label: 'frog' },
  ];
  const method = (mode: SuppressMode) =>
    new SuppressToImpress({
      ...ATTEND_EXCITE_DEFAULTS,
      maxIterToAlter: 3,
      thresholds: new Map([[0, 0.05]]),
      subjects,
      attributes: [],
      mode,
      weights: SUPPRESS_WEIGHTS,
      gamma: 0,
      editSteps: 4,
      tokenGroups: false,
      carriers: CARRIER_DEFAULTS,
      selection: { candidates: 1, atCall: 1, accept: null },
      focus: FOCUS_DEFAULTS,
      smoothAttentions: true,
      kernelSize: 3,
      sigma: 0.5,
      attnRes: [16, 16],
    });
  const meanShare = (maps: Map<number, { data: Float32Array; shape: readonly number[] }>, calls: number[]) => {
    const share = outsideMassShare(maps, [2, 5]);
    return calls.reduce((s, c) => s + share.get(c)!, 0) / calls.length;
  };

  it('edit mode: deterministic, and the maps the passes used hold less subject mass outside the focus regions than plain sampling', async () => {
    const plain = await generate(model, base);
    const a = await generate(model, { ...base, method: method('edit') });
    const b = await generate(model, { ...base, method: method('edit') });
    expect(Buffer.from(a.finalLatents.data.buffer).equals(Buffer.from(b.finalLatents.data.buffer))).toBe(true);
    const edited = [1, 2, 3];
    expect(meanShare(a.attentionMaps, edited)).toBeLessThan(meanShare(plain.attentionMaps, edited) - 0.2);
    expect(a.finalLatents.data.some((v, i) => v !== plain.finalLatents.data[i])).toBe(true);
  });

  it('loss and both modes run end to end, deterministically, logging every term, and move the latents', async () => {
    const plain = await generate(model, base);
    const maxDiff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
    for (const mode of ['loss', 'both'] as const) {
      const a = await generate(model, { ...base, method: method(mode) });
      const b = await generate(model, { ...base, method: method(mode) });
      expect(Buffer.from(a.finalLatents.data.buffer).equals(Buffer.from(b.finalLatents.data.buffer))).toBe(true);
      const log = a.steps[0]!.method as { terms: Record<string, number>; loss: number };
      expect(Object.keys(log.terms).sort()).toEqual(['even', 'excite', 'exclusive', 'suppress']);
      expect(Number.isFinite(log.loss)).toBe(true);
      // The gradient steps act: the latents leave plain sampling's path (a zero gradient would leave them on it).
      expect(log.loss).toBeGreaterThan(0);
      expect(maxDiff(a.finalLatents.data, plain.finalLatents.data)).toBeGreaterThan(1e-3);
    }
  });
});

describe('Suppress-to-Impress v2 on tiny-sd: token groups and the choice of start', () => {
  let model: StableDiffusion;
  beforeAll(async () => {
    model = await StableDiffusion.load(tinySdDir);
  });

  const prompt = 'a cat and a frog';
  const shared = { steps: 4, guidanceScale: 7.5, sampler: 'ddim' as const };
  const targets = {
    subjects: [
      { token: 2, tokens: [2], label: 'cat' },
      { token: 5, tokens: [5], label: 'frog' },
    ],
    attributes: [],
  };
  const build = (overrides: Parameters<typeof buildMethod>[2] extends infer S ? Omit<S, 'steps'> : never) =>
    buildMethod('suppress', targets, { steps: shared.steps, attnRes: [16, 16], ...overrides }) as SuppressToImpress;
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

  it('keeps the start with the lowest layout score, and that image is the start run on its own', async () => {
    const chosen = await generate(model, {
      ...shared,
      prompt,
      seed: 11,
      method: build({ candidates: 3, selectAt: 2, accept: null }),
    });
    const c = chosen.candidate!;
    expect(c.scores).toHaveLength(3);
    expect(c.scores[c.index]).toBe(Math.min(...c.scores));
    expect(c.seed).toBe(candidateSeed(11, c.index));
    expect(chosen.seed).toBe(11);
    // The same method with one start, from the chosen start's seed, makes the same image.
    const alone = await generate(model, { ...shared, prompt, seed: c.seed, method: build({ candidates: 1 }) });
    expect(alone.candidate).toBeNull();
    expect(maxDiff(chosen.finalLatents.data, alone.finalLatents.data)).toBeLessThan(1e-4);
    // every start's score is logged at the call where the starts are compared
    expect(chosen.steps[1]!.method?.layoutScore).toBe(c.scores[c.index]);
  });

  it('stops at the first start that scores at most --accept', async () => {
    const first = await generate(model, {
      ...shared,
      prompt,
      seed: 11,
      method: build({ candidates: 3, selectAt: 2, accept: Infinity }),
    });
    expect(first.candidate).toMatchObject({ index: 0, seed: 11 });
    expect(first.candidate!.scores).toHaveLength(1);
    const alone = await generate(model, { ...shared, prompt, seed: 11, method: build({ candidates: 1 }) });
    expect(maxDiff(first.finalLatents.data, alone.finalLatents.data)).toBeLessThan(1e-4);
  });

  it('in a batch, each sample chooses its own start as it would alone', async () => {
    const seeds = [11, 12];
    const batch = await generateBatch(
      model,
      seeds.map((seed) => ({ prompt, seed, method: build({ candidates: 2, selectAt: 2, accept: null }) })),
      shared,
    );
    for (const [i, seed] of seeds.entries()) {
      const alone = await generate(model, {
        ...shared,
        prompt,
        seed,
        method: build({ candidates: 2, selectAt: 2, accept: null }),
      });
      expect(batch[i]!.candidate).toEqual(alone.candidate);
      expect(maxDiff(batch[i]!.finalLatents.data, alone.finalLatents.data)).toBeLessThan(1e-4);
    }
  });

  it('token groups: carriers are logged, the edit covers them, and the run is deterministic', async () => {
    // tiny-sd's random text encoder gives no token a map like a subject's, so no carriers: the trained shapes
    // model, whose causal encoder makes "and", "a" after a noun say the noun too.
    const shapes = await StableDiffusion.load(join(repoRoot, 'models', 'shapes'));
    // Six steps: the edit window (18 of 50 calls, scaled) then holds call 1, edited with the carriers found at call 0;
    // at four steps it holds no call after the first, and groups on or off gave the same image.
    const request = { steps: 6, guidanceScale: 5, prompt: 'a red circle and a blue square', seed: 0 };
    const nouns = {
      subjects: [
        { token: 3, tokens: [3], label: 'circle' },
        { token: 7, tokens: [7], label: 'square' },
      ],
      attributes: [],
    };
    const suppress = (tokenGroups: boolean) =>
      buildMethod('suppress', nouns, { steps: request.steps, candidates: 1, tokenGroups }) as SuppressToImpress;
    const a = await generate(shapes, { ...request, method: suppress(true) });
    const b = await generate(shapes, { ...request, method: suppress(true) });
    expect(Buffer.from(a.finalLatents.data.buffer).equals(Buffer.from(b.finalLatents.data.buffer))).toBe(true);
    for (const step of a.steps) {
      const carriers = step.method!.carriers!;
      expect(carriers).toHaveLength(2);
      // every subject has carriers at every step, each after its own noun ("and", "a" after "circle" at least)
      carriers.forEach((list, i) => {
        expect(list.length).toBeGreaterThan(0);
        for (const k of list) expect(k).toBeGreaterThan(nouns.subjects[i]!.token);
      });
    }
    expect(a.steps[0]!.method!.carriers![0]).toEqual(expect.arrayContaining([4, 5]));
    // The edit covers them: with groups off (the nouns' own columns only) the image differs.
    const without = await generate(shapes, { ...request, method: suppress(false) });
    expect(without.steps.map((step) => step.method?.carriers)).toEqual(without.steps.map(() => undefined));
    expect(maxDiff(a.finalLatents.data, without.finalLatents.data)).toBeGreaterThan(1e-2);
    await shapes.release();
  });

  it('a bad choice of start is a field error', async () => {
    await expect(
      generate(model, { ...shared, prompt, seed: 1, method: build({ candidates: 2, selectAt: 9 }) }),
    ).rejects.toThrow(/selectAt must be an integer from 1 to the 4 sampler calls, got 9/);
  });
});

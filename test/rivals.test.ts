/**
 * The rivals and the method specs end to end on tiny-sd: each rival runs deterministically by name, its passes are
 * counted in the result's cost, INITNO's start is optimised (and its rounds restart from fresh noise), and the
 * registry's specs give the CLI's flags, names and aliases.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ATTEND_EXCITE_DEFAULTS } from '../src/methods/attend-and-excite.js';
import { Conform } from '../src/methods/conform.js';
import { colorIndices, DivideAndBind } from '../src/methods/divide-and-bind.js';
import { Initno } from '../src/methods/initno.js';
import type { GuidanceMethod } from '../src/methods/types.js';
import {
  buildMethod,
  canonicalMethodName,
  checkMethodOverrides,
  METHOD_SPECS,
  methodSpec,
  overrideFields,
  promptTokenCount,
} from '../src/methods/registry.js';
import { generate, generateBatch } from '../src/pipeline/generate.js';
import { startsWithin } from '../src/pipeline/starts.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { tinySdDir } from './support/oracle.js';

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

describe('method specs', () => {
  it('every method is one spec: unique names and aliases, capabilities, override fields with flags', () => {
    const names = METHOD_SPECS.flatMap((s) => [s.name, ...(s.aliases ?? [])]);
    expect(new Set(names).size).toBe(names.length);
    for (const rival of ['initno', 'initno-clean', 'syngen', 'divide-and-bind', 'conform', 'astar'])
      expect(methodSpec(rival).capabilities.needsSubjects).toBe(true);
    expect(canonicalMethodName('AE')).toBe('attend-and-excite');
    expect(canonicalMethodName('S2I')).toBe('suppress');
    expect(canonicalMethodName('suppress-v4')).toBe('suppress'); // v3's regions with v2's edit length
    expect(canonicalMethodName('suppress-v3')).toBe('suppress-v3'); // the default before it: its own preset again
    const flags = overrideFields().map((f) => f.field.flag);
    expect(new Set(flags).size).toBe(flags.length);
    expect(flags).toEqual(expect.arrayContaining(['--max-iter-to-alter', '--mode', '--accept', '--budget']));
    expect(() => checkMethodOverrides('syngen', { budget: 30 })).toThrow(/only applies to the methods that choose/);
  });

  it("suppress@<passes>: S2I held to a rival's cost (up to 64 starts within the passes), by name", () => {
    const spec = methodSpec('suppress@120');
    expect(spec.name).toBe('suppress@120');
    expect(methodSpec('suppress@120')).toBe(spec);
    const settings = spec.resolve(25, {}).suppress!;
    expect(settings.selection).toEqual({ candidates: 64, atCall: 5, accept: 0.05, budget: 120 });
    expect(settings).toMatchObject({ mode: 'edit', tokenGroups: true });
    expect(startsWithin(120, 64, 5, 25)).toBe(20);
    expect(() => methodSpec('suppress@0')).toThrow(/unknown method/);
    expect(() => methodSpec('suppress@x')).toThrow(/unknown method/);
  });

  it('--budget: the starts that fit (k starts to call m and the rest: k·m + N − m passes), at least one', () => {
    expect(startsWithin(null, 4, 5, 25)).toBe(4);
    expect(startsWithin(40, 4, 5, 25)).toBe(4);
    expect(startsWithin(34, 4, 5, 25)).toBe(2);
    expect(startsWithin(10, 4, 5, 25)).toBe(1);
  });
});

describe('the rivals on tiny-sd', () => {
  let model: StableDiffusion;
  beforeAll(async () => {
    model = await StableDiffusion.load(tinySdDir);
  });
  const prompt = 'a red cat and a blue frog';
  const base = { prompt, steps: 4, guidanceScale: 7.5, seed: 5 };
  const targets = () => ({
    subjects: [
      { token: 3, tokens: [3], label: 'cat' },
      { token: 7, tokens: [7], label: 'frog' },
    ],
    attributes: [
      { token: 2, tokens: [2], label: 'red', subject: 0 },
      { token: 6, tokens: [6], label: 'blue', subject: 1 },
    ],
    promptTokens: promptTokenCount(model.tokenizer, prompt),
  });

  const rivals: Record<string, () => GuidanceMethod> = {
    syngen: () => buildMethod('syngen', targets(), { steps: 4 })!,
    // Its refinement limited to 2 steps (the official 100 at call 0 would dominate the suite's time).
    'divide-and-bind': () =>
      new DivideAndBind({
        ...ATTEND_EXCITE_DEFAULTS,
        maxIterToAlter: 2,
        subjects: targets().subjects,
        colors: [2, 6],
        refineAt: new Map([[0, 0.05]]),
        refineLimits: [2, 2],
        bindWeights: [[0, 1]],
        attnRes: [16, 16],
      }),
    // Its refinement limited to 2 steps at call 0 (the official 20 at three calls would dominate the suite's time).
    conform: () => buildConform(),
  };
  const buildConform = (t = targets()) =>
    new Conform({
      subjects: t.subjects,
      attributes: t.attributes,
      maxIterToAlter: 2,
      refineAt: [0],
      refinementSteps: 2,
      scaleFactor: 20,
      scaleRange: [1, 0.5],
      temperature: 0.5,
      softmaxNormalize: false,
      addPreviousMaps: true,
      kernelSize: 3,
      sigma: 0.5,
      attnRes: [16, 16],
    });
  // Its rounds limited to 2 of 2 steps (the official 5 of 10 and 50 more would dominate the suite's time).
  const buildInitno = (t = targets()) =>
    new Initno({
      ...ATTEND_EXCITE_DEFAULTS,
      maxIterToAlter: 2,
      subjects: t.subjects,
      refineAt: [1],
      rounds: 2,
      roundSteps: 2,
      finalSteps: 2,
      attnRes: [16, 16],
    });
  for (const [name, build] of Object.entries(rivals)) {
    it(`${name}: deterministic, changes the image, counts its loss passes`, async () => {
      const plain = await generate(model, base);
      const a = await generate(model, { ...base, method: build() });
      const b = await generate(model, { ...base, method: build() });
      expect(same(a.finalLatents.data, b.finalLatents.data)).toBe(true);
      expect(same(a.finalLatents.data, plain.finalLatents.data)).toBe(false);
      const calls = plain.steps.length; // PNDM: one call more than the steps
      expect(plain.cost).toMatchObject({ unetForward: calls, unetBackward: 0 });
      expect(a.cost.unetForward).toBeGreaterThan(calls);
      expect(a.cost.unetBackward).toBeGreaterThan(0);
      expect(a.cost.seconds).toBeGreaterThan(0);
      expect(a.steps[0]!.method!.loss).not.toBeNull();
    });
  }

  it('conform: its passes are the refinement steps and one per updated call, every one with a gradient', async () => {
    const m = buildConform();
    const a = await generate(model, { ...base, method: m });
    // Call 0: 2 refinement steps and the regular step; call 1: the regular step (with call 0's maps as positives).
    expect(a.cost).toMatchObject({ unetForward: a.steps.length + 4, unetBackward: 4 });
    expect(a.steps[0]!.method).toMatchObject({ refinementTries: 2 });
    expect(a.steps[1]!.method!.loss).toBeGreaterThan(0);
    expect(a.steps[2]!.method).toBeUndefined();
  });

  // Each rival's image in a batch beside a prompt with more subjects and attributes (so more token slots, rows
  // and groups) must be its one-at-a-time image bit for bit: a method whose padded shapes follow the batch's
  // largest prompt changes ONNX Runtime's kernels and rounding (CONFORM's did, by ~1e-5).
  const inBatch: Record<string, (t: ReturnType<typeof targets>) => GuidanceMethod> = {
    syngen: (t) => buildMethod('syngen', t, { steps: 4 })!,
    'divide-and-bind': (t) =>
      new DivideAndBind({
        ...ATTEND_EXCITE_DEFAULTS,
        maxIterToAlter: 2,
        subjects: t.subjects,
        colors: colorIndices(t.subjects, t.attributes),
        refineAt: new Map([[0, 0.05]]),
        refineLimits: [2, 2],
        bindWeights: [[0, 1]],
        attnRes: [16, 16],
      }),
    conform: (t) => buildConform(t),
    // One round and at most 2 refinement steps (a batch of 2 runs every evaluation twice over).
    initno: (t) => new Initno({ ...buildInitno(t).config, rounds: 1, maxRefinementSteps: 2 }),
  };
  for (const [name, build] of Object.entries(inBatch))
    it(`${name}: in a batch with a prompt of more subjects and attributes, an image is what it is alone`, async () => {
      const word = (token: number, label: string) => ({ token, tokens: [token], label });
      // "a big red cat, a blue frog and a green dog": 3 subjects and 4 attributes against the first prompt's 2 and 2.
      const other = {
        prompt: 'a big red cat, a blue frog and a green dog',
        seed: 6,
        method: build({
          subjects: [word(4, 'cat'), word(8, 'frog'), word(12, 'dog')],
          attributes: [
            { ...word(2, 'big'), subject: 0 },
            { ...word(3, 'red'), subject: 0 },
            { ...word(7, 'blue'), subject: 1 },
            { ...word(11, 'green'), subject: 2 },
          ],
          promptTokens: 14,
        }),
      };
      const options = { steps: base.steps, guidanceScale: base.guidanceScale };
      const alone = await generateBatch(model, [{ prompt, seed: base.seed, method: build(targets()) }], options);
      const together = await generateBatch(model, [{ prompt, seed: base.seed, method: build(targets()) }, other], {
        ...options,
        batchSize: 2,
      });
      expect(together[0]!.batch).toEqual({ size: 2, index: 0 });
      expect(same(together[0]!.finalLatents.data, alone[0]!.finalLatents.data)).toBe(true);
    });

  it('initno: optimises the start (rounds from fresh noise, the best re-optimised), then its loop; deterministic', async () => {
    const build = () => buildInitno();
    const m = build();
    const a = await generate(model, { ...base, method: m });
    const b = await generate(model, { ...base, method: build() });
    expect(same(a.finalLatents.data, b.finalLatents.data)).toBe(true);
    const log = m.startLog!;
    expect(log.rounds.length).toBeGreaterThanOrEqual(1);
    if (!log.rounds.some((r) => r.succeeded)) expect(log.reoptimised).toBe(true);
    // The noise optimisation's passes: each step one pass for the masks and one with the gradient.
    const steps = log.rounds.reduce((s, r) => s + r.steps, 0) + (log.reoptimised ? 2 : 0);
    expect(a.cost.unetForward).toBeGreaterThanOrEqual(a.steps.length + 2 * steps);
    expect(Object.keys(a.steps[0]!.method!.terms!).sort()).toEqual(['alignment', 'clean', 'conflict', 'response']);
  });
});

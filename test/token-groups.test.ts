/**
 * Suppress-to-Impress's token groups and gradient modes on the shipped shapes model, where they have something to
 * act on: on tiny-sd's random weights no later token carries a subject (the carriers are empty at every step), so
 * a test there cannot tell token groups on from off, nor a working gradient from a zero one. Every call is edited
 * (editSteps = steps): at 4 steps the scaled default edits none.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMethod, methodTargets } from '../src/methods/registry.js';
import { generate } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { autoSubjects } from '../src/prompt/auto-subjects.js';
import { repoRoot } from './support/oracle.js';

const prompt = 'a red circle and a blue square';
const steps = 4;
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('token groups and gradient modes on the shapes model', () => {
  let model: StableDiffusion;
  let targets: ReturnType<typeof methodTargets>;
  beforeAll(async () => {
    model = await StableDiffusion.load(join(repoRoot, 'models', 'shapes'));
    const auto = autoSubjects(model.tokenizer, prompt);
    targets = methodTargets(auto.subjects, auto.attributes);
  });
  afterAll(async () => model?.release());

  const run = (overrides: Omit<Parameters<typeof buildMethod>[2], 'steps'>) =>
    generate(model, {
      prompt,
      seed: 0,
      steps,
      guidanceScale: 5,
      method: buildMethod('suppress', targets, { steps, candidates: 1, editSteps: steps, ...overrides }),
    });

  it('carriers are found and logged at every step, and the edit covers them', async () => {
    const on = await run({});
    for (const step of on.steps) {
      const carriers = step.method!.carriers!;
      expect(carriers).toHaveLength(2);
      // each subject is carried by later tokens of the prompt
      expect(carriers[0]!.length).toBeGreaterThan(0);
      expect(carriers[1]!.length).toBeGreaterThan(0);
    }
    const off = await run({ tokenGroups: false });
    for (const step of off.steps) for (const list of step.method?.carriers ?? []) expect(list).toEqual([]);
    expect(maxDiff(on.finalLatents.data, off.finalLatents.data)).toBeGreaterThan(1e-3);
  });

  it('loss and both modes move the latents (a zero gradient would not)', async () => {
    const plain = await generate(model, { prompt, seed: 0, steps, guidanceScale: 5 });
    const edit = await run({ mode: 'edit' });
    for (const mode of ['loss', 'both'] as const) {
      const r = await run({ mode });
      expect(maxDiff(r.finalLatents.data, plain.finalLatents.data)).toBeGreaterThan(1e-3);
      if (mode === 'both') expect(maxDiff(r.finalLatents.data, edit.finalLatents.data)).toBeGreaterThan(1e-3);
    }
  });
});

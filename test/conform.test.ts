/**
 * CONFORM against its official code (test/fixtures/conform: goldens made by running gemlab-vt/CONFORM's own
 * `_compute_contrastive_loss`, with pytorch-metric-learning 2.5.0's NT-Xent, on fixed aggregated maps; see
 * PROVENANCE.md): the loss and its gradient with respect to the current maps, with and without the previous call's
 * maps, both map normalisations, two and three groups, and the cases where the loss is zero.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expectCloseToReference } from './support/golden.js';
import { gradients } from '../src/graph/autodiff.js';
import { Graph } from '../src/graph/graph.js';
import * as op from '../src/graph/ops.js';
import { compile } from '../src/graph/runtime.js';
import { tokenSelection } from '../src/methods/batch.js';
import {
  CONFORM_DEFAULTS,
  conformEmbeddings,
  conformGroups,
  conformPairs,
  conformSpec,
  ntXentLoss,
} from '../src/methods/conform.js';

interface Case {
  name: string;
  h: number;
  w: number;
  T: number;
  groups: number[][];
  softmax_normalize: boolean;
  maps: number[];
  previous: number[] | null;
  loss: number;
  grad: number[];
}
const goldens = JSON.parse(readFileSync(new URL('./fixtures/conform/goldens.json', import.meta.url), 'utf8')) as {
  cases: Case[];
  compounding: { losses: (number | null)[] };
};

async function ours(c: Case) {
  const tokens = c.groups.flat();
  const labels = c.groups.flatMap((g, i) => g.map(() => i));
  const n = tokens.length;
  const m = 2 * n;
  const pairs = conformPairs(labels, n, c.previous !== null);
  const settings = { temperature: 0.5, softmaxNormalize: c.softmax_normalize, kernelSize: 3, sigma: 0.5 };
  const g = new Graph();
  const maps = g.input('maps', [1, c.h, c.w, c.T]);
  const select = g.input('select', [1, c.T - 2, n]);
  const embeddings = op.concat(
    [
      conformEmbeddings(maps, select, settings),
      conformEmbeddings(g.input('prev', [1, c.h, c.w, c.T]), select, settings),
    ],
    1,
  );
  const loss = ntXentLoss(
    embeddings,
    g.input('order', [1, m, m]),
    g.input('pos', [1, m, m]),
    g.input('neg', [1, m, m]),
    g.input('pad', [1, m]),
    g.input('weight', [1]),
    settings.temperature,
  );
  g.output('loss', op.identity(loss));
  g.output('grad', gradients(op.reduceSum(loss, [0], false), [maps])[0]!);
  const session = await compile(g);
  const out = await session.run({
    maps: { data: Float32Array.from(c.maps), shape: [1, c.h, c.w, c.T] },
    prev: { data: Float32Array.from(c.previous ?? c.maps.map(() => 0)), shape: [1, c.h, c.w, c.T] },
    select: tokenSelection([tokens], c.T, n).select,
    order: { data: pairs.order, shape: [1, m, m] },
    pos: { data: pairs.pos, shape: [1, m, m] },
    neg: { data: pairs.neg, shape: [1, m, m] },
    pad: { data: pairs.pad, shape: [1, m] },
    weight: { data: Float32Array.of(pairs.weight), shape: [1] },
  });
  await session.release();
  return { loss: out['loss']!.data[0]!, grad: out['grad']!.data };
}

describe('CONFORM against the official code', () => {
  for (const c of goldens.cases) {
    it(`${c.name}: the loss and its gradient with respect to the maps`, async () => {
      const r = await ours(c);
      expect(Math.abs(r.loss - c.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(c.loss)));
      expectCloseToReference(r.grad, c.grad);
    });
  }

  it("the official in-place x100 compounds over one call's evaluations; ours is its first evaluation every time", async () => {
    const c = { ...goldens.cases.find((x) => x.name === 'two')!, softmax_normalize: true };
    const first = (await ours(c)).loss;
    const official = goldens.compounding.losses;
    expect(Math.abs(first - official[0]!)).toBeLessThanOrEqual(1e-5);
    // From the second evaluation on the official value moves (the maps were scaled again), then becomes NaN.
    expect(Math.abs(official[1]! - official[0]!)).toBeGreaterThan(1e-3);
    expect(official.indexOf(null)).toBeGreaterThan(1);
    expect((await ours(c)).loss).toBe(first);
  });

  it('groups: each subject with its attributes (prompt order), then the subject; labels by subject', () => {
    const s = (token: number, label: string) => ({ token, tokens: [token], label });
    const g = conformGroups(
      [s(4, 'square'), s(7, 'circle'), s(9, 'star')],
      [
        { ...s(3, 'red'), subject: 0 },
        { ...s(2, 'big'), subject: 0 },
        { ...s(6, 'blue'), subject: 1 },
      ],
    );
    expect(g).toEqual({ tokens: [2, 3, 4, 6, 7, 9], labels: [0, 0, 0, 1, 1, 2], subjectSlots: [2, 4, 5] });
  });

  it("the authors' notebook settings at 50 steps, scaled to 25", () => {
    const at50 = conformSpec.resolve(50, {});
    expect(at50.loop.maxIterToAlter).toBe(CONFORM_DEFAULTS.maxIterToAlterAt50);
    expect(at50.own).toMatchObject({
      refineAt: [0, 10, 20],
      refinementSteps: 20,
      temperature: 0.5,
      softmaxNormalize: false,
    });
    const at25 = conformSpec.resolve(25, {});
    expect(at25.loop.maxIterToAlter).toBe(15);
    expect(at25.own).toMatchObject({ refineAt: [0, 5, 10] });
    expect(at25.scaled).toEqual(['maxIterToAlter', 'refineAt']);
  });
});

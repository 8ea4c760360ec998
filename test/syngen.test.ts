/**
 * SynGen against its official code (test/fixtures/syngen: goldens made by running RoyiRa/Linguistic-Binding-in-
 * Diffusion-Models' own `_attribution_loss` on fixed aggregated maps, see PROVENANCE.md): the loss and its
 * gradient with respect to the maps, for two and three subtrees and for words of several wordpieces.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expectCloseToReference } from './support/golden.js';
import { gradients } from '../src/graph/autodiff.js';
import { Graph } from '../src/graph/graph.js';
import * as op from '../src/graph/ops.js';
import { compile } from '../src/graph/runtime.js';
import { syngenFeeds, syngenGroups, syngenLoss, syngenSubtrees } from '../src/methods/syngen.js';

interface Case {
  name: string;
  h: number;
  w: number;
  T: number;
  length: number;
  subtrees: (number | number[])[][];
  maps: number[];
  loss: number;
  grad: number[];
}
const goldens = JSON.parse(readFileSync(new URL('./fixtures/syngen/goldens.json', import.meta.url), 'utf8')) as {
  cases: Case[];
};

async function ours(c: Case) {
  const subtrees = c.subtrees.map((s) => s.map((word) => (Array.isArray(word) ? word : [word])));
  const f = syngenFeeds([syngenGroups(subtrees, c.length)], c.T);
  const P = c.T - 2;
  const g = new Graph();
  const maps = g.input('maps', [1, c.h, c.w, c.T]);
  const { loss } = syngenLoss(
    maps,
    g.input('rows', [1, f.rows, P]),
    g.input('mask', [1, f.groups, f.rows * P]),
    g.input('coef', [1, f.groups]),
  );
  g.output('loss', op.identity(loss));
  g.output('grad', gradients(op.reduceSum(loss, [0], false), [maps])[0]!);
  const session = await compile(g);
  const out = await session.run({
    maps: { data: Float32Array.from(c.maps), shape: [1, c.h, c.w, c.T] },
    rows: { data: f.rowSelect, shape: [1, f.rows, P] },
    mask: { data: f.groupMask, shape: [1, f.groups, f.rows * P] },
    coef: { data: f.groupCoef, shape: [1, f.groups] },
  });
  await session.release();
  return { loss: out['loss']!.data[0]!, grad: out['grad']!.data };
}

describe('SynGen against the official code', () => {
  for (const c of goldens.cases) {
    it(`${c.name}: the loss and its gradient with respect to the maps`, async () => {
      const r = await ours(c);
      expect(Math.abs(r.loss - c.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(c.loss)));
      expectCloseToReference(r.grad, c.grad);
    });
  }

  it('subtrees from subjects and attributes: modifiers in prompt order, then the noun; nouns without none', () => {
    const subject = (token: number, label: string) => ({ token, tokens: [token], label });
    expect(
      syngenSubtrees(
        [subject(4, 'square'), subject(7, 'circle'), subject(9, 'star')],
        [
          { ...subject(3, 'red'), subject: 0 },
          { ...subject(2, 'big'), subject: 0 },
          { ...subject(6, 'blue'), subject: 1 },
        ],
      ),
    ).toEqual([
      [[2], [3], [4]],
      [[6], [7]],
    ]);
  });
});

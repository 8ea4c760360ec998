/**
 * Divide & Bind against its official code (test/fixtures/divide-and-bind: goldens made by running
 * boschresearch/Divide-and-Bind's own `_compute_loss_geiven_attn_map` (loss_mode 'tv_bind') and its
 * AttentionStore's aggregations on fixed maps, see PROVENANCE.md): the loss, the refinement's indicator (the
 * smallest total variation), each subject's peak, the gradients with respect to both maps, and the
 * higher-resolution colour maps' nearest-downsampled aggregation.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expectCloseToReference } from './support/golden.js';
import { AttentionStore } from '../src/attention/store.js';
import { gradients } from '../src/graph/autodiff.js';
import { Graph } from '../src/graph/graph.js';
import * as op from '../src/graph/ops.js';
import { compile } from '../src/graph/runtime.js';
import { ATTEND_EXCITE_DEFAULTS } from '../src/methods/attend-and-excite.js';
import { tokenSelection } from '../src/methods/batch.js';
import { divideBindLoss } from '../src/methods/divide-and-bind.js';
import { intermediateMaps } from '../src/methods/loss-pass.js';
import type { AttentionLayer } from '../src/models/attention.js';

interface Case {
  name: string;
  h: number;
  w: number;
  T: number;
  indices: number[];
  colors: number[];
  cur_i: number;
  maps: number[];
  color_maps: number[];
  loss: number;
  threshold: number;
  max_attn: number[];
  grad_maps: number[] | null;
  grad_color: number[] | null;
}
const goldens = JSON.parse(
  readFileSync(new URL('./fixtures/divide-and-bind/goldens.json', import.meta.url), 'utf8'),
) as {
  cases: Case[];
  aggregation: {
    layers: Record<string, { res: number; probs: number[] }[]>;
    T: number;
    heads: number;
    aggregate_4: number[];
    intermediate_4: number[];
  };
};

function expectClose(ours: ArrayLike<number>, ref: ArrayLike<number> | null, what: string): void {
  if (ref === null) {
    expect(Math.max(...Array.from(ours, Math.abs)), what).toBe(0);
    return;
  }
  expect(ours.length, what).toBe(ref.length);
  expectCloseToReference(ours, ref, what);
}

describe('Divide & Bind against the official code', () => {
  for (const c of goldens.cases) {
    it(`${c.name}: the tv_bind loss, its indicator and its gradients`, async () => {
      const n = c.indices.length;
      const g = new Graph();
      const maps = g.input('maps', [1, c.h, c.w, c.T]);
      const color = g.input('color', [1, c.h, c.w, c.T]);
      const v = divideBindLoss(
        maps,
        color,
        {
          select: g.input('select', [1, c.T - 2, n]),
          mask: g.input('mask', [1, n]),
          colorSelect: g.input('color_select', [1, c.T - 2, n]),
          colorMask: g.input('color_mask', [1, n]),
          bindWeight: g.input('weight', [1]),
        },
        ATTEND_EXCITE_DEFAULTS,
      );
      const [gm, gc] = gradients(op.reduceSum(v.loss, [0], false), [maps, color]);
      for (const [name, x] of Object.entries({ loss: v.loss, threshold: v.threshold, peak: v.maxAttention, gm, gc }))
        g.output(name, op.identity(x!));
      const session = await compile(g);
      const subjects = tokenSelection([c.indices], c.T, n);
      const colors = tokenSelection([c.colors.map((x) => (x > 0 ? x : 1))], c.T, n);
      const weight = c.cur_i >= 20 ? 10 : c.cur_i >= 10 ? 5 : 1;
      const out = await session.run({
        maps: { data: Float32Array.from(c.maps), shape: [1, c.h, c.w, c.T] },
        color: { data: Float32Array.from(c.color_maps), shape: [1, c.h, c.w, c.T] },
        select: subjects.select,
        mask: subjects.mask,
        color_select: colors.select,
        color_mask: { data: Float32Array.from(c.colors, (x) => (x > 0 ? 1 : 0)), shape: [1, n] },
        weight: { data: Float32Array.of(weight), shape: [1] },
      });
      await session.release();
      expect(out['loss']!.data[0]!).toBeCloseTo(c.loss, 5);
      expect(out['threshold']!.data[0]!).toBeCloseTo(c.threshold, 5);
      expectClose(out['peak']!.data, c.max_attn, 'peaks');
      expectClose(out['gm']!.data, c.grad_maps, 'd/d maps');
      expectClose(out['gc']!.data, c.grad_color, 'd/d colour maps');
    });
  }

  it("the colour maps: the higher-resolution layers' heads, nearest-downsampled and averaged", async () => {
    const { layers, T, heads } = goldens.aggregation;
    const g = new Graph();
    const store = new AttentionStore({ kind: 'cross' });
    const feeds: Record<string, { data: Float32Array; shape: number[] }> = {};
    // Layers recorded in the UNet's call order (down, mid, up), as the official store appends them.
    for (const place of ['down', 'mid', 'up'] as const)
      layers[place]!.forEach((l, i) => {
        const name = `${place}${i}`;
        const probs = g.input(name, [1, heads, l.res * l.res, T]);
        feeds[name] = { data: Float32Array.from(l.probs), shape: [1, heads, l.res * l.res, T] };
        const layer = { kind: 'cross', place, height: l.res, width: l.res } as AttentionLayer;
        store.hook(layer, probs);
      });
    g.output('aggregate', op.identity(store.aggregate({ resolution: [4, 4] })));
    g.output('intermediate', op.identity(intermediateMaps(store, [4, 4])!));
    const session = await compile(g);
    const out = await session.run(feeds);
    await session.release();
    expectClose(out['aggregate']!.data, goldens.aggregation.aggregate_4, 'aggregate_attention');
    expectClose(out['intermediate']!.data, goldens.aggregation.intermediate_4, 'aggregate_attention_intermediate');
  });
});

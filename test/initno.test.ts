/**
 * INITNO against its official code (test/fixtures/initno: goldens made by running xiefan-guo/initno's own loss
 * functions on fixed attention maps, see PROVENANCE.md): the noise optimisation's loss (fn_compute_loss), the
 * loop's augmented loss with its moving-average cache (fn_augmented_compute_losss), their gradients with respect
 * to the cross- and self-attention maps, the clean masks (OpenCV's Otsu, the peak's component), and the Adam
 * steps on μ and log σ² with INITNO's KL steps.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { gradients } from '../src/graph/autodiff.js';
import { Graph } from '../src/graph/graph.js';
import * as op from '../src/graph/ops.js';
import { compile } from '../src/graph/runtime.js';
import { ATTEND_EXCITE_DEFAULTS } from '../src/methods/attend-and-excite.js';
import { tokenSelection } from '../src/methods/batch.js';
import { initnoComponent, initnoLosses, NoiseOptimisation, type InitnoLossKind } from '../src/methods/initno.js';

interface Losses {
  joint: number;
  cross: number;
  self: number;
  clean?: number;
  grad_cross: number[] | null;
  grad_self: number[] | null;
}
interface Case {
  name: string;
  h: number;
  w: number;
  T: number;
  indices: number[];
  cross: number[];
  self: number[];
  cross2: number[];
  self2: number[];
  compute: Losses;
  augmented: Losses[];
  masks: { peak: [number, number]; otsu: number[]; component: number[] }[];
}
const goldens = JSON.parse(readFileSync(new URL('./fixtures/initno/goldens.json', import.meta.url), 'utf8')) as {
  cases: Case[];
  adam: { z: number[]; grads: number[][]; history: { log_var: number[]; mu: number[]; kl_steps: number }[] };
};

const f32 = (a: number[]) => Float32Array.from(a);

/** Our losses on the case's maps: values, gradients w.r.t. both maps, smoothed subject maps, the new cache. */
async function ours(
  c: Case,
  cross: number[],
  self: number[],
  kind: Exclude<InitnoLossKind, 'response'>,
  components: Float32Array | null,
  cache: Float32Array | null,
) {
  const { h, w, T } = c;
  const n = c.indices.length;
  const hw = h * w;
  const g = new Graph();
  const X = g.input('cross', [1, h, w, T]);
  const S = g.input('self', [1, h, w, hw]);
  const inp = {
    select: g.input('select', [1, T - 2, n]),
    mask: g.input('mask', [1, n]),
    components: g.input('components', [1, n, h, w]),
    cachePrev: g.input('cache_prev', [1, n, h, w]),
    cacheKeep: g.input('keep', [1]),
    cacheTake: g.input('take', [1]),
  };
  const v = initnoLosses(X, S, inp, ATTEND_EXCITE_DEFAULTS);
  const loss = kind === 'compute' ? v.compute : v.augmented;
  const [gx, gs] = gradients(op.reduceSum(loss, [0], false), [X, S]);
  for (const [name, value] of Object.entries({
    loss,
    response: v.response,
    conflict: v.conflict,
    clean: v.clean,
    maps: v.subjectMaps,
    cache: v.cacheNew,
    gx: gx!,
    gs: gs!,
  }))
    g.output(name, op.identity(value));
  const session = await compile(g);
  const { select, mask } = tokenSelection([c.indices], T, n);
  const run = (comp: Float32Array) =>
    session.run({
      cross: { data: f32(cross), shape: [1, h, w, T] },
      self: { data: f32(self), shape: [1, h, w, hw] },
      select,
      mask,
      components: { data: comp, shape: [1, n, h, w] },
      cache_prev: { data: cache ?? new Float32Array(n * hw), shape: [1, n, h, w] },
      keep: { data: Float32Array.of(cache ? 0.9 : 0), shape: [1] },
      take: { data: Float32Array.of(cache ? Math.fround(1 - 0.9) : 1), shape: [1] },
    });
  // The clean masks come from this pass's own smoothed maps, as the official code computes them.
  let comp = components ?? new Float32Array(n * hw);
  if (!components) {
    const first = await run(comp);
    const maps = first['maps']!.data;
    comp = new Float32Array(n * hw);
    for (let s = 0; s < n; s++) comp.set(initnoComponent(maps.subarray(s * hw, (s + 1) * hw), h, w), s * hw);
  }
  const out = await run(comp);
  await session.release();
  const get = (k: string) => out[k]!.data;
  return {
    loss: get('loss')[0]!,
    response: get('response')[0]!,
    conflict: get('conflict')[0]!,
    clean: get('clean')[0]!,
    gx: get('gx'),
    gs: get('gs'),
    cache: get('cache').slice(),
    components: comp,
  };
}

/** Largest absolute difference, and the largest reference magnitude (for a relative bound). */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { abs: number; scale: number } {
  expect(a.length).toBe(b.length);
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    abs = Math.max(abs, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return { abs, scale };
}

function expectClose(ours: ArrayLike<number>, ref: ArrayLike<number> | null, what: string): void {
  if (ref === null) {
    // No gradient reached this input in the reference (e.g. the conflict term zeroed): ours must be zero.
    expect(Math.max(...Array.from(ours, Math.abs)), what).toBe(0);
    return;
  }
  const { abs, scale } = maxDiff(ours, ref);
  expect(abs, what).toBeLessThanOrEqual(1e-5 * Math.max(1, scale));
}

describe('INITNO against the official code', () => {
  for (const c of goldens.cases) {
    it(`${c.name}: masks, fn_compute_loss and its gradients`, async () => {
      const r = await ours(c, c.cross, c.self, 'compute', null, null);
      const hw = c.h * c.w;
      c.masks.forEach((m, s) =>
        expect([...r.components.subarray(s * hw, (s + 1) * hw)], `mask ${s}`).toEqual(m.component),
      );
      expect(r.response).toBeCloseTo(c.compute.cross, 5);
      expect(r.response > 0.5 ? 0 : r.conflict).toBeCloseTo(c.compute.self, 5);
      expect(r.loss).toBeCloseTo(c.compute.joint, 5);
      expectClose(r.gx, c.compute.grad_cross, 'd/d cross maps');
      expectClose(r.gs, c.compute.grad_self, 'd/d self maps');
    });

    it(`${c.name}: fn_augmented_compute_losss twice (the alignment cache) and its gradients`, async () => {
      const first = await ours(c, c.cross, c.self, 'augmented', null, null);
      const second = await ours(c, c.cross2, c.self2, 'augmented', null, first.cache);
      for (const [r, ref] of [
        [first, c.augmented[0]!],
        [second, c.augmented[1]!],
      ] as const) {
        expect(r.response).toBeCloseTo(ref.cross, 5);
        expect(r.conflict).toBeCloseTo(ref.self, 5);
        expect(r.clean).toBeCloseTo(ref.clean!, 5);
        expect(r.loss).toBeCloseTo(ref.joint, 5);
        expectClose(r.gx, ref.grad_cross, 'd/d cross maps');
        expectClose(r.gs, ref.grad_self, 'd/d self maps');
      }
    });
  }

  it("the noise optimisation's Adam steps on μ and log σ², with its KL steps, as torch's Adam", () => {
    const { z, grads, history } = goldens.adam;
    const opt = new NoiseOptimisation(f32(z));
    grads.forEach((g, i) => {
      const klSteps = opt.step(f32(g));
      expect(klSteps, `KL steps after step ${i}`).toBe(history[i]!.kl_steps);
      expectClose(opt.logVar, history[i]!.log_var, `log σ² after step ${i}`);
      expectClose(opt.mu, history[i]!.mu, `μ after step ${i}`);
    });
  });
});

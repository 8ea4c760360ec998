/** One batched evaluation of INITNO's losses (and a gradient) for several samples through the loss pass. */
import type { Graph } from '../../graph/graph.js';
import * as op from '../../graph/ops.js';
import type { Tensor } from '../../tensor.js';
import { defaultAttnRes } from '../attend-and-excite.js';
import { passBatchSize, stack, tokenSelection } from '../batch.js';
import { runLossPass, type LossPassGraph } from '../loss-pass.js';
import type { PassCount, UNetAccess } from '../types.js';
import { type InitnoLossKind, initnoLosses } from './losses.js';
import { initnoComponent } from './masks.js';
import type { InitnoConfig } from './settings.js';

/** The part of a sample's INITNO instance an evaluation reads (its subjects) and moves (its alignment cache). */
export interface InitnoSampleState {
  readonly config: Pick<InitnoConfig, 'subjects'>;
  cache: Float32Array | null;
}

export interface InitnoItem {
  method: InitnoSampleState;
  cond: Tensor;
  latent: Float32Array;
  cost?: PassCount;
}

export interface InitnoEvaluation {
  loss: number;
  response: number;
  conflict: number;
  clean: number;
  alignment: number;
  grad?: Float32Array;
  maxAttention: number[];
}

function initnoGraph(
  unet: UNetAccess,
  cfg: InitnoConfig,
  res: readonly [number, number],
  k: number,
  n: number,
  kind: InitnoLossKind,
  withGrad: boolean,
): LossPassGraph {
  const [tokens] = unet.contextShape;
  const [rh, rw] = res;
  const smoothing = cfg.smoothAttentions ? `${cfg.kernelSize}/${cfg.sigma}` : 'raw';
  return {
    key: `initno:${kind}:${res.join('x')}:n${n}:${smoothing}`,
    k,
    withGrad,
    res,
    selfAttention: true,
    inputs: [
      ['subject_select', [k, tokens - 2, n]],
      ['subject_mask', [k, n]],
      ['components', [k, n, rh, rw]],
      ['cache_prev', [k, n, rh, rw]],
      ['cache_keep', [k]],
      ['cache_take', [k]],
    ],
    build: (_g: Graph, maps, inp) => {
      const v = initnoLosses(
        maps.cross,
        maps.self!,
        {
          select: inp['subject_select']!,
          mask: inp['subject_mask']!,
          components: inp['components']!,
          cachePrev: inp['cache_prev']!,
          cacheKeep: inp['cache_keep']!,
          cacheTake: inp['cache_take']!,
        },
        cfg,
      );
      const loss = kind === 'response' ? v.response : kind === 'compute' ? v.compute : v.augmented;
      return {
        loss,
        outputs: {
          response: op.identity(v.response),
          conflict: op.identity(v.conflict),
          clean: op.identity(v.clean),
          alignment: op.identity(v.alignment),
          subject_maps: op.identity(v.subjectMaps),
          cache_new: v.cacheNew,
          max_attention: op.reduceMax(v.subjectMaps, [2, 3], false),
        },
      };
    },
  };
}

/**
 * INITNO's losses (and the gradient of `kind`) for several samples in batched conditional passes. A loss whose
 * gradient goes through the clean term needs the peak components of this very latent's maps: a first pass
 * without gradient gives the maps they are computed from. `updateCache`: the loop's evaluations move the
 * samples' alignment caches (the noise optimisation's do not use them).
 */
export async function evaluateInitno(
  unet: UNetAccess,
  timestep: number,
  cfg: InitnoConfig,
  items: readonly InitnoItem[],
  kind: InitnoLossKind,
  withGrad: boolean,
  updateCache: boolean,
): Promise<InitnoEvaluation[]> {
  const [, h, w] = unet.latentShape;
  const [tokens] = unet.contextShape;
  const res = cfg.attnRes ?? defaultAttnRes(h, w);
  const [rh, rw] = res;
  const hw = rh * rw;
  const k = passBatchSize(items.length, items.length);
  const n = Math.max(...items.map((it) => it.method.config.subjects.length));
  const { select, mask } = tokenSelection(
    items.map((it) => it.method.config.subjects.map((s) => s.token)),
    tokens,
    n,
  );
  const slots = (fill: (it: InitnoItem, b: number, out: Float32Array) => void) =>
    stack(
      items.map((it, b) => {
        const out = new Float32Array(n * hw);
        fill(it, b, out);
        return out;
      }),
      [n, rh, rw],
    );
  const feeds = (components: Tensor): Record<string, Tensor> => ({
    subject_select: select,
    subject_mask: mask,
    components,
    cache_prev: slots((it, _b, out) => {
      if (it.method.cache) out.set(it.method.cache);
    }),
    cache_keep: { data: Float32Array.from(items, (it) => (it.method.cache ? Math.fround(0.9) : 0)), shape: [k] },
    cache_take: { data: Float32Array.from(items, (it) => (it.method.cache ? Math.fround(1 - 0.9) : 1)), shape: [k] },
  });
  const componentsOf = (maps: Float32Array) =>
    slots((it, b, out) =>
      it.method.config.subjects.forEach((_, s) =>
        out.set(initnoComponent(maps.subarray((b * n + s) * hw, (b * n + s + 1) * hw), rh, rw), s * hw),
      ),
    );
  const needsMasks = kind !== 'response' && withGrad;
  const pass = (grad: boolean, components: Tensor) =>
    runLossPass(unet, initnoGraph(unet, cfg, res, k, n, kind, grad), timestep, items, feeds(components));
  let components = slots(() => {});
  if (needsMasks) components = componentsOf((await pass(false, components)).outputs['subject_maps']!.data);
  const out = await pass(withGrad, components);
  const maps = out.outputs['subject_maps']!.data;
  // The clean value as the official code computes it: from this pass's own masks.
  const clean = needsMasks ? out.outputs['clean']!.data : await cleanOnHost(maps, items, n, rh, rw);
  const cacheNew = out.outputs['cache_new']!.data;
  const maxAttention = out.outputs['max_attention']!.data;
  return items.map((it, b) => {
    if (updateCache) it.method.cache = cacheNew.slice(b * n * hw, (b + 1) * n * hw);
    return {
      loss: out.loss[b]!,
      response: out.outputs['response']!.data[b]!,
      conflict: out.outputs['conflict']!.data[b]!,
      clean: clean[b]!,
      alignment: out.outputs['alignment']!.data[b]!,
      grad: out.grad?.[b],
      maxAttention: [...maxAttention.subarray(b * n, b * n + it.method.config.subjects.length)],
    };
  });
}

/** The clean loss per sample from smoothed maps [k, n, h, w] on the host (for logs where no pass computed it). */
function cleanOnHost(maps: Float32Array, items: readonly InitnoItem[], n: number, h: number, w: number): Float32Array {
  const hw = h * w;
  return Float32Array.from(items, (it, b) => {
    let sum = 0;
    it.method.config.subjects.forEach((_, s) => {
      const m = maps.subarray((b * n + s) * hw, (b * n + s + 1) * hw);
      const c = initnoComponent(m, h, w);
      let bg = -Infinity;
      let fg = Infinity;
      for (let p = 0; p < hw; p++) {
        bg = Math.max(bg, c[p] ? 0 : m[p]!);
        fg = Math.min(fg, c[p] ? m[p]! : 1);
      }
      if (bg > fg) sum = Math.fround(sum + bg);
    });
    return sum;
  });
}

/**
 * Rival: INITNO (Guo et al., CVPR 2024), as its official code does it (xiefan-guo/initno,
 * `initno/pipelines/pipeline_sd_initno.py`):
 *
 *  1. Initial noise optimisation (`fn_initno`): the start z is replaced by z·exp(½·logσ²) + μ, with μ and logσ²
 *     (one per latent element, from 0) optimised by Adam (lr 1e-2, eps 1e-3) against a loss from one conditional
 *     UNet pass at the first timestep: the cross-attention response loss (1 − the weakest subject's peak of the
 *     ×100-softmaxed, smoothed map) + the self-attention conflict loss (for each pair of subjects, Σmin/Σsum of
 *     the smoothed self-attention rows at their cross-attention peaks, mean over pairs; zero while the response
 *     loss is above 0.5) + the clean loss (terms/clean.ts: the largest attention outside the peak's Otsu
 *     component, when above the smallest inside). After each step, extra Adam steps on KL(N(μ, σ²) ‖ N(0, 1))
 *     until it is at most 1e-3. Success: response < 0.2 and conflict < 0.3. Up to 5 rounds of 10 steps, each
 *     from fresh noise; if none succeeds, the round with the lowest response + conflict is optimised again from
 *     its noise for 50 steps.
 *  2. Its A&E-style loop: each call evaluates the augmented loss (response + 0.1·clean + 0.1·alignment with a
 *     moving average of the maps + conflict); below max_iter_to_alter the latent takes a gradient step on the
 *     response loss alone; at calls 10 and 20 (of 50, scaled), while response > 0.2 or conflict > 0.3, up to 20
 *     refinement steps on the augmented loss.
 *
 * Differences from the official code: our graph runtime cannot compute the Otsu mask inside the pass that needs
 * it, so an evaluation whose gradient includes the clean term (the noise optimisation's and the refinement's)
 * runs one extra forward pass first, to get the maps the mask is computed from (counted in `cost`). The restarts'
 * fresh noise comes from the sample's start seeds (candidateSeed), as Suppress-to-Impress's starts do.
 */
import type { Graph, Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import type { Tensor } from '../tensor.js';
import {
  ATTEND_EXCITE_DEFAULTS,
  attendExciteLoss,
  defaultAttnRes,
  resolveLoop,
  selectedSubjectMaps,
} from './attend-and-excite.js';
import { passBatchSize, settingsKey, stack, tokenSelection } from './batch.js';
import { stepSize, subtractScaled, type LatentLoopConfig } from './latent-loop.js';
import { runLossPass, type LossPassGraph } from './loss-pass.js';
import { smoothMaps } from './smoothing.js';
import { REFERENCE_STEPS, scaledCall, type MethodSpec, type Subject } from './spec.js';
import type {
  GuidanceMethod,
  GuidedSample,
  PassCount,
  StartSample,
  StepContext,
  StepLog,
  UNetAccess,
} from './types.js';

/** INITNO's settings, as the official code has them (calls given for 50 steps). */
export const INITNO_DEFAULTS = {
  /** Noise optimisation: Adam's learning rate and epsilon. */
  lr: 1e-2,
  eps: 1e-3,
  /** Rounds from fresh noise, and steps per round; steps of the final re-optimisation. */
  rounds: 5,
  roundSteps: 10,
  finalSteps: 50,
  /** Success: response below this and conflict below `tauSelf`. */
  tauCross: 0.2,
  tauSelf: 0.3,
  /** KL steps until KL(N(μ, σ²) ‖ N(0, 1)) is at most this. */
  klLimit: 1e-3,
  /** The loop's refinement calls at 50 steps, and its targets (response ≤ 1 − 0.8, conflict ≤ 0.3). */
  refineAt50: [10, 20] as readonly number[],
  refineThreshold: 0.8,
  maxRefinementSteps: 20,
  /** The alignment loss's moving average: cache ← α·cache + (1 − α)·maps. */
  alpha: 0.9,
};

export interface InitnoConfig extends LatentLoopConfig {
  subjects: readonly Subject[];
  /** Calls at which the loop refines (scaled). */
  refineAt: readonly number[];
  rounds: number;
  roundSteps: number;
  finalSteps: number;
  smoothAttentions: boolean;
  kernelSize: number;
  sigma: number;
  attnRes?: readonly [number, number];
}

// ------------------------------------------------------------------------------------------------- the losses

/** Which loss a pass differentiates: the response alone, the noise optimisation's joint loss, the loop's augmented. */
export type InitnoLossKind = 'response' | 'compute' | 'augmented';

export interface InitnoLossInputs {
  /** One-hot subject columns [k, T-2, n] and real-slot mask [k, n]. */
  select: Value;
  mask: Value;
  /** Each subject's peak component (Otsu + the peak's 4-connected blob) of its smoothed map [k, n, h, w]. */
  components: Value;
  /** The alignment cache (unsmoothed ×100-softmaxed subject columns) before this pass [k, n, h, w]. */
  cachePrev: Value;
  /** cache ← keep·cache + take·maps [k] (first pass: 0 and 1). */
  cacheKeep: Value;
  cacheTake: Value;
}

export interface InitnoLossValues {
  response: Value;
  conflict: Value;
  clean: Value;
  alignment: Value;
  /** fn_compute_loss: response + conflict (zero while response > 0.5) + clean. */
  compute: Value;
  /** fn_augmented_compute_losss: response + 0.1·clean + 0.1·alignment + conflict. */
  augmented: Value;
  /** Smoothed subject maps [k, n, h, w] (for the masks) and the updated cache [k, n, h, w]. */
  subjectMaps: Value;
  cacheNew: Value;
}

/**
 * INITNO's losses per sample [k] from the aggregated maps: cross [k, h, w, T], self [k, h, w, h*w]. The
 * smoothing settings are A&E's (INITNO's GaussianSmoothing is the same kernel).
 */
export function initnoLosses(
  cross: Value,
  self: Value,
  inp: InitnoLossInputs,
  smoothing: { smoothAttentions: boolean; kernelSize: number; sigma: number },
): InitnoLossValues {
  const g = cross.graph;
  const [k, h, w] = cross.shape as [number, number, number, number];
  const n = inp.select.shape[2]!;
  const hw = h * w;
  const raw = selectedSubjectMaps(cross, inp.select, { ...smoothing, smoothAttentions: false }); // [k, n, h, w]
  const smooth = (x: Value) =>
    smoothing.smoothAttentions
      ? op.reshape(smoothMaps(op.reshape(x, [k * n, h, w]), smoothing.kernelSize, smoothing.sigma), [k, n, h, w])
      : x;
  const A = smooth(raw);
  const peak = op.reduceMax(A, [2, 3], false); // [k, n]: the top-1 value
  const response = attendExciteLoss(peak, inp.mask);

  // Clean: the largest attention outside the peak's component, counted when it exceeds the smallest inside.
  const c = inp.components;
  const background = op.reduceMax(op.mul(A, op.sub(1, c)), [2, 3], false);
  const foreground = op.reduceMin(op.add(op.mul(A, c), op.sub(1, c)), [2, 3], false);
  const active = op.stopGradient(op.cast(op.greater(background, foreground), 'float32'));
  const clean = op.reduceSum(op.mul(op.mul(background, active), inp.mask), [1], false);

  // Conflict: each subject's self-attention row at its cross-attention peak (first maximum), smoothed.
  const flat = op.reshape(A, [k, n, hw]);
  const positions = g.constant(
    BigInt64Array.from({ length: hw }, (_, i) => BigInt(i)),
    [hw],
    'int64',
    'initno_positions',
  );
  const onehot = op.stopGradient(op.cast(op.equal(positions, op.argMax(flat, -1, true)), 'float32')); // [k, n, hw]
  const rows = op.matmul(onehot, op.reshape(self, [k, hw, hw])); // [k, n, hw]
  const S = smooth(op.reshape(rows, [k, n, h, w]));
  const slot = (x: Value, i: number) => op.reshape(op.slice(x, [i], [i + 1], [1]), [k, h, w]);
  const slotMask = (i: number) => op.reshape(op.slice(inp.mask, [i], [i + 1], [1]), [k]);
  const pairs: Value[] = [];
  const pairMasks: Value[] = [];
  for (let s = 0; s < n; s++)
    for (let r = s + 1; r < n; r++) {
      const [a, b] = [slot(S, s), slot(S, r)];
      const overlap = op.div(
        op.reduceSum(op.minimum(a, b), [1, 2], false),
        op.add(op.reduceSum(op.add(a, b), [1, 2], false), 1e-6),
      );
      const m = op.mul(slotMask(s), slotMask(r));
      pairs.push(op.mul(overlap, m));
      pairMasks.push(m);
    }
  const zero = g.constant(new Float32Array(k), [k], 'float32', 'initno_zero');
  const conflict = pairs.length ? op.div(op.addN(pairs), op.maximum(op.addN(pairMasks), 1)) : zero;

  // Alignment with the moving average of the maps (the cache takes this pass's maps without gradient).
  const col = (x: Value) => op.reshape(x, [k, 1, 1, 1]);
  const cacheNew = op.add(op.mul(inp.cachePrev, col(inp.cacheKeep)), op.mul(op.stopGradient(raw), col(inp.cacheTake)));
  const l1 = op.reduceMean(op.abs(op.sub(A, smooth(cacheNew))), [2, 3], false); // [k, n]
  const alignment = op.reduceSum(op.mul(l1, inp.mask), [1], false);

  // fn_compute_loss zeroes the conflict while the response loss is above 0.5.
  const notAbove = op.sub(1, op.stopGradient(op.cast(op.greater(response, 0.5), 'float32')));
  const compute = op.add(op.add(response, op.mul(conflict, notAbove)), clean);
  const augmented = op.add(
    op.add(op.add(response, op.mul(clean, Math.fround(0.1))), op.mul(alignment, Math.fround(0.1))),
    conflict,
  );
  return { response, conflict, clean, alignment, compute, augmented, subjectMaps: A, cacheNew };
}

// ------------------------------------------------------------------------------------------- masks on the host

/** OpenCV's Otsu threshold (getThreshVal_Otsu) over integer values 0..max: the bin with the largest between-class variance. */
export function otsuOpenCv(values: ArrayLike<number>): number {
  let N = 0;
  for (let i = 0; i < values.length; i++) N = Math.max(N, values[i]! + 1);
  const hist = new Float64Array(Math.max(N, 1));
  for (let i = 0; i < values.length; i++) hist[values[i]!]!++;
  const scale = 1 / values.length;
  let mu = 0;
  for (let i = 0; i < hist.length; i++) mu += i * hist[i]!;
  mu *= scale;
  let mu1 = 0;
  let q1 = 0;
  let maxSigma = 0;
  let maxVal = 0;
  const FLT_EPSILON = 1.1920928955078125e-7;
  for (let i = 0; i < hist.length; i++) {
    const p = hist[i]! * scale;
    mu1 *= q1;
    q1 += p;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < FLT_EPSILON || Math.max(q1, q2) > 1 - FLT_EPSILON) continue;
    mu1 = (mu1 + i * p) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > maxSigma) {
      maxSigma = sigma;
      maxVal = i;
    }
  }
  return maxVal;
}

/**
 * INITNO's clean mask of one smoothed map [h*w] (fn_get_otsu_mask + fn_clean_mask): Otsu's threshold of the map
 * ×255 truncated to integers, then the 4-connected above-threshold blob that holds the first maximum.
 */
export function initnoComponent(map: Float32Array, h: number, w: number): Uint8Array {
  const levels = Array.from(map, (v) => Math.trunc(Math.fround(v * 255)));
  const threshold = Math.fround(otsuOpenCv(levels) / 255);
  let peak = 0;
  for (let p = 1; p < map.length; p++) if (map[p]! > map[peak]!) peak = p;
  const out = new Uint8Array(h * w);
  const stack = [peak];
  while (stack.length) {
    const p = stack.pop()!;
    if (out[p] || !(map[p]! >= threshold)) continue;
    out[p] = 1;
    const [y, x] = [Math.floor(p / w), p % w];
    if (y > 0) stack.push(p - w);
    if (y < h - 1) stack.push(p + w);
    if (x > 0) stack.push(p - 1);
    if (x < w - 1) stack.push(p + 1);
  }
  return out;
}

// --------------------------------------------------------------------------------------------- the evaluation

interface InitnoItem {
  method: Initno;
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
async function evaluateInitno(
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
  let components = slots(() => {});
  if (needsMasks) {
    const pre = await runLossPass(
      unet,
      initnoGraph(unet, cfg, res, k, n, kind, false),
      timestep,
      items,
      feeds(components),
    );
    components = componentsOf(pre.outputs['subject_maps']!.data);
  }
  const out = await runLossPass(
    unet,
    initnoGraph(unet, cfg, res, k, n, kind, withGrad),
    timestep,
    items,
    feeds(components),
  );
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

// ------------------------------------------------------------------------------------ noise optimisation (Adam)

/** torch.optim.Adam's update in float32 (betas 0.9, 0.999), for one parameter with its own state. */
export class Adam {
  private m: Float32Array;
  private v: Float32Array;
  private step = 0;
  constructor(
    readonly param: Float32Array,
    readonly lr: number,
    readonly eps: number,
  ) {
    this.m = new Float32Array(param.length);
    this.v = new Float32Array(param.length);
  }

  update(grad: Float32Array): void {
    const f = Math.fround;
    const [b1, b2] = [0.9, 0.999];
    this.step++;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    const stepSize = this.lr / bc1;
    const bc2Sqrt = Math.sqrt(bc2);
    for (let i = 0; i < grad.length; i++) {
      const g = grad[i]!;
      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
      this.m[i] = f(f(this.m[i]! * f(b1)) + f(f(1 - b1) * g));
      this.v[i] = f(f(this.v[i]! * f(b2)) + f(f(f(1 - b2) * g) * g));
      const denom = f(f(f(Math.sqrt(this.v[i]!)) / f(bc2Sqrt)) + f(this.eps));
      this.param[i] = f(this.param[i]! + f(f(-stepSize) * f(this.m[i]! / denom)));
    }
  }
}

/** INITNO's KL term: mean(−½·mean(1 + logσ² − μ² − σ²)) (fn_calc_kld_loss_func), in float32. */
export function initnoKl(logVar: Float32Array, mu: Float32Array): number {
  const f = Math.fround;
  let s = 0;
  for (let i = 0; i < mu.length; i++) s += f(f(f(1 + logVar[i]!) - f(mu[i]! * mu[i]!)) - f(Math.exp(logVar[i]!)));
  return f(-0.5 * f(s / mu.length));
}

/** One noise optimisation (fn_initno) as state the driver steps: μ, logσ² and their Adam states. */
export class NoiseOptimisation {
  readonly logVar: Float32Array;
  readonly mu: Float32Array;
  private readonly optLogVar: Adam;
  private readonly optMu: Adam;
  constructor(
    readonly z: Float32Array,
    lr = INITNO_DEFAULTS.lr,
    eps = INITNO_DEFAULTS.eps,
  ) {
    this.logVar = new Float32Array(z.length);
    this.mu = new Float32Array(z.length);
    this.optLogVar = new Adam(this.logVar, lr, eps);
    this.optMu = new Adam(this.mu, lr, eps);
  }

  /** z·exp(½·logσ²) + μ. */
  latents(): Float32Array {
    const f = Math.fround;
    return this.z.map((z, i) => f(f(z * f(Math.exp(f(0.5 * this.logVar[i]!)))) + this.mu[i]!));
  }

  /** One Adam step for ∂loss/∂latents = `grad`, then KL steps until KL ≤ limit; returns the KL steps taken. */
  step(grad: Float32Array, klLimit = INITNO_DEFAULTS.klLimit): number {
    const f = Math.fround;
    const gLogVar = grad.map((g, i) => f(f(f(g * this.z[i]!) * f(Math.exp(f(0.5 * this.logVar[i]!)))) * 0.5));
    this.optLogVar.update(gLogVar);
    this.optMu.update(grad);
    let kl = initnoKl(this.logVar, this.mu);
    let steps = 0;
    const N = this.mu.length;
    while (kl > klLimit) {
      // ∂KL/∂x = −½/N for x = 1 + logσ² − μ² − σ² (the mean over N elements, then −½), through to each.
      const ge = f(-0.5 / N);
      this.optLogVar.update(this.logVar.map((lv) => f(ge + f(-ge * f(Math.exp(lv))))));
      this.optMu.update(this.mu.map((m) => f(-ge * f(2 * m))));
      kl = initnoKl(this.logVar, this.mu);
      if (++steps > 10000) break;
    }
    return steps;
  }
}

// ------------------------------------------------------------------------------------------------ the method

/** What a sample's coroutine asks for: one evaluation of `kind` at `latent`. */
interface InitnoRequest {
  latent: Float32Array;
  kind: InitnoLossKind;
  withGrad: boolean;
}

type InitnoLoop<T> = Generator<InitnoRequest, T, InitnoEvaluation>;

/**
 * Steps every sample's coroutine, batching the evaluations they ask for at the same moment by kind and gradient
 * (one batched pass per group).
 */
async function driveLoops<T>(
  loops: InitnoLoop<T>[],
  evaluate: (
    kind: InitnoLossKind,
    withGrad: boolean,
    requests: { sample: number; latent: Float32Array }[],
  ) => Promise<InitnoEvaluation[]>,
): Promise<T[]> {
  const states = loops.map((l) => l.next());
  for (;;) {
    const groups = new Map<string, { sample: number; req: InitnoRequest }[]>();
    states.forEach((st, s) => {
      if (st.done) return;
      const key = `${st.value.kind}:${st.value.withGrad}`;
      groups.set(key, [...(groups.get(key) ?? []), { sample: s, req: st.value }]);
    });
    if (groups.size === 0) break;
    for (const group of groups.values()) {
      const { kind, withGrad } = group[0]!.req;
      const results = await evaluate(
        kind,
        withGrad,
        group.map((g) => ({ sample: g.sample, latent: g.req.latent })),
      );
      group.forEach((g, i) => (states[g.sample] = loops[g.sample]!.next(results[i]!)));
    }
  }
  return states.map((st) => st.value as T);
}

interface RoundResult {
  latents: Float32Array;
  succeeded: boolean;
  /** response + conflict of the last evaluation (conflict + 1 where it was 0: fn_initno's score). */
  score: number;
  steps: number;
}

/** fn_initno: one optimisation of the noise `z` for at most `maxSteps` steps. */
function* optimiseNoise(z: Float32Array, maxSteps: number): InitnoLoop<RoundResult> {
  const opt = new NoiseOptimisation(z);
  let response = Infinity;
  let conflict = Infinity;
  let succeeded = false;
  let steps = 0;
  for (let it = 0; it < maxSteps; it++) {
    const e = yield { latent: opt.latents(), kind: 'compute', withGrad: true };
    response = e.response;
    conflict = e.response > 0.5 ? 0 : e.conflict;
    steps++;
    if (response < Math.fround(INITNO_DEFAULTS.tauCross) && conflict < Math.fround(INITNO_DEFAULTS.tauSelf)) {
      succeeded = true;
      break;
    }
    opt.step(e.grad!);
  }
  if (conflict <= 1e-6) conflict = Math.fround(conflict + 1);
  return { latents: opt.latents(), succeeded, score: Math.fround(response + conflict), steps };
}

export class Initno implements GuidanceMethod {
  readonly name = 'initno';
  readonly batchKey: string;
  readonly usesGradients = true;
  /** The alignment loss's moving average of the subject maps [n, h, w] (null before the first evaluation). */
  cache: Float32Array | null = null;
  /** What the noise optimisation did: each round's score and success, and whether the best was re-optimised. */
  startLog: { rounds: { score: number; succeeded: boolean; steps: number }[]; reoptimised: boolean } | null = null;
  private readonly perCall = new Map<number, StepLog>();

  constructor(readonly config: InitnoConfig) {
    if (config.subjects.length === 0) throw new Error('initno needs at least one subject');
    const { subjects: _s, ...shared } = config;
    this.batchKey = `initno:${settingsKey(shared)}`;
  }

  private members(samples: readonly { method: GuidanceMethod }[]): Initno[] {
    return samples.map(({ method }) => {
      if (!(method instanceof Initno) || method.batchKey !== this.batchKey)
        throw new Error(`initno: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
  }

  private evaluator(
    ctx: StepContext,
    members: Initno[],
    samples: readonly { cond: Tensor; cost?: PassCount }[],
    updateCache: boolean,
  ) {
    return (kind: InitnoLossKind, withGrad: boolean, requests: { sample: number; latent: Float32Array }[]) =>
      evaluateInitno(
        ctx.unet,
        ctx.timestep,
        this.config,
        requests.map((r) => ({
          method: members[r.sample]!,
          cond: samples[r.sample]!.cond,
          latent: r.latent,
          cost: samples[r.sample]!.cost,
        })),
        kind,
        withGrad,
        updateCache,
      );
  }

  /** INITNO's rounds of noise optimisation, from the sample's noise and fresh noise, before the first call. */
  async optimizeStart(ctx: StepContext, samples: readonly StartSample[]): Promise<Float32Array[]> {
    const members = this.members(samples);
    const cfg = this.config;
    const loops = samples.map((s, b): InitnoLoop<Float32Array> =>
      (function* () {
        const pool: (RoundResult & { round: number; noise: Float32Array })[] = [];
        let noise = s.latents.data;
        for (let round = 0; round < cfg.rounds; round++) {
          const r = yield* optimiseNoise(noise, cfg.roundSteps);
          pool.push({ ...r, round, noise });
          if (r.succeeded) break;
          noise = s.fresh(round + 1);
        }
        const log = {
          rounds: pool.map(({ score, succeeded, steps }) => ({ score, succeeded, steps })),
          reoptimised: false,
        };
        members[b]!.startLog = log;
        // Python's sort of (score, round, ...) tuples: the lowest score, the earliest round among equals.
        const best = [...pool].sort((a, c) => a.score - c.score || a.round - c.round)[0]!;
        if (best.succeeded) return best.latents;
        log.reoptimised = true;
        return (yield* optimiseNoise(best.noise, cfg.finalSteps)).latents;
      })(),
    );
    return driveLoops(loops, this.evaluator(ctx, members, samples, false));
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    const members = this.members(samples);
    const cfg = this.config;
    const size = stepSize(cfg, ctx.index, ctx.totalCalls);
    const alter = ctx.index < cfg.maxIterToAlter;
    const refine = alter && cfg.refineAt.includes(ctx.index);
    const tauCross = Math.fround(1 - INITNO_DEFAULTS.refineThreshold);
    const tauSelf = Math.fround(INITNO_DEFAULTS.tauSelf);
    const loops = samples.map((s, b): InitnoLoop<Float32Array> =>
      (function* () {
        let latent = s.latents.data;
        let ev = yield { latent, kind: 'response', withGrad: alter };
        let tries = 0;
        if (refine && (ev.response > tauCross || ev.conflict > tauSelf)) {
          // _perform_iterative_refinement_step: steps on the augmented loss until both targets are met.
          let [response, conflict] = [ev.response, ev.conflict];
          while (response > tauCross || conflict > tauSelf) {
            tries++;
            const e = yield { latent, kind: 'augmented', withGrad: true };
            if (e.loss !== 0) latent = subtractScaled(latent, size, e.grad!);
            [response, conflict] = [e.response, e.conflict];
            if (tries >= INITNO_DEFAULTS.maxRefinementSteps) break;
          }
          ev = yield { latent, kind: 'response', withGrad: true };
        }
        if (alter && ev.response !== 0) latent = subtractScaled(latent, size, ev.grad!);
        members[b]!.perCall.set(ctx.index, {
          loss: ev.response,
          terms: { response: ev.response, conflict: ev.conflict, clean: ev.clean, alignment: ev.alignment },
          maxAttention: ev.maxAttention,
          refinementTries: tries,
          stepSize: alter ? size : null,
        });
        return latent;
      })(),
    );
    return driveLoops(loops, this.evaluator(ctx, members, samples, true));
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

export const initnoSpec: MethodSpec = {
  name: 'initno',
  group: 'rival',
  description:
    'rival: INITNO (Guo et al. 2024) as its official code: initial noise optimised (Adam on μ, log σ², KL) against response, self-attention conflict and clean losses, up to 5 restarts, then its A&E-style loop',
  capabilities: { needsSubjects: true, findsSubjects: true, takesAttributes: false, choosesStarts: true },
  overrides: {},
  resolve: (steps, o) => {
    const { loop, scaled } = resolveLoop(steps, o);
    const refineAt = INITNO_DEFAULTS.refineAt50.map((c) => scaledCall(c, steps));
    if (steps !== REFERENCE_STEPS) scaled.push('refineAt');
    const own = {
      rounds: INITNO_DEFAULTS.rounds,
      roundSteps: INITNO_DEFAULTS.roundSteps,
      finalSteps: INITNO_DEFAULTS.finalSteps,
      refineAt,
    };
    return { loop, scaled, own, usesGradients: true };
  },
  build: (targets, settings) => {
    const r = initnoSpec.resolve(settings.steps, settings);
    const own = r.own as { rounds: number; roundSteps: number; finalSteps: number; refineAt: number[] };
    return new Initno({
      ...ATTEND_EXCITE_DEFAULTS,
      ...r.loop,
      ...own,
      subjects: targets.subjects,
      attnRes: settings.attnRes,
    });
  },
};

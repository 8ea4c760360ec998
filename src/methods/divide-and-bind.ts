/**
 * Rival: Divide & Bind (Li et al., BMVC 2023), as its official code does it (boschresearch/Divide-and-Bind,
 * `divide_and_bind/pipeline_divide_and_bind_latest.py`, loss_mode 'tv_bind' with `default_param`'s settings):
 *  - attendance ("divide"): for each subject, the total variation of its A&E map (×100 softmax over the text
 *    tokens, smoothed) — mean |horizontal differences| + mean |last row − every other row but the first|, the
 *    official code's vertical term as written;
 *  - binding: where the subject has a colour word, the Jensen–Shannon divergence between the pixel-softmaxes of
 *    its map and of the colour's map from the higher-resolution cross-attention layers (nearest-downsampled to
 *    the map's resolution, rescaled to the subject map's peak), both cut below 0.3 (total variation < 0.1) or 0.2
 *    of the subject's peak, +1e-5; weighted 1, 5, 10 from calls 0, 10, 20 of 50;
 *  - loss: the largest over subjects of −(TV − weight·JSD); A&E's step sizes below max_iter_to_alter; refinement
 *    at calls 0, 10, 20 (of 50) while the smallest TV is below 0.05, 0.2, 0.3 (at most 100 steps at call 0, 50
 *    after).
 * On a UNet with cross-attention at one resolution only (the shapes model), the colour maps are taken at that
 * resolution (there are no higher-resolution layers).
 */
import type { Graph, Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { ATTEND_EXCITE_DEFAULTS, defaultAttnRes, resolveLoop, selectedSubjectMaps } from './attend-and-excite.js';
import { passBatchSize, settingsKey, tokenSelection } from './batch.js';
import { stepSize, subtractScaled, type LatentLoopConfig } from './latent-loop.js';
import { runLossPass, type LossPassGraph } from './loss-pass.js';
import { REFERENCE_STEPS, scaledCall, type Attribute, type MethodSpec, type Subject } from './spec.js';
import type { GuidanceMethod, GuidedSample, StepContext, StepLog } from './types.js';

/** `default_param('tv_bind')` and the refinement limits of `_perform_iterative_refinement_step`. */
export const DIVIDE_BIND_DEFAULTS = {
  thresholdsAt50: new Map([
    [0, 0.05],
    [10, 0.2],
    [20, 0.3],
  ]),
  maxRefinementSteps: 50,
  maxRefinementStepsFirst: 100,
  /** The binding weight's steps (1 before call 10, 5 before 20, then 10, of 50). */
  bindWeightsAt50: [
    [0, 1],
    [10, 5],
    [20, 10],
  ] as readonly (readonly [number, number])[],
};

export interface DivideBindConfig extends LatentLoopConfig {
  subjects: readonly Subject[];
  /** Each subject's colour token (0: none), as `color_indices`. */
  colors: readonly number[];
  /** Refinement: call → the smallest total variation to reach. */
  refineAt: ReadonlyMap<number, number>;
  /** At most this many refinement steps at call 0, and at the later refinement calls. */
  refineLimits: readonly [number, number];
  /** Binding weight from each call on. */
  bindWeights: readonly (readonly [number, number])[];
  smoothAttentions: boolean;
  kernelSize: number;
  sigma: number;
  attnRes?: readonly [number, number];
}

export interface DivideBindLossInputs {
  select: Value;
  mask: Value;
  colorSelect: Value;
  /** 1 where the subject has a colour word [k, n]. */
  colorMask: Value;
  /** The binding weight of this call [k]. */
  bindWeight: Value;
}

/** `_compute_loss_geiven_attn_map` (tv_bind) per sample: the loss [k], the smallest TV [k], each peak [k, n]. */
export function divideBindLoss(
  maps: Value,
  colorMaps: Value,
  inp: DivideBindLossInputs,
  smoothing: { smoothAttentions: boolean; kernelSize: number; sigma: number },
): { loss: Value; threshold: Value; maxAttention: Value; tv: Value } {
  const A = selectedSubjectMaps(maps, inp.select, smoothing); // [k, n, h, w]
  const C = selectedSubjectMaps(colorMaps, inp.colorSelect, smoothing);
  const [k, n, h, w] = A.shape as [number, number, number, number];
  const l1 = (a: Value, b: Value) => op.reduceMean(op.abs(op.sub(a, b)), [2, 3], false);
  const tv = op.add(
    l1(op.slice(A, [0], [w - 1], [3]), op.slice(A, [1], [w], [3])),
    l1(op.slice(A, [h - 1], [h], [2]), op.slice(A, [1], [h], [2])),
  ); // [k, n]
  const flat = (x: Value) => op.reshape(x, [k, n, h * w]);
  const peak = op.reduceMax(flat(A), [2], true); // [k, n, 1]
  const image = op.softmax(flat(A), -1);
  // An unused slot's colour map is all zero: its peak is kept from 0 so that 0/0 does not make the masked-out
  // loss (and, through it, the batch's gradient) NaN; a real map's peak (of a softmax ×100) is far above 1e-30.
  const colorPeak = op.maximum(op.reduceMax(flat(C), [2], true), 1e-30);
  const color = op.softmax(op.mul(op.div(flat(C), colorPeak), peak), -1);
  const quantile = op.add(0.2, op.mul(op.stopGradient(op.cast(op.less(tv, 0.1), 'float32')), 0.1)); // 0.3 or 0.2
  const thresh = op.mul(op.reshape(quantile, [k, n, 1]), op.reduceMax(image, [2], true));
  const p = op.add(op.relu(op.sub(image, thresh)), 1e-5);
  const q = op.add(op.relu(op.sub(color, thresh)), 1e-5);
  const m = op.log(op.mul(op.add(p, q), 0.5));
  // KLDivLoss(batchmean, log_target=True)(m, log x) = Σ exp(log x)·(log x − m) over the one row.
  const kl = (x: Value) => {
    const logx = op.log(x);
    return op.reduceSum(op.mul(op.exp(logx), op.sub(logx, m)), [2], false);
  };
  const jsd = op.mul(op.add(kl(p), kl(q)), 0.5); // [k, n]
  const bind = op.mul(op.mul(jsd, inp.colorMask), op.reshape(inp.bindWeight, [k, 1]));
  const losses = op.sub(0, op.sub(tv, bind)); // maximise TV − bind
  const masked = op.add(op.mul(losses, inp.mask), op.mul(op.sub(inp.mask, 1), 1e9));
  const big = op.mul(op.sub(1, inp.mask), 1e9);
  return {
    loss: op.reduceMax(masked, [1], false),
    threshold: op.reduceMin(op.add(tv, big), [1], false),
    maxAttention: op.reshape(peak, [k, n]),
    tv,
  };
}

interface Evaluation {
  loss: number;
  threshold: number;
  maxAttention: number[];
  grad?: Float32Array;
}

export class DivideAndBind implements GuidanceMethod {
  readonly name = 'divide-and-bind';
  readonly batchKey: string;
  readonly usesGradients = true;
  private readonly perCall = new Map<number, StepLog>();

  constructor(readonly config: DivideBindConfig) {
    if (config.subjects.length === 0) throw new Error('divide-and-bind needs at least one subject');
    const { subjects: _s, colors: _c, ...shared } = config;
    this.batchKey = `divide-and-bind:${settingsKey(shared)}`;
  }

  private bindWeight(index: number): number {
    let weight = 1;
    for (const [from, w] of this.config.bindWeights) if (index >= from) weight = w;
    return weight;
  }

  private async evaluate(
    ctx: StepContext,
    members: readonly DivideAndBind[],
    samples: readonly GuidedSample[],
    requests: readonly { sample: number; latent: Float32Array }[],
    withGrad: boolean,
  ): Promise<Evaluation[]> {
    const cfg = this.config;
    const [, h, w] = ctx.unet.latentShape;
    const [tokens] = ctx.unet.contextShape;
    const res = cfg.attnRes ?? defaultAttnRes(h, w);
    const k = passBatchSize(requests.length, requests.length);
    const n = Math.max(...requests.map((r) => members[r.sample]!.config.subjects.length));
    const subjects = tokenSelection(
      requests.map((r) => members[r.sample]!.config.subjects.map((s) => s.token)),
      tokens,
      n,
    );
    // Subjects without a colour select column 1 (masked out of the binding term).
    const colorLists = requests.map((r) => members[r.sample]!.config.colors.map((c) => (c > 0 ? c : 1)));
    const colors = tokenSelection(colorLists, tokens, n);
    const colorMask = new Float32Array(k * n);
    requests.forEach((r, b) =>
      members[r.sample]!.config.colors.forEach((c, s) => (colorMask[b * n + s] = c > 0 ? 1 : 0)),
    );
    const graph: LossPassGraph = {
      key: `dnb:${res.join('x')}:n${n}`,
      k,
      withGrad,
      res,
      intermediate: true,
      inputs: [
        ['subject_select', [k, tokens - 2, n]],
        ['subject_mask', [k, n]],
        ['color_select', [k, tokens - 2, n]],
        ['color_mask', [k, n]],
        ['bind_weight', [k]],
      ],
      build: (_g: Graph, maps, inp) => {
        const v = divideBindLoss(
          maps.cross,
          maps.intermediate ?? maps.cross,
          {
            select: inp['subject_select']!,
            mask: inp['subject_mask']!,
            colorSelect: inp['color_select']!,
            colorMask: inp['color_mask']!,
            bindWeight: inp['bind_weight']!,
          },
          cfg,
        );
        return { loss: v.loss, outputs: { threshold: v.threshold, max_attention: v.maxAttention } };
      },
    };
    const out = await runLossPass(
      ctx.unet,
      graph,
      ctx.timestep,
      requests.map((r) => ({ latent: r.latent, cond: samples[r.sample]!.cond, cost: samples[r.sample]!.cost })),
      {
        subject_select: subjects.select,
        subject_mask: subjects.mask,
        color_select: colors.select,
        color_mask: { data: colorMask, shape: [k, n] },
        bind_weight: { data: new Float32Array(k).fill(this.bindWeight(ctx.index)), shape: [k] },
      },
    );
    const maxAttention = out.outputs['max_attention']!.data;
    return requests.map((r, b) => ({
      loss: out.loss[b]!,
      threshold: out.outputs['threshold']!.data[b]!,
      maxAttention: [...maxAttention.subarray(b * n, b * n + members[r.sample]!.config.subjects.length)],
      grad: out.grad?.[b],
    }));
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    const members = samples.map(({ method }) => {
      if (!(method instanceof DivideAndBind) || method.batchKey !== this.batchKey)
        throw new Error(`divide-and-bind: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
    const cfg = this.config;
    const size = stepSize(cfg, ctx.index, ctx.totalCalls);
    const alter = ctx.index < cfg.maxIterToAlter;
    const target = cfg.refineAt.get(ctx.index);
    const limit = ctx.index === 0 ? cfg.refineLimits[0] : cfg.refineLimits[1];
    const latents = samples.map((s) => s.latents.data);
    const all = samples.map((_, b) => b);
    // The loss of every sample (its gradient where the latents are updated).
    let evals = await this.evaluate(
      ctx,
      members,
      samples,
      all.map((b) => ({ sample: b, latent: latents[b]! })),
      alter,
    );
    const tries = new Array<number>(samples.length).fill(0);
    if (target !== undefined) {
      // _perform_iterative_refinement_step: while the smallest TV is below the target, step on the loss.
      let refining = all.filter((b) => evals[b]!.threshold < Math.fround(target));
      const refined = new Set(refining);
      while (refining.length) {
        const r = await this.evaluate(
          ctx,
          members,
          samples,
          refining.map((b) => ({ sample: b, latent: latents[b]! })),
          true,
        );
        refining = refining.filter((b, j) => {
          const e = r[j]!;
          tries[b]!++;
          if (e.loss !== 0) latents[b] = subtractScaled(latents[b]!, size, e.grad!);
          return e.threshold < Math.fround(target) && tries[b]! < limit;
        });
      }
      if (refined.size) {
        const again = [...refined];
        const r = await this.evaluate(
          ctx,
          members,
          samples,
          again.map((b) => ({ sample: b, latent: latents[b]! })),
          alter,
        );
        evals = evals.map((e, b) => (refined.has(b) ? r[again.indexOf(b)]! : e));
      }
    }
    return samples.map((_, b) => {
      const e = evals[b]!;
      if (alter && e.loss !== 0) latents[b] = subtractScaled(latents[b]!, size, e.grad!);
      members[b]!.perCall.set(ctx.index, {
        loss: e.loss,
        terms: { min_tv: e.threshold },
        maxAttention: e.maxAttention,
        refinementTries: tries[b]!,
        stepSize: alter ? size : null,
      });
      return latents[b]!;
    });
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

/** Each subject's colour word (its attribute nearest before it; 0: none), as Divide & Bind's `color_indices`. */
export function colorIndices(subjects: readonly Subject[], attributes: readonly Attribute[]): number[] {
  return subjects.map((_, i) => {
    const own = attributes.filter((a) => a.subject === i).map((a) => a.token);
    return own.length ? Math.max(...own) : 0;
  });
}

export const divideAndBindSpec: MethodSpec = {
  name: 'divide-and-bind',
  group: 'rival',
  description:
    "rival: Divide & Bind (Li et al. 2023) as its official code: total-variation attendance + JSD binding of each noun's map to its colour word's, in A&E's loop with its refinement",
  capabilities: { needsSubjects: true, findsSubjects: true, takesAttributes: true, choosesStarts: false },
  overrides: {},
  resolve: (steps, o) => {
    const { loop, scaled } = resolveLoop(steps, o);
    const scale = (c: number) => scaledCall(c, steps);
    const refineAt = new Map([...DIVIDE_BIND_DEFAULTS.thresholdsAt50].map(([c, v]) => [scale(c), v] as const));
    const bindWeights = DIVIDE_BIND_DEFAULTS.bindWeightsAt50.map(([c, v]) => [scale(c), v] as const);
    if (steps !== REFERENCE_STEPS) scaled.push('refineAt', 'bindWeights');
    return {
      loop,
      scaled,
      own: { refineAt: Object.fromEntries(refineAt), bindWeights },
      usesGradients: true,
    };
  },
  build: (targets, settings) => {
    const r = divideAndBindSpec.resolve(settings.steps, settings);
    const own = r.own as { refineAt: Record<string, number>; bindWeights: [number, number][] };
    return new DivideAndBind({
      ...ATTEND_EXCITE_DEFAULTS,
      ...r.loop,
      subjects: targets.subjects,
      colors: colorIndices(targets.subjects, targets.attributes),
      refineAt: new Map(Object.entries(own.refineAt).map(([c, v]) => [Number(c), v])),
      refineLimits: [DIVIDE_BIND_DEFAULTS.maxRefinementStepsFirst, DIVIDE_BIND_DEFAULTS.maxRefinementSteps],
      bindWeights: own.bindWeights,
      attnRes: settings.attnRes,
    });
  },
};

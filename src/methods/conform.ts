/**
 * Rival: CONFORM (Meral et al., CVPR 2024, "Contrast is All You Need for High-Fidelity Text-to-Image Diffusion
 * Models"), as its official code does it (gemlab-vt/CONFORM, `pipeline_conform.py`, with the hyperparameters of the
 * authors' `notebook.ipynb`, the way the README says to run it):
 *  - each token of a group (a subject with its attributes: "green glasses" → [green, glasses]) is one embedding:
 *    its map from the aggregated cross-attention (A&E's aggregation: up, down and mid layers at one resolution,
 *    heads averaged), tokens 1..T-2, Gaussian-smoothed (3x3, σ 0.5), flattened;
 *  - the previous sampler call's maps of the same tokens are added as extra embeddings of the same groups;
 *  - loss: NT-Xent (pytorch-metric-learning 2.5's `NTXentLoss`, temperature 0.5): over every ordered pair (a, p)
 *    of one group, −log(e^{cos(a,p)/τ} / (e^{cos(a,p)/τ} + Σ_{n in another group} e^{cos(a,n)/τ})), averaged;
 *    zero where there is no such pair or no other group (then nothing is updated);
 *  - before each of the first 30 of 50 calls one gradient step, step size 20·sqrt(linspace(1, 0.5)[i]) as A&E's;
 *    at calls 0, 10 and 20 first 20 refinement steps (always 20: no threshold), then the regular step.
 * Step-dependent settings are scaled to the run's steps like A&E's (30 → 15, {0, 10, 20} → {0, 5, 10} of 25).
 *
 * Departures, each without effect on what the official code computes where it runs:
 *  - the official `__call__`'s signature defaults differ from the notebook's (softmax_normalize True, i.e. ×100
 *    and a softmax over the tokens before the maps are taken, and max_iter_to_alter 25); with softmax_normalize
 *    its `_compute_contrastive_loss` scales the previous call's maps ×100 *in place*, once per evaluation, so
 *    over a refinement call's 22 evaluations the factor compounds (×10⁴ at the second: the softmax is then one-hot
 *    per pixel) and overflows to NaN after about 19. `conformEmbeddings` supports that setting as intended — a
 *    copy is scaled, every evaluation sees the same maps — and its goldens agree with the official code on one
 *    evaluation (test/fixtures/conform/PROVENANCE.md); the default here is the notebook's, where nothing is
 *    scaled and no such problem arises;
 *  - the official code runs a loss pass at every call and discards some: the first pass of a refinement call
 *    (the refinement starts from the unchanged latent) and the passes after the last update. Those are skipped
 *    here (the result is the same; they would only add cost);
 *  - groups come from our subject finder (prompt/auto-subjects.ts: each noun with the adjectives before it), each
 *    word by its representative token (its last wordpiece), where the authors list token indices by hand.
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import type { Tensor } from '../tensor.js';
import { defaultAttnRes } from './attend-and-excite.js';
import { passBatchSize, settingsKey, tokenSelection } from './batch.js';
import { stepSize, subtractScaled, type LatentLoopConfig } from './latent-loop.js';
import { runLossPass, type LossPassGraph } from './loss-pass.js';
import { smoothMaps } from './smoothing.js';
import { REFERENCE_STEPS, scaledCall, type Attribute, type MethodSpec, type Subject } from './spec.js';
import type { GuidanceMethod, GuidedSample, StepContext, StepLog } from './types.js';

/** The authors' notebook's hyperparameters (50 steps); the `__call__` defaults differ where noted. */
export const CONFORM_DEFAULTS = {
  temperature: 0.5,
  /** Refinement steps at each refinement call. */
  refinementSteps: 20,
  refineAt50: [0, 10, 20] as readonly number[],
  /** 25 in `__call__`'s signature. */
  maxIterToAlterAt50: 30,
  scaleFactor: 20,
  scaleRange: [1.0, 0.5] as const,
  kernelSize: 3,
  sigma: 0.5,
  /** True in `__call__`'s signature (×100 and a softmax over the tokens before taking the maps). */
  softmaxNormalize: false,
  addPreviousMaps: true,
};

export interface ConformLossSettings {
  temperature: number;
  softmaxNormalize: boolean;
  kernelSize: number;
  sigma: number;
}

export interface ConformConfig extends ConformLossSettings {
  subjects: readonly Subject[];
  attributes: readonly Attribute[];
  maxIterToAlter: number;
  refineAt: readonly number[];
  refinementSteps: number;
  scaleFactor: number;
  scaleRange: readonly [number, number];
  addPreviousMaps: boolean;
  attnRes?: readonly [number, number];
}

/**
 * Each token's embedding from aggregated maps [k, h, w, T]: tokens 1..T-2 (×100 and softmaxed over them where
 * `softmaxNormalize`, on a copy), the selected columns (`select` [k, T-2, n], batch.ts tokenSelection), smoothed,
 * flattened → [k, n, h*w]. Unused slots give zeros.
 */
export function conformEmbeddings(maps: Value, select: Value, cfg: ConformLossSettings): Value {
  const [k, h, w, t] = maps.shape as [number, number, number, number];
  const n = select.shape[2]!;
  let text = op.slice(maps, [1], [t - 1], [3]);
  if (cfg.softmaxNormalize) text = op.softmax(op.mul(text, 100), -1);
  const columns = op.matmul(op.reshape(text, [k, h * w, t - 2]), select); // [k, hw, n]
  const stacked = op.reshape(op.transpose(columns, [0, 2, 1]), [k * n, h, w]);
  return op.reshape(smoothMaps(stacked, cfg.kernelSize, cfg.sigma), [k, n, h * w]);
}

/**
 * NT-Xent per sample [k] over embeddings [k, M, D] (n current rows, then n previous): `order` [k, M, M] (one-hot)
 * moves each sample's used rows to the front — current, then previous — so that the sums below see the same
 * values in the same places whatever the batch's largest group count n (a batch gives every image its
 * one-at-a-time result); in that order `pos` and `neg` [k, M, M] mark the ordered pairs of one group (a ≠ p) and of
 * different groups, `pad` [k, M] is 1 for unused rows (they are given a norm so that normalising them stays
 * finite; no pair holds them), `weight` [k] is 1 / (number of positive pairs), 0 where the loss is zero.
 */
export function ntXentLoss(
  embeddings: Value,
  order: Value,
  pos: Value,
  neg: Value,
  pad: Value,
  weight: Value,
  temperature: number,
): Value {
  const [k, m] = embeddings.shape as [number, number, number];
  const e = op.add(op.matmul(order, embeddings), op.reshape(pad, [k, m, 1]));
  // torch.nn.functional.normalize: x / max(‖x‖₂, 1e-12).
  const unit = op.div(e, op.maximum(op.sqrt(op.reduceSum(op.mul(e, e), [2], true)), 1e-12));
  const s = op.div(op.matmul(unit, op.transpose(unit, [0, 2, 1])), temperature); // cos/τ, [k, M, M]
  const es = op.exp(s);
  const negatives = op.reduceSum(op.mul(es, neg), [2], true); // Σ_n e^{s(a,n)} per anchor a
  // −log(e^{s(a,p)} / (e^{s(a,p)} + Σ_n e^{s(a,n)})); |s| ≤ 1/τ, so no max needs subtracting.
  const perPair = op.sub(op.log(op.add(es, negatives)), s);
  const perAnchor = op.reduceSum(op.mul(perPair, pos), [2], false); // [k, M]
  return op.mul(op.reduceSum(perAnchor, [1], false), weight);
}

/** One sample's tokens (group by group: attributes in prompt order, then the subject) and their group. */
export function conformGroups(
  subjects: readonly Subject[],
  attributes: readonly Attribute[],
): { tokens: number[]; labels: number[]; subjectSlots: number[] } {
  const tokens: number[] = [];
  const labels: number[] = [];
  const subjectSlots: number[] = [];
  subjects.forEach((s, i) => {
    const mods = attributes.filter((a) => a.subject === i).sort((a, b) => a.token - b.token);
    for (const a of mods) (tokens.push(a.token), labels.push(i));
    subjectSlots.push(tokens.length);
    tokens.push(s.token);
    labels.push(i);
  });
  return { tokens, labels, subjectSlots };
}

/**
 * For one sample: `order` [M, M] (M = 2n) taking its used rows to the front (current slots 0..L-1, then, with the
 * previous maps, previous slots), and in that order the pair masks [M, M], padding [M] and weight (ntXentLoss).
 */
export function conformPairs(
  labels: readonly number[],
  n: number,
  withPrevious: boolean,
): { order: Float32Array; pos: Float32Array; neg: Float32Array; pad: Float32Array; weight: number } {
  const m = 2 * n;
  const used = labels.length * (withPrevious ? 2 : 1);
  const order = new Float32Array(m * m);
  for (let r = 0; r < used; r++) {
    const slot = r % labels.length;
    order[r * m + (r < labels.length ? slot : n + slot)] = 1;
  }
  const label = (r: number) => (r < used ? labels[r % labels.length]! : -1);
  const pos = new Float32Array(m * m);
  const neg = new Float32Array(m * m);
  const pad = new Float32Array(m);
  let positives = 0;
  let negatives = 0;
  for (let a = 0; a < m; a++) {
    if (label(a) < 0) pad[a] = 1;
    for (let b = 0; b < m; b++) {
      if (a === b || label(a) < 0 || label(b) < 0) continue;
      if (label(a) === label(b)) ((pos[a * m + b] = 1), positives++);
      else ((neg[a * m + b] = 1), negatives++);
    }
  }
  return { order, pos, neg, pad, weight: positives > 0 && negatives > 0 ? 1 / positives : 0 };
}

interface ConformEvaluation {
  loss: number;
  grad?: Float32Array;
  /** The pass's aggregated maps [h, w, T] (the next call's previous maps). */
  maps: Float32Array;
  maxAttention: number[];
}

export class Conform implements GuidanceMethod {
  readonly name = 'conform';
  readonly batchKey: string;
  readonly usesGradients = true;
  readonly groups: ReturnType<typeof conformGroups>;
  /** The maps of the last loss pass, with the call that made them. */
  private previous: { call: number; maps: Float32Array } | null = null;
  private readonly perCall = new Map<number, StepLog>();

  constructor(readonly config: ConformConfig) {
    if (config.subjects.length === 0) throw new Error('conform needs at least one subject');
    this.groups = conformGroups(config.subjects, config.attributes);
    const { subjects: _s, attributes: _a, ...shared } = config;
    this.batchKey = `conform:${settingsKey(shared)}`;
  }

  private async evaluate(
    ctx: StepContext,
    members: readonly Conform[],
    samples: readonly GuidedSample[],
    latents: readonly Float32Array[],
    withGrad: boolean,
  ): Promise<ConformEvaluation[]> {
    const cfg = this.config;
    const [, h, w] = ctx.unet.latentShape;
    const [tokens] = ctx.unet.contextShape;
    const res = cfg.attnRes ?? defaultAttnRes(h, w);
    const k = passBatchSize(samples.length, samples.length);
    // Slots in multiples of 8: a batch's shapes, and so ONNX Runtime's kernels and their rounding, do not depend
    // on which prompts share it (with 4 slots alone and 7 in a batch, an image's latents differed by ~1e-5).
    const n = 8 * Math.ceil(Math.max(...members.map((m) => m.groups.tokens.length)) / 8);
    const mm = 2 * n;
    const hwT = res[0] * res[1] * tokens;
    const previous = members.map((m) =>
      cfg.addPreviousMaps && m.previous?.call === ctx.index - 1 ? m.previous.maps : null,
    );
    const prevMaps = new Float32Array(k * hwT);
    const order = new Float32Array(k * mm * mm);
    const pos = new Float32Array(k * mm * mm);
    const neg = new Float32Array(k * mm * mm);
    const pad = new Float32Array(k * mm);
    const weight = new Float32Array(k);
    members.forEach((m, b) => {
      const prev = previous[b]!;
      if (prev) prevMaps.set(prev, b * hwT);
      const p = conformPairs(m.groups.labels, n, prev !== null);
      order.set(p.order, b * mm * mm);
      pos.set(p.pos, b * mm * mm);
      neg.set(p.neg, b * mm * mm);
      pad.set(p.pad, b * mm);
      weight[b] = p.weight;
    });
    const { select } = tokenSelection(
      members.map((m) => m.groups.tokens),
      tokens,
      n,
    );
    const graph: LossPassGraph = {
      key: `conform:${res.join('x')}:n${n}:${cfg.softmaxNormalize ? 'softmax' : 'raw'}:${cfg.kernelSize}/${cfg.sigma}:t${cfg.temperature}`,
      k,
      withGrad,
      res,
      inputs: [
        ['token_select', [k, tokens - 2, n]],
        ['previous_maps', [k, res[0], res[1], tokens]],
        ['order', [k, mm, mm]],
        ['pos', [k, mm, mm]],
        ['neg', [k, mm, mm]],
        ['pad', [k, mm]],
        ['weight', [k]],
      ],
      build: (_g, maps, inp) => {
        const current = conformEmbeddings(maps.cross, inp['token_select']!, cfg);
        const before = conformEmbeddings(inp['previous_maps']!, inp['token_select']!, cfg);
        const loss = ntXentLoss(
          op.concat([current, before], 1),
          inp['order']!,
          inp['pos']!,
          inp['neg']!,
          inp['pad']!,
          inp['weight']!,
          cfg.temperature,
        );
        return { loss, outputs: { maps: op.identity(maps.cross), max_attention: op.reduceMax(current, [2], false) } };
      },
    };
    const tensor = (data: Float32Array, shape: number[]): Tensor => ({ data, shape });
    const out = await runLossPass(
      ctx.unet,
      graph,
      ctx.timestep,
      samples.map((s, b) => ({ latent: latents[b]!, cond: s.cond, cost: s.cost })),
      {
        token_select: select,
        previous_maps: tensor(prevMaps, [k, res[0], res[1], tokens]),
        order: tensor(order, [k, mm, mm]),
        pos: tensor(pos, [k, mm, mm]),
        neg: tensor(neg, [k, mm, mm]),
        pad: tensor(pad, [k, mm]),
        weight: tensor(weight, [k]),
      },
    );
    const mapsOut = out.outputs['maps']!.data;
    const peaks = out.outputs['max_attention']!.data;
    return members.map((m, b) => ({
      loss: out.loss[b]!,
      grad: out.grad?.[b],
      maps: mapsOut.slice(b * hwT, (b + 1) * hwT),
      maxAttention: m.groups.subjectSlots.map((slot) => peaks[b * n + slot]!),
    }));
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    const members = samples.map(({ method }) => {
      if (!(method instanceof Conform) || method.batchKey !== this.batchKey)
        throw new Error(`conform: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
    const cfg = this.config;
    const i = ctx.index;
    const alter = i < cfg.maxIterToAlter;
    const refine = cfg.refineAt.includes(i);
    // A pass is needed to update the latents, and also where the next call refines (its previous maps).
    if (!alter && !refine && !cfg.refineAt.includes(i + 1)) return samples.map((s) => s.latents.data);
    const size = stepSize(
      { ...cfg, thresholds: new Map(), maxRefinementSteps: cfg.refinementSteps },
      i,
      ctx.totalCalls,
    );
    let latents = samples.map((s) => s.latents.data);
    const tries = refine ? cfg.refinementSteps : 0;
    // _perform_iterative_refinement_step: a fixed number of steps on the loss, from the unchanged latent.
    for (let t = 0; t < tries; t++) {
      const r = await this.evaluate(ctx, members, samples, latents, true);
      latents = latents.map((x, b) => (r[b]!.loss !== 0 ? subtractScaled(x, size, r[b]!.grad!) : x));
    }
    const final = await this.evaluate(ctx, members, samples, latents, alter);
    return latents.map((x, b) => {
      const e = final[b]!;
      const m = members[b]!;
      m.previous = { call: i, maps: e.maps };
      m.perCall.set(i, {
        loss: e.loss,
        maxAttention: e.maxAttention,
        refinementTries: tries,
        stepSize: alter ? size : null,
      });
      return alter && e.loss !== 0 ? subtractScaled(x, size, e.grad!) : x;
    });
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

export const conformSpec: MethodSpec = {
  name: 'conform',
  group: 'rival',
  description:
    "rival: CONFORM (Meral et al. 2024) as its official code: NT-Xent contrast of the token maps (each noun with its adjectives one group, the previous step's maps as extra positives), 30 of 50 steps, 20 refinement steps at 0, 10, 20",
  capabilities: { needsSubjects: true, findsSubjects: true, takesAttributes: true, choosesStarts: false },
  overrides: {},
  resolve: (steps) => {
    const d = CONFORM_DEFAULTS;
    const loop: LatentLoopConfig = {
      maxIterToAlter: scaledCall(d.maxIterToAlterAt50, steps),
      thresholds: new Map(),
      scaleFactor: d.scaleFactor,
      scaleRange: d.scaleRange,
      maxRefinementSteps: d.refinementSteps,
    };
    return {
      loop,
      own: {
        temperature: d.temperature,
        refineAt: [...new Set(d.refineAt50.map((c) => scaledCall(c, steps)))],
        refinementSteps: d.refinementSteps,
        softmaxNormalize: d.softmaxNormalize,
        addPreviousMaps: d.addPreviousMaps,
      },
      scaled: steps !== REFERENCE_STEPS ? ['maxIterToAlter', 'refineAt'] : [],
      usesGradients: true,
    };
  },
  build: (targets, settings) => {
    const r = conformSpec.resolve(settings.steps, settings);
    const own = r.own as {
      temperature: number;
      refineAt: number[];
      refinementSteps: number;
      softmaxNormalize: boolean;
      addPreviousMaps: boolean;
    };
    return new Conform({
      ...own,
      subjects: targets.subjects,
      attributes: targets.attributes,
      maxIterToAlter: r.loop.maxIterToAlter,
      scaleFactor: r.loop.scaleFactor,
      scaleRange: r.loop.scaleRange,
      kernelSize: CONFORM_DEFAULTS.kernelSize,
      sigma: CONFORM_DEFAULTS.sigma,
      attnRes: settings.attnRes,
    });
  },
};

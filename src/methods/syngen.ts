/**
 * Rival: SynGen (Rassin et al., NeurIPS 2023, "Linguistic Binding in Diffusion Models"), as its official code does
 * it (RoyiRa/Linguistic-Binding-in-Diffusion-Models, `compute_loss.py` and `syngen_diffusion_pipeline.py`):
 * each token's aggregated cross-attention map (A&E's aggregation, ×100, no softmax) is a distribution over pixels;
 * for every noun with modifiers (a subtree of the parse) and every modifier m of it, the loss adds
 *   positive: the symmetric KL between m and the noun (the largest over their wordpieces), and
 *   negative: −½ (mean over the prompt's tokens o outside the subtree of symKL(m, o) + the same for the noun);
 * one gradient step of size 20 on the latent before each of the first 25 of 50 calls (scaled).
 *
 * The subtrees come from our subject finder (prompt/auto-subjects.ts: compromise's part-of-speech tags, each noun
 * with the adjectives before it) instead of spaCy's dependency parse (en_core_web_trf): the same subtrees for
 * "a red square and a blue circle"; no modifiers after the noun ("a square that is red") and no compound nouns or
 * adverbs as modifiers. Nouns without modifiers add nothing, as with SynGen's default (include_entities=False).
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { defaultAttnRes } from './attend-and-excite.js';
import { passBatchSize, settingsKey } from './batch.js';
import { subtractScaled } from './latent-loop.js';
import { runLossPass, type LossPassGraph } from './loss-pass.js';
import { scaledCall, type Attribute, type MethodSpec, type Subject } from './spec.js';
import type { GuidanceMethod, GuidedSample, StepContext, StepLog } from './types.js';

/** SynGen's defaults (`syngen_step_size`, `num_intervention_steps` of 50). */
export const SYNGEN_DEFAULTS = { stepSize: 20, interventionStepsAt50: 25 };

export interface SyngenConfig {
  subjects: readonly Subject[];
  attributes: readonly Attribute[];
  /** Tokens of the prompt with the start and end tokens (the "outside" tokens are the others among them). */
  promptTokens: number;
  stepSize: number;
  interventionSteps: number;
  attnRes?: readonly [number, number];
}

/** One term of the loss: coefficient × the largest symKL over (row token, column position) pairs. */
export interface SyngenGroup {
  coef: number;
  pairs: readonly (readonly [number, number])[];
}

/**
 * The loss's structure for one prompt, as `_attribution_loss` builds it: subtrees (modifiers, then the noun; each
 * word its wordpieces) → groups of token pairs with their coefficients.
 */
export function syngenGroups(
  subtrees: readonly (readonly (readonly number[])[])[],
  promptTokens: number,
): SyngenGroup[] {
  const groups: SyngenGroup[] = [];
  const product = (a: readonly number[], b: readonly number[]) => a.flatMap((s) => b.map((d) => [s, d] as const));
  for (const subtree of subtrees) {
    const noun = subtree[subtree.length - 1]!;
    const modifiers = subtree.slice(0, -1);
    const inside = new Set(subtree.flat());
    const outside: number[] = [];
    for (let i = 1; i < promptTokens - 1; i++) if (!inside.has(i)) outside.push(i);
    for (const m of modifiers) {
      groups.push({ coef: 1, pairs: product(m, noun) });
      // calculate_negative_loss: (−Σ_o symKL(m, o) / |outside| − Σ_o symKL(noun, o) / |outside|) / 2
      for (const o of outside) {
        groups.push({ coef: -0.5 / outside.length, pairs: product(m, [o]) });
        groups.push({ coef: -0.5 / outside.length, pairs: product(noun, [o]) });
      }
    }
  }
  return groups;
}

/** Each subject with attributes as a subtree: its attributes' wordpieces in prompt order, then its own. */
export function syngenSubtrees(subjects: readonly Subject[], attributes: readonly Attribute[]): number[][][] {
  return subjects.flatMap((s, i) => {
    const mods = attributes.filter((a) => a.subject === i).sort((a, b) => a.tokens[0]! - b.tokens[0]!);
    return mods.length ? [[...mods.map((a) => [...a.tokens]), [...s.tokens]]] : [];
  });
}

/** What the loss graph is fed for k samples: rows (the subtrees' tokens) and groups over (row, position) pairs. */
export interface SyngenFeeds {
  rows: number;
  groups: number;
  /** One-hot [k, R, P] of each row's token among positions 1..T-2. */
  rowSelect: Float32Array;
  /** [k, G, R*P]: 1 for the pairs of each group. */
  groupMask: Float32Array;
  /** [k, G]. */
  groupCoef: Float32Array;
}

export function syngenFeeds(samples: readonly SyngenGroup[][], tokens: number): SyngenFeeds {
  const P = tokens - 2;
  const rowsOf = samples.map((groups) => [...new Set(groups.flatMap((g) => g.pairs.map(([r]) => r)))]);
  // Rows and groups in multiples of 8, as CONFORM's slots: the batch's shapes change only in steps of 8 with the
  // prompts that share it (fewer compiled graphs, kernels that see the same blocks). The padding's rows select
  // nothing and its groups have no pairs (coefficient 0).
  const slots = (n: number) => 8 * Math.ceil(Math.max(1, n) / 8);
  const R = slots(Math.max(...rowsOf.map((r) => r.length)));
  const G = slots(Math.max(...samples.map((g) => g.length)));
  const k = samples.length;
  const rowSelect = new Float32Array(k * R * P);
  const groupMask = new Float32Array(k * G * R * P);
  const groupCoef = new Float32Array(k * G);
  samples.forEach((groups, b) => {
    const rows = rowsOf[b]!;
    rows.forEach((t, r) => (rowSelect[(b * R + r) * P + t - 1] = 1));
    groups.forEach((g, i) => {
      groupCoef[b * G + i] = g.coef;
      for (const [t, o] of g.pairs) groupMask[((b * G + i) * R + rows.indexOf(t)) * P + o - 1] = 1;
    });
  });
  return { rows: R, groups: G, rowSelect, groupMask, groupCoef };
}

/**
 * SynGen's loss per sample [k] from aggregated maps [k, h, w, T]: symmetric KLs between the rows' token maps and
 * every position's (as torch.distributions.Categorical: probabilities normalised, logs of the clamped ones), the
 * largest of each group's pairs, weighted by the group's coefficient: the loss [k] and its terms [k, G].
 */
export function syngenLoss(
  maps: Value,
  rowSelect: Value,
  groupMask: Value,
  groupCoef: Value,
): { loss: Value; terms: Value } {
  const [k, h, w, t] = maps.shape as [number, number, number, number];
  const [, R, P] = rowSelect.shape as [number, number, number];
  const hw = h * w;
  const x = op.transpose(op.reshape(op.mul(op.slice(maps, [1], [t - 1], [3]), 100), [k, hw, P]), [0, 2, 1]); // [k, P, hw]
  // Sums over pixels as products with a column of ones, and the KLs' cross terms as batched products: ONNX
  // Runtime's reductions across an inner axis (and the broadcasts' gradients, which are such reductions) round
  // differently with the batch size, matrix products per batch item do not (an image in a batch is what it is
  // alone).
  const ones = maps.graph.constant(new Float32Array(hw).fill(1), [hw, 1], 'float32', 'syngen_ones');
  const pixelSum = (v: Value) => op.matmul(v, ones); // [k, ·, 1]
  const p = op.div(x, pixelSum(x));
  const eps = 1.1920928955078125e-7; // torch.finfo(float32).eps, clamp_probs
  const logp = op.log(op.minimum(op.maximum(p, eps), 1 - eps));
  const pr = op.matmul(rowSelect, p); // [k, R, hw]
  const logpr = op.matmul(rowSelect, logp);
  // KL(r ‖ c) = Σ pr·log pr − Σ pr·log pc and KL(c ‖ r) = Σ pc·log pc − Σ pc·log pr, each [k, R, P].
  const rowSelf = pixelSum(op.mul(pr, logpr)); // [k, R, 1]
  const colSelf = op.reshape(pixelSum(op.mul(p, logp)), [k, 1, P]);
  const logpT = op.transpose(logp, [0, 2, 1]); // [k, hw, P]
  const pT = op.transpose(p, [0, 2, 1]);
  const klRowCol = op.sub(rowSelf, op.matmul(pr, logpT));
  const klColRow = op.sub(colSelf, op.matmul(logpr, pT));
  const sym = op.reshape(op.div(op.add(klRowCol, klColRow), 2), [k, 1, R * P]);
  const masked = op.add(op.mul(sym, groupMask), op.mul(op.sub(groupMask, 1), 1e9)); // [k, G, R*P]
  const best = op.reduceMax(masked, [2], false); // [k, G]
  const terms = op.mul(best, groupCoef);
  return { loss: op.reduceSum(terms, [1], false), terms };
}

export class Syngen implements GuidanceMethod {
  readonly name = 'syngen';
  readonly batchKey: string;
  readonly usesGradients = true;
  readonly groups: SyngenGroup[];
  private readonly perCall = new Map<number, StepLog>();

  constructor(readonly config: SyngenConfig) {
    if (config.subjects.length === 0) throw new Error('syngen needs at least one subject');
    this.groups = syngenGroups(syngenSubtrees(config.subjects, config.attributes), config.promptTokens);
    const { subjects: _s, attributes: _a, promptTokens: _p, ...shared } = config;
    this.batchKey = `syngen:${settingsKey(shared)}`;
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    const cfg = this.config;
    if (ctx.index >= cfg.interventionSteps) return samples.map((s) => s.latents.data);
    const members = samples.map(({ method }) => {
      if (!(method instanceof Syngen) || method.batchKey !== this.batchKey)
        throw new Error(`syngen: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
    const [, h, w] = ctx.unet.latentShape;
    const [tokens] = ctx.unet.contextShape;
    const res = cfg.attnRes ?? defaultAttnRes(h, w);
    const k = passBatchSize(samples.length, samples.length);
    const f = syngenFeeds(
      members.map((m) => m.groups),
      tokens,
    );
    const P = tokens - 2;
    const graph: LossPassGraph = {
      key: `syngen:${res.join('x')}:r${f.rows}:g${f.groups}`,
      k,
      withGrad: true,
      res,
      inputs: [
        ['row_select', [k, f.rows, P]],
        ['group_mask', [k, f.groups, f.rows * P]],
        ['group_coef', [k, f.groups]],
      ],
      build: (_g, maps, inp) => {
        const { loss, terms } = syngenLoss(maps.cross, inp['row_select']!, inp['group_mask']!, inp['group_coef']!);
        return { loss, outputs: { terms } };
      },
    };
    const out = await runLossPass(
      ctx.unet,
      graph,
      ctx.timestep,
      samples.map((s) => ({ latent: s.latents.data, cond: s.cond, cost: s.cost })),
      {
        row_select: { data: f.rowSelect, shape: [k, f.rows, P] },
        group_mask: { data: f.groupMask, shape: [k, f.groups, f.rows * P] },
        group_coef: { data: f.groupCoef, shape: [k, f.groups] },
      },
    );
    const terms = out.outputs['terms']!.data;
    return samples.map((s, b) => {
      // The loss summed here, term by term: the graph's sum over the batch's padded group count rounds differently
      // with that count (its gradient, 1 per term, does not).
      let loss = 0;
      for (let g = 0; g < members[b]!.groups.length; g++) loss = Math.fround(loss + terms[b * f.groups + g]!);
      members[b]!.perCall.set(ctx.index, { loss, maxAttention: null, refinementTries: 0, stepSize: cfg.stepSize });
      return loss !== 0 ? subtractScaled(s.latents.data, cfg.stepSize, out.grad![b]!) : s.latents.data;
    });
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

export const syngenSpec: MethodSpec = {
  name: 'syngen',
  group: 'rival',
  description:
    "rival: SynGen (Rassin et al. 2023) as its official code: symmetric-KL binding of each noun's map to its modifiers' and away from the other tokens', 25 of 50 steps",
  capabilities: { needsSubjects: true, findsSubjects: true, takesAttributes: true, choosesStarts: false },
  overrides: {},
  resolve: (steps) => ({
    loop: { maxIterToAlter: 0, thresholds: new Map(), scaleFactor: 0, scaleRange: [1, 1], maxRefinementSteps: 0 },
    own: {
      stepSize: SYNGEN_DEFAULTS.stepSize,
      interventionSteps: scaledCall(SYNGEN_DEFAULTS.interventionStepsAt50, steps),
    },
    scaled: steps !== 50 ? ['interventionSteps'] : [],
    usesGradients: true,
  }),
  build: (targets, settings) => {
    if (targets.promptTokens === undefined) throw new Error('syngen needs the prompt token count (methodTargets)');
    const own = syngenSpec.resolve(settings.steps, settings).own as { stepSize: number; interventionSteps: number };
    return new Syngen({
      subjects: targets.subjects,
      attributes: targets.attributes,
      promptTokens: targets.promptTokens,
      ...own,
      attnRes: settings.attnRes,
    });
  },
};

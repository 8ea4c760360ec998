/**
 * Suppress-to-Impress (docs/method.md): make what should be zero in each subject's cross-attention map zero,
 * keep the subject's own region evenly lit, and keep different subjects' maps apart — without masks from the
 * user and without training. A subject is a token group: its own tokens and the later tokens that carry it
 * (carriers.ts; in a causal text encoder "and", "a" after a noun say the noun too). Ways to act:
 *  - edit mode (the default): inside every cross-attention layer of the guided pass, the columns of each
 *    subject's group (and its attributes) are multiplied by γ outside the owned focus region O_s, rows
 *    renormalised — the subject is definitively absent where it does not belong, so no second copy forms;
 *  - choosing the start: several initial noises run the first calls, and the one whose maps show the cleanest
 *    layout (no subject split over two places, no two subjects on one place: carriers.ts layoutScore) goes on;
 *  - loss mode: a weighted sum of terms on the maps, minimised by A&E's latent-update loop (latent-loop.ts).
 * The same loss builder also expresses the nearest rivals' terms (A-STAR's segregation, INITNO's clean
 * cross-attention), so the benchmark compares them inside one mechanism. Each sample of a batch has its own
 * instance (subjects, focus regions, logs); loss-mode evaluations of a batch run in one batched pass.
 */
import { gradients } from '../graph/autodiff.js';
import type { Value } from '../graph/graph.js';
import type { CompiledGraph } from '../graph/runtime.js';
import * as op from '../graph/ops.js';
import { AttentionStore } from '../attention/store.js';
import type { Tensor } from '../tensor.js';
import { defaultAttnRes, selectedSubjectMaps } from './attend-and-excite.js';
import { padTo, passBatchSize, row, settingsKey, stack, tokenSelection } from './batch.js';
import {
  FOCUS_DEFAULTS,
  focusRegions,
  resizeMask,
  subjectMapsHost,
  type FocusOptions,
  type FocusRegions,
} from './focus.js';
import { findCarriers, groupMaps, groupTokens, layoutScore, type CarrierOptions, type TokenGroup } from './carriers.js';
import { alterLatents, type Evaluation, type LatentLoopConfig, type LoopEvent } from './latent-loop.js';
import type {
  AttentionEdit,
  CandidateSelection,
  GuidanceMethod,
  GuidedSample,
  StepContext,
  StepLog,
  UNetAccess,
} from './types.js';

export const LOSS_TERMS = ['suppress', 'excite', 'even', 'exclusive', 'bind', 'clean', 'segregate'] as const;
export type LossTerm = (typeof LOSS_TERMS)[number];
export type LossWeights = Record<LossTerm, number>;

/** Suppress-to-Impress's own terms; `clean` (INITNO) and `segregate` (A-STAR) are off. */
export const SUPPRESS_WEIGHTS: LossWeights = {
  suppress: 1,
  excite: 1,
  even: 0.5,
  exclusive: 1,
  bind: 1,
  clean: 0,
  segregate: 0,
};

export interface Subject {
  /** The token whose map represents the subject (for a multi-token word: its last token). */
  token: number;
  /** Every token of the word (all are edited in edit mode). */
  tokens: readonly number[];
  label: string;
}

export interface Attribute extends Subject {
  /** Index into the subjects list of the subject this attribute describes. */
  subject: number;
}

export type SuppressMode = 'loss' | 'edit' | 'both';

export interface SuppressConfig extends LatentLoopConfig {
  subjects: readonly Subject[];
  attributes: readonly Attribute[];
  mode: SuppressMode;
  weights: LossWeights;
  /** Edit mode: factor applied to subject/attribute attention outside their owned region (0: definitively zero). */
  gamma: number;
  /** Edit mode: sampler calls 1..editSteps-1 are edited (call 0 has no maps yet to define regions). */
  editSteps: number;
  /**
   * Subjects as token groups: the edit, the focus regions and the layout score take each subject's carriers too
   * (false: the subject's own tokens only, regions from A&E's maps as in loss mode).
   */
  tokenGroups: boolean;
  carriers: CarrierOptions;
  /** Choosing the start among several initial noises by the layout score (candidates 1: off). */
  selection: CandidateSelection;
  focus: FocusOptions;
  smoothAttentions: boolean;
  kernelSize: number;
  sigma: number;
  attnRes?: readonly [number, number];
  /** Name in logs (the rivals reuse this class with other weights). */
  name?: string;
}

const EPS = 1e-6;

export interface LossGraphInputs {
  /** Smoothed subject maps A_s [n, h, w]. */
  subjects: Value;
  /** Smoothed attribute maps A_a [m, h, w], or null. */
  attributes: Value | null;
  /** Attribute → subject index. */
  links: readonly number[];
  /** Owned focus regions O_s [n, h, w] (constants: no gradient flows into them). */
  owned: Value;
  /** Hard peak components C_s [n, h, w] (for INITNO's clean term). */
  components: Value;
}

/** The loss graph's inputs for a batch of k samples, each with up to n subjects and m attributes. */
export interface BatchedLossInputs {
  /** Smoothed subject maps A_s [k, n, h, w] (unused slots: zeros). */
  subjects: Value;
  /** 1 for a sample's subjects, 0 for unused slots [k, n]. */
  subjectMask: Value;
  /** Smoothed attribute maps A_a [k, m, h, w], or null when no sample has attributes. */
  attributes: Value | null;
  /** [k, m], with attributes. */
  attributeMask: Value | null;
  /** The owned region of the subject each attribute describes [k, m, h, w], with attributes. */
  attributeOwned: Value | null;
  /** Owned focus regions O_s [k, n, h, w] (constants: no gradient flows into them). */
  owned: Value;
  /** Hard peak components C_s [k, n, h, w] (for INITNO's clean term). */
  components: Value;
  /** Σ of the weights of the terms each sample has [k] (termWeightSum). */
  weightSum: Value;
}

/** The terms a sample with `subjects` subjects and `attributes` attributes has under `weights`. */
export function sampleTerms(weights: LossWeights, subjects: number, attributes: number): LossTerm[] {
  return LOSS_TERMS.filter(
    (t) =>
      weights[t] !== 0 &&
      ((t !== 'exclusive' && t !== 'segregate') || subjects >= 2) &&
      (t !== 'bind' || attributes >= 1),
  );
}

/** The normaliser of a sample's total: Σ of its terms' weights. */
export function termWeightSum(weights: LossWeights, subjects: number, attributes: number): number {
  const used = sampleTerms(weights, subjects, attributes);
  if (used.length === 0) throw new Error('suppress: every loss term is switched off');
  return used.reduce((s, t) => s + weights[t], 0);
}

/**
 * Every term per sample [k], plus each sample's weighted total normalised by Σ of its terms' weights (in about
 * [0, 1]). A term a sample does not have (exclusive with one subject, bind without attributes) is 0 for it and
 * its weight is left out of that sample's normaliser, so each sample's loss is what it would be alone.
 */
export function batchedLossTerms(
  inp: BatchedLossInputs,
  weights: LossWeights,
): { total: Value; terms: Partial<Record<LossTerm, Value>> } {
  const A = inp.subjects;
  const [k, n, h, w] = A.shape as [number, number, number, number];
  const mask = inp.subjectMask;
  const terms: Partial<Record<LossTerm, Value>> = {};
  const peak = op.reduceMax(A, [2, 3], true); // [k,n,1,1]
  const normalized = op.div(A, op.add(peak, EPS)); // Â
  const mass = (x: Value) => op.reduceSum(x, [2, 3], false); // [k, n]
  const count = (m: Value) => op.maximum(op.reduceSum(m, [1], false), 1); // [k]
  const maskedMean = (x: Value, m: Value) => op.div(op.reduceSum(op.mul(x, m), [1], false), count(m)); // [k]
  const outside = op.sub(1, inp.owned);
  const slot = (x: Value, i: number) => op.reshape(op.slice(x, [i], [i + 1], [1]), [k, h, w]);
  const slotMask = (i: number) => op.reshape(op.slice(mask, [i], [i + 1], [1]), [k]);
  const pairs: [number, number][] = [];
  for (let s = 0; s < n; s++) for (let r = s + 1; r < n; r++) pairs.push([s, r]);
  const pairMasks = pairs.map(([s, r]) => op.mul(slotMask(s), slotMask(r))); // [k] each
  const pairCount = () => op.maximum(op.addN(pairMasks), 1);
  const overlap = (x: Value, s: number, r: number) => {
    const a = slot(x, s);
    const b = slot(x, r);
    return op.div(
      op.reduceSum(op.minimum(a, b), [1, 2], false),
      op.add(op.reduceSum(op.add(a, b), [1, 2], false), EPS),
    );
  };

  if (weights.suppress) terms.suppress = maskedMean(op.div(mass(op.mul(A, outside)), op.add(mass(A), EPS)), mask);
  if (weights.excite)
    terms.excite = op.reduceMax(op.mul(op.relu(op.sub(1, op.reshape(peak, [k, n]))), mask), [1], false);
  if (weights.even) {
    const o = inp.owned;
    const oMass = op.add(mass(o), EPS);
    const mu = op.div(mass(op.mul(o, normalized)), oMass); // [k, n]
    const dev = op.sub(normalized, op.reshape(mu, [k, n, 1, 1]));
    const variance = op.div(mass(op.mul(o, op.mul(dev, dev))), oMass);
    terms.even = maskedMean(op.div(op.sqrt(op.add(variance, EPS)), op.add(mu, EPS)), mask);
  }
  if (weights.exclusive && pairs.length) {
    const each = pairs.map(([s, r], p) => op.mul(overlap(normalized, s, r), pairMasks[p]!));
    terms.exclusive = op.div(op.addN(each), pairCount());
  }
  if (weights.segregate && pairs.length) {
    // A-STAR's segregation: Σ over pairs of Σ min(A_i, A_j) / Σ (A_i + A_j), on the maps themselves.
    terms.segregate = op.addN(pairs.map(([s, r], p) => op.mul(overlap(A, s, r), pairMasks[p]!)));
  }
  if (weights.bind && inp.attributes && inp.attributeOwned && inp.attributeMask) {
    const attr = inp.attributes;
    const away = op.div(mass(op.mul(attr, op.sub(1, inp.attributeOwned))), op.add(mass(attr), EPS)); // [k, m]
    terms.bind = maskedMean(away, inp.attributeMask);
  }
  if (weights.clean) {
    // INITNO: the largest attention left outside the peak's Otsu component, counted when it exceeds the smallest
    // inside it.
    const c = inp.components;
    const background = op.reduceMax(op.mul(A, op.sub(1, c)), [2, 3], false);
    const foreground = op.reduceMin(op.add(op.mul(A, c), op.sub(1, c)), [2, 3], false);
    const active = op.stopGradient(op.cast(op.greater(background, foreground), 'float32'));
    terms.clean = op.reduceSum(op.mul(op.mul(background, active), mask), [1], false);
  }
  const used = LOSS_TERMS.filter((t) => terms[t] && weights[t]);
  if (used.length === 0) throw new Error('suppress: every loss term is switched off');
  const total = op.div(op.addN(used.map((t) => op.mul(terms[t]!, weights[t]))), inp.weightSum);
  return { total, terms };
}

/** Every term of one sample as a scalar graph value, plus the weighted total normalised by Σ weights. */
export function suppressLossTerms(
  inp: LossGraphInputs,
  weights: LossWeights,
): { total: Value; terms: Partial<Record<LossTerm, Value>> } {
  const g = inp.subjects.graph;
  const n = inp.subjects.shape[0]!;
  const m = inp.attributes?.shape[0] ?? 0;
  const one = (x: Value) => op.reshape(x, [1, ...x.shape]);
  const ones = (len: number) => g.constant(new Float32Array(len).fill(1), [1, len], 'float32', 'mask');
  const hasAttributes = inp.attributes !== null && inp.links.length > 0;
  const batched = batchedLossTerms(
    {
      subjects: one(inp.subjects),
      subjectMask: ones(n),
      attributes: hasAttributes ? one(inp.attributes!) : null,
      attributeMask: hasAttributes ? ones(m) : null,
      attributeOwned: hasAttributes
        ? one(
            op.concat(
              inp.links.map((s) => op.slice(inp.owned, [s], [s + 1], [0])),
              0,
            ),
          )
        : null,
      owned: one(inp.owned),
      components: one(inp.components),
      weightSum: g.constant(Float32Array.of(termWeightSum(weights, n, hasAttributes ? m : 0)), [1], 'float32', 'wsum'),
    },
    weights,
  );
  const scalar = (x: Value) => op.reshape(x, []);
  const terms: Partial<Record<LossTerm, Value>> = {};
  for (const [t, v] of Object.entries(batched.terms)) terms[t as LossTerm] = scalar(v);
  return { total: scalar(batched.total), terms };
}

export interface SuppressEvaluation extends Evaluation {
  terms: Partial<Record<LossTerm, number>>;
  maxAttention: number[];
  subjectMaps: Float32Array[];
}

/** One sample's evaluation request: its method (subjects, regions), text embedding [1, T, D] and latent. */
interface SuppressItem {
  method: SuppressToImpress;
  cond: Tensor;
  latent: Float32Array;
}

/** What one batched pass is compiled for: k samples, up to n subjects and m attributes each, maps at res. */
interface PassShape {
  unet: UNetAccess;
  cfg: SuppressConfig;
  res: readonly [number, number];
  k: number;
  n: number;
  m: number;
  withGrad: boolean;
}

/** The loss graph of a batched pass: per-sample selections, masks and regions as inputs (batch.ts). */
function compileSuppressPass(p: PassShape): Promise<CompiledGraph> {
  const { unet, cfg, res, k, n, m, withGrad } = p;
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const [rh, rw] = res;
  const weights = cfg.weights;
  const smoothing = cfg.smoothAttentions ? `${cfg.kernelSize}/${cfg.sigma}` : 'raw';
  const key = `s2i:${withGrad ? 'grad' : 'eval'}:${res.join('x')}:b${k}:n${n}:m${m}:${LOSS_TERMS.map((t) => weights[t]).join(',')}:${smoothing}`;
  return unet.compile(key, (g, build) => {
    const sample = g.input('sample', [k, c, h, w]);
    const ts = g.input('timestep', [k]);
    const context = g.input('context', [k, tokens, dim]);
    const subjectSelect = g.input('subject_select', [k, tokens - 2, n]);
    const subjectMask = g.input('subject_mask', [k, n]);
    const attributeSelect = m ? g.input('attribute_select', [k, tokens - 2, m]) : null;
    const attributeMask = m ? g.input('attribute_mask', [k, m]) : null;
    const attributeOwned = m ? g.input('attribute_owned', [k, m, rh, rw]) : null;
    const owned = g.input('owned', [k, n, rh, rw]);
    const components = g.input('components', [k, n, rh, rw]);
    const weightSum = g.input('weight_sum', [k]);
    const store = new AttentionStore({ kind: 'cross', resolution: res });
    build({ sample, timestep: ts, encoderHiddenStates: context }, { attentionHook: store.hook });
    const maps = store.aggregate({ resolution: res });
    const A = selectedSubjectMaps(maps, subjectSelect, cfg);
    const attributes = attributeSelect ? selectedSubjectMaps(maps, attributeSelect, cfg) : null;
    const { total, terms } = batchedLossTerms(
      { subjects: A, subjectMask, attributes, attributeMask, attributeOwned, owned, components, weightSum },
      weights,
    );
    g.output('loss', total);
    for (const [t, v] of Object.entries(terms)) g.output(`term_${t}`, v);
    g.output('max_attention', op.reduceMax(A, [2, 3], false));
    g.output('subject_maps', op.identity(A));
    // Samples do not interact, so the gradient of the sum is each sample's own gradient.
    if (withGrad) g.output('grad', gradients(op.reduceSum(total, [0], false), [sample])[0]!);
  });
}

/** One batched pass over `batch` (padded to the pass's k) with the regions `regionsOf` gives each sample. */
async function runSuppressPass(
  p: PassShape,
  session: CompiledGraph,
  timestep: number,
  batch: readonly SuppressItem[],
  regionsOf: (it: SuppressItem) => FocusRegions,
): Promise<SuppressEvaluation[]> {
  const { unet, cfg, res, k, n, m } = p;
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const [rh, rw] = res;
  const hw = rh * rw;
  const padded = padTo(batch, k);
  const slots = (count: number, fill: (it: SuppressItem, out: Float32Array) => void) =>
    stack(
      padded.map((it) => {
        const out = new Float32Array(count * hw);
        fill(it, out);
        return out;
      }),
      [count, rh, rw],
    );
  const configs = padded.map((it) => it.method.config);
  const subjects = tokenSelection(
    configs.map((x) => x.subjects.map((s) => s.token)),
    tokens,
    n,
  );
  const feeds: Record<string, Tensor> = {
    sample: stack(
      padded.map((it) => it.latent),
      [c, h, w],
    ),
    timestep: { data: new Float32Array(k).fill(timestep), shape: [k] },
    context: stack(
      padded.map((it) => it.cond.data),
      [tokens, dim],
    ),
    subject_select: subjects.select,
    subject_mask: subjects.mask,
    owned: slots(n, (it, out) => regionsOf(it).owned.forEach((o, s) => out.set(o, s * hw))),
    components: slots(n, (it, out) => regionsOf(it).components.forEach((o, s) => out.set(o, s * hw))),
    weight_sum: {
      data: Float32Array.from(configs, (x) => termWeightSum(cfg.weights, x.subjects.length, x.attributes.length)),
      shape: [k],
    },
  };
  if (m) {
    const attributes = tokenSelection(
      configs.map((x) => x.attributes.map((a) => a.token)),
      tokens,
      m,
    );
    feeds['attribute_select'] = attributes.select;
    feeds['attribute_mask'] = attributes.mask;
    feeds['attribute_owned'] = slots(m, (it, out) =>
      it.method.config.attributes.forEach((a, i) => out.set(regionsOf(it).owned[a.subject]!, i * hw)),
    );
  }
  const out = await session.run(feeds);
  const mapsData = out['subject_maps']!.data;
  const maxData = out['max_attention']!.data;
  return batch.map((it, b): SuppressEvaluation => {
    const own = it.method.config;
    const has = new Set(sampleTerms(cfg.weights, own.subjects.length, own.attributes.length));
    const terms: Partial<Record<LossTerm, number>> = {};
    for (const t of LOSS_TERMS) if (out[`term_${t}`] && has.has(t)) terms[t] = out[`term_${t}`]!.data[b]!;
    return {
      loss: out['loss']!.data[b]!,
      grad: out['grad'] ? row(out['grad'].data, b, k) : undefined,
      terms,
      maxAttention: [...maxData.subarray(b * n, b * n + own.subjects.length)],
      subjectMaps: own.subjects.map((_, s) => mapsData.slice((b * n + s) * hw, (b * n + s + 1) * hw)),
    };
  });
}

/**
 * The method's loss (and ∂loss/∂latent) for several samples in one batched conditional UNet pass, each with its
 * own subjects, attributes and focus regions. Settings other than those come from `cfg`. Each evaluation
 * refreshes its sample's regions from the maps it saw (a sample without regions yet gets them from a first
 * pass with uniform placeholders, which only feed that bootstrap pass's loss).
 */
async function evaluateSuppress(
  unet: UNetAccess,
  timestep: number,
  cfg: SuppressConfig,
  items: readonly SuppressItem[],
  withGrad: boolean,
  groupSize: number,
): Promise<SuppressEvaluation[]> {
  const [, h, w] = unet.latentShape;
  const res = items[0]!.method.attentionResolution(h, w);
  const [rh, rw] = res;
  const shape: PassShape = {
    unet,
    cfg,
    res,
    k: passBatchSize(items.length, groupSize),
    n: Math.max(...items.map((it) => it.method.config.subjects.length)),
    m: Math.max(...items.map((it) => it.method.config.attributes.length)),
    withGrad,
  };
  const session = await compileSuppressPass(shape);
  const fresh = items.filter((it) => !it.method.regions || it.method.regions.height !== rh);
  if (fresh.length) {
    // No maps yet (first evaluation of the run): regions from a pass at this latent. Uniform placeholders
    // only feed the loss of this one bootstrap pass; its maps define the regions actually used.
    const boot = await runSuppressPass(shape, session, timestep, fresh, (it) =>
      uniformRegions(it.method.config.subjects.length, rh, rw),
    );
    fresh.forEach((it, i) => it.method.updateRegions(boot[i]!.subjectMaps, rh, rw));
  }
  const results = await runSuppressPass(shape, session, timestep, items, (it) => it.method.regions!);
  items.forEach((it, i) => it.method.updateRegions(results[i]!.subjectMaps, rh, rw));
  return results;
}

export class SuppressToImpress implements GuidanceMethod {
  readonly name: string;
  readonly batchKey: string;
  readonly usesGradients: boolean;
  readonly events: LoopEvent[] = [];
  /** The focus regions used most recently (for pictures and tests). */
  regions: FocusRegions | null = null;
  /** Each subject's token group at the latest guided pass (own tokens only without token groups). */
  groups: TokenGroup[] | null = null;
  /** The latest guided pass's maps [h, w, T] (for the layout score). */
  private lastMaps: Tensor | null = null;
  private readonly perCall = new Map<number, StepLog>();
  private res: readonly [number, number] | null;

  constructor(readonly config: SuppressConfig) {
    if (config.subjects.length === 0) throw new Error('suppress needs at least one subject');
    this.name = config.name ?? 'suppress';
    this.res = config.attnRes ?? null;
    const { subjects: _s, attributes: _a, ...shared } = config;
    this.batchKey = `suppress:${settingsKey(shared)}`;
    this.usesGradients = config.mode !== 'edit';
  }

  get selection(): CandidateSelection | null {
    return this.config.selection.candidates > 1 ? this.config.selection : null;
  }

  fork(): SuppressToImpress {
    return new SuppressToImpress(this.config);
  }

  /** The layout score (carriers.ts) of the latest guided pass's group maps; Infinity before any pass. */
  layoutScore(): number {
    if (!this.lastMaps || !this.groups) return Infinity;
    return layoutScore(groupMaps(this.lastMaps, this.groups, false)).total;
  }

  private get usesLoss(): boolean {
    return this.config.mode !== 'edit';
  }

  private get usesEdit(): boolean {
    return this.config.mode !== 'loss';
  }

  /** The maps every guided pass should record: at the method's resolution (they refresh the focus regions). */
  attentionResolution(latentHeight: number, latentWidth: number): readonly [number, number] {
    this.res ??= defaultAttnRes(latentHeight, latentWidth);
    return this.res;
  }

  private get smoothing() {
    return this.config.smoothAttentions ? { kernelSize: this.config.kernelSize, sigma: this.config.sigma } : null;
  }

  /** @internal New focus regions from this sample's subject maps. */
  updateRegions(maps: Float32Array[], h: number, w: number): void {
    this.regions = focusRegions({ height: h, width: w, maps }, this.config.focus);
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    if (!this.usesLoss) return samples.map((s) => s.latents.data);
    const members = samples.map(({ method }) => {
      if (!(method instanceof SuppressToImpress) || method.batchKey !== this.batchKey)
        throw new Error(`${this.name}: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
    const results = await alterLatents<SuppressEvaluation>(
      this.config,
      ctx.index,
      ctx.totalCalls,
      samples.map((s) => s.latents.data),
      (requests) =>
        evaluateSuppress(
          ctx.unet,
          ctx.timestep,
          this.config,
          requests.map((r) => ({ method: members[r.sample]!, cond: samples[r.sample]!.cond, latent: r.latent })),
          requests[0]!.withGrad,
          samples.length,
        ),
      members.map((m) => m.events),
    );
    results.forEach((r, s) =>
      members[s]!.log(ctx.index, {
        loss: r.final.loss,
        terms: r.final.terms,
        maxAttention: r.final.maxAttention,
        refinementTries: r.tries,
        stepSize: r.stepSize,
      }),
    );
    return results.map((r) => r.latent);
  }

  guidedPassEdit(ctx: StepContext): AttentionEdit | null {
    const cfg = this.config;
    if (!this.usesEdit || ctx.index >= cfg.editSteps || !this.regions) return null;
    const regions = this.regions;
    this.log(ctx.index, { edited: true });
    // Each edited token column, with the owned region of the subject it belongs to: the subject's group (its
    // carriers too: zeroing the noun alone would hand its attention to the words that repeat it), its attributes.
    const columns: { token: number; owner: number }[] = [];
    cfg.subjects.forEach((s, i) => {
      const tokens = cfg.tokenGroups && this.groups ? groupTokens(this.groups[i]!) : s.tokens;
      tokens.forEach((token) => columns.push({ token, owner: i }));
    });
    cfg.attributes.forEach((a) => a.tokens.forEach((token) => columns.push({ token, owner: a.subject })));
    const gamma = cfg.gamma;
    return (height, width, tokens) => {
      const q = height * width;
      const data = new Float32Array(q * tokens).fill(1);
      const owned = regions.owned.map((o) => resizeMask(o, regions.height, regions.width, height, width));
      for (const { token, owner } of columns) {
        if (token >= tokens) continue;
        const o = owned[owner]!;
        for (let p = 0; p < q; p++) data[p * tokens + token] = gamma + (1 - gamma) * o[p]!;
      }
      return data;
    };
  }

  afterGuidedPass(ctx: StepContext, maps: Tensor | null): void {
    // The guided pass saw the latents after this step's updates: the freshest maps for the next regions.
    if (!maps) return;
    const cfg = this.config;
    this.lastMaps = maps;
    if (cfg.tokenGroups) {
      this.groups = findCarriers(
        maps,
        cfg.subjects,
        cfg.attributes.flatMap((a) => a.tokens),
        cfg.carriers,
      );
      const grouped = groupMaps(maps, this.groups, true);
      this.updateRegions(grouped.maps, grouped.height, grouped.width);
      this.log(ctx.index, { carriers: this.groups.map((g) => g.carriers) });
    } else {
      this.groups = cfg.subjects.map((s) => ({
        own: [s.token, ...s.tokens.filter((t) => t !== s.token)],
        carriers: [],
      }));
      const subjects = subjectMapsHost(
        maps,
        cfg.subjects.map((s) => s.token),
        this.smoothing,
      );
      this.updateRegions(subjects.maps, subjects.height, subjects.width);
    }
    if (this.selection && ctx.index === this.selection.atCall - 1)
      this.log(ctx.index, { layoutScore: this.layoutScore() });
  }

  private log(index: number, patch: Partial<StepLog>): void {
    const cur: StepLog = this.perCall.get(index) ?? {
      loss: null,
      terms: {},
      maxAttention: null,
      refinementTries: 0,
      stepSize: null,
      edited: false,
    };
    this.perCall.set(index, { ...cur, ...patch });
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

function uniformRegions(n: number, h: number, w: number): FocusRegions {
  const ones = () => new Float32Array(h * w).fill(1);
  return {
    height: h,
    width: w,
    thresholds: new Array<number>(n).fill(0),
    components: Array.from({ length: n }, () => new Uint8Array(h * w).fill(1)),
    masks: Array.from({ length: n }, ones),
    owned: Array.from({ length: n }, ones),
  };
}

export { FOCUS_DEFAULTS };

/**
 * The suppress term's quantity measured on recorded guided-pass maps, for any run (with or without a method):
 * for each recorded call, the share of each subject's map lying outside the owned focus region that the same
 * maps define (how concentrated each subject's attention is on its own region). Mean over subjects, by call.
 */
export function outsideMassShare(
  attentionMaps: ReadonlyMap<number, Tensor>,
  subjectTokens: readonly number[],
  options: { smoothing: { kernelSize: number; sigma: number } | null; focus?: FocusOptions } = {
    smoothing: { kernelSize: 3, sigma: 0.5 },
  },
): Map<number, number> {
  const out = new Map<number, number>();
  for (const index of [...attentionMaps.keys()].sort((a, b) => a - b)) {
    const subjects = subjectMapsHost(attentionMaps.get(index)!, subjectTokens, options.smoothing);
    const regions = focusRegions(subjects, options.focus ?? FOCUS_DEFAULTS);
    let sum = 0;
    subjects.maps.forEach((a, s) => {
      const o = regions.owned[s]!;
      let total = 0;
      let outside = 0;
      for (let p = 0; p < a.length; p++) {
        total += a[p]!;
        outside += a[p]! * (1 - o[p]!);
      }
      sum += total > 0 ? outside / total : 0;
    });
    out.set(index, sum / subjects.maps.length);
  }
  return out;
}

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
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import type { Tensor } from '../tensor.js';
import { defaultAttnRes, selectedSubjectMaps } from './attend-and-excite.js';
import { passBatchSize, settingsKey, stack, tokenSelection } from './batch.js';
import {
  FOCUS_DEFAULTS,
  focusRegions,
  resizeMask,
  subjectMapsHost,
  type FocusOptions,
  type FocusRegions,
} from './focus.js';
import {
  findCarriers,
  groupMaps,
  groupTokens,
  layoutScore,
  regionMaps,
  type CarrierOptions,
  type TokenGroup,
} from './carriers.js';
import { alterLatents, type Evaluation, type LatentLoopConfig, type LoopEvent } from './latent-loop.js';
import {
  batchedLossTerms,
  LOSS_TERMS,
  sampleTerms,
  termWeightSum,
  type BatchedLossInputs,
  type LossTerm,
  type LossWeights,
} from './loss-terms.js';
import { runLossPass, type LossPassGraph } from './loss-pass.js';
import type { Attribute, AttributeRegions, Subject } from './spec.js';
import type {
  AttentionEdit,
  CandidateSelection,
  GuidanceMethod,
  GuidedSample,
  PassCount,
  StartChoice,
  StepContext,
  StepLog,
  UNetAccess,
} from './types.js';

export { batchedLossTerms, LOSS_TERMS, sampleTerms, termWeightSum };
export type { Attribute, BatchedLossInputs, LossTerm, LossWeights, Subject };

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
  /**
   * With token groups: each subject's region and layout maps also read its adjectives, each word weighted by how
   * distinct its map is from the other subjects' (carriers.ts regionMaps) — on a model whose nouns do not say where.
   * (AttributeRegions: true is the 'weighted' rule.)
   */
  attributeRegions?: AttributeRegions;
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
  cost?: PassCount;
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
function suppressPassGraph(p: PassShape): LossPassGraph {
  const { unet, cfg, res, k, n, m, withGrad } = p;
  const [tokens] = unet.contextShape;
  const [rh, rw] = res;
  const weights = cfg.weights;
  const smoothing = cfg.smoothAttentions ? `${cfg.kernelSize}/${cfg.sigma}` : 'raw';
  return {
    key: `s2i:${res.join('x')}:n${n}:m${m}:${LOSS_TERMS.map((t) => weights[t]).join(',')}:${smoothing}`,
    k,
    withGrad,
    res,
    inputs: [
      ['subject_select', [k, tokens - 2, n]],
      ['subject_mask', [k, n]],
      ...(m
        ? ([
            ['attribute_select', [k, tokens - 2, m]],
            ['attribute_mask', [k, m]],
            ['attribute_owned', [k, m, rh, rw]],
          ] as const)
        : []),
      ['owned', [k, n, rh, rw]],
      ['components', [k, n, rh, rw]],
      ['weight_sum', [k]],
    ],
    build: (_g, maps, inp) => {
      const A = selectedSubjectMaps(maps.cross, inp['subject_select']!, cfg);
      const attributes = m ? selectedSubjectMaps(maps.cross, inp['attribute_select']!, cfg) : null;
      const { total, terms } = batchedLossTerms(
        {
          subjects: A,
          subjectMask: inp['subject_mask']!,
          attributes,
          attributeMask: inp['attribute_mask'] ?? null,
          attributeOwned: inp['attribute_owned'] ?? null,
          owned: inp['owned']!,
          components: inp['components']!,
          weightSum: inp['weight_sum']!,
        },
        weights,
      );
      const outputs: Record<string, Value> = {};
      for (const [t, v] of Object.entries(terms)) outputs[`term_${t}`] = v;
      outputs['max_attention'] = op.reduceMax(A, [2, 3], false);
      outputs['subject_maps'] = op.identity(A);
      return { loss: total, outputs };
    },
  };
}

/** One batched pass over `batch` (padded to the pass's k) with the regions `regionsOf` gives each sample. */
async function runSuppressPass(
  p: PassShape,
  timestep: number,
  batch: readonly SuppressItem[],
  regionsOf: (it: SuppressItem) => FocusRegions,
): Promise<SuppressEvaluation[]> {
  const { unet, cfg, res, k, n, m } = p;
  const [tokens] = unet.contextShape;
  const [rh, rw] = res;
  const hw = rh * rw;
  const padded = [...batch];
  while (padded.length < k) padded.push(batch[batch.length - 1]!);
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
  const { loss, grad, outputs: out } = await runLossPass(unet, suppressPassGraph(p), timestep, batch, feeds);
  const mapsData = out['subject_maps']!.data;
  const maxData = out['max_attention']!.data;
  return batch.map((it, b): SuppressEvaluation => {
    const own = it.method.config;
    const has = new Set(sampleTerms(cfg.weights, own.subjects.length, own.attributes.length));
    const terms: Partial<Record<LossTerm, number>> = {};
    for (const t of LOSS_TERMS) if (out[`term_${t}`] && has.has(t)) terms[t] = out[`term_${t}`]!.data[b]!;
    return {
      loss: loss[b]!,
      grad: grad?.[b],
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
  const fresh = items.filter((it) => !it.method.regions || it.method.regions.height !== rh);
  if (fresh.length) {
    // No maps yet (first evaluation of the run): regions from a pass at this latent. Uniform placeholders
    // only feed the loss of this one bootstrap pass; its maps define the regions actually used.
    const boot = await runSuppressPass(shape, timestep, fresh, (it) =>
      uniformRegions(it.method.config.subjects.length, rh, rw),
    );
    fresh.forEach((it, i) => it.method.updateRegions(boot[i]!.subjectMaps, rh, rw));
  }
  const results = await runSuppressPass(shape, timestep, items, (it) => it.method.regions!);
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

  /** Choosing among starts by the layout score, when more than one start is asked for. */
  get starts(): StartChoice | null {
    const sel = this.config.selection;
    if (sel.candidates <= 1) return null;
    return { ...sel, fork: () => new SuppressToImpress(this.config), layoutScore: () => this.layoutScore() };
  }

  /** The layout score (carriers.ts) of the latest guided pass's group maps; Infinity before any pass. */
  layoutScore(): number {
    if (!this.lastMaps || !this.groups) return Infinity;
    return layoutScore(this.subjectMaps(this.lastMaps, this.groups, false)).total;
  }

  /** Each subject's map for its region and the layout score: its token group's, or with its adjectives. */
  private subjectMaps(maps: Tensor, groups: readonly TokenGroup[], smooth: boolean) {
    const cfg = this.config;
    if (!cfg.attributeRegions) return groupMaps(maps, groups, smooth);
    const attributes = cfg.subjects.map((_, i) =>
      cfg.attributes.filter((a) => a.subject === i).flatMap((a) => a.tokens),
    );
    return regionMaps(
      maps,
      groups,
      attributes,
      smooth,
      cfg.attributeRegions === true ? 'weighted' : cfg.attributeRegions,
    );
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
          requests.map((r) => ({
            method: members[r.sample]!,
            cond: samples[r.sample]!.cond,
            latent: r.latent,
            cost: samples[r.sample]!.cost,
          })),
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
      const grouped = this.subjectMaps(maps, this.groups, true);
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
    if (this.starts && ctx.index === this.config.selection.atCall - 1)
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

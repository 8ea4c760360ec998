/**
 * Suppress-to-Impress (docs/method.md): make what should be zero in each subject's cross-attention map zero,
 * keep the subject's own region evenly lit, and keep different subjects' maps apart — without masks from the
 * user and without training. Two ways to act, usable together:
 *  - loss mode: a weighted sum of terms on the maps, minimised by A&E's latent-update loop (latent-loop.ts);
 *  - edit mode: inside every cross-attention layer of the guided pass, subject (and attribute) columns are
 *    multiplied by γ outside the owned focus region O_s, rows renormalised.
 * The same loss builder also expresses the nearest rivals' terms (A-STAR's segregation, INITNO's clean
 * cross-attention), so the benchmark compares them inside one mechanism.
 */
import { gradients } from '../graph/autodiff.js';
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { AttentionStore } from '../attention/store.js';
import type { Tensor } from '../tensor.js';
import { defaultAttnRes, subjectMaps } from './attend-and-excite.js';
import {
  FOCUS_DEFAULTS,
  focusRegions,
  resizeMask,
  subjectMapsHost,
  type FocusOptions,
  type FocusRegions,
} from './focus.js';
import { alterLatent, type Evaluation, type LatentLoopConfig, type LoopEvent } from './latent-loop.js';
import type { AttentionEdit, GuidanceMethod, StepContext } from './types.js';

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

/** Every term as a scalar graph value, plus the weighted total normalised by Σ weights (in about [0, 1]). */
export function suppressLossTerms(
  inp: LossGraphInputs,
  weights: LossWeights,
): { total: Value; terms: Partial<Record<LossTerm, Value>> } {
  const A = inp.subjects;
  const [n, h, w] = A.shape as [number, number, number];
  const terms: Partial<Record<LossTerm, Value>> = {};
  const peak = op.reduceMax(A, [1, 2], true); // [n,1,1]
  const normalized = op.div(A, op.add(peak, EPS)); // Â
  const mass = (x: Value) => op.reduceSum(x, [1, 2], false); // [k]
  const outside = op.sub(1, inp.owned);
  const columns = (x: Value, i: number) => op.reshape(op.slice(x, [i], [i + 1], [0]), [h, w]);
  const pairs: [number, number][] = [];
  for (let s = 0; s < n; s++) for (let r = s + 1; r < n; r++) pairs.push([s, r]);
  const mean = (xs: Value[]) => op.div(op.addN(xs), xs.length);

  if (weights.suppress)
    terms.suppress = op.reduceMean(op.div(mass(op.mul(A, outside)), op.add(mass(A), EPS)), [0], false);
  if (weights.excite) terms.excite = op.reduceMax(op.relu(op.sub(1, op.reshape(peak, [n]))), [0], false);
  if (weights.even) {
    const o = inp.owned;
    const oMass = op.add(mass(o), EPS);
    const mu = op.div(mass(op.mul(o, normalized)), oMass); // [n]
    const dev = op.sub(normalized, op.reshape(mu, [n, 1, 1]));
    const variance = op.div(mass(op.mul(o, op.mul(dev, dev))), oMass);
    terms.even = op.reduceMean(op.div(op.sqrt(op.add(variance, EPS)), op.add(mu, EPS)), [0], false);
  }
  if (weights.exclusive && pairs.length) {
    terms.exclusive = mean(
      pairs.map(([s, r]) => {
        const a = columns(normalized, s);
        const b = columns(normalized, r);
        return op.div(
          op.reduceSum(op.minimum(a, b), [0, 1], false),
          op.add(op.reduceSum(op.add(a, b), [0, 1], false), EPS),
        );
      }),
    );
  }
  if (weights.segregate && pairs.length) {
    // A-STAR's segregation: Σ over pairs of Σ min(A_i, A_j) / Σ (A_i + A_j), on the maps themselves.
    terms.segregate = op.addN(
      pairs.map(([s, r]) => {
        const a = columns(A, s);
        const b = columns(A, r);
        return op.div(
          op.reduceSum(op.minimum(a, b), [0, 1], false),
          op.add(op.reduceSum(op.add(a, b), [0, 1], false), EPS),
        );
      }),
    );
  }
  if (weights.bind && inp.attributes && inp.links.length) {
    const attr = inp.attributes;
    const ownedOfLinked = op.concat(
      inp.links.map((s) => op.slice(inp.owned, [s], [s + 1], [0])),
      0,
    ); // [m,h,w]
    terms.bind = op.reduceMean(
      op.div(mass(op.mul(attr, op.sub(1, ownedOfLinked))), op.add(mass(attr), EPS)),
      [0],
      false,
    );
  }
  if (weights.clean) {
    // INITNO: the largest attention left outside the peak's Otsu component, counted when it exceeds the smallest
    // inside it.
    const c = inp.components;
    const background = op.reduceMax(op.mul(A, op.sub(1, c)), [1, 2], false);
    const foreground = op.reduceMin(op.add(op.mul(A, c), op.sub(1, c)), [1, 2], false);
    const active = op.stopGradient(op.cast(op.greater(background, foreground), 'float32'));
    terms.clean = op.reduceSum(op.mul(background, active), [0], false);
  }
  const used = LOSS_TERMS.filter((t) => terms[t] && weights[t]);
  if (used.length === 0) throw new Error('suppress: every loss term is switched off');
  const weightSum = used.reduce((s, t) => s + weights[t], 0);
  const total = op.div(op.addN(used.map((t) => op.mul(terms[t]!, weights[t]))), weightSum);
  return { total, terms };
}

export interface SuppressEvaluation extends Evaluation {
  terms: Partial<Record<LossTerm, number>>;
  maxAttention: number[];
  subjectMaps: Float32Array[];
}

interface CallLog {
  loss: number | null;
  terms: Partial<Record<LossTerm, number>>;
  maxAttention: number[] | null;
  tries: number;
  stepSize: number | null;
  edited: boolean;
}

export class SuppressToImpress implements GuidanceMethod {
  readonly name: string;
  readonly events: LoopEvent[] = [];
  /** The focus regions used most recently (for pictures and tests). */
  regions: FocusRegions | null = null;
  private readonly perCall = new Map<number, CallLog>();
  private readonly res: { value: readonly [number, number] | null } = { value: null };

  constructor(readonly config: SuppressConfig) {
    if (config.subjects.length === 0) throw new Error('suppress needs at least one subject');
    this.name = config.name ?? 'suppress';
    this.res.value = config.attnRes ?? null;
  }

  private get usesLoss(): boolean {
    return this.config.mode !== 'edit';
  }

  private get usesEdit(): boolean {
    return this.config.mode !== 'loss';
  }

  /** The maps every guided pass should record: at the method's resolution (they refresh the focus regions). */
  attentionResolution(latentHeight: number, latentWidth: number): readonly [number, number] {
    this.res.value ??= defaultAttnRes(latentHeight, latentWidth);
    return this.res.value;
  }

  private resolution(ctx: StepContext): readonly [number, number] {
    const [, h, w] = ctx.unet.latentShape;
    return this.attentionResolution(h, w);
  }

  private get smoothing() {
    return this.config.smoothAttentions ? { kernelSize: this.config.kernelSize, sigma: this.config.sigma } : null;
  }

  private updateRegions(maps: Float32Array[], h: number, w: number): void {
    this.regions = focusRegions({ height: h, width: w, maps }, this.config.focus);
  }

  async evaluate(ctx: StepContext, latent: Float32Array, withGrad: boolean): Promise<SuppressEvaluation> {
    const cfg = this.config;
    const [c, h, w] = ctx.unet.latentShape;
    const [tokens, dim] = ctx.unet.contextShape;
    const res = this.resolution(ctx);
    const [rh, rw] = res;
    const n = cfg.subjects.length;
    const weights = cfg.weights;
    const subjectTokens = cfg.subjects.map((s) => s.token);
    const attributeTokens = cfg.attributes.map((a) => a.token);
    const links = cfg.attributes.map((a) => a.subject);
    const key = `s2i:${withGrad ? 'grad' : 'eval'}:${res.join('x')}:${subjectTokens}:${attributeTokens}>${links}:${LOSS_TERMS.map((t) => weights[t]).join(',')}:${this.smoothing ? `${cfg.kernelSize}/${cfg.sigma}` : 'raw'}`;
    const session = await ctx.unet.compile(key, (g, unet) => {
      const sample = g.input('sample', [1, c, h, w]);
      const timestep = g.input('timestep', [1]);
      const context = g.input('context', [1, tokens, dim]);
      const owned = g.input('owned', [n, rh, rw]);
      const components = g.input('components', [n, rh, rw]);
      const store = new AttentionStore({ kind: 'cross', resolution: res });
      unet({ sample, timestep, encoderHiddenStates: context }, { attentionHook: store.hook });
      const maps = store.aggregate({ resolution: res, batchIndex: 0 });
      const A = subjectMaps(maps, subjectTokens, cfg);
      const attr = attributeTokens.length ? subjectMaps(maps, attributeTokens, cfg) : null;
      const { total, terms } = suppressLossTerms({ subjects: A, attributes: attr, links, owned, components }, weights);
      g.output('loss', total);
      for (const [t, v] of Object.entries(terms)) g.output(`term_${t}`, v!);
      g.output('max_attention', op.reduceMax(A, [1, 2], false));
      g.output('subject_maps', op.identity(A));
      if (withGrad) g.output('grad', gradients(total, [sample])[0]!);
    });
    if (!this.regions || this.regions.height !== rh) {
      // No maps yet (first evaluation of the run): regions from a pass at this latent. Uniform placeholders
      // only feed the loss of this one bootstrap pass; its maps define the regions actually used.
      const boot = await this.runSession(session, ctx, latent, uniformRegions(n, rh, rw));
      this.updateRegions(boot.subjectMaps, rh, rw);
    }
    const result = await this.runSession(session, ctx, latent, this.regions!);
    this.updateRegions(result.subjectMaps, rh, rw);
    return result;
  }

  private async runSession(
    session: Awaited<ReturnType<StepContext['unet']['compile']>>,
    ctx: StepContext,
    latent: Float32Array,
    regions: FocusRegions,
  ): Promise<SuppressEvaluation> {
    const [c, h, w] = ctx.unet.latentShape;
    const n = this.config.subjects.length;
    const { height: rh, width: rw } = regions;
    const stack = (xs: ArrayLike<number>[]) => {
      const out = new Float32Array(n * rh * rw);
      xs.forEach((x, i) => out.set(x, i * rh * rw));
      return { data: out, shape: [n, rh, rw] };
    };
    const out = await session.run({
      sample: { data: latent, shape: [1, c, h, w] },
      timestep: { data: Float32Array.of(ctx.timestep), shape: [1] },
      context: ctx.cond,
      owned: stack(regions.owned),
      components: stack(regions.components),
    });
    const terms: Partial<Record<LossTerm, number>> = {};
    for (const t of LOSS_TERMS) if (out[`term_${t}`]) terms[t] = out[`term_${t}`]!.data[0]!;
    const mapsData = out['subject_maps']!.data;
    const subjectMapsOut = Array.from({ length: n }, (_, i) => mapsData.slice(i * rh * rw, (i + 1) * rh * rw));
    return {
      loss: out['loss']!.data[0]!,
      grad: out['grad']?.data,
      terms,
      maxAttention: [...out['max_attention']!.data],
      subjectMaps: subjectMapsOut,
    };
  }

  async beforeGuidedPass(ctx: StepContext): Promise<Tensor | void> {
    if (!this.usesLoss) return;
    const r = await alterLatent(
      this.config,
      ctx.index,
      ctx.totalCalls,
      ctx.latents.data,
      (x, withGrad) => this.evaluate(ctx, x, withGrad),
      this.events,
    );
    this.log(ctx.index, {
      loss: r.final.loss,
      terms: r.final.terms,
      maxAttention: r.final.maxAttention,
      tries: r.tries,
      stepSize: r.stepSize,
    });
    return { data: r.latent, shape: ctx.latents.shape };
  }

  guidedPassEdit(ctx: StepContext): AttentionEdit | null {
    const cfg = this.config;
    if (!this.usesEdit || ctx.index >= cfg.editSteps || !this.regions) return null;
    const regions = this.regions;
    this.log(ctx.index, { edited: true });
    // Each edited token column, with the owned region of the subject it belongs to.
    const columns: { token: number; owner: number }[] = [];
    cfg.subjects.forEach((s, i) => s.tokens.forEach((token) => columns.push({ token, owner: i })));
    cfg.attributes.forEach((a) => a.tokens.forEach((token) => columns.push({ token, owner: a.subject })));
    const gamma = cfg.gamma;
    return (height, width, tokens, batch) => {
      const q = height * width;
      const data = new Float32Array(batch * q * tokens).fill(1);
      const owned = regions.owned.map((o) => resizeMask(o, regions.height, regions.width, height, width));
      const cond = (batch - 1) * q * tokens; // only the conditional half (the last batch entry) is edited
      for (const { token, owner } of columns) {
        if (token >= tokens) continue;
        const o = owned[owner]!;
        for (let p = 0; p < q; p++) data[cond + p * tokens + token] = gamma + (1 - gamma) * o[p]!;
      }
      return { data, shape: [batch, 1, q, tokens] };
    };
  }

  afterGuidedPass(_ctx: StepContext, maps: Tensor | null): void {
    // The guided pass saw the latents after this step's updates: the freshest maps for the next regions.
    if (!maps) return;
    const subjects = subjectMapsHost(
      maps,
      this.config.subjects.map((s) => s.token),
      this.smoothing,
    );
    this.updateRegions(subjects.maps, subjects.height, subjects.width);
  }

  private log(index: number, patch: Partial<CallLog>): void {
    const cur = this.perCall.get(index) ?? {
      loss: null,
      terms: {},
      maxAttention: null,
      tries: 0,
      stepSize: null,
      edited: false,
    };
    this.perCall.set(index, { ...cur, ...patch });
  }

  stepLog(index: number): Record<string, unknown> | undefined {
    const r = this.perCall.get(index);
    if (!r) return undefined;
    return {
      loss: r.loss,
      terms: r.terms,
      max_attention: r.maxAttention,
      refinement_tries: r.tries,
      step_size: r.stepSize,
      edited: r.edited,
    };
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

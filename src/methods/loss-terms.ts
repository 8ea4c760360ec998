/**
 * The loss terms on subject maps, as a table: each term says when a sample has it (pairs of subjects, attributes)
 * and builds its value per sample [k] from the shared quantities of a batched pass. Suppress-to-Impress's own
 * five are here; the rivals' terms live in their own files (terms/) and are listed here once.
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { cleanTerm } from './terms/clean.js';
import { segregateTerm } from './terms/segregate.js';

export const EPS = 1e-6;

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

/** What every term may use: the inputs and quantities shared by the terms of one pass. */
export interface TermContext {
  inp: BatchedLossInputs;
  A: Value;
  k: number;
  n: number;
  h: number;
  w: number;
  /** Each subject's peak [k, n, 1, 1]. */
  peak: Value;
  /** Â = A / (peak + ε). */
  normalized: Value;
  /** Σ over pixels: [k, n, h, w] → [k, n]. */
  mass(x: Value): Value;
  /** Mean over a sample's real slots: [k, n] → [k]. */
  maskedMean(x: Value, m: Value): Value;
  /** Subject pairs s < r, and [k] masks of the pairs each sample has. */
  pairs: readonly (readonly [number, number])[];
  pairMasks: readonly Value[];
  pairCount(): Value;
  /** Σ min(a, b) / Σ (a + b) of two subjects' slots of x: [k]. */
  overlap(x: Value, s: number, r: number): Value;
}

export interface LossTermSpec {
  /** Only for samples with at least two subjects. */
  pairs?: true;
  /** Only for samples with attributes. */
  attributes?: true;
  /** The term per sample [k], or null when the pass has nothing for it (e.g. no pairs). */
  build(ctx: TermContext): Value | null;
}

/** Suppress-to-Impress's terms. */
const S2I_TERMS = {
  // The share of each subject's mass outside its owned region.
  suppress: {
    build: ({ inp, A, mass, maskedMean }) =>
      maskedMean(op.div(mass(op.mul(A, op.sub(1, inp.owned))), op.add(mass(A), EPS)), inp.subjectMask),
  },
  // A&E's: 1 − the weakest subject's peak.
  excite: {
    build: ({ inp, peak, k, n }) =>
      op.reduceMax(op.mul(op.relu(op.sub(1, op.reshape(peak, [k, n]))), inp.subjectMask), [1], false),
  },
  // The coefficient of variation of Â inside the owned region.
  even: {
    build: ({ inp, normalized, mass, maskedMean, k, n }) => {
      const o = inp.owned;
      const oMass = op.add(mass(o), EPS);
      const mu = op.div(mass(op.mul(o, normalized)), oMass); // [k, n]
      const dev = op.sub(normalized, op.reshape(mu, [k, n, 1, 1]));
      const variance = op.div(mass(op.mul(o, op.mul(dev, dev))), oMass);
      return maskedMean(op.div(op.sqrt(op.add(variance, EPS)), op.add(mu, EPS)), inp.subjectMask);
    },
  },
  // Mean overlap of two subjects' normalised maps.
  exclusive: {
    pairs: true,
    build: ({ pairs, pairMasks, pairCount, overlap, normalized }) =>
      pairs.length
        ? op.div(op.addN(pairs.map(([s, r], p) => op.mul(overlap(normalized, s, r), pairMasks[p]!))), pairCount())
        : null,
  },
  // The share of each attribute's mass outside its subject's owned region.
  bind: {
    attributes: true,
    build: ({ inp, mass, maskedMean }) => {
      if (!inp.attributes || !inp.attributeOwned || !inp.attributeMask) return null;
      const attr = inp.attributes;
      const away = op.div(mass(op.mul(attr, op.sub(1, inp.attributeOwned))), op.add(mass(attr), EPS)); // [k, m]
      return maskedMean(away, inp.attributeMask);
    },
  },
} satisfies Record<string, LossTermSpec>;

/** Every term by name; the order is the order of the weighted sum. */
export const TERMS = { ...S2I_TERMS, clean: cleanTerm, segregate: segregateTerm } satisfies Record<
  string,
  LossTermSpec
>;

export type LossTerm = keyof typeof TERMS;
export const LOSS_TERMS = Object.keys(TERMS) as LossTerm[];
export type LossWeights = Record<LossTerm, number>;

/** The terms a sample with `subjects` subjects and `attributes` attributes has under `weights`. */
export function sampleTerms(weights: LossWeights, subjects: number, attributes: number): LossTerm[] {
  return LOSS_TERMS.filter((t) => {
    const spec: LossTermSpec = TERMS[t];
    return weights[t] !== 0 && (!spec.pairs || subjects >= 2) && (!spec.attributes || attributes >= 1);
  });
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
  const peak = op.reduceMax(A, [2, 3], true); // [k,n,1,1]
  const count = (m: Value) => op.maximum(op.reduceSum(m, [1], false), 1); // [k]
  const slot = (x: Value, i: number) => op.reshape(op.slice(x, [i], [i + 1], [1]), [k, h, w]);
  const slotMask = (i: number) => op.reshape(op.slice(mask, [i], [i + 1], [1]), [k]);
  const pairs: [number, number][] = [];
  for (let s = 0; s < n; s++) for (let r = s + 1; r < n; r++) pairs.push([s, r]);
  const pairMasks = pairs.map(([s, r]) => op.mul(slotMask(s), slotMask(r))); // [k] each
  const ctx: TermContext = {
    inp,
    A,
    k,
    n,
    h,
    w,
    peak,
    normalized: op.div(A, op.add(peak, EPS)),
    mass: (x) => op.reduceSum(x, [2, 3], false),
    maskedMean: (x, m) => op.div(op.reduceSum(op.mul(x, m), [1], false), count(m)),
    pairs,
    pairMasks,
    pairCount: () => op.maximum(op.addN(pairMasks), 1),
    overlap: (x, s, r) => {
      const a = slot(x, s);
      const b = slot(x, r);
      return op.div(
        op.reduceSum(op.minimum(a, b), [1, 2], false),
        op.add(op.reduceSum(op.add(a, b), [1, 2], false), EPS),
      );
    },
  };
  const terms: Partial<Record<LossTerm, Value>> = {};
  for (const t of LOSS_TERMS) {
    if (!weights[t]) continue;
    const v = (TERMS[t] as LossTermSpec).build(ctx);
    if (v) terms[t] = v;
  }
  const used = LOSS_TERMS.filter((t) => terms[t] && weights[t]);
  if (used.length === 0) throw new Error('suppress: every loss term is switched off');
  const total = op.div(op.addN(used.map((t) => op.mul(terms[t]!, weights[t]))), inp.weightSum);
  return { total, terms };
}

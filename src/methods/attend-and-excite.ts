/**
 * Attend-and-Excite (Chefer et al. 2023), exactly as the official code and diffusers'
 * StableDiffusionAttendAndExcitePipeline: before each guided step, a batch-1 conditional UNet pass with
 * gradients; the 16x16 cross-attention maps averaged over layers (up, down, mid) and heads; tokens 1..75
 * re-softmaxed after x100; each subject's map Gaussian-smoothed; loss = max over subjects of max(0, 1 - max of
 * the map); latent -= step_size · ∂loss/∂latent with step_size = scale_factor · sqrt(linspace(1, 0.5)[i]);
 * iterative refinement at the threshold steps (at most 20 tries). Several samples (each its own prompt and
 * subjects) are evaluated in one batched pass; each keeps its own loss, gradient, step and refinement.
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { chooseAttentionResolution } from '../attention/resolution.js';
import type { Tensor } from '../tensor.js';
import { padTo, passBatchSize, settingsKey, tokenSelection } from './batch.js';
import { runLossPass, type LossPassGraph } from './loss-pass.js';
import {
  parseIntegerIn,
  parseNumberIn,
  REFERENCE_STEPS,
  type MethodOverrides,
  type MethodSpec,
  type OverrideSchema,
} from './spec.js';
import { UserError } from '../errors.js';
import { smoothMaps } from './smoothing.js';
import { alterLatents, type Evaluation, type LatentLoopConfig, type LoopEvent } from './latent-loop.js';
import type { GuidanceMethod, GuidedSample, PassCount, StepContext, StepLog, UNetAccess } from './types.js';

/** The loop settings (maxIterToAlter, thresholds, scaleFactor, scaleRange, maxRefinementSteps) are A&E's own. */
export interface AttendExciteConfig extends LatentLoopConfig {
  /** Subject token positions in the prompt (SOT = 0), as diffusers counts them. */
  tokenIndices: readonly number[];
  smoothAttentions: boolean;
  kernelSize: number;
  sigma: number;
  /** Query resolution of the maps (default: latent size / 4, as diffusers' attn_res for SD). */
  attnRes?: readonly [number, number];
}

export const ATTEND_EXCITE_DEFAULTS: Omit<AttendExciteConfig, 'tokenIndices'> = {
  maxIterToAlter: 25,
  thresholds: new Map([
    [0, 0.05],
    [10, 0.5],
    [20, 0.8],
  ]),
  scaleFactor: 20,
  scaleRange: [1.0, 0.5],
  smoothAttentions: true,
  kernelSize: 3,
  sigma: 0.5,
  maxRefinementSteps: 20,
};

/** The maps' resolution when none is configured (a method built without seeing the UNet). */
export function defaultAttnRes(latentHeight: number, latentWidth: number): [number, number] {
  return chooseAttentionResolution(null, latentHeight, latentWidth);
}

/**
 * Per-subject map after A&E's preprocessing: tokens 1..T-2 (dropping SOT and the last position) x100, softmax
 * over tokens, the subject's column, smoothed. maps: [h, w, T] → [n, h, w].
 */
export function subjectMaps(
  maps: Value,
  tokenIndices: readonly number[],
  cfg: Pick<AttendExciteConfig, 'smoothAttentions' | 'kernelSize' | 'sigma'>,
): Value {
  const [h, w, t] = maps.shape as [number, number, number];
  const text = op.softmax(op.mul(op.slice(maps, [1], [t - 1], [2]), 100), -1);
  const columns = tokenIndices.map((i) => {
    if (i < 1 || i > t - 2) throw new Error(`token index ${i} is outside 1..${t - 2}`);
    return op.reshape(op.slice(text, [i - 1], [i], [2]), [1, h, w]);
  });
  const stacked = op.concat(columns, 0);
  return cfg.smoothAttentions ? smoothMaps(stacked, cfg.kernelSize, cfg.sigma) : stacked;
}

/**
 * Per-subject maps of a batch: `maps` [k, h, w, T] aggregated per sample, `select` [k, T-2, n] one-hot subject
 * columns (batch.ts: tokenSelection) → [k, n, h, w]; the same preprocessing as `subjectMaps`, and the same values
 * (a product with a one-hot column is exact). Unused slots give all-zero maps.
 */
export function selectedSubjectMaps(
  maps: Value,
  select: Value,
  cfg: Pick<AttendExciteConfig, 'smoothAttentions' | 'kernelSize' | 'sigma'>,
): Value {
  const [k, h, w, t] = maps.shape as [number, number, number, number];
  const n = select.shape[2]!;
  const text = op.softmax(op.mul(op.slice(maps, [1], [t - 1], [3]), 100), -1);
  const columns = op.matmul(op.reshape(text, [k, h * w, t - 2]), select); // [k, hw, n]
  const stacked = op.reshape(op.transpose(columns, [0, 2, 1]), [k * n, h, w]);
  const smoothed = cfg.smoothAttentions ? smoothMaps(stacked, cfg.kernelSize, cfg.sigma) : stacked;
  return op.reshape(smoothed, [k, n, h, w]);
}

/**
 * loss = the first largest of max(0, 1 - max A_s) over the last axis (Python's max() over the list, as the
 * reference does): [..., n] → [...]. `mask` (same shape, 1 for real subjects, 0 for unused slots) zeroes the
 * unused slots' losses, which then never win over a real subject (they come after it).
 */
export function attendExciteLoss(perSubjectMax: Value, mask?: Value): Value {
  let losses = op.relu(op.sub(1, perSubjectMax));
  if (mask) losses = op.mul(losses, mask);
  // The reference's builtin max() sends the whole gradient to the first maximal subject, not split among ties.
  const n = losses.shape[losses.rank - 1]!;
  const first = op.argMax(losses, -1, true);
  const positions = losses.graph.constant(
    BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
    [n],
    'int64',
    'subject_positions',
  );
  const pick = op.stopGradient(op.cast(op.equal(positions, first), 'float32'));
  return op.reduceSum(op.mul(losses, pick), [-1], false);
}

export interface AttendExciteEvaluation extends Evaluation {
  maxAttention: number[];
}

/** One sample's evaluation request: its subjects, text embedding [1, T, D] and latent [C*h*w]. */
export interface AttendExciteItem {
  tokenIndices: readonly number[];
  cond: Tensor;
  latent: Float32Array;
  cost?: PassCount;
}

/**
 * A&E's loss (and ∂loss/∂latent) for several samples in one batched conditional UNet pass of
 * passBatchSize(items, groupSize) samples. Settings other than the subjects come from `cfg`.
 */
export async function evaluateAttendExcite(
  unet: UNetAccess,
  timestep: number,
  cfg: Omit<AttendExciteConfig, 'tokenIndices'>,
  items: readonly AttendExciteItem[],
  withGrad: boolean,
  groupSize = items.length,
): Promise<AttendExciteEvaluation[]> {
  const [, h, w] = unet.latentShape;
  const [tokens] = unet.contextShape;
  const res = cfg.attnRes ?? defaultAttnRes(h, w);
  const k = passBatchSize(items.length, groupSize);
  const n = Math.max(...items.map((it) => it.tokenIndices.length));
  const smoothing = cfg.smoothAttentions ? `${cfg.kernelSize}/${cfg.sigma}` : 'raw';
  const graph: LossPassGraph = {
    key: `ae:${res.join('x')}:n${n}:${smoothing}`,
    k,
    withGrad,
    res,
    inputs: [
      ['subject_select', [k, tokens - 2, n]],
      ['subject_mask', [k, n]],
    ],
    build: (_g, maps, inp) => {
      const perSubject = op.reduceMax(selectedSubjectMaps(maps.cross, inp['subject_select']!, cfg), [2, 3], false);
      return { loss: attendExciteLoss(perSubject, inp['subject_mask']), outputs: { max_attention: perSubject } };
    },
  };
  const { select, mask } = tokenSelection(
    padTo(items, k).map((it) => it.tokenIndices),
    tokens,
    n,
  );
  const out = await runLossPass(unet, graph, timestep, items, { subject_select: select, subject_mask: mask });
  const maxAttention = out.outputs['max_attention']!.data;
  return items.map((it, b) => ({
    loss: out.loss[b]!,
    maxAttention: [...maxAttention.subarray(b * n, b * n + it.tokenIndices.length)],
    grad: out.grad?.[b],
  }));
}

export class AttendAndExcite implements GuidanceMethod {
  readonly name = 'attend-and-excite';
  readonly batchKey: string;
  readonly usesGradients = true;
  readonly events: LoopEvent[] = [];
  /** Every max-attention evaluation in the reference's call order (what A&E logs). */
  readonly maxAttentionLog: number[][] = [];
  private readonly perCall = new Map<number, StepLog>();

  constructor(readonly config: AttendExciteConfig) {
    if (config.tokenIndices.length === 0) throw new Error('attend-and-excite needs at least one subject token');
    const { tokenIndices: _subjects, ...shared } = config;
    this.batchKey = `attend-and-excite:${settingsKey(shared)}`;
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    const members = samples.map(({ method }) => {
      if (!(method instanceof AttendAndExcite) || method.batchKey !== this.batchKey)
        throw new Error(`attend-and-excite: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
    const results = await alterLatents<AttendExciteEvaluation>(
      this.config,
      ctx.index,
      ctx.totalCalls,
      samples.map((s) => s.latents.data),
      (requests) =>
        evaluateAttendExcite(
          ctx.unet,
          ctx.timestep,
          this.config,
          requests.map((r) => ({
            tokenIndices: members[r.sample]!.config.tokenIndices,
            cond: samples[r.sample]!.cond,
            latent: r.latent,
            cost: samples[r.sample]!.cost,
          })),
          requests[0]!.withGrad,
          samples.length,
        ),
      members.map((m) => m.events),
      (s, e) => members[s]!.maxAttentionLog.push(e.maxAttention),
    );
    results.forEach((r, s) =>
      members[s]!.perCall.set(ctx.index, {
        loss: r.final.loss,
        maxAttention: r.final.maxAttention,
        refinementTries: r.tries,
        stepSize: r.stepSize,
      }),
    );
    return results.map((r) => r.latent);
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

// ------------------------------------------------------------------------------------------------- the spec

/** A&E's 50-step defaults (max_iter_to_alter 25, thresholds {0, 10, 20}) scaled to `steps`, as the oracle did. */
export function scaledLoopDefaults(steps: number): Pick<LatentLoopConfig, 'maxIterToAlter' | 'thresholds'> {
  const k = steps / REFERENCE_STEPS;
  const thresholds = new Map<number, number>();
  for (const [i, v] of ATTEND_EXCITE_DEFAULTS.thresholds) thresholds.set(Math.round(i * k), v);
  return { maxIterToAlter: Math.round(ATTEND_EXCITE_DEFAULTS.maxIterToAlter * k), thresholds };
}

/** `0:0.05,10:0.5,20:0.8` → Map(call index → threshold). */
export function parseThresholds(value: string): Map<number, number> {
  const out = new Map<number, number>();
  const bad = (why: string) =>
    new UserError(`--thresholds must look like 0:0.05,10:0.5,20:0.8 (step:threshold, threshold from 0 to 1); ${why}`);
  if (value.trim() === '') throw bad('got an empty value');
  for (const item of value.split(',')) {
    const m = /^\s*(\d+)\s*:\s*([^\s:]+)\s*$/.exec(item);
    if (!m) throw bad(`got "${item.trim()}"`);
    const [step, thr] = [Number(m[1]), Number(m[2])];
    if (!Number.isSafeInteger(step)) throw bad(`got step "${m[1]}"`);
    if (!Number.isFinite(thr) || thr < 0 || thr > 1) throw bad(`got threshold "${m[2]}"`);
    if (out.has(step)) throw bad(`step ${step} is given twice`);
    out.set(step, thr);
  }
  return out;
}

const fmtThresholds = (m: ReadonlyMap<number, number>) => [...m].map(([k, v]) => `${k}:${v}`).join(',');
const LOOP_SCOPE = { scope: 'gradient methods', appliesTo: 'a guidance {method} (attend-and-excite, suppress, ...)' };

/** The overrides of A&E's latent-update loop (every method that uses it takes them). */
export const LOOP_OVERRIDES: OverrideSchema = {
  maxIterToAlter: {
    ...LOOP_SCOPE,
    flag: '--max-iter-to-alter',
    arg: '<n>',
    help: `update the latents at steps below n (default ${ATTEND_EXCITE_DEFAULTS.maxIterToAlter} for ${REFERENCE_STEPS} steps, scaled)`,
    parse: parseIntegerIn('--max-iter-to-alter', 0, 100000),
    loop: true,
  },
  thresholds: {
    ...LOOP_SCOPE,
    flag: '--thresholds',
    arg: '<list>',
    help: `step:threshold refinement points (default ${fmtThresholds(ATTEND_EXCITE_DEFAULTS.thresholds)} for ${REFERENCE_STEPS} steps, scaled)`,
    parse: parseThresholds,
    loop: true,
  },
  scaleFactor: {
    ...LOOP_SCOPE,
    flag: '--scale-factor',
    arg: '<x>',
    help: `step size of the latent update (default ${ATTEND_EXCITE_DEFAULTS.scaleFactor})`,
    parse: parseNumberIn('--scale-factor', 0),
    loop: true,
  },
};

/** A&E's loop settings for `steps`: the overrides, else the defaults scaled; which were scaled. */
export function resolveLoop(steps: number, overrides: MethodOverrides): { loop: LatentLoopConfig; scaled: string[] } {
  const loop: LatentLoopConfig = { ...ATTEND_EXCITE_DEFAULTS, ...scaledLoopDefaults(steps), ...overrides.loop };
  const scaled: string[] = [];
  if (steps !== REFERENCE_STEPS) {
    if (overrides.loop?.maxIterToAlter === undefined) scaled.push('maxIterToAlter');
    if (overrides.loop?.thresholds === undefined) scaled.push('thresholds');
  }
  return { loop, scaled };
}

export const attendAndExciteSpec: MethodSpec = {
  name: 'attend-and-excite',
  aliases: ['ae', 'attend-excite'],
  group: 'main',
  description: 'Attend-and-Excite (Chefer et al. 2023), exactly as diffusers / the official code',
  capabilities: { needsSubjects: true, findsSubjects: false, takesAttributes: false, choosesStarts: false },
  overrides: LOOP_OVERRIDES,
  resolve: (steps, overrides) => ({ ...resolveLoop(steps, overrides), own: null, usesGradients: true }),
  build: (targets, settings) =>
    new AttendAndExcite({
      ...ATTEND_EXCITE_DEFAULTS,
      ...resolveLoop(settings.steps, settings).loop,
      tokenIndices: targets.subjects.map((s) => s.token),
      attnRes: settings.attnRes,
    }),
};

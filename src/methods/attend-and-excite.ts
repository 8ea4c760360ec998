/**
 * Attend-and-Excite (Chefer et al. 2023), exactly as the official code and diffusers'
 * StableDiffusionAttendAndExcitePipeline: before each guided step, a batch-1 conditional UNet pass with
 * gradients; the 16x16 cross-attention maps averaged over layers (up, down, mid) and heads; tokens 1..75
 * re-softmaxed after x100; each subject's map Gaussian-smoothed; loss = max over subjects of max(0, 1 - max of
 * the map); latent -= step_size · ∂loss/∂latent with step_size = scale_factor · sqrt(linspace(1, 0.5)[i]);
 * iterative refinement at the threshold steps (at most 20 tries). Several samples (each its own prompt and
 * subjects) are evaluated in one batched pass; each keeps its own loss, gradient, step and refinement.
 */
import { gradients } from '../graph/autodiff.js';
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { chooseAttentionResolution } from '../attention/resolution.js';
import { AttentionStore } from '../attention/store.js';
import type { Tensor } from '../tensor.js';
import { padTo, passBatchSize, row, settingsKey, stack, tokenSelection } from './batch.js';
import { smoothMaps } from './smoothing.js';
import { alterLatents, type Evaluation, type LatentLoopConfig, type LoopEvent } from './latent-loop.js';
import type { GuidanceMethod, GuidedSample, StepContext, StepLog, UNetAccess } from './types.js';

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
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const res = cfg.attnRes ?? defaultAttnRes(h, w);
  const k = passBatchSize(items.length, groupSize);
  const n = Math.max(...items.map((it) => it.tokenIndices.length));
  const smoothing = cfg.smoothAttentions ? `${cfg.kernelSize}/${cfg.sigma}` : 'raw';
  const key = `ae:${withGrad ? 'grad' : 'eval'}:${res.join('x')}:b${k}:n${n}:${smoothing}`;
  const session = await unet.compile(key, (g, build) => {
    const sample = g.input('sample', [k, c, h, w]);
    const ts = g.input('timestep', [k]);
    const context = g.input('context', [k, tokens, dim]);
    const select = g.input('subject_select', [k, tokens - 2, n]);
    const mask = g.input('subject_mask', [k, n]);
    const store = new AttentionStore({ kind: 'cross', resolution: res });
    build({ sample, timestep: ts, encoderHiddenStates: context }, { attentionHook: store.hook });
    const maps = store.aggregate({ resolution: res });
    const perSubject = op.reduceMax(selectedSubjectMaps(maps, select, cfg), [2, 3], false);
    const loss = attendExciteLoss(perSubject, mask);
    g.output('loss', loss);
    g.output('max_attention', perSubject);
    // Samples do not interact, so the gradient of the sum is each sample's own gradient.
    if (withGrad) g.output('grad', gradients(op.reduceSum(loss, [0], false), [sample])[0]!);
  });
  const batch = padTo(items, k);
  const { select, mask } = tokenSelection(
    batch.map((it) => it.tokenIndices),
    tokens,
    n,
  );
  const out = await session.run({
    sample: stack(
      batch.map((it) => it.latent),
      [c, h, w],
    ),
    timestep: { data: new Float32Array(k).fill(timestep), shape: [k] },
    context: stack(
      batch.map((it) => it.cond.data),
      [tokens, dim],
    ),
    subject_select: select,
    subject_mask: mask,
  });
  const maxAttention = out['max_attention']!.data;
  return items.map((it, b) => ({
    loss: out['loss']!.data[b]!,
    maxAttention: [...maxAttention.subarray(b * n, b * n + it.tokenIndices.length)],
    grad: out['grad'] ? row(out['grad'].data, b, k) : undefined,
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

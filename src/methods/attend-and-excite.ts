/**
 * Attend-and-Excite (Chefer et al. 2023), exactly as the official code and diffusers'
 * StableDiffusionAttendAndExcitePipeline: before each guided step, a batch-1 conditional UNet pass with
 * gradients; the 16x16 cross-attention maps averaged over layers (up, down, mid) and heads; tokens 1..75
 * re-softmaxed after x100; each subject's map Gaussian-smoothed; loss = max over subjects of max(0, 1 - max of
 * the map); latent -= step_size · ∂loss/∂latent with step_size = scale_factor · sqrt(linspace(1, 0.5)[i]);
 * iterative refinement at the threshold steps (at most 20 tries).
 */
import { gradients } from '../graph/autodiff.js';
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { chooseAttentionResolution } from '../attention/resolution.js';
import { AttentionStore } from '../attention/store.js';
import type { Tensor } from '../tensor.js';
import { smoothMaps } from './smoothing.js';
import { alterLatent, type Evaluation, type LatentLoopConfig, type LoopEvent } from './latent-loop.js';
import type { GuidanceMethod, StepContext } from './types.js';

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

/** loss = the first largest of max(0, 1 - max A_s) (Python's max() over the list, as the reference does). */
export function attendExciteLoss(perSubjectMax: Value): Value {
  const losses = op.relu(op.sub(1, perSubjectMax));
  // The reference's builtin max() sends the whole gradient to the first maximal subject, not split among ties.
  const n = losses.shape[0]!;
  const first = op.argMax(losses, 0, false);
  const positions = losses.graph.constant(
    BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
    [n],
    'int64',
    'subject_positions',
  );
  const pick = op.stopGradient(op.cast(op.equal(positions, first), 'float32'));
  return op.reduceSum(op.mul(losses, pick), [0], false);
}

export interface AttendExciteEvaluation extends Evaluation {
  maxAttention: number[];
}

export class AttendAndExcite implements GuidanceMethod {
  readonly name = 'attend-and-excite';
  readonly events: LoopEvent[] = [];
  /** Every max-attention evaluation in the reference's call order (what A&E logs). */
  readonly maxAttentionLog: number[][] = [];
  private readonly perCall = new Map<
    number,
    { maxAttention: number[]; loss: number; tries: number; stepSize: number | null }
  >();

  constructor(readonly config: AttendExciteConfig) {
    if (config.tokenIndices.length === 0) throw new Error('attend-and-excite needs at least one subject token');
  }

  private key(withGrad: boolean, res: readonly [number, number]): string {
    const c = this.config;
    return `ae:${withGrad ? 'grad' : 'eval'}:${res.join('x')}:${c.tokenIndices.join(',')}:${c.smoothAttentions ? `${c.kernelSize}/${c.sigma}` : 'raw'}`;
  }

  async evaluate(ctx: StepContext, latent: Float32Array, withGrad: boolean): Promise<AttendExciteEvaluation> {
    const [c, h, w] = ctx.unet.latentShape;
    const [tokens, dim] = ctx.unet.contextShape;
    const res = this.config.attnRes ?? defaultAttnRes(h, w);
    const session = await ctx.unet.compile(this.key(withGrad, res), (g, unet) => {
      const sample = g.input('sample', [1, c, h, w]);
      const timestep = g.input('timestep', [1]);
      const context = g.input('context', [1, tokens, dim]);
      const store = new AttentionStore({ kind: 'cross', resolution: res });
      unet({ sample, timestep, encoderHiddenStates: context }, { attentionHook: store.hook });
      const maps = store.aggregate({ resolution: res, batchIndex: 0 });
      const perSubject = op.reduceMax(subjectMaps(maps, this.config.tokenIndices, this.config), [1, 2], false);
      const loss = attendExciteLoss(perSubject);
      g.output('loss', loss);
      g.output('max_attention', perSubject);
      if (withGrad) g.output('grad', gradients(loss, [sample])[0]!);
    });
    const out = await session.run({
      sample: { data: latent, shape: [1, c, h, w] },
      timestep: { data: Float32Array.of(ctx.timestep), shape: [1] },
      context: ctx.cond,
    });
    return { loss: out['loss']!.data[0]!, maxAttention: [...out['max_attention']!.data], grad: out['grad']?.data };
  }

  async beforeGuidedPass(ctx: StepContext): Promise<Tensor> {
    const r = await alterLatent(
      this.config,
      ctx.index,
      ctx.totalCalls,
      ctx.latents.data,
      (x, withGrad) => this.evaluate(ctx, x, withGrad),
      this.events,
      (e) => this.maxAttentionLog.push(e.maxAttention),
    );
    this.perCall.set(ctx.index, {
      maxAttention: r.final.maxAttention,
      loss: r.final.loss,
      tries: r.tries,
      stepSize: r.stepSize,
    });
    return { data: r.latent, shape: ctx.latents.shape };
  }

  stepLog(index: number): Record<string, unknown> | undefined {
    const r = this.perCall.get(index);
    if (!r) return undefined;
    return { max_attention: r.maxAttention, loss: r.loss, refinement_tries: r.tries, step_size: r.stepSize };
  }
}

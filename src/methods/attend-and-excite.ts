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
import { AttentionStore } from '../attention/store.js';
import type { Tensor } from '../tensor.js';
import { smoothMaps } from './smoothing.js';
import type { GuidanceMethod, StepContext } from './types.js';

export interface AttendExciteConfig {
  /** Subject token positions in the 77-token prompt (SOT = 0), as diffusers counts them. */
  tokenIndices: readonly number[];
  /** Gradient updates happen at calls i < maxIterToAlter. */
  maxIterToAlter: number;
  /** call index → threshold on the max attention; refinement runs while loss > 1 - threshold. */
  thresholds: ReadonlyMap<number, number>;
  scaleFactor: number;
  /** step_size = scaleFactor * sqrt(linspace(scaleRange[0], scaleRange[1], calls)[i]). */
  scaleRange: readonly [number, number];
  smoothAttentions: boolean;
  kernelSize: number;
  sigma: number;
  maxRefinementSteps: number;
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

export function defaultAttnRes(latentHeight: number, latentWidth: number): [number, number] {
  return [Math.ceil(latentHeight / 4), Math.ceil(latentWidth / 4)];
}

/**
 * Per-subject map after A&E's preprocessing: tokens 1..T-2 (dropping SOT and the last position) x100, softmax
 * over tokens, the subject's column, smoothed. maps: [h, w, T] → [n, h, w].
 */
export function subjectMaps(maps: Value, tokenIndices: readonly number[], cfg: Pick<AttendExciteConfig, 'smoothAttentions' | 'kernelSize' | 'sigma'>): Value {
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
  const positions = losses.graph.constant(BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [n], 'int64', 'subject_positions');
  const pick = op.stopGradient(op.cast(op.equal(positions, first), 'float32'));
  return op.reduceSum(op.mul(losses, pick), [0], false);
}

export interface AttendExciteEvaluation {
  loss: number;
  maxAttention: number[];
  grad?: Float32Array;
}

export interface AttendExciteEvent {
  kind: 'max_attention' | 'update_latent' | 'refinement_start' | 'refinement_end';
  index: number;
  values?: number[];
  loss?: number;
  stepSize?: number;
  tries?: number;
}

function subtractScaled(x: Float32Array, stepSize: number, grad: Float32Array): Float32Array {
  // torch: latents - step_size * grad, both in float32 (the float64 step size is rounded to float32 first).
  const s = Math.fround(stepSize);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! - Math.fround(s * grad[i]!);
  return out;
}

export class AttendAndExcite implements GuidanceMethod {
  readonly name = 'attend-and-excite';
  readonly events: AttendExciteEvent[] = [];
  private readonly perCall = new Map<number, { maxAttention: number[]; loss: number; tries: number; stepSize?: number }>();

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
    const maxAttention = [...out['max_attention']!.data];
    this.events.push({ kind: 'max_attention', index: ctx.index, values: maxAttention });
    return { loss: out['loss']!.data[0]!, maxAttention, grad: out['grad']?.data };
  }

  stepSize(index: number, totalCalls: number): number {
    const [a, b] = this.config.scaleRange;
    const frac = totalCalls === 1 ? a : a + ((b - a) * index) / (totalCalls - 1);
    return this.config.scaleFactor * Math.sqrt(frac);
  }

  async beforeGuidedPass(ctx: StepContext): Promise<Tensor> {
    const cfg = this.config;
    const i = ctx.index;
    const stepSize = this.stepSize(i, ctx.totalCalls);
    const alter = i < cfg.maxIterToAlter;
    let latent = ctx.latents.data;
    let ev = await this.evaluate(ctx, latent, alter);
    let tries = 0;
    const threshold = cfg.thresholds.get(i);
    if (threshold !== undefined && ev.loss > Math.fround(1 - threshold)) {
      this.events.push({ kind: 'refinement_start', index: i });
      const target = Math.max(0, 1 - threshold);
      let loss = ev.loss;
      while (loss > target) {
        tries++;
        // The reference re-runs the pass at the unchanged latent on the first try; when we already hold that
        // pass's gradient the result is identical, so we reuse it and log the evaluation as the reference does.
        let tryEval: AttendExciteEvaluation;
        if (tries === 1 && ev.grad) {
          tryEval = ev;
          this.events.push({ kind: 'max_attention', index: i, values: ev.maxAttention });
        } else {
          tryEval = await this.evaluate(ctx, latent, true);
        }
        loss = tryEval.loss;
        if (loss !== 0) latent = this.update(i, latent, tryEval, stepSize);
        if (tries >= cfg.maxRefinementSteps) break;
      }
      // One more evaluation at the refined latent: its loss (and gradient) drive the regular update below.
      ev = await this.evaluate(ctx, latent, alter);
      this.events.push({ kind: 'refinement_end', index: i, loss: ev.loss, tries });
    }
    if (alter && ev.loss !== 0) latent = this.update(i, latent, ev, stepSize);
    this.perCall.set(i, { maxAttention: ev.maxAttention, loss: ev.loss, tries, stepSize: alter ? stepSize : undefined });
    return { data: latent, shape: ctx.latents.shape };
  }

  private update(index: number, latent: Float32Array, ev: AttendExciteEvaluation, stepSize: number): Float32Array {
    if (!ev.grad) throw new Error('attend-and-excite: update without a gradient');
    this.events.push({ kind: 'update_latent', index, loss: ev.loss, stepSize });
    return subtractScaled(latent, stepSize, ev.grad);
  }

  stepLog(index: number): Record<string, unknown> | undefined {
    const r = this.perCall.get(index);
    if (!r) return undefined;
    return { max_attention: r.maxAttention, loss: r.loss, refinement_tries: r.tries, step_size: r.stepSize ?? null };
  }
}

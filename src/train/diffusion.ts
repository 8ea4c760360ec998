/**
 * The training step of a text-to-image diffusion model (CLIPTextModel + UNet2DConditionModel) on our own
 * engine: one graph computes the text embeddings, the UNet prediction, the per-sample-weighted MSE to the
 * target (ε or v) and the gradient of that loss with respect to every weight. Weights are graph inputs, so
 * the optimiser (in TypeScript) updates them between steps without rebuilding anything.
 */
import { gradients } from '../graph/autodiff.js';
import { Graph, type Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { compile, type CompiledGraph } from '../graph/runtime.js';
import { clipTextModel, type ClipTextConfig } from '../models/clip.js';
import { graphParams, MemoryWeights, type ParamFn } from '../models/params.js';
import { unet2dCondition, type UNetConfig } from '../models/unet.js';
import type { Tensor } from '../tensor.js';

export interface TextToImageConfig {
  text: ClipTextConfig;
  unet: UNetConfig;
  /** Tokens per prompt (the tokenizer's model_max_length). */
  tokens: number;
}

export const TEXT_PREFIX = 'text_encoder.';
export const UNET_PREFIX = 'unet.';

function buildModel(
  g: Graph,
  cfg: TextToImageConfig,
  textParams: ParamFn,
  unetParams: ParamFn,
  ids: Value,
  sample: Value,
  timestep: Value,
): Value {
  const context = g.scope('text_encoder', () => clipTextModel(cfg.text, textParams, ids).lastHiddenState);
  return g.scope(
    'unet',
    () => unet2dCondition(cfg.unet, unetParams, { sample, timestep, encoderHiddenStates: context }).noisePred,
  );
}

/** Every weight the model needs, by training key (text_encoder.* / unet.*), with its shape. */
export function parameterShapes(cfg: TextToImageConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const g = new Graph('input');
  const record =
    (prefix: string): ParamFn =>
    (name, shape) => {
      shapes.set(prefix + name, [...shape]);
      return g.getParam(prefix + name) ?? g.param(prefix + name, { shape, read: () => new Float32Array(0) });
    };
  const s = cfg.unet.sampleSize;
  buildModel(
    g,
    cfg,
    record(TEXT_PREFIX),
    record(UNET_PREFIX),
    g.input('ids', [1, cfg.tokens], 'int64'),
    g.input('x', [1, cfg.unet.inChannels, s, s]),
    g.input('t', [1]),
  );
  return shapes;
}

export interface TrainingBatch {
  /** int64 token ids [B, tokens]. */
  ids: BigInt64Array;
  /** Noisy samples x_t [B, C, H, W]. */
  noisy: Float32Array;
  timesteps: Float32Array;
  /** ε or v, [B, C, H, W]. */
  target: Float32Array;
  /** Per-sample loss weights [B] (e.g. min-SNR); the loss is Σ_b w_b·mean((pred − target)²) / B. */
  weights: Float32Array;
}

export class TrainingStep {
  private constructor(
    private readonly session: CompiledGraph,
    readonly batch: number,
    readonly cfg: TextToImageConfig,
    private readonly names: string[],
  ) {}

  static async create(
    cfg: TextToImageConfig,
    params: ReadonlyMap<string, Float32Array>,
    batch: number,
  ): Promise<TrainingStep> {
    const g = new Graph('input');
    const weights = new MemoryWeights();
    const shapes = parameterShapes(cfg);
    for (const [name, shape] of shapes) {
      const data = params.get(name);
      if (!data) throw new Error(`training: missing parameter '${name}'`);
      weights.set(name, data, shape);
    }
    const s = cfg.unet.sampleSize;
    const c = cfg.unet.inChannels;
    const ids = g.input('ids', [batch, cfg.tokens], 'int64');
    const noisy = g.input('noisy', [batch, c, s, s]);
    const timesteps = g.input('timesteps', [batch]);
    const target = g.input('target', [batch, c, s, s]);
    const w = g.input('weights', [batch]);
    const pred = buildModel(
      g,
      cfg,
      graphParams(g, weights, TEXT_PREFIX),
      graphParams(g, weights, UNET_PREFIX),
      ids,
      noisy,
      timesteps,
    );
    const diff = op.sub(pred, target);
    const perSample = op.reduceMean(op.mul(diff, diff), [1, 2, 3], false);
    const loss = op.div(op.reduceSum(op.mul(perSample, w), [0], false), batch);
    g.output('loss', loss);
    const paramValues = g.params.map((p) => p.value);
    const grads = gradients(loss, paramValues);
    const names = paramValues.map((v) => v.name);
    grads.forEach((gv, i) => g.output(`grad:${names[i]}`, gv));
    const session = await compile(g);
    return new TrainingStep(session, batch, cfg, names);
  }

  get compileTimings() {
    return this.session.timings;
  }

  /** Run forward + backward with the given weights; returns the loss and a gradient per weight. */
  async run(
    params: ReadonlyMap<string, Float32Array>,
    b: TrainingBatch,
  ): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
    for (const name of this.names) this.session.setParam(name, params.get(name)!);
    const s = this.cfg.unet.sampleSize;
    const c = this.cfg.unet.inChannels;
    const B = this.batch;
    const feeds: Record<string, Tensor | { data: BigInt64Array; shape: number[] }> = {
      ids: { data: b.ids, shape: [B, this.cfg.tokens] },
      noisy: { data: b.noisy, shape: [B, c, s, s] },
      timesteps: { data: b.timesteps, shape: [B] },
      target: { data: b.target, shape: [B, c, s, s] },
      weights: { data: b.weights, shape: [B] },
    };
    const out = await this.session.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const name of this.names) grads.set(name, out[`grad:${name}`]!.data);
    return { loss: out['loss']!.data[0]!, grads };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

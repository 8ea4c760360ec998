/**
 * The training step of an AutoencoderKL on our own engine: encode, sample the latent with the
 * reparameterisation trick, decode, and the loss of the latent-diffusion paper's first stage without its
 * perceptual and adversarial terms (a flat-colour world does not need them): pixel MSE plus a small KL
 * term, as SD's autoencoder weighs it (1e-6 on summed KL against summed reconstruction error, here both
 * divided by the number of pixel values). One graph gives the loss and the gradient of every weight.
 */
import { gradients } from '../graph/autodiff.js';
import { Graph } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { compile, type CompiledGraph } from '../graph/runtime.js';
import { graphParams, MemoryWeights, type ParamFn } from '../models/params.js';
import { vaeDecode, vaeEncode, type VaeConfig } from '../models/vae.js';

export const VAE_PREFIX = 'vae.';

/** The factor by which the VAE shrinks each side: 2^(blocks − 1). */
export const vaeFactor = (cfg: VaeConfig) => 2 ** (cfg.blockOutChannels.length - 1);

/** Every VAE weight (encoder, decoder, quant convs) by training key (vae.*), with its shape. */
export function vaeParameterShapes(cfg: VaeConfig, imageSize: number): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const g = new Graph('input');
  const record: ParamFn = (name, shape) => {
    shapes.set(VAE_PREFIX + name, [...shape]);
    return g.getParam(VAE_PREFIX + name) ?? g.param(VAE_PREFIX + name, { shape, read: () => new Float32Array(0) });
  };
  const { mean } = vaeEncode(cfg, record, g.input('x', [1, cfg.inChannels, imageSize, imageSize]));
  vaeDecode(cfg, record, mean);
  return shapes;
}

export interface VaeBatch {
  /** Images [B, C, H, W] in [-1, 1]. */
  images: Float32Array;
  /** Standard normal draws for the latent sample [B, latent_channels, H/f, W/f]. */
  noise: Float32Array;
}

function memoryWeights(shapes: ReadonlyMap<string, number[]>, params: ReadonlyMap<string, Float32Array>) {
  const weights = new MemoryWeights();
  for (const [name, shape] of shapes) {
    const data = params.get(name);
    if (!data) throw new Error(`training: missing parameter '${name}'`);
    weights.set(name, data, shape);
  }
  return weights;
}

export class VaeTrainingStep {
  private constructor(
    private readonly session: CompiledGraph,
    readonly batch: number,
    readonly cfg: VaeConfig,
    readonly imageSize: number,
    private readonly names: string[],
  ) {}

  static async create(
    cfg: VaeConfig,
    params: ReadonlyMap<string, Float32Array>,
    batch: number,
    imageSize: number,
    klWeight: number,
  ): Promise<VaeTrainingStep> {
    const g = new Graph('input');
    const weights = memoryWeights(vaeParameterShapes(cfg, imageSize), params);
    const p = graphParams(g, weights, VAE_PREFIX);
    const s = imageSize;
    const l = s / vaeFactor(cfg);
    const x = g.input('images', [batch, cfg.inChannels, s, s]);
    const eps = g.input('noise', [batch, cfg.latentChannels, l, l]);
    const { mean, logvar } = g.scope('vae', () => vaeEncode(cfg, p, x));
    const z = op.add(mean, op.mul(op.exp(op.mul(logvar, 0.5)), eps));
    const recon = g.scope('vae', () => vaeDecode(cfg, p, z));
    const diff = op.sub(recon, x);
    const mse = op.reduceMean(op.mul(diff, diff), [0, 1, 2, 3], false);
    // KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ (μ² + σ² − 1 − log σ²), per image, over the pixel values of an image.
    const kl = op.mul(
      op.reduceSum(op.sub(op.add(op.mul(mean, mean), op.exp(logvar)), op.add(logvar, 1)), [0, 1, 2, 3], false),
      0.5 / (batch * cfg.inChannels * s * s),
    );
    const loss = op.add(mse, op.mul(kl, klWeight));
    g.output('loss', loss);
    g.output('mse', mse);
    g.output('kl', kl);
    const paramValues = g.params.map((v) => v.value);
    const grads = gradients(loss, paramValues);
    const names = paramValues.map((v) => v.name);
    grads.forEach((gv, i) => g.output(`grad:${names[i]}`, gv));
    return new VaeTrainingStep(await compile(g), batch, cfg, imageSize, names);
  }

  async run(
    params: ReadonlyMap<string, Float32Array>,
    b: VaeBatch,
  ): Promise<{ loss: number; mse: number; kl: number; grads: Map<string, Float32Array> }> {
    for (const name of this.names) this.session.setParam(name, params.get(name)!);
    const s = this.imageSize;
    const l = s / vaeFactor(this.cfg);
    const out = await this.session.run({
      images: { data: b.images, shape: [this.batch, this.cfg.inChannels, s, s] },
      noise: { data: b.noise, shape: [this.batch, this.cfg.latentChannels, l, l] },
    });
    const grads = new Map<string, Float32Array>();
    for (const name of this.names) grads.set(name, out[`grad:${name}`]!.data);
    return { loss: out['loss']!.data[0]!, mse: out['mse']!.data[0]!, kl: out['kl']!.data[0]!, grads };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The VAE's encoder alone (latent mean and log-variance), for measuring the scaling factor and for making the
 * latents a diffusion model trains on. `keyPrefix` is where the weights live in `weights`.
 */
export class VaeEncoder {
  private constructor(
    private readonly session: CompiledGraph,
    readonly batch: number,
    readonly cfg: VaeConfig,
    readonly imageSize: number,
  ) {}

  static async create(
    cfg: VaeConfig,
    params: ReadonlyMap<string, Float32Array>,
    batch: number,
    imageSize: number,
    options: { decode?: boolean } = {},
  ): Promise<VaeEncoder> {
    const g = new Graph('input');
    const weights = new MemoryWeights();
    const encoderShapes = new Map(
      [...vaeParameterShapes(cfg, imageSize)].filter(([k]) => options.decode || /^vae\.(encoder|quant_conv)\./.test(k)),
    );
    for (const [name, shape] of encoderShapes) {
      const data = params.get(name);
      if (!data) throw new Error(`VAE encoder: missing parameter '${name}'`);
      weights.set(name, data, shape);
    }
    const x = g.input('images', [batch, cfg.inChannels, imageSize, imageSize]);
    const { mean, logvar } = g.scope('vae', () => vaeEncode(cfg, graphParams(g, weights, VAE_PREFIX), x));
    g.output('mean', mean);
    g.output('logvar', logvar);
    if (options.decode)
      g.output(
        'recon',
        g.scope('vae', () => vaeDecode(cfg, graphParams(g, weights, VAE_PREFIX), mean)),
      );
    return new VaeEncoder(await compile(g), batch, cfg, imageSize);
  }

  async encode(images: Float32Array): Promise<{ mean: Float32Array; logvar: Float32Array }> {
    const s = this.imageSize;
    const out = await this.session.run({ images: { data: images, shape: [this.batch, this.cfg.inChannels, s, s] } });
    return { mean: out['mean']!.data, logvar: out['logvar']!.data };
  }

  /** Encode to the latent mean and decode it (built with `decode: true`). */
  async roundTrip(images: Float32Array): Promise<Float32Array> {
    const s = this.imageSize;
    const out = await this.session.run({ images: { data: images, shape: [this.batch, this.cfg.inChannels, s, s] } });
    const recon = out['recon'];
    if (!recon) throw new Error('VaeEncoder.roundTrip: built without decode');
    return recon.data;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

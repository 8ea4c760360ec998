/**
 * A loaded Stable Diffusion model folder: configs, tokenizer, weights (read lazily), and the compiled graphs
 * built from them on first use and cached for the life of the object — the text encoder once, the UNet once
 * per (variant, latent size), the VAE decoder once per latent size.
 */
import { UserError } from '../errors.js';
import { Graph } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { compile, type CompiledGraph, type CompileOptions } from '../graph/runtime.js';
import { openModelFolder, type ModelFolder, type WeightStore } from '../io/model-folder.js';
import { clipTextModel, type ClipTextConfig } from '../models/clip.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig, vaeScaleFactor } from '../models/config.js';
import { graphParams } from '../models/params.js';
import { unet2dCondition, type UNetConfig, type UNetInputs, type UNetOptions } from '../models/unet.js';
import { vaeDecode, type VaeConfig } from '../models/vae.js';
import type { UNetAccess } from '../methods/types.js';
import type { RawSchedulerConfig } from '../schedulers/index.js';
import type { Tensor } from '../tensor.js';
import { ClipTokenizer } from '../tokenizer/clip.js';

export interface GraphTiming {
  key: string;
  buildMs: number;
  serializeMs: number;
  sessionMs: number;
  nodes: number;
}

export interface LoadOptions {
  /** ONNX Runtime intra-op threads (default: all cores). */
  threads?: number;
}

export class StableDiffusion {
  /** Every graph compiled so far, with how long building and session creation took. */
  readonly graphTimings: GraphTiming[] = [];
  private readonly sessions = new Map<string, Promise<CompiledGraph>>();

  private constructor(
    readonly dir: string,
    readonly folder: ModelFolder,
    readonly tokenizer: ClipTokenizer,
    readonly textConfig: ClipTextConfig,
    readonly unetConfig: UNetConfig,
    /** null for pixel-space models (no `vae` folder): the UNet's sample is the image. */
    readonly vaeConfig: VaeConfig | null,
    readonly schedulerConfig: RawSchedulerConfig,
    private readonly weights: { text: WeightStore; unet: WeightStore; vae: WeightStore | null },
    private readonly compileOptions: CompileOptions,
  ) {}

  static async load(dir: string, options: LoadOptions = {}): Promise<StableDiffusion> {
    const folder = openModelFolder(dir);
    const text = folder.component('text_encoder');
    const unet = folder.component('unet');
    const vae = folder.has('vae') ? folder.component('vae') : null;
    const scheduler = folder.component('scheduler');
    const tokenizer = ClipTokenizer.fromFolder(folder.componentDir('tokenizer'));
    const textConfig = parseClipTextConfig(text.config, text.configPath);
    const unetConfig = parseUNetConfig(unet.config, unet.configPath);
    const vaeConfig = vae ? parseVaeConfig(vae.config, vae.configPath) : null;
    if (unetConfig.crossAttentionDim.some((d) => d !== textConfig.hiddenSize)) {
      throw new UserError(
        `${unet.configPath}: cross_attention_dim ${unetConfig.crossAttentionDim} does not match the text encoder's hidden_size ${textConfig.hiddenSize}`,
      );
    }
    if (vaeConfig && vaeConfig.latentChannels !== unetConfig.inChannels) {
      throw new UserError(
        `${unet.configPath}: in_channels ${unetConfig.inChannels} does not match the VAE's latent_channels ${vaeConfig.latentChannels}`,
      );
    }
    if (tokenizer.modelMaxLength > textConfig.maxPositionEmbeddings) {
      throw new UserError(
        `tokenizer model_max_length ${tokenizer.modelMaxLength} exceeds the text encoder's max_position_embeddings ${textConfig.maxPositionEmbeddings}`,
      );
    }
    const weights = { text: text.weights(), unet: unet.weights(), vae: vae ? vae.weights() : null };
    return new StableDiffusion(
      dir,
      folder,
      tokenizer,
      textConfig,
      unetConfig,
      vaeConfig,
      scheduler.config as RawSchedulerConfig,
      weights,
      { threads: options.threads },
    );
  }

  /** Pixels per latent cell: the VAE's factor, or 1 for pixel-space models. */
  get scaleFactor(): number {
    return this.vaeConfig ? vaeScaleFactor(this.vaeConfig) : 1;
  }

  get latentChannels(): number {
    return this.unetConfig.inChannels;
  }

  /** The image size the model was trained for (UNet sample_size × scale factor). */
  get defaultImageSize(): number {
    return this.unetConfig.sampleSize * this.scaleFactor;
  }

  private session(key: string, build: (g: Graph) => void): Promise<CompiledGraph> {
    let s = this.sessions.get(key);
    if (!s) {
      s = (async () => {
        const t0 = performance.now();
        const g = new Graph('initializer');
        build(g);
        const buildMs = performance.now() - t0;
        const compiled = await compile(g, this.compileOptions);
        this.graphTimings.push({
          key,
          buildMs,
          serializeMs: compiled.timings.serializeMs,
          sessionMs: compiled.timings.sessionMs,
          nodes: compiled.timings.nodes,
        });
        return compiled;
      })();
      this.sessions.set(key, s);
      // A failed build must not poison the cache.
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /** Token ids for a prompt, padded/truncated to the tokenizer's model_max_length. */
  tokenize(prompt: string): number[] {
    return this.tokenizer.tokenize(prompt, { maxLength: this.tokenizer.modelMaxLength }).ids;
  }

  /** CLIP text embedding [1, T, D] of one prompt (batch 1, as diffusers' encode_prompt runs it). */
  async encodePrompt(prompt: string): Promise<Tensor> {
    const ids = this.tokenize(prompt);
    const t = ids.length;
    const session = await this.session(`text:${t}`, (g) => {
      const inputIds = g.input('input_ids', [1, t], 'int64');
      g.output(
        'last_hidden_state',
        clipTextModel(this.textConfig, graphParams(g, this.weights.text), inputIds).lastHiddenState,
      );
    });
    const out = await session.run({ input_ids: { data: BigInt64Array.from(ids, (x) => BigInt(x)), shape: [1, t] } });
    return out['last_hidden_state']!;
  }

  /** UNet graph variants for latents [C, h, w] and text embeddings [T, D]. */
  unetAccess(latentHeight: number, latentWidth: number, tokens: number): UNetAccess {
    const latentShape = [this.unetConfig.inChannels, latentHeight, latentWidth] as const;
    const contextShape = [tokens, this.textConfig.hiddenSize] as const;
    return {
      latentShape,
      contextShape,
      compile: (key, build) =>
        this.session(`unet:${latentHeight}x${latentWidth}:${tokens}:${key}`, (g) => {
          const params = graphParams(g, this.weights.unet);
          build(g, (inputs: UNetInputs, options?: UNetOptions) =>
            g.scope('unet', () => unet2dCondition(this.unetConfig, params, inputs, options)),
          );
        }),
    };
  }

  /** Latents [1, C, h, w] (as the sampler leaves them) → image [1, 3, H, W] in about [-1, 1], before clamping. */
  async decode(latents: Tensor): Promise<Tensor> {
    if (!this.vaeConfig || !this.weights.vae) return latents;
    const [, c, h, w] = latents.shape as [number, number, number, number];
    const cfg = this.vaeConfig;
    const session = await this.session(`vae-decode:${h}x${w}`, (g) => {
      const z = g.input('latents', [1, c, h, w]);
      // diffusers: vae.decode(latents / scaling_factor)
      const scaled = g.scope('vae', () =>
        vaeDecode(cfg, graphParams(g, this.weights.vae!), op.div(z, cfg.scalingFactor)),
      );
      g.output('image', scaled);
    });
    return (await session.run({ latents }))['image']!;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}

/**
 * A loaded Stable Diffusion model — a diffusers folder or a single-file checkpoint: configs, tokenizer, weights
 * (read lazily), and the compiled graphs built from them on first use and cached for the life of the object —
 * the text encoder once, the UNet once per (variant, latent size), the VAE decoder once per latent size.
 *
 * Loading checks that the weights are exactly the ones the configs describe before anything runs: every model is
 * walked once (as a graph that is never compiled), which asks for each weight by key and shape; a weight the
 * walk does not ask for is refused too (`WeightStore.assertAllUsed`), so a config with fewer layers than its
 * weights, or a stray tensor, is an error rather than a different image.
 */
import { UserError } from '../errors.js';
import { Graph } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { compile, type CompiledGraph, type CompileOptions, type RuntimeBackend } from '../graph/runtime.js';
import type { ModelFolder } from '../io/model-folder.js';
import { openModel } from '../io/open-model.js';
import type { SingleFileInfo } from '../io/single-file/open.js';
import type { WeightStore } from '../io/weight-store.js';
import { clipTextModel, clipTextProjection, type ClipTextConfig } from '../models/clip.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig, vaeScaleFactor } from '../models/config.js';
import { graphParams } from '../models/params.js';
import { unet2dCondition, type UNetConfig, type UNetInputs, type UNetOptions } from '../models/unet.js';
import { vaeDecode, vaeEncode, type VaeConfig } from '../models/vae.js';
import type { UNetAccess } from '../methods/types.js';
import { PREDICTION_TYPES, type PredictionType } from '../schedulers/config.js';
import type { RawSchedulerConfig } from '../schedulers/index.js';
import { firstNonFinite, type Tensor } from '../tensor.js';
import { isFloatDType, quoteKey } from '../io/safetensors.js';
import { ClipTokenizer } from '../tokenizer/clip.js';
import { configBool } from '../io/json-config.js';
import { defaultTimeIds, eosOneHot, PooledEmbeddings, REFINER_REFUSAL } from './sdxl.js';

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
  /** Run on this ONNX Runtime backend (default: the platform's; a page passes onnxruntime-web's). */
  backend?: RuntimeBackend;
  /** For a single-file checkpoint: a diffusers folder without weights giving its configs and tokenizer. */
  config?: string;
  /**
   * What the UNet predicts, overriding the scheduler config: weights do not say, and an SD 2.x single file
   * defaults to 'v_prediction' (768 px) as diffusers' converter does; 'epsilon' is the 512-px 2.x base.
   */
  predictionType?: PredictionType;
  /** F16 / BF16 weights: converted to float32 first (default) or kept half in the graphs (see CompileOptions). */
  halfWeights?: 'keep' | 'float32';
  /**
   * Compiled graphs kept at most, the least recently used dropped first (default: $S2I_MAX_SESSIONS, else 32;
   * unbounded on a backend given here, e.g. a page's). Each distinct batch size is its own graph, and each session
   * keeps ONNX Runtime's arena at its largest run, so a long benchmark or server that meets many batch sizes and
   * methods would otherwise grow without bound (10 GB on a 10-method benchmark of the 32x32 model).
   */
  maxSessions?: number;
}

/** Compiled graphs a model keeps by default: enough for every graph of one method's runs at a few batch sizes. */
export const DEFAULT_MAX_SESSIONS = 32;

/** The text encoder's position ids are a buffer (0..76) the model computes itself; files carry them anyway. */
const TEXT_BUFFERS = new Set(['text_model.embeddings.position_ids']);

/** LoadOptions.maxSessions, checked, with its defaults. */
function maxSessions(options: LoadOptions): number {
  // A page (its own backend) has no process.env, and whether onnxruntime-web frees a dropped session was not checked.
  const env = options.backend ? undefined : process.env['S2I_MAX_SESSIONS'];
  const given = options.maxSessions ?? (env !== undefined && env !== '' ? Number(env) : undefined);
  if (given === undefined) return options.backend ? Infinity : DEFAULT_MAX_SESSIONS;
  if (!(Number.isInteger(given) && given >= 1) && given !== Infinity)
    throw new UserError(
      `${options.maxSessions !== undefined ? 'maxSessions' : 'S2I_MAX_SESSIONS'} must be a whole number of at least 1, got ${options.maxSessions ?? env}`,
    );
  return given;
}

/** SDXL's second text encoder and tokenizer, and its pipeline settings (sdxl.ts). */
export interface SdxlParts {
  tokenizer2: ClipTokenizer;
  text2Config: ClipTextConfig;
  /** model_index.json's force_zeros_for_empty_prompt (default true): no negative prompt → zero embeddings. */
  forceZerosForEmptyPrompt: boolean;
  pooled: PooledEmbeddings;
}

/** diffusers' StableDiffusionXLPipeline default guidance scale (SD's is 7.5). */
export const SDXL_DEFAULT_GUIDANCE = 5;

/**
 * Walk each model once over its weights (graphs that are never compiled) so that every key and shape the
 * configs imply is checked now, then refuse weights no model asked for.
 */
function checkWeights(
  text: { config: ClipTextConfig; weights: WeightStore },
  unet: { config: UNetConfig; weights: WeightStore },
  vae: { config: VaeConfig; weights: WeightStore } | null,
  text2: { config: ClipTextConfig; weights: WeightStore } | null,
): void {
  {
    const g = new Graph('initializer');
    clipTextModel(text.config, graphParams(g, text.weights), g.input('input_ids', [1, 1], 'int64'));
    text.weights.assertAllUsed((k) => TEXT_BUFFERS.has(k));
  }
  if (text2) {
    const g = new Graph('initializer');
    const params = graphParams(g, text2.weights);
    const out = clipTextModel(text2.config, params, g.input('input_ids', [1, 1], 'int64'));
    clipTextProjection(text2.config, params, out, g.input('eos', [1, 1, 1]));
    text2.weights.assertAllUsed((k) => TEXT_BUFFERS.has(k));
  }
  {
    const g = new Graph('initializer');
    // Weight shapes do not depend on the sample size: the smallest one the down-sampling allows keeps this cheap.
    const s = 2 ** (unet.config.blockOutChannels.length - 1);
    const add = unet.config.addition;
    unet2dCondition(unet.config, graphParams(g, unet.weights), {
      sample: g.input('sample', [1, unet.config.inChannels, s, s]),
      timestep: g.input('timestep', [1]),
      encoderHiddenStates: g.input('context', [1, 1, unet.config.crossAttentionDim[0]!]),
      ...(add
        ? {
            textEmbeds: g.input('text_embeds', [1, add.inputDim - 6 * add.timeEmbedDim]),
            timeIds: g.input('time_ids', [1, 6]),
          }
        : {}),
    });
    unet.weights.assertAllUsed();
  }
  if (vae) {
    const g = new Graph('initializer');
    const s = 2 ** (vae.config.blockOutChannels.length - 1);
    vaeDecode(vae.config, graphParams(g, vae.weights), g.input('latents', [1, vae.config.latentChannels, 1, 1]));
    // s2i only decodes; a VAE's encoder, when the file has one, must still match the config.
    if (vae.weights.keys().some((k) => k.startsWith('encoder.') || k.startsWith('quant_conv.'))) {
      vaeEncode(vae.config, graphParams(g, vae.weights), g.input('image', [1, vae.config.inChannels, s, s]));
    }
    vae.weights.assertAllUsed();
  }
}

export class StableDiffusion {
  /** Every graph compiled so far, with how long building and session creation took. */
  readonly graphTimings: GraphTiming[] = [];
  private readonly sessions = new Map<string, Promise<CompiledGraph>>();

  private constructor(
    /** The model as given: a folder, or a single-file checkpoint. */
    readonly dir: string,
    readonly folder: ModelFolder,
    readonly tokenizer: ClipTokenizer,
    readonly textConfig: ClipTextConfig,
    readonly unetConfig: UNetConfig,
    /** null for pixel-space models (no `vae` folder): the UNet's sample is the image. */
    readonly vaeConfig: VaeConfig | null,
    readonly schedulerConfig: RawSchedulerConfig,
    private readonly weights: {
      text: WeightStore;
      unet: WeightStore;
      vae: WeightStore | null;
      text2: WeightStore | null;
    },
    private readonly compileOptions: CompileOptions,
    /** How a single-file checkpoint was read (null for a folder). */
    readonly singleFile: SingleFileInfo | null,
    /** SDXL's second text encoder and settings; null for SD 1.x / 2.x. */
    readonly xl: SdxlParts | null = null,
    /** Sessions kept at most (LoadOptions.maxSessions). */
    private readonly maxSessions = Infinity,
  ) {}

  /** Load a diffusers folder or a single-file `.safetensors` checkpoint (SD 1.x / 2.x, LDM layout). */
  static async load(dir: string, options: LoadOptions = {}): Promise<StableDiffusion> {
    if (options.predictionType !== undefined && !PREDICTION_TYPES.includes(options.predictionType)) {
      throw new UserError(
        `prediction type '${String(options.predictionType)}' is not one of ${PREDICTION_TYPES.join(', ')}`,
      );
    }
    const { folder, singleFile } = openModel(dir, {
      ...(options.config !== undefined ? { configDir: options.config } : {}),
      ...(options.predictionType !== undefined ? { predictionType: options.predictionType } : {}),
    });
    try {
      return StableDiffusion.fromFolder(dir, folder, singleFile, options);
    } catch (e) {
      folder.close();
      throw e;
    }
  }

  private static fromFolder(
    dir: string,
    folder: ModelFolder,
    singleFile: SingleFileInfo | null,
    options: LoadOptions,
  ): StableDiffusion {
    const { tokenizer, textConfig, unetConfig, vaeConfig, weights, xl } = checkModel(folder, dir);
    const scheduler = folder.component('scheduler');
    const schedulerConfig: RawSchedulerConfig =
      options.predictionType !== undefined
        ? { ...scheduler.config, prediction_type: options.predictionType }
        : scheduler.config;
    return new StableDiffusion(
      dir,
      folder,
      tokenizer,
      textConfig,
      unetConfig,
      vaeConfig,
      schedulerConfig,
      weights,
      {
        threads: options.threads,
        ...(options.backend ? { backend: options.backend } : {}),
        ...(options.halfWeights !== undefined ? { halfWeights: options.halfWeights } : {}),
      },
      singleFile,
      xl,
      maxSessions(options),
    );
  }

  /** Pixels per latent cell: the VAE's factor, or 1 for pixel-space models. */
  get scaleFactor(): number {
    return this.vaeConfig ? vaeScaleFactor(this.vaeConfig) : 1;
  }

  get latentChannels(): number {
    return this.unetConfig.inChannels;
  }

  /** Parameters of the text encoder, UNet and VAE together. */
  get parameterCount(): number {
    const w = this.weights;
    return w.text.paramCount() + (w.text2?.paramCount() ?? 0) + w.unet.paramCount() + (w.vae?.paramCount() ?? 0);
  }

  /**
   * Why a component's output holds NaN or Inf, in words for an error message: a config value that makes it so
   * (the VAE's scaling_factor), else the first weight that holds NaN or Inf (read in full: this runs only on the
   * error path), else overflow.
   */
  async diagnoseNonFinite(component: 'text_encoder' | 'unet' | 'vae'): Promise<string> {
    const cfg = this.vaeConfig;
    if (component === 'vae' && cfg && !(Number.isFinite(cfg.scalingFactor) && cfg.scalingFactor !== 0))
      return `${this.folder.componentDir('vae')}/config.json has scaling_factor ${cfg.scalingFactor}`;
    const store =
      component === 'text_encoder' ? this.weights.text : component === 'unet' ? this.weights.unet : this.weights.vae;
    if (store) {
      for (const t of store.tensorInfos()) {
        if (!isFloatDType(t.dtype)) continue;
        const data = store.readFloat32(t.name);
        const bad = firstNonFinite(data);
        if (bad >= 0) return `weight ${quoteKey(t.name)} in ${t.file} holds ${data[bad]}`;
        await new Promise<void>((r) => setImmediate(r)); // stay interruptible on large models
      }
    }
    return `its weights are finite, so its activations overflowed float32 (try other settings, or check the ${component} weights' scale)`;
  }

  /** The image size the model was trained for (UNet sample_size × scale factor). */
  get defaultImageSize(): number {
    return this.unetConfig.sampleSize * this.scaleFactor;
  }

  /** How many compiled graphs the model holds now (at most LoadOptions.maxSessions). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private session(key: string, build: (g: Graph) => void): Promise<CompiledGraph> {
    let s = this.sessions.get(key);
    if (s) {
      // Most recently used last: the map's insertion order is the eviction order.
      this.sessions.delete(key);
      this.sessions.set(key, s);
    } else {
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
      const mine = s;
      s.catch(() => {
        if (this.sessions.get(key) === mine) this.sessions.delete(key);
      });
      // The least recently used are dropped, not released: a caller may hold one between its lookup and its run.
      // ONNX Runtime's Node binding frees a session (its weights and arena) when the garbage collector finalises it.
      for (const oldest of this.sessions.keys()) {
        if (this.sessions.size <= this.maxSessions) break;
        this.sessions.delete(oldest);
      }
    }
    return s;
  }

  /** Token ids for a prompt, padded/truncated to the tokenizer's model_max_length. */
  tokenize(prompt: string): number[] {
    return this.tokenizer.tokenize(prompt, { maxLength: this.tokenizer.modelMaxLength }).ids;
  }

  /** The guidance scale the model's pipeline uses by default (SDXL's 5), or null for SD's 7.5. */
  get defaultGuidance(): number | null {
    return this.xl ? SDXL_DEFAULT_GUIDANCE : null;
  }

  /** Width of one token of the prompt embedding (both encoders' widths for SDXL). */
  get contextWidth(): number {
    return this.textConfig.hiddenSize + (this.xl?.text2Config.hiddenSize ?? 0);
  }

  /**
   * The unconditional embedding [1, T, D] when no negative prompt is given: zeros where the pipeline says so
   * (SDXL's force_zeros_for_empty_prompt, with a zero pooled embedding), else null (encode the empty prompt).
   */
  zeroNegativeEmbedding(): Tensor | null {
    if (!this.xl?.forceZerosForEmptyPrompt) return null;
    const t = this.tokenizer.modelMaxLength;
    const data = new Float32Array(t * this.contextWidth);
    this.xl.pooled.add(data, new Float32Array(this.xl.text2Config.projectionDim));
    return { data, shape: [1, t, this.contextWidth] };
  }

  /** SDXL: the pooled embedding [1, P] of a prompt embedding this model made (encodePrompts, zeroNegativeEmbedding). */
  pooledEmbedding(embedding: Tensor): Tensor {
    if (!this.xl) throw new Error('pooledEmbedding: not an SDXL model');
    return this.xl.pooled.lookup(embedding);
  }

  /** CLIP text embedding [1, T, D] of one prompt (batch 1, as diffusers' encode_prompt runs it). */
  async encodePrompt(prompt: string): Promise<Tensor> {
    return (await this.encodePrompts([prompt]))[0]!;
  }

  /** CLIP text embeddings [1, T, D] of several prompts, in one batched pass (prompts do not interact). */
  async encodePrompts(prompts: readonly string[]): Promise<Tensor[]> {
    if (this.xl) return this.encodePromptsXl(prompts, this.xl);
    const ids = prompts.map((p) => this.tokenize(p));
    const t = ids[0]!.length;
    const n = ids.length;
    const session = await this.session(n === 1 ? `text:${t}` : `text:${t}:b${n}`, (g) => {
      const inputIds = g.input('input_ids', [n, t], 'int64');
      g.output(
        'last_hidden_state',
        clipTextModel(this.textConfig, graphParams(g, this.weights.text), inputIds).lastHiddenState,
      );
    });
    const flat = BigInt64Array.from(ids.flat(), (x) => BigInt(x));
    const out = (await session.run({ input_ids: { data: flat, shape: [n, t] } }))['last_hidden_state']!;
    const size = out.data.length / n;
    return ids.map((_, i) => ({ data: out.data.slice(i * size, (i + 1) * size), shape: [1, ...out.shape.slice(1)] }));
  }

  /**
   * SDXL (diffusers' encode_prompt): each tokenizer's ids through its encoder; the prompt embedding is both
   * encoders' hidden_states[-2] (penultimate layer, no final LayerNorm) concatenated, the pooled embedding the
   * second encoder's text_embeds. Each pooled embedding is kept with its prompt embedding (sdxl.ts).
   */
  private async encodePromptsXl(prompts: readonly string[], xl: SdxlParts): Promise<Tensor[]> {
    const t = this.tokenizer.modelMaxLength;
    const ids = prompts.map((p) => this.tokenize(p));
    const ids2 = prompts.map((p) => xl.tokenizer2.tokenize(p, { maxLength: t }).ids);
    const n = prompts.length;
    const [c1, c2] = [this.textConfig, xl.text2Config];
    const session = await this.session(n === 1 ? `text-xl:${t}` : `text-xl:${t}:b${n}`, (g) => {
      const first = clipTextModel(c1, graphParams(g, this.weights.text), g.input('input_ids', [n, t], 'int64'));
      const p2 = graphParams(g, this.weights.text2!, '', 'text_encoder_2.');
      const second = g.scope('text_encoder_2', () => clipTextModel(c2, p2, g.input('input_ids_2', [n, t], 'int64')));
      const pooled = g.scope('text_encoder_2', () => clipTextProjection(c2, p2, second, g.input('eos_2', [n, 1, t])));
      const penultimate = (o: typeof first) => o.hiddenStates[o.hiddenStates.length - 2]!;
      g.output('prompt_embeds', op.concat([penultimate(first), penultimate(second)], -1));
      g.output('pooled_prompt_embeds', pooled);
    });
    const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat(), (x) => BigInt(x));
    const out = await session.run({
      input_ids: { data: int64(ids), shape: [n, t] },
      input_ids_2: { data: int64(ids2), shape: [n, t] },
      eos_2: { data: eosOneHot(ids2), shape: [n, 1, t] },
    });
    const embeds = out['prompt_embeds']!;
    const pooled = out['pooled_prompt_embeds']!.data;
    const size = embeds.data.length / n;
    const p = c2.projectionDim;
    return ids.map((_, i) => {
      const data = embeds.data.slice(i * size, (i + 1) * size);
      xl.pooled.add(data, pooled.subarray(i * p, (i + 1) * p));
      return { data, shape: [1, ...embeds.shape.slice(1)] };
    });
  }

  /** UNet graph variants for latents [C, h, w] and text embeddings [T, D]. */
  unetAccess(latentHeight: number, latentWidth: number, tokens: number): UNetAccess {
    const latentShape = [this.unetConfig.inChannels, latentHeight, latentWidth] as const;
    const contextShape = [tokens, this.contextWidth] as const;
    const xl = this.xl;
    const f = this.scaleFactor;
    return {
      latentShape,
      contextShape,
      compile: async (key, build) => {
        const compiled = await this.session(`unet:${latentHeight}x${latentWidth}:${tokens}:${key}`, (g) => {
          const params = graphParams(g, this.weights.unet);
          build(g, (inputs: UNetInputs, options?: UNetOptions) => {
            // SDXL: the pooled embedding is an input (filled from the context when not fed, sdxl.ts); the time
            // ids are the image's (diffusers' defaults), the same for every row.
            if (xl && !inputs.textEmbeds) {
              const b = inputs.sample.shape[0]!;
              const ids = defaultTimeIds(latentHeight * f, latentWidth * f);
              inputs = {
                ...inputs,
                textEmbeds: g.input('text_embeds', [b, xl.text2Config.projectionDim]),
                timeIds: op.expand(g.constant(ids, [1, 6], 'float32', 'time_ids'), [b, 6]),
              };
            }
            return g.scope('unet', () => unet2dCondition(this.unetConfig, params, inputs, options));
          });
        });
        return xl ? xl.pooled.feeding(compiled) : compiled;
      },
    };
  }

  /** Latents [B, C, h, w] (as the sampler leaves them) → images [B, 3, H, W] in about [-1, 1], before clamping. */
  async decode(latents: Tensor): Promise<Tensor> {
    if (!this.vaeConfig || !this.weights.vae) return latents;
    const [b, c, h, w] = latents.shape as [number, number, number, number];
    const cfg = this.vaeConfig;
    const session = await this.session(b === 1 ? `vae-decode:${h}x${w}` : `vae-decode:${h}x${w}:b${b}`, (g) => {
      const z = g.input('latents', [b, c, h, w]);
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

/** A model's parts, read and checked (see `checkModel`). */
export interface CheckedModel {
  tokenizer: ClipTokenizer;
  textConfig: ClipTextConfig;
  unetConfig: UNetConfig;
  vaeConfig: VaeConfig | null;
  weights: { text: WeightStore; unet: WeightStore; vae: WeightStore | null; text2: WeightStore | null };
  /** SDXL's second encoder and its settings; null for SD 1.x / 2.x. */
  xl: SdxlParts | null;
}

/**
 * The one judgement of a model, before anything runs: `StableDiffusion.load` (generate, bench, the server) and
 * `s2i info` both call it, so a model one of them refuses the other refuses too. Reads the tokenizer(s) and every
 * component's config, checks that they fit together (SDXL's second encoder and added embedding included; refiners
 * refused), and walks each model over its weights (every weight the configs imply is there with its shape, and
 * every weight is used). `dir` names the model in messages.
 */
export function checkModel(folder: ModelFolder, dir: string = folder.dir): CheckedModel {
  const refiner =
    folder.pipelineClass === 'StableDiffusionXLImg2ImgPipeline' ||
    folder.index?.['requires_aesthetics_score'] === true ||
    (folder.has('text_encoder_2') && !folder.has('text_encoder'));
  if (refiner) throw new UserError(`${dir}: ${REFINER_REFUSAL}`);
  const text = folder.component('text_encoder');
  const unet = folder.component('unet');
  const vae = folder.has('vae') ? folder.component('vae') : null;
  folder.component('scheduler'); // present, with a readable config
  const tokenizer = ClipTokenizer.fromFolder(folder.componentDir('tokenizer'));
  const textConfig = parseClipTextConfig(text.config, text.configPath);
  const unetConfig = parseUNetConfig(unet.config, unet.configPath);
  const vaeConfig = vae ? parseVaeConfig(vae.config, vae.configPath) : null;
  const text2 = folder.has('text_encoder_2') ? folder.component('text_encoder_2') : null;
  const text2Config = text2 ? parseClipTextConfig(text2.config, text2.configPath) : null;
  const contextWidth = textConfig.hiddenSize + (text2Config?.hiddenSize ?? 0);
  if (unetConfig.crossAttentionDim.some((d) => d !== contextWidth)) {
    const what = text2Config
      ? `the two text encoders' hidden sizes together (${textConfig.hiddenSize} + ${text2Config.hiddenSize})`
      : `the text encoder's hidden_size ${textConfig.hiddenSize}`;
    throw new UserError(
      `${unet.configPath}: cross_attention_dim ${unetConfig.crossAttentionDim} does not match ${what}`,
    );
  }
  const add = unetConfig.addition;
  if ((add !== null) !== (text2Config !== null)) {
    throw new UserError(
      add
        ? `${unet.configPath}: is an SDXL UNet (addition_embed_type text_time) but the model has no text_encoder_2`
        : `${dir}: has a text_encoder_2 but its UNet takes no pooled text embedding (addition_embed_type)`,
    );
  }
  if (add && text2Config && add.inputDim !== text2Config.projectionDim + 6 * add.timeEmbedDim) {
    throw new UserError(
      `${unet.configPath}: projection_class_embeddings_input_dim ${add.inputDim} is not text_encoder_2's projection_dim ${text2Config.projectionDim} + 6 x addition_time_embed_dim ${add.timeEmbedDim}`,
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
  // Every id the tokenizer can produce must have an embedding row (else the text encoder's Gather fails).
  if (tokenizer.maxId >= textConfig.vocabSize) {
    throw new UserError(
      `${folder.componentDir('tokenizer')}: the vocabulary has token id ${tokenizer.maxId}, but the text encoder's ` +
        `vocab_size is ${textConfig.vocabSize} (${text.configPath})`,
    );
  }
  let xl: SdxlParts | null = null;
  if (text2Config) {
    const tokenizer2 = ClipTokenizer.fromFolder(folder.componentDir('tokenizer_2'));
    if (tokenizer2.modelMaxLength !== tokenizer.modelMaxLength)
      throw new UserError(
        `${folder.componentDir('tokenizer_2')}: model_max_length ${tokenizer2.modelMaxLength} differs from tokenizer's ${tokenizer.modelMaxLength}`,
      );
    if (tokenizer2.maxId >= text2Config.vocabSize)
      throw new UserError(
        `${folder.componentDir('tokenizer_2')}: the vocabulary has token id ${tokenizer2.maxId}, but text_encoder_2's vocab_size is ${text2Config.vocabSize}`,
      );
    const forceZeros =
      folder.index && folder.index['force_zeros_for_empty_prompt'] !== undefined
        ? configBool(folder.index, 'force_zeros_for_empty_prompt', `${folder.dir}/model_index.json`, true)
        : true;
    xl = {
      tokenizer2,
      text2Config,
      forceZerosForEmptyPrompt: forceZeros,
      pooled: new PooledEmbeddings(tokenizer.modelMaxLength * contextWidth, text2Config.projectionDim),
    };
  }
  const weights = {
    text: text.weights(),
    unet: unet.weights(),
    vae: vae ? vae.weights() : null,
    text2: text2 ? text2.weights() : null,
  };
  checkWeights(
    { config: textConfig, weights: weights.text },
    { config: unetConfig, weights: weights.unet },
    vaeConfig && weights.vae ? { config: vaeConfig, weights: weights.vae } : null,
    text2Config && weights.text2 ? { config: text2Config, weights: weights.text2 } : null,
  );
  return { tokenizer, textConfig, unetConfig, vaeConfig, weights, xl };
}

/**
 * What `s2i train` can train, one task each, over the same loop (train.ts: AdamW, EMA, checkpoints, logs):
 *   shapes          the pixel-space model (32x32, v-prediction, min-SNR-γ)
 *   shapes-ldm-vae  the latent model's AutoencoderKL on 64x64 renders (MSE + KL)
 *   shapes-ldm      the latent model's text encoder + UNet on 16x16 latents of a trained VAE (ε, min-SNR-γ)
 * A task knows its weights, its training step (batch made from the step number: a resumed run sees the data an
 * uninterrupted one would), how to export its weights as a folder the pipeline loads, and how to check samples.
 */
import { makeFolders } from '../io/durable.js';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { composeGrid, encodePng, floatToRgb8, writeFileAtomic, type RgbImage } from '../image/index.js';
import { readJsonObject } from '../io/json-config.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { parseVaeConfig } from '../models/config.js';
import type { VaeConfig } from '../models/vae.js';
import { generate } from '../pipeline/generate.js';
import { StableDiffusion } from '../pipeline/stable-diffusion.js';
import { noiseSchedule } from '../schedulers/index.js';
import { ClipTokenizer } from '../tokenizer/clip.js';
import {
  parameterShapes,
  TEXT_PREFIX,
  TrainingStep,
  UNET_PREFIX,
  type TextToImageConfig,
  type TrainingBatch,
} from '../train/diffusion.js';
import { VAE_PREFIX, VaeEncoder, vaeParameterShapes, VaeTrainingStep } from '../train/vae.js';
import { onCleanup } from '../util/cleanup.js';
import { GaussianRng } from '../util/random.js';
import { sampleBatch, sampleExample } from './generate.js';
import {
  LDM_IMAGE_SIZE,
  LDM_SAMPLING,
  LDM_TOKENS,
  ldmModelConfig,
  ldmSchedulerConfigJson,
  ldmTextConfigJson,
  ldmUNetConfigJson,
  ldmVaeConfig,
  ldmVaeConfigJson,
} from './ldm.js';
import {
  shapesModelConfig,
  shapesSchedulerConfigJson,
  shapesTextConfigJson,
  shapesUNetConfigJson,
  writeShapesModelFolder,
  type ModelFolderContents,
} from './model.js';
import { Rng } from './rng.js';
import { scoreImage } from './score.js';
import type { TrainModel } from './train-settings.js';
import { buildShapesVocabulary } from './vocab.js';

/** Scene options of the training distribution: 1–3 objects, same-shape and same-colour pairs allowed. */
export const TRAIN_SCENES = { allowSameShape: true, allowSameColour: true } as const;

/** What a task needs of the run's options. */
export interface TaskOptions {
  model: TrainModel;
  batchSize: number;
  seed: number;
  promptDropout: number;
  minSnrGamma: number;
  klWeight: number;
  /** shapes-ldm: the trained VAE's folder (config.json with its scaling_factor + diffusion_pytorch_model.safetensors). */
  vae: string;
  samplePrompts: number;
  sampleSteps: number;
  sampleGuidance: number;
}

export interface Stepper {
  run(
    params: ReadonlyMap<string, Float32Array>,
    step: number,
  ): Promise<{ loss: number; grads: Map<string, Float32Array> }>;
  release(): Promise<void>;
}

export interface SampleResult {
  grid: RgbImage;
  /** Full success by object count (`fullSuccess`), and any task-specific numbers (`extra`). */
  fullSuccess: Record<string, number>;
  n: Record<string, number>;
  extra?: Record<string, number>;
  captions: string[];
  success: boolean[];
}

export interface TrainTask {
  /** Every trained weight by training key, with its shape. */
  shapes: Map<string, number[]>;
  start(params: ReadonlyMap<string, Float32Array>): Promise<Stepper>;
  /** Writes `weights` as a folder the pipeline (or, for the VAE, the next task) loads. */
  export(dir: string, weights: ReadonlyMap<string, Float32Array>, metadata: Record<string, string>): Promise<void>;
  /** Exports to `modelDir` and checks samples of it. */
  samples(modelDir: string, weights: ReadonlyMap<string, Float32Array>, step: number): Promise<SampleResult>;
  /** Where each training key's starting value lives in a model folder given by --init: [file, key in it]. */
  initSource(dir: string, name: string): [string, string];
}

type Weights = ReadonlyMap<string, { data: Float32Array; shape: readonly number[] }>;

function splitWeights(
  shapes: Map<string, number[]>,
  weights: ReadonlyMap<string, Float32Array>,
  prefix: string,
): Weights {
  const out = new Map<string, { data: Float32Array; shape: readonly number[] }>();
  for (const [name, shape] of shapes)
    if (name.startsWith(prefix)) out.set(name.slice(prefix.length), { data: weights.get(name)!, shape });
  return out;
}

export function taskFor(options: TaskOptions): TrainTask {
  switch (options.model) {
    case 'shapes':
      return pixelTask(options);
    case 'shapes-ldm-vae':
      return vaeTask(options);
    case 'shapes-ldm':
      return latentTask(options);
  }
}

function tokenizerFor(tokens: number): ClipTokenizer {
  const tok = buildShapesVocabulary();
  return new ClipTokenizer({ vocab: tok.vocab, merges: tok.merges, config: { modelMaxLength: tokens } });
}

/** Token ids of a batch of captions, each replaced by the empty prompt with probability `dropout`. */
function captionIds(rng: Rng, captions: readonly string[], tokenizer: ClipTokenizer, tokens: number, dropout: number) {
  const ids = new BigInt64Array(captions.length * tokens);
  const emptyIds = tokenizer.tokenize('').ids;
  captions.forEach((caption, b) => {
    // Empty prompts teach the unconditional prediction that classifier-free guidance needs.
    const row = rng.chance(dropout) ? emptyIds : tokenizer.tokenize(caption).ids;
    for (let k = 0; k < tokens; k++) ids[b * tokens + k] = BigInt(row[k]!);
  });
  return ids;
}

const dataRng = (o: TaskOptions, step: number) => new Rng(o.seed * 1_000_003 + step);
const noiseRng = (o: TaskOptions, step: number) => new GaussianRng((BigInt(o.seed) << 32n) | BigInt(step));

// ---------------------------------------------------------------------------------------------------------------
// shapes: the pixel-space model

/** Export weights (EMA by default) of the pixel-space model as a model folder the pipeline loads. */
export function exportShapesModel(
  dir: string,
  weights: ReadonlyMap<string, Float32Array>,
  cfg: TextToImageConfig,
  metadata: Record<string, string> = {},
  sampling = { steps: 25, guidance: 5 },
): void {
  const shapes = parameterShapes(cfg);
  writeShapesModelFolder(dir, {
    unetConfig: shapesUNetConfigJson(),
    textConfig: shapesTextConfigJson(cfg.text.vocabSize),
    schedulerConfig: shapesSchedulerConfigJson(),
    unetWeights: splitWeights(shapes, weights, UNET_PREFIX),
    textWeights: splitWeights(shapes, weights, TEXT_PREFIX),
    metadata,
    sampling,
  });
}

function pixelTask(o: TaskOptions): TrainTask {
  const cfg = shapesModelConfig();
  const shapes = parameterShapes(cfg);
  const schedule = noiseSchedule(shapesSchedulerConfigJson());
  const tokenizer = tokenizerFor(cfg.tokens);
  const batchOf = (step: number): TrainingBatch => {
    const rng = dataRng(o, step);
    const B = o.batchSize;
    const batch = sampleBatch(rng, B, TRAIN_SCENES);
    const ids = captionIds(rng, batch.captions, tokenizer, cfg.tokens, o.promptDropout);
    const timesteps = new Float32Array(B);
    const weights = new Float32Array(B);
    for (let b = 0; b < B; b++) {
      const t = rng.int(0, schedule.numTrainTimesteps - 1);
      timesteps[b] = t;
      const snr = schedule.snr(t);
      weights[b] = Math.min(snr, o.minSnrGamma) / (snr + 1); // min-SNR-γ for v-prediction
    }
    const noise = noiseRng(o, step).normal(batch.images.length);
    const noisy = schedule.addNoise(batch.images, noise, timesteps);
    const target = schedule.velocity(batch.images, noise, timesteps);
    return { ids, noisy, timesteps, target, weights };
  };
  const task: TrainTask = {
    shapes,
    async start(params) {
      const trainer = await TrainingStep.create(cfg, params, o.batchSize);
      return { run: (p, step) => trainer.run(p, batchOf(step)), release: () => trainer.release() };
    },
    async export(dir, weights, metadata) {
      exportShapesModel(dir, weights, cfg, metadata, { steps: o.sampleSteps, guidance: o.sampleGuidance });
    },
    samples: (modelDir, weights, step) => exportAndScore(task, o, modelDir, weights, step),
    initSource: (dir, name) => textUnetSource(dir, name),
  };
  return task;
}

/** A text-to-image task's samples: the model exported at `step`, then its held-out prompts sampled and scored. */
async function exportAndScore(
  task: TrainTask,
  o: TaskOptions,
  modelDir: string,
  weights: ReadonlyMap<string, Float32Array>,
  step: number,
): Promise<SampleResult> {
  await task.export(modelDir, weights, { step: String(step) });
  return sampleAndScore(modelDir, {
    prompts: o.samplePrompts,
    steps: o.sampleSteps,
    guidance: o.sampleGuidance,
    seed: 0,
  });
}

function textUnetSource(dir: string, name: string): [string, string] {
  if (name.startsWith(UNET_PREFIX))
    return [join(dir, 'unet/diffusion_pytorch_model.safetensors'), name.slice(UNET_PREFIX.length)];
  return [join(dir, 'text_encoder/model.safetensors'), name.slice(TEXT_PREFIX.length)];
}

/** Generate one image per held-out caption with the exported model and score them. */
export async function sampleAndScore(
  modelDir: string,
  options: { prompts: number; steps: number; guidance: number; seed: number },
): Promise<SampleResult> {
  const model = await StableDiffusion.load(modelDir);
  try {
    const rng = new Rng(`held-out-${options.seed}`);
    const images: RgbImage[] = [];
    const captions: string[] = [];
    const success: boolean[] = [];
    const counts: number[] = [];
    for (let i = 0; i < options.prompts; i++) {
      const ex = sampleExample(rng, { ...TRAIN_SCENES, prefixProbability: 0 });
      const r = await generate(model, {
        prompt: ex.caption,
        steps: options.steps,
        guidanceScale: options.guidance,
        seed: i,
      });
      const img = floatToRgb8(r.image);
      images.push(img);
      captions.push(ex.caption);
      success.push(scoreImage(img, undefined, undefined, ex.caption).full_success);
      counts.push(ex.scene.objects.length);
    }
    return { grid: composeGrid(images, 8, { pad: 2 }), ...bySize(counts, success), captions, success };
  } finally {
    await model.release();
  }
}

function bySize(counts: number[], success: boolean[]) {
  const fullSuccess: Record<string, number> = {};
  const n: Record<string, number> = {};
  counts.forEach((k, i) => {
    n[k] = (n[k] ?? 0) + 1;
    fullSuccess[k] = (fullSuccess[k] ?? 0) + (success[i] ? 1 : 0);
  });
  for (const k of Object.keys(n)) fullSuccess[k] = fullSuccess[k]! / n[k]!;
  return { fullSuccess, n };
}

// ---------------------------------------------------------------------------------------------------------------
// shapes-ldm-vae: the AutoencoderKL

/** Renders of the 64x64 world for step `step` (the VAE's data; the latent model's too). */
function worldBatch(o: TaskOptions, step: number, batchSize: number) {
  return sampleBatch(dataRng(o, step), batchSize, { ...TRAIN_SCENES, size: LDM_IMAGE_SIZE });
}

/**
 * SD's scaling_factor, measured as it was for SD (1 / the standard deviation of the latents over a batch of
 * training images, here 256 held-out renders, latent samples as the diffusion model will see them).
 */
export async function measureScalingFactor(
  cfg: VaeConfig,
  weights: ReadonlyMap<string, Float32Array>,
): Promise<number> {
  const B = 32;
  const enc = await VaeEncoder.create(cfg, weights, B, LDM_IMAGE_SIZE);
  try {
    let sum = 0,
      sumSq = 0,
      n = 0;
    for (let i = 0; i < 8; i++) {
      const batch = sampleBatch(new Rng(`scaling-factor-${i}`), B, { ...TRAIN_SCENES, size: LDM_IMAGE_SIZE });
      const { mean, logvar } = await enc.encode(batch.images);
      const eps = new GaussianRng(7_000 + i).normal(mean.length);
      for (let k = 0; k < mean.length; k++) {
        const z = mean[k]! + Math.exp(0.5 * logvar[k]!) * eps[k]!;
        sum += z;
        sumSq += z * z;
        n++;
      }
    }
    const std = Math.sqrt(sumSq / n - (sum / n) ** 2);
    return Number((1 / std).toPrecision(5));
  } finally {
    await enc.release();
  }
}

/** Writes a VAE component folder (config.json + diffusion_pytorch_model.safetensors), replacing `dir` atomically. */
export function writeVaeFolder(
  dir: string,
  config: Record<string, unknown>,
  weights: Weights,
  metadata: Record<string, string>,
): void {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new UserError(`--out ${dir} exists and is not a directory`);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !existsSync(join(dir, 'config.json')))
    throw new UserError(`--out ${dir} is a folder that holds other files (no config.json); give a new path`);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const forget = onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    const record = Object.fromEntries(
      [...weights].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, { data: v.data, shape: [...v.shape] }]),
    );
    writeSafetensors(join(tmp, 'diffusion_pytorch_model.safetensors'), record, { format: 'pt', ...metadata });
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dirname(dir), { recursive: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    forget();
  }
}

function vaeTask(o: TaskOptions): TrainTask {
  const cfg = ldmVaeConfig();
  const shapes = vaeParameterShapes(cfg, LDM_IMAGE_SIZE);
  const l = LDM_IMAGE_SIZE / 4;
  const task: TrainTask = {
    shapes,
    async start(params) {
      const trainer = await VaeTrainingStep.create(cfg, params, o.batchSize, LDM_IMAGE_SIZE, o.klWeight);
      return {
        async run(p, step) {
          const images = worldBatch(o, step, o.batchSize).images;
          const noise = noiseRng(o, step).normal(o.batchSize * cfg.latentChannels * l * l);
          return trainer.run(p, { images, noise });
        },
        release: () => trainer.release(),
      };
    },
    async export(dir, weights, metadata) {
      const scalingFactor = await measureScalingFactor(cfg, weights);
      writeVaeFolder(dir, ldmVaeConfigJson(scalingFactor), splitWeights(shapes, weights, VAE_PREFIX), metadata);
    },
    async samples(modelDir, weights, step) {
      await task.export(modelDir, weights, { step: String(step) });
      return reconstructions(modelDir, o.samplePrompts);
    },
    initSource: (dir, name) => [join(dir, 'vae/diffusion_pytorch_model.safetensors'), name.slice(VAE_PREFIX.length)],
  };
  return task;
}

/**
 * The VAE's round trip on held-out renders (latent means, as `encode().latent_dist.mode()`): pixel MSE, and the
 * exact scorer's full success on the reconstructions (a VAE that loses shapes or colours caps the whole model).
 */
export async function reconstructions(vaeDir: string, count: number): Promise<SampleResult> {
  const { cfg, weights } = readVaeFolder(vaeDir);
  const B = Math.min(count, 16);
  const enc = await VaeEncoder.create(cfg, weights, B, LDM_IMAGE_SIZE, { decode: true });
  try {
    const rng = new Rng('vae-held-out');
    const images: RgbImage[] = [];
    const captions: string[] = [];
    const success: boolean[] = [];
    const counts: number[] = [];
    let se = 0,
      n = 0;
    for (let done = 0; done < count; done += B) {
      const batch = sampleBatch(rng, B, { ...TRAIN_SCENES, size: LDM_IMAGE_SIZE, prefixProbability: 0 });
      const recon = (await enc.roundTrip(batch.images)).map((v) => Math.max(-1, Math.min(1, v)));
      const per = 3 * LDM_IMAGE_SIZE * LDM_IMAGE_SIZE;
      for (let b = 0; b < B && done + b < count; b++) {
        for (let k = b * per; k < (b + 1) * per; k++) {
          se += (recon[k]! - batch.images[k]!) ** 2;
          n++;
        }
        const img = floatToRgb8({
          data: recon.subarray(b * per, (b + 1) * per),
          shape: [1, 3, LDM_IMAGE_SIZE, LDM_IMAGE_SIZE],
        });
        images.push(img);
        captions.push(batch.captions[b]!);
        success.push(scoreImage(img, undefined, undefined, batch.captions[b]!).full_success);
        counts.push(batch.scenes[b]!.objects.length);
      }
    }
    return {
      grid: composeGrid(images, 8, { pad: 2 }),
      ...bySize(counts, success),
      extra: { mse: se / n, scaling_factor: cfg.scalingFactor },
      captions,
      success,
    };
  } finally {
    await enc.release();
  }
}

/** A VAE folder's config and weights, by training key (vae.*). */
export function readVaeFolder(dir: string): {
  cfg: VaeConfig;
  config: Record<string, unknown>;
  weights: Map<string, Float32Array>;
  metadata: Record<string, string>;
} {
  const configPath = join(dir, 'config.json');
  const config = readJsonObject(configPath);
  const cfg = parseVaeConfig(config, configPath);
  const weights = new Map<string, Float32Array>();
  const path = join(dir, 'diffusion_pytorch_model.safetensors');
  const file = SafetensorsFile.open(path);
  const metadata = { ...file.metadata };
  delete metadata['format'];
  try {
    for (const [name, shape] of vaeParameterShapes(cfg, LDM_IMAGE_SIZE)) {
      const key = name.slice(VAE_PREFIX.length);
      if (!file.has(key)) throw new UserError(`${path}: lacks '${key}'`);
      const info = file.info(key);
      if (info.shape.join(',') !== shape.join(','))
        throw new UserError(`${path}: '${key}' has shape [${info.shape}], the VAE config implies [${shape}]`);
      weights.set(name, file.readFloat32(key));
    }
  } finally {
    file.close();
  }
  return { cfg, config, weights, metadata };
}

// ---------------------------------------------------------------------------------------------------------------
// shapes-ldm: text encoder + UNet on the VAE's latents

function latentTask(o: TaskOptions): TrainTask {
  if (!o.vae)
    throw new UserError(
      'training shapes-ldm needs --vae <folder>: a trained VAE (s2i export-model of a shapes-ldm-vae run)',
    );
  const cfg = ldmModelConfig();
  const shapes = parameterShapes(cfg);
  const schedule = noiseSchedule(ldmSchedulerConfigJson());
  const tokenizer = tokenizerFor(LDM_TOKENS);
  const vae = readVaeFolder(o.vae);
  const task: TrainTask = {
    shapes,
    async start(params) {
      const trainer = await TrainingStep.create(cfg, params, o.batchSize);
      const enc = await VaeEncoder.create(vae.cfg, vae.weights, o.batchSize, LDM_IMAGE_SIZE);
      const B = o.batchSize;
      return {
        async run(p, step) {
          const rng = dataRng(o, step);
          const batch = sampleBatch(rng, B, { ...TRAIN_SCENES, size: LDM_IMAGE_SIZE });
          const ids = captionIds(rng, batch.captions, tokenizer, LDM_TOKENS, o.promptDropout);
          const timesteps = new Float32Array(B);
          const weights = new Float32Array(B);
          for (let b = 0; b < B; b++) {
            const t = rng.int(0, schedule.numTrainTimesteps - 1);
            timesteps[b] = t;
            const snr = schedule.snr(t);
            weights[b] = Math.min(snr, o.minSnrGamma) / snr; // min-SNR-γ for ε-prediction
          }
          // latents = vae.encode(x).latent_dist.sample() * scaling_factor, as SD's training script makes them.
          const { mean, logvar } = await enc.encode(batch.images);
          const g = noiseRng(o, step);
          const eps = g.normal(mean.length);
          const latents = new Float32Array(mean.length);
          for (let k = 0; k < mean.length; k++)
            latents[k] = (mean[k]! + Math.exp(0.5 * logvar[k]!) * eps[k]!) * vae.cfg.scalingFactor;
          const noise = g.normal(latents.length);
          const noisy = schedule.addNoise(latents, noise, timesteps);
          return trainer.run(p, { ids, noisy, timesteps, target: noise, weights });
        },
        async release() {
          await trainer.release();
          await enc.release();
        },
      };
    },
    async export(dir, weights, metadata) {
      const vaeWeights = new Map<string, { data: Float32Array; shape: readonly number[] }>();
      for (const [name, shape] of vaeParameterShapes(vae.cfg, LDM_IMAGE_SIZE))
        vaeWeights.set(name.slice(VAE_PREFIX.length), { data: vae.weights.get(name)!, shape });
      const contents: ModelFolderContents = {
        unetConfig: ldmUNetConfigJson(),
        textConfig: ldmTextConfigJson(cfg.text.vocabSize),
        schedulerConfig: ldmSchedulerConfigJson(),
        unetWeights: splitWeights(shapes, weights, UNET_PREFIX),
        textWeights: splitWeights(shapes, weights, TEXT_PREFIX),
        metadata,
        sampling: LDM_SAMPLING,
        vae: { config: vae.config, weights: vaeWeights, metadata: vae.metadata },
        tokens: LDM_TOKENS,
      };
      writeShapesModelFolder(dir, contents);
    },
    samples: (modelDir, weights, step) => exportAndScore(task, o, modelDir, weights, step),
    initSource: (dir, name) => textUnetSource(dir, name),
  };
  return task;
}

/** Writes a sample grid as PNG. */
export function writeGrid(path: string, grid: RgbImage): void {
  try {
    makeFolders(dirname(path));
  } catch (e) {
    throw new UserError(`${dirname(path)}: cannot create the folder: ${(e as Error).message}`, { cause: e });
  }
  writeFileAtomic(path, encodePng(grid.data, grid.width, grid.height));
}

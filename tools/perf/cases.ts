/**
 * The work each benchmark case measures, run inside one child process per case (so its peak RSS is that case's
 * own, as the PyTorch reference measured it):
 *
 * - `*-step`: one guided UNet step, batch 2 ([uncond, cond]), exactly the graph `generate()` compiles for a plain
 *   step (key `guided:b1:rec=-:edit=0`: sample [2, C, h, w], timestep [2], context [2, 77, D] → noise_pred);
 *   `*-step-bN`: the same for N images (UNet batch 2N), as a batch of N compiles it.
 * - `*-ae`: the same step preceded by Attend-and-Excite's gradient pass: `evaluateAttendExcite(…, true)`,
 *   the batch-1 conditional UNet forward + loss on the 16x16 cross-attention maps + ∂loss/∂latent (tokens 2 and
 *   5, attn_res 16x16 as the oracle ran it). Both graphs live in the process, as in an A&E generation; each
 *   iteration times the gradient pass and the plain step back to back.
 * - `sdxl-*`: SDXL base's UNet (random weights, text_time conditioning with constant pooled embeddings and
 *   time ids): the plain guided step at 1024 px (`sdxl-step`) and 768 px (`sdxl-step-768`); `sdxl-s2i`, the guided
 *   step as Suppress-to-Impress's edit mode compiles it (maps recorded at the attention rule's 32x32 and edited);
 *   `sdxl-ae`, A&E's gradient pass at 32x32 before the plain step.
 * - `train`: `TrainingStep.run` of the shipped shapes model's config (`shapesModelConfig()`), batch 32:
 *   text encoder + UNet forward, weighted MSE, gradients w.r.t. every weight.
 *
 * UNet cases use `BenchUNet`, which compiles graphs the way `StableDiffusion.unetAccess` does (one
 * 'initializer' graph per key, the model under scope 'unet', `compile()` with the same options), over a
 * WeightStore of the model folder's safetensors file: the real loading path.
 */
import { join } from 'node:path';
import { multiplicativeEditor } from '../../src/attention/editors.js';
import { chooseAttentionResolution, crossAttentionResolutions } from '../../src/attention/resolution.js';
import { AttentionStore, composeHooks } from '../../src/attention/store.js';
import * as op from '../../src/graph/ops.js';
import { Graph } from '../../src/graph/graph.js';
import { compile, type CompiledGraph, type CompileOptions } from '../../src/graph/runtime.js';
import { WeightStore } from '../../src/io/weight-store.js';
import { ATTEND_EXCITE_DEFAULTS, evaluateAttendExcite } from '../../src/methods/attend-and-excite.js';
import type { UNetAccess, UNetBuilder } from '../../src/methods/types.js';
import { parseUNetConfig } from '../../src/models/config.js';
import { graphParams, type WeightProvider } from '../../src/models/params.js';
import { unet2dCondition, type UNetConfig } from '../../src/models/unet.js';
import { shapesModelConfig } from '../../src/shapes/model.js';
import type { Int64Tensor, Tensor } from '../../src/tensor.js';
import { parameterShapes, TrainingStep, type TrainingBatch } from '../../src/train/diffusion.js';
import { initParams } from '../../src/train/init.js';
import { GaussianRng } from '../../src/util/random.js';
import { readFileSync } from 'node:fs';
import type { GraphTiming } from '../../src/pipeline/stable-diffusion.js';

export const CASES = [
  'tiny-step',
  'tiny-ae',
  'sd15-step',
  'sd15-ae',
  'sd15-step-b1',
  'sd15-step-b2',
  'sd15-step-b4',
  'sdxl-step-768',
  'sdxl-step',
  'sdxl-s2i',
  'sdxl-ae',
  'train',
  'shapes-step-b1',
  'shapes-step-b16',
  'batch-none',
  'batch-suppress',
  'batch-ae',
] as const;
export type CaseName = (typeof CASES)[number];
export const PARTS = {
  tiny: ['tiny-step', 'tiny-ae'],
  sd15: ['sd15-step', 'sd15-ae'],
  /** SD-1.5's guided step for 1, 2 and 4 images (UNet batch 2, 4, 8): peak memory of batched generation. */
  'sd15-batch': ['sd15-step-b1', 'sd15-step-b2', 'sd15-step-b4'],
  /** SDXL base's UNet (random weights, 10.3 GB written once): plain step at 768 and 1024 px, S2I's step, A&E's. */
  sdxl: ['sdxl-step-768', 'sdxl-step', 'sdxl-s2i', 'sdxl-ae'],
  train: ['train'],
  /**
   * Batched generation on the shapes model: its guided step for 1 and 16 images (kernel time per image), and
   * images/s of whole generations at batch 16 against one at a time (batch.ts).
   */
  batch: ['shapes-step-b1', 'shapes-step-b16', 'batch-none', 'batch-suppress', 'batch-ae'],
} as const satisfies Record<string, readonly CaseName[]>;
export type PartName = keyof typeof PARTS;

export const CASE_LABELS: Record<CaseName, string> = {
  'tiny-step': 'tiny-sd guided step (UNet batch 2, 32x32)',
  'tiny-ae': 'tiny-sd step + A&E gradient pass',
  'sd15-step': 'SD-1.5 guided step (UNet batch 2, 64x64)',
  'sd15-ae': 'SD-1.5 step + A&E gradient pass',
  'sd15-step-b1': 'SD-1.5 guided step, 1 image (UNet batch 2, 64x64)',
  'sd15-step-b2': 'SD-1.5 guided step, 2 images (UNet batch 4, 64x64)',
  'sd15-step-b4': 'SD-1.5 guided step, 4 images (UNet batch 8, 64x64)',
  'sdxl-step-768': 'SDXL guided step, 768 px (UNet batch 2, 96x96)',
  'sdxl-step': 'SDXL guided step, 1024 px (UNet batch 2, 128x128)',
  'sdxl-s2i': 'SDXL S2I edit-mode step, 1024 px (32x32 maps recorded and edited)',
  'sdxl-ae': 'SDXL step + A&E gradient pass, 1024 px (32x32 maps)',
  train: 'shapes training step (batch 32)',
  'shapes-step-b1': 'shapes model guided step, 1 image (UNet batch 2, 32x32)',
  'shapes-step-b16': 'shapes model guided step, 16 images (UNet batch 32, 32x32)',
  'batch-none': 'shapes model, plain sampling: batch 16 vs one at a time',
  'batch-suppress': 'shapes model, suppress (default mode): batch 16 vs one at a time',
  'batch-ae': 'shapes model, attend-and-excite: batch 16 vs one at a time',
};

/** Images of a guided-step case (its UNet batch is twice that: unconditional and conditional rows). */
export function caseImages(name: CaseName): number {
  const m = /-b(\d+)$/.exec(name);
  return m ? Number(m[1]) : 1;
}

/** The oracle's timestep for the UNet timings. */
export const BENCH_TIMESTEP = 981;
export const BENCH_TOKENS = 77;
export const AE_TOKEN_INDICES = [2, 5] as const;
export const AE_RES: [number, number] = [16, 16];
export const TRAIN_BATCH = 32;

export type { GraphTiming };

/** A UNet model folder's UNet as the pipeline would compile it, for latents [C, h, w] and 77 tokens. */
export class BenchUNet implements UNetAccess {
  readonly timings: GraphTiming[] = [];
  readonly sessions = new Map<string, CompiledGraph>();
  readonly latentShape: readonly [number, number, number];
  readonly contextShape: readonly [number, number];

  constructor(
    readonly config: UNetConfig,
    readonly weights: WeightProvider,
    latentSize: number,
    readonly compileOptions: CompileOptions = {},
  ) {
    this.latentShape = [config.inChannels, latentSize, latentSize];
    this.contextShape = [BENCH_TOKENS, config.crossAttentionDim[0]!];
  }

  /** `unetDir` holds config.json and diffusion_pytorch_model.safetensors. */
  static open(unetDir: string, latentSize: number, compileOptions: CompileOptions = {}): BenchUNet {
    const configPath = join(unetDir, 'config.json');
    const config = parseUNetConfig(JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>, configPath);
    return new BenchUNet(
      config,
      WeightStore.open(join(unetDir, 'diffusion_pytorch_model.safetensors')),
      latentSize,
      compileOptions,
    );
  }

  async compile(key: string, build: (g: Graph, unet: UNetBuilder) => void): Promise<CompiledGraph> {
    const have = this.sessions.get(key);
    if (have) return have;
    const t0 = performance.now();
    const g = new Graph('initializer');
    const params = graphParams(g, this.weights);
    const add = this.config.addition;
    build(g, (inputs, options) => {
      // SDXL: constant pooled embeddings and time ids (their values do not change the work)
      if (add && !inputs.textEmbeds) {
        const b = inputs.sample.shape[0]!;
        const pooled = add.inputDim - 6 * add.timeEmbedDim;
        const size = this.latentShape[1] * 8;
        inputs = {
          ...inputs,
          textEmbeds: g.constant(new Float32Array(b * pooled).fill(0.01), [b, pooled], 'float32', 'bench_text_embeds'),
          timeIds: g.constant(
            Float32Array.from({ length: b * 6 }, (_, i) => [size, size, 0, 0, size, size][i % 6]!),
            [b, 6],
            'float32',
            'bench_time_ids',
          ),
        };
      }
      return g.scope('unet', () => unet2dCondition(this.config, params, inputs, options));
    });
    const buildMs = performance.now() - t0;
    const opts = { ...this.compileOptions };
    if (opts.profile) opts.profile = `${opts.profile}-${this.sessions.size}`;
    const compiled = await compile(g, opts);
    this.timings.push({
      key,
      buildMs,
      serializeMs: compiled.timings.serializeMs,
      sessionMs: compiled.timings.sessionMs,
      nodes: compiled.timings.nodes,
    });
    this.sessions.set(key, compiled);
    return compiled;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }
}

function normal(seed: number, n: number, scale = 1): Float32Array {
  const x = new GaussianRng(seed).normal(n);
  if (scale !== 1) for (let i = 0; i < n; i++) x[i]! *= scale;
  return x;
}

/** The plain guided step's graph for `images` images (as generate() builds it without recording or editing). */
export const guidedKey = (images: number) => `guided:b${images}:rec=-:edit=0`;

export async function guidedStep(
  unet: BenchUNet,
  images = 1,
): Promise<{ session: CompiledGraph; run: () => Promise<Tensor> }> {
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const b = 2 * images;
  const session = await unet.compile(guidedKey(images), (g, build) => {
    const sample = g.input('sample', [b, c, h, w]);
    const ts = g.input('timestep', [b]);
    const ctxIn = g.input('context', [b, tokens, dim]);
    g.output('noise_pred', build({ sample, timestep: ts, encoderHiddenStates: ctxIn }).noisePred);
  });
  const latent = normal(1, c * h * w);
  const sample = new Float32Array(b * latent.length);
  for (let i = 0; i < b; i++) sample.set(latent, i * latent.length);
  const feeds = {
    sample: { data: sample, shape: [b, c, h, w] },
    timestep: { data: new Float32Array(b).fill(BENCH_TIMESTEP), shape: [b] },
    context: { data: normal(2, b * tokens * dim), shape: [b, tokens, dim] },
  };
  return { session, run: async () => (await session.run(feeds))['noise_pred']! };
}

/** The resolution the methods read maps at for this UNet and latent size (the project's rule). */
export function benchAttnRes(unet: BenchUNet): [number, number] {
  const [, h, w] = unet.latentShape;
  return unet.config.addition ? chooseAttentionResolution(crossAttentionResolutions(unet.config, h, w), h, w) : AE_RES;
}

/** Suppress-to-Impress's edit-mode guided step: maps recorded at the rule's resolution and edited (factors 1). */
export async function s2iStep(unet: BenchUNet): Promise<{ session: CompiledGraph; run: () => Promise<Tensor> }> {
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const res = benchAttnRes(unet);
  const session = await unet.compile(`guided:b1:rec=${res.join('x')}:edit=1`, (g, build) => {
    const raw = new AttentionStore({ kind: 'cross', resolution: res });
    const editor = multiplicativeEditor(g, 2);
    const used = new AttentionStore({ kind: 'cross', resolution: res });
    const { noisePred } = build(
      {
        sample: g.input('sample', [2, c, h, w]),
        timestep: g.input('timestep', [2]),
        encoderHiddenStates: g.input('context', [2, tokens, dim]),
      },
      { attentionHook: composeHooks(raw.hook, editor.hook, used.hook) },
    );
    g.output('noise_pred', noisePred);
    g.output('attention_maps_raw', op.identity(raw.aggregate({ resolution: res, batches: [1, 2] })));
    g.output('attention_maps', op.identity(used.aggregate({ resolution: res, batches: [1, 2] })));
  });
  const feeds: Record<string, Tensor> = {
    sample: { data: normal(1, 2 * c * h * w), shape: [2, c, h, w] },
    timestep: { data: new Float32Array(2).fill(BENCH_TIMESTEP), shape: [2] },
    context: { data: normal(2, 2 * tokens * dim), shape: [2, tokens, dim] },
  };
  for (const input of session.graph.inputs)
    if (!(input.name in feeds))
      feeds[input.name] = {
        data: new Float32Array(input.shape.reduce((a, b) => a * b, 1)).fill(1),
        shape: [...input.shape],
      };
  return { session, run: async () => (await session.run(feeds))['noise_pred']! };
}

/** A&E's gradient pass through the method's own evaluation; returns a function running one evaluation. */
export async function aeGradPass(unet: BenchUNet): Promise<{ session: CompiledGraph; run: () => Promise<number> }> {
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const item = {
    tokenIndices: AE_TOKEN_INDICES,
    cond: { data: normal(3, tokens * dim), shape: [1, tokens, dim] },
    latent: normal(1, c * h * w),
  };
  const before = new Set(unet.sessions.keys());
  const run = async () => {
    const [e] = await evaluateAttendExcite(
      unet,
      BENCH_TIMESTEP,
      { ...ATTEND_EXCITE_DEFAULTS, attnRes: benchAttnRes(unet) },
      [item],
      true,
    );
    if (!e?.grad) throw new Error('A&E evaluation returned no gradient');
    return e.loss;
  };
  await run();
  const key = [...unet.sessions.keys()].find((k) => !before.has(k));
  const session = key ? unet.sessions.get(key)! : [...unet.sessions.values()].at(-1)!;
  return { session, run };
}

/** Random training batch for the shapes model (ids drawn from the vocabulary). */
export function trainingBatch(batch: number, cfg = shapesModelConfig()): TrainingBatch {
  const rng = new GaussianRng(7);
  const s = cfg.unet.sampleSize;
  const n = batch * cfg.unet.inChannels * s * s;
  const ids = new BigInt64Array(batch * cfg.tokens);
  for (let i = 0; i < ids.length; i++) ids[i] = BigInt(rng.int(cfg.text.vocabSize));
  return {
    ids,
    noisy: rng.normal(n),
    timesteps: Float32Array.from({ length: batch }, () => rng.int(1000)),
    target: rng.normal(n),
    weights: new Float32Array(batch).fill(1),
  };
}

/** The shapes model's training step with freshly initialised weights; `initTime` gets the initialisation's ms. */
export async function trainingStep(
  batch = TRAIN_BATCH,
  initTime?: (ms: number) => void,
): Promise<{ step: TrainingStep; params: Map<string, Float32Array>; data: TrainingBatch }> {
  const cfg = shapesModelConfig();
  const t0 = performance.now();
  const params = initParams(parameterShapes(cfg), 0);
  initTime?.(performance.now() - t0);
  const step = await TrainingStep.create(cfg, params, batch);
  return { step, params, data: trainingBatch(batch, cfg) };
}

export type Feed = Tensor | Int64Tensor;

/**
 * suppress-to-impress: Stable Diffusion text-to-image with attention control, in TypeScript on ONNX Runtime.
 *
 *   const model = await StableDiffusion.load('path/to/diffusers-folder');
 *   const result = await generate(model, { prompt: 'a cat and a frog', steps: 50, seed: 1 });
 *
 * or a request as the CLI states it (a method by name, subjects as words, found automatically by default):
 *
 *   const planned = plan({ prompt: 'a red circle and a blue square', seed: 3 }, model);
 *   const done = await run(planned); // or runRequest(model, request): the two in one
 */
import './node.js'; // Node's file system and onnxruntime-node as the defaults

export { FieldError, UserError } from './errors.js';
export type { Tensor } from './tensor.js';

export { StableDiffusion, type GraphTiming, type LoadOptions } from './pipeline/stable-diffusion.js';
export {
  generate,
  generateBatch,
  type BatchOptions,
  type GenerateOptions,
  type GenerateResult,
  type SampleRequest,
  type StepInfo,
  type StepRecord,
} from './pipeline/generate.js';
export { defaultBatchSize } from './pipeline/batch-size.js';
export { plan, type BenchmarkRules, type GenerationPlan } from './pipeline/plan.js';
export { run, runRequest, type RunHooks } from './pipeline/run.js';
export { checkRequest, type GenerateRequest, type GenerateRun, type ImageRun } from './pipeline/request.js';

export { AttendAndExcite, ATTEND_EXCITE_DEFAULTS, type AttendExciteConfig } from './methods/attend-and-excite.js';
export type { GuidanceMethod, GuidedSample, StepContext, StepLog, UNetAccess, AttentionEdit } from './methods/types.js';
export { stepLogJson, type StepLogJson } from './methods/types.js';
export {
  SuppressToImpress,
  SUPPRESS_WEIGHTS,
  suppressLossTerms,
  outsideMassShare,
  type SuppressConfig,
  type LossWeights,
} from './methods/suppress.js';
export { buildMethod, methodTargets, METHODS, METHOD_NAMES, scaledLoopDefaults } from './methods/registry.js';
export { autoSubjects } from './prompt/auto-subjects.js';
export { resolveSubjects } from './prompt/subjects.js';
export { AttentionStore, composeHooks, type AttentionSelector } from './attention/store.js';
export { multiplicativeEditor } from './attention/editors.js';
export type { AttentionHook, AttentionLayer } from './models/attention.js';

export { createSampler, resolveSchedulerConfig, type Sampler, type SamplerName } from './schedulers/index.js';
export { ClipTokenizer } from './tokenizer/clip.js';
export { SafetensorsFile, readSafetensors, writeSafetensors } from './io/safetensors.js';
export { openModelFolder } from './io/model-folder.js';

export { Graph, type Value } from './graph/graph.js';
export * as ops from './graph/ops.js';
export { gradients } from './graph/autodiff.js';
export { compile, CompiledGraph, type RuntimeBackend } from './graph/runtime.js';
export { MemoryFileSystem, type FileSystem } from './io/files.js';

export { scoreImage, type ScoreReport } from './shapes/score.js';
export { parsePrompt } from './shapes/prompt.js';

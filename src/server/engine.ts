/**
 * The models a server was started with, and how a batch of queued jobs runs on one of them in this process: each
 * job's request is planned once (`plan`), and the plans of a batch run together (`run`: one batched generation, one
 * UNet pass per step over all of them) — the same two calls `s2i generate` makes. Requests name models only by the
 * names given here: no request reaches a path.
 */
import { basename } from 'node:path';
import { modelFingerprint } from '../bench/plan.js';
import { UserError } from '../errors.js';
import { plan, type GenerationPlan } from '../pipeline/plan.js';
import type { GenerateRequest, GenerateRun } from '../pipeline/request.js';
import { run } from '../pipeline/run.js';
import { StableDiffusion, type LoadOptions } from '../pipeline/stable-diffusion.js';
import type { BatchControl, Job } from './queue.js';

export interface ServedModel {
  /** What requests call it: the folder's or file's name without `.safetensors`. */
  name: string;
  /** Automatic1111's checkpoint title: `name [hash]` (the first 10 hex digits of the model's fingerprint). */
  title: string;
  hash: string;
  model: StableDiffusion;
  /** The image side it makes by default (its native size), and the largest side a request may ask for. */
  nativeSide: number;
  maxSide: number;
}

/** A job's payload: its model and its planned request. */
export interface LocalPayload {
  served: ServedModel;
  plan: GenerationPlan;
}

/** The name a model is served under: its folder's or file's name. */
export function modelName(path: string): string {
  return basename(path.replace(/[/\\]+$/, '')).replace(/\.safetensors$/i, '');
}

/** Loads every model; names must differ. `maxSide`: the largest side as a multiple of the native one (default 2). */
export async function loadModels(
  paths: readonly string[],
  options: LoadOptions & { maxSideFactor?: number } = {},
): Promise<ServedModel[]> {
  const { maxSideFactor = 2, ...load } = options;
  const served: ServedModel[] = [];
  for (const path of paths) {
    const name = modelName(path);
    if (served.some((s) => s.name === name))
      throw new UserError(
        `--model ${path}: another model is already served as "${name}" (give folders with different names)`,
      );
    const model = await StableDiffusion.load(path, load);
    const nativeSide = model.defaultImageSize;
    const hash = modelFingerprint(model.dir).slice(0, 10);
    served.push({ name, title: `${name} [${hash}]`, hash, model, nativeSide, maxSide: nativeSide * maxSideFactor });
  }
  return served;
}

/** Checks and resolves a request on a served model (a FieldError names the request field at fault). */
export function prepareJob(served: ServedModel, request: GenerateRequest): LocalPayload & { key: string } {
  const planned = plan(request, served.model);
  return { served, plan: planned, key: `${served.name}\u0000${planned.batchKey}` };
}

/** Runs a batch of jobs of one model and key as one batched generation; runs in job order. */
export async function runLocalBatch(
  jobs: readonly Job<LocalPayload, unknown>[],
  control: BatchControl,
): Promise<GenerateRun[]> {
  return run(
    jobs.map((j) => j.payload.plan),
    {
      onStart: (totalCalls) => control.step(0, totalCalls),
      onStep: (info) => control.step(info.batch * info.totalCalls + info.index + 1, info.batches * info.totalCalls),
    },
  );
}

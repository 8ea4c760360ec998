/**
 * Training the shapes-world model with the project's own engine: data made on the fly by the generator,
 * DDPM loss with v-prediction and min-SNR-γ weighting, 10% empty prompts (for classifier-free guidance), AdamW
 * with warm-up, gradient clipping, EMA weights, resumable checkpoints, and periodic sample grids scored exactly.
 */
import { appendFileSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FieldError, UserError } from '../errors.js';
import { checkInputFile, readInputFile } from '../io/regular-file.js';
import { writeFileAtomic } from '../image/index.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { AdamW, clipGradients, Ema } from '../train/adamw.js';
import { initParams } from '../train/init.js';
import { taskFor, writeGrid, type Stepper, type TaskOptions, type TrainTask } from './tasks.js';
import { makeFolders } from '../io/durable.js';
import { pidAlive } from '../util/cleanup.js';

export { SHAPES_TRAIN_DEFAULTS, TRAIN_MODELS, type TrainModel } from './train-settings.js';

export { exportShapesModel, sampleAndScore, TRAIN_SCENES } from './tasks.js';

export interface ShapesTrainOptions extends TaskOptions {
  runDir: string;
  /** A model folder to start from (its weights, fresh optimiser state) instead of a fresh initialisation. */
  init: string;
  /** Train until this many optimiser steps in total (counting resumed ones). */
  steps: number;
  batchSize: number;
  lr: number;
  warmupSteps: number;
  weightDecay: number;
  gradClip: number;
  emaDecay: number;
  promptDropout: number;
  minSnrGamma: number;
  seed: number;
  checkpointEvery: number;
  sampleEvery: number;
  samplePrompts: number;
  sampleSteps: number;
  sampleGuidance: number;
}

export interface TrainProgress {
  step: number;
  totalSteps: number;
  loss: number;
  imagesPerSecond: number;
  lr: number;
  gradNorm: number;
}

export interface SampleReport {
  step: number;
  grid: string;
  fullSuccess: Record<string, number>;
  n: Record<string, number>;
  extra?: Record<string, number>;
}

export interface State {
  step: number;
  params: Map<string, Float32Array>;
  ema: Ema;
  adam: AdamW;
}

const CHECKPOINT = 'checkpoint.safetensors';

/**
 * The settings that shape a run's trajectory (data, noise, optimiser): a resumed run keeps them, or it would not
 * be the run it continues. Messages name them as fields (the CLI calls some by their flags).
 */
export const RUN_SETTINGS: readonly (keyof ShapesTrainOptions)[] = [
  'model',
  'klWeight',
  'batchSize',
  'lr',
  'warmupSteps',
  'emaDecay',
  'seed',
  'weightDecay',
  'gradClip',
  'promptDropout',
  'minSnrGamma',
];

/** The options a run's checkpoint was written with (null when the folder holds no checkpoint). */
export function readRunOptions(runDir: string): Partial<ShapesTrainOptions> | null {
  const path = join(runDir, CHECKPOINT);
  if (!existsSync(path)) return null;
  checkInputFile(path, 'checkpoint');
  const file = SafetensorsFile.open(path);
  try {
    const text = file.metadata['options'];
    if (text === undefined) return {};
    try {
      const v = JSON.parse(text) as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Partial<ShapesTrainOptions>) : {};
    } catch {
      throw new UserError(`${path}: its 'options' metadata is not valid JSON`);
    }
  } finally {
    file.close();
  }
}

/** The trajectory settings where `options` differs from what the run was started with. */
function changedSettings(
  stored: Partial<ShapesTrainOptions>,
  options: ShapesTrainOptions,
): { key: string; now: string; was: string }[] {
  const out: { key: string; now: string; was: string }[] = [];
  for (const key of RUN_SETTINGS) {
    const was = stored[key];
    // Messages name fields; the training batch is `trainBatchSize` there (generation has its own `batchSize`).
    const field = key === 'batchSize' ? 'trainBatchSize' : key;
    if (was !== undefined && was !== options[key])
      out.push({ key: field, now: String(options[key]), was: String(was) });
  }
  return out;
}

/**
 * Leftovers of a killed process in the run folder: temporary checkpoint files (`.checkpoint.safetensors.PID.*.tmp`)
 * and half-exported model folders (`model.tmp-PID`) of processes no longer running.
 */
function removeStaleTemporaries(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /^\.checkpoint\.safetensors\.(\d+)\..*\.tmp$/.exec(name) ?? /^model\.tmp-(\d+)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/** Appends a log line; a full disk is a one-line error (the checkpoint before it stays resumable). */
function appendLine(path: string, line: string): void {
  try {
    appendFileSync(path, line);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new FieldError(
      'resume',
      (name) => `cannot append to ${path} (${code}); the last checkpoint is kept: ${name} continues from it`,
      { cause: e },
    );
  }
}

/**
 * Cuts a JSON-lines log back to the rows at or before `step` (and drops a partial last line): after a kill, the
 * run resumes from its last checkpoint and would otherwise log the steps after it twice.
 */
export function trimLog(path: string, step: number): void {
  if (!existsSync(path)) return;
  const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(readInputFile(path, 'log'));
  const kept: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const row = JSON.parse(line) as { step?: unknown };
      if (typeof row.step === 'number' && row.step <= step) kept.push(line);
    } catch {
      // a partial line from a killed write
    }
  }
  const trimmed = kept.length ? kept.join('\n') + '\n' : '';
  if (trimmed !== text) writeFileAtomic(path, Buffer.from(trimmed, 'utf8'));
}

function saveCheckpoint(dir: string, s: State, shapes: Map<string, number[]>, options: ShapesTrainOptions): void {
  const tensors: Record<string, { data: Float32Array; shape: number[] }> = {};
  for (const [name, shape] of shapes) {
    tensors[`param/${name}`] = { data: s.params.get(name)!, shape };
    tensors[`ema/${name}`] = { data: s.ema.shadow.get(name)!, shape };
    const m = s.adam.m.get(name);
    const v = s.adam.v.get(name);
    if (m && v) {
      tensors[`adam_m/${name}`] = { data: m, shape };
      tensors[`adam_v/${name}`] = { data: v, shape };
    }
  }
  writeSafetensors(join(dir, CHECKPOINT), tensors, {
    format: 's2i-train',
    step: String(s.step),
    adam_step: String(s.adam.step),
    options: JSON.stringify(options),
  });
}

function loadCheckpoint(dir: string, shapes: Map<string, number[]>, options: ShapesTrainOptions): State {
  const path = join(dir, CHECKPOINT);
  const file = SafetensorsFile.open(path);
  try {
    const step = Number(file.metadata['step']);
    if (!Number.isInteger(step) || step < 0)
      throw new UserError(`${path}: checkpoint has no valid 'step' in its metadata`);
    const params = new Map<string, Float32Array>();
    const emaInit = new Map<string, Float32Array>();
    const adam = new AdamW({ lr: options.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: options.weightDecay });
    adam.step = Number(file.metadata['adam_step'] ?? step);
    for (const [name, shape] of shapes) {
      const key = `param/${name}`;
      if (!file.has(key))
        throw new UserError(`${path}: checkpoint lacks '${key}' (was it made with another model config?)`);
      const info = file.info(key);
      if (info.shape.join(',') !== shape.join(','))
        throw new UserError(`${path}: '${key}' has shape [${info.shape}], the model expects [${shape}]`);
      params.set(name, file.readFloat32(key));
      emaInit.set(name, file.readFloat32(`ema/${name}`));
      if (file.has(`adam_m/${name}`)) {
        adam.m.set(name, file.readFloat32(`adam_m/${name}`));
        adam.v.set(name, file.readFloat32(`adam_v/${name}`));
      }
    }
    return { step, params, ema: new Ema(emaInit), adam };
  } finally {
    file.close();
  }
}

/** Exempt from weight decay: biases, norms, embeddings. */
const noDecay = (name: string) => name.endsWith('.bias') || /norm/.test(name) || /embedding/.test(name);

/** Warm-up counts the optimiser's own updates, so a run started from exported weights (fresh moments) warms up too. */
function learningRate(o: ShapesTrainOptions, updates: number): number {
  return updates < o.warmupSteps ? (o.lr * (updates + 1)) / o.warmupSteps : o.lr;
}

export interface TrainHooks {
  resume: boolean;
  /** Resume even when batch size, seed, learning rate... differ from the run's (recorded in its checkpoint). */
  changeSettings?: boolean;
  onProgress?: (p: TrainProgress) => void;
  onSample?: (r: SampleReport) => void;
  shouldStop?: () => boolean;
}

/**
 * Trains (or resumes) the run in `options.runDir` until `options.steps` optimiser steps in all: each step trains
 * on a fresh batch, logs every 25 steps, checkpoints every `checkpointEvery` and scores samples every
 * `sampleEvery`. `hooks.shouldStop` ends the run after the current step, its checkpoint written as at the end.
 */
export async function trainShapes(options: ShapesTrainOptions, hooks: TrainHooks = { resume: false }): Promise<State> {
  const task = taskFor(options);
  const dir = options.runDir;
  const state = openRun(dir, task, options, hooks);
  const trainer = await task.start(state.params);
  const log = new LogWindow(join(dir, 'log.jsonl'), options.batchSize);
  try {
    while (state.step < options.steps) {
      if (hooks.shouldStop?.()) break;
      const { loss, lr, gradNorm } = await trainStep(trainer, state, options);
      const imagesPerSecond = log.add(loss);
      hooks.onProgress?.({ step: state.step, totalSteps: options.steps, loss, imagesPerSecond, lr, gradNorm });
      if (state.step % 25 === 0) log.write(state.step, lr, gradNorm);
      if (state.step % options.checkpointEvery === 0 || state.step === options.steps)
        saveCheckpoint(dir, state, task.shapes, options);
      if (options.sampleEvery > 0 && (state.step % options.sampleEvery === 0 || state.step === options.steps)) {
        const report = await writeSamples(dir, state, task);
        hooks.onSample?.(report);
      }
    }
  } finally {
    await trainer.release();
  }
  saveCheckpoint(dir, state, task.shapes, options);
  return state;
}

/**
 * The run's starting state: its checkpoint when `dir` holds one (only with `hooks.resume`, and with the run's own
 * trajectory settings unless `hooks.changeSettings`), else the weights of `options.init` (a model folder; the
 * step count continues from the step recorded in its weights' metadata) or freshly initialised ones.
 */
function openRun(dir: string, task: TrainTask, options: ShapesTrainOptions, hooks: TrainHooks): State {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new FieldError('runDir', `${dir} exists and is not a directory`);
  // A mistyped folder would otherwise start a new run from scratch (hours of training) where one was to go on.
  // A folder without a checkpoint (a run killed before its first) still starts over.
  if (hooks.resume && !existsSync(dir))
    throw new FieldError(
      'resume',
      (name, nameOf) =>
        `${name}: ${nameOf('runDir')} ${dir} does not exist: no run to continue (leave ${name} out to start one)`,
    );
  try {
    makeFolders(dir);
  } catch (e) {
    throw new FieldError('runDir', `${dir}: cannot create the folder: ${(e as Error).message}`, { cause: e });
  }
  removeStaleTemporaries(dir);
  if (existsSync(join(dir, CHECKPOINT))) {
    if (!hooks.resume)
      throw new FieldError('resume', (name) => `${dir} already holds a training run; pass ${name} to continue it`);
    const changed = changedSettings(readRunOptions(dir) ?? {}, options);
    if (changed.length && !hooks.changeSettings)
      throw new FieldError(
        'resume',
        (name, nameOf) =>
          `${name}: ${changed.map((c) => `${nameOf(c.key)} ${c.now} (was ${c.was})`).join(', ')} ` +
          `differ${changed.length === 1 ? 's' : ''} from the run in ${dir}; leave ` +
          `${changed.length === 1 ? 'it' : 'them'} out to keep the run's settings, or add ${nameOf('changeSettings')}`,
      );
    const state = loadCheckpoint(dir, task.shapes, options);
    // Steps after the checkpoint are trained again: their log rows would repeat.
    trimLog(join(dir, 'log.jsonl'), state.step);
    trimLog(join(dir, 'samples.jsonl'), state.step);
    return state;
  }
  const { params, step } = options.init
    ? readInitWeights(task, options.init)
    : { params: initParams(task.shapes, options.seed), step: 0 };
  trimLog(join(dir, 'log.jsonl'), step); // rows of a run killed before its first checkpoint
  trimLog(join(dir, 'samples.jsonl'), step);
  return {
    step,
    params,
    ema: new Ema(params),
    adam: new AdamW({ lr: options.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: options.weightDecay }),
  };
}

/** Starting weights from a model folder (`--init`), and the step its weights' metadata records (0 if none). */
function readInitWeights(task: TrainTask, dir: string): { params: Map<string, Float32Array>; step: number } {
  const params = new Map<string, Float32Array>();
  const files = new Map<string, SafetensorsFile>();
  let step = 0;
  try {
    for (const [name, shape] of task.shapes) {
      const [path, key] = task.initSource(dir, name);
      let file = files.get(path);
      if (!file) {
        checkInputFile(path, '--init');
        file = SafetensorsFile.open(path);
        files.set(path, file);
        const s = Number(file.metadata['step']);
        if (Number.isInteger(s) && s > step) step = s;
      }
      if (!file.has(key)) throw new FieldError('init', (flag) => `${flag}: ${path} lacks '${key}'`);
      const info = file.info(key);
      if (info.shape.join(',') !== shape.join(','))
        throw new FieldError(
          'init',
          (flag) => `${flag}: ${path}: '${key}' has shape [${info.shape}], the model expects [${shape}]`,
        );
      params.set(name, file.readFloat32(key));
    }
  } finally {
    for (const f of files.values()) f.close();
  }
  return { params, step };
}

/** One optimiser step on the step's batch: gradients, clipping, AdamW with warm-up, EMA; advances `state.step`. */
async function trainStep(
  trainer: Stepper,
  state: State,
  options: ShapesTrainOptions,
): Promise<{ loss: number; lr: number; gradNorm: number }> {
  const step = state.step;
  const { loss, grads } = await trainer.run(state.params, step);
  if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss} at step ${step}`);
  const gradNorm = clipGradients(grads, options.gradClip);
  const lr = learningRate(options, state.adam.step);
  state.adam.update(state.params, grads, lr, noDecay);
  const updates = state.adam.step - 1;
  state.ema.update(state.params, Math.min(options.emaDecay, (1 + updates) / (10 + updates)));
  state.step++;
  return { loss, lr, gradNorm };
}

/**
 * The steps since the last log row (at most 25): log.jsonl gets their mean loss and throughput, and the progress
 * hook their throughput, so that the rate shown is the current speed rather than the run's average.
 */
class LogWindow {
  private loss = 0;
  private n = 0;
  private start = performance.now();
  private rate = 0;

  constructor(
    private readonly path: string,
    private readonly batchSize: number,
  ) {}

  /** Counts one step's loss; returns the window's images per second, measured now. */
  add(loss: number): number {
    this.loss += loss;
    this.n++;
    this.rate = (this.n * this.batchSize) / ((performance.now() - this.start) / 1000);
    return this.rate;
  }

  /** Appends the window's row for `step` (with the rate `add` measured) and starts a new window. */
  write(step: number, lr: number, gradNorm: number): void {
    appendLine(
      this.path,
      JSON.stringify({
        step,
        loss: this.loss / this.n,
        images_per_s: this.rate,
        lr,
        grad_norm: gradNorm,
        time: new Date().toISOString(),
      }) + '\n',
    );
    this.loss = 0;
    this.n = 0;
    this.start = performance.now();
  }
}

async function writeSamples(dir: string, state: State, task: TrainTask): Promise<SampleReport> {
  const r = await task.samples(join(dir, 'model'), state.ema.shadow, state.step);
  const gridPath = join(dir, 'samples', `step-${String(state.step).padStart(6, '0')}.png`);
  writeGrid(gridPath, r.grid);
  const report: SampleReport = { step: state.step, grid: gridPath, fullSuccess: r.fullSuccess, n: r.n };
  if (r.extra) report.extra = r.extra;
  appendLine(
    join(dir, 'samples.jsonl'),
    JSON.stringify({ ...report, captions: r.captions, success: r.success }) + '\n',
  );
  return report;
}

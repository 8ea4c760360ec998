/**
 * `s2i train` and `s2i export-model` runs (declared in train.ts).
 */
import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from '@commander-js/extra-typings';
import { SafetensorsFile } from '../../io/safetensors.js';
import { checkReplaceableModelFolder } from '../../shapes/model.js';
import { checkInputFile } from '../../io/regular-file.js';
import {
  readRunOptions,
  SHAPES_TRAIN_DEFAULTS,
  trainShapes,
  type ShapesTrainOptions,
  type TrainProgress,
} from '../../shapes/train.js';
import { taskFor } from '../../shapes/tasks.js';
import { onInterrupt } from '../../util/cleanup.js';
import { interactive } from '../options.js';
import type { ExportFlags, TrainFlags } from './train.js';

/** The flags that set a run's trajectory settings (see RUN_SETTINGS), by commander's option key. */
const FLAG_SETTING = {
  batch: 'batchSize',
  lr: 'lr',
  warmup: 'warmupSteps',
  emaDecay: 'emaDecay',
  seed: 'seed',
  klWeight: 'klWeight',
} as const;

/** `s2i train`: one training run, with a progress bar or log lines, that Ctrl-C ends after a checkpoint. */
export async function train(flags: TrainFlags, cmd: Command): Promise<void> {
  const options = trainOptions(flags, cmd);
  const bar = interactive(flags.json)
    ? new SingleBar({
        format: 'train {bar} {value}/{total} | loss {loss} | {ips} img/s | eta {eta_formatted}',
        hideCursor: true,
      })
    : null;
  let stop: NodeJS.Signals | null = null;
  // The first Ctrl-C finishes the current step and writes the checkpoint; a second one stops at once.
  const stopGracefully = onInterrupt((signal) => {
    if (stop !== null) return false;
    stop = signal;
    process.stderr.write(`s2i: ${signal}: stopping after the current step (send it again to stop now)\n`);
    return true;
  });
  try {
    await trainShapes(options, {
      resume: flags.resume ?? false,
      changeSettings: flags.changeSettings ?? false,
      shouldStop: () => stop !== null,
      onProgress: progressPrinter(bar, flags.json === true),
      onSample: (r) => {
        const msg = `samples at step ${r.step}: full success ${Object.entries(r.fullSuccess)
          .map(([k, v]) => `${k} obj ${(100 * v).toFixed(0)}% (n=${r.n[k]})`)
          .join(', ')} → ${r.grid}`;
        if (bar) bar.stop();
        process.stderr.write(msg + '\n');
      },
    });
  } finally {
    bar?.stop();
    stopGracefully();
  }
  if (stop !== null) {
    process.stderr.write(`s2i: interrupted (${stop}); the checkpoint is written: add --resume to continue\n`);
    process.exitCode = stop === 'SIGINT' ? 130 : 143;
  }
}

/**
 * The library's options from the flags. A resumed run keeps its own settings: flags left at their defaults take
 * the run's values.
 */
function trainOptions(flags: TrainFlags, cmd: Command): ShapesTrainOptions {
  const stored = flags.resume ? readRunOptions(flags.run) : null;
  // A value the run stored goes through its flag's own parser: a damaged checkpoint is named like a bad flag.
  const fromRun = <K extends keyof TrainFlags>(key: K, value: TrainFlags[K], was: unknown): TrainFlags[K] => {
    if (cmd.getOptionValueSource(key) !== 'default' || was === undefined) return value;
    const option = cmd.options.find((o) => o.attributeName() === key)!;
    return option.parseArg!(String(was), undefined) as TrainFlags[K];
  };
  const setting = (key: keyof typeof FLAG_SETTING) => fromRun(key, flags[key], stored?.[FLAG_SETTING[key]]);
  return {
    ...SHAPES_TRAIN_DEFAULTS,
    runDir: flags.run,
    model: stored?.model ? fromRun('model', flags.model, stored.model) : flags.model,
    vae: flags.vae ?? stored?.vae ?? '',
    init: flags.init ?? '',
    sampleSteps: flags.sampleSteps,
    sampleGuidance: flags.sampleGuidance,
    steps: flags.steps,
    batchSize: setting('batch'),
    lr: setting('lr'),
    warmupSteps: setting('warmup'),
    emaDecay: setting('emaDecay'),
    seed: setting('seed'),
    klWeight: setting('klWeight'),
    checkpointEvery: flags.checkpointEvery,
    sampleEvery: flags.sampleEvery,
    samplePrompts: flags.samplePrompts,
  };
}

/**
 * Shows training progress: on the bar every step, else one line every 25 steps and at the end (a JSON object
 * with --json, for scripts; words otherwise).
 */
function progressPrinter(bar: SingleBar | null, json: boolean): (p: TrainProgress) => void {
  let lastLog = 0;
  return (p) => {
    if (bar) {
      if (!bar.isActive) bar.start(p.totalSteps, p.step, { loss: '-', ips: '-' });
      bar.update(p.step, { loss: p.loss.toFixed(4), ips: p.imagesPerSecond.toFixed(1) });
    } else if (p.step - lastLog >= 25 || p.step === p.totalSteps) {
      lastLog = p.step;
      const line = {
        step: p.step,
        total: p.totalSteps,
        loss: p.loss,
        images_per_s: p.imagesPerSecond,
        lr: p.lr,
        grad_norm: p.gradNorm,
      };
      process.stdout.write(
        (json
          ? JSON.stringify(line)
          : `step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(1)} img/s`) + '\n',
      );
    }
  };
}

/** `s2i export-model`: a run's checkpoint weights (EMA unless --raw) as a model folder (a VAE folder for the VAE). */
export async function exportModel(flags: ExportFlags): Promise<void> {
  const stored = readRunOptions(flags.run) ?? {};
  const model = stored.model ?? 'shapes';
  if (model !== 'shapes-ldm-vae') checkReplaceableModelFolder(flags.out);
  const task = taskFor({ ...SHAPES_TRAIN_DEFAULTS, ...stored, model });
  const checkpoint = join(flags.run, 'checkpoint.safetensors');
  checkInputFile(checkpoint, '--run: checkpoint');
  const file = SafetensorsFile.open(checkpoint);
  const weights = new Map<string, Float32Array>();
  let step: string;
  try {
    for (const name of task.shapes.keys())
      weights.set(name, file.readFloat32(`${flags.raw ? 'param' : 'ema'}/${name}`));
    step = file.metadata['step'] ?? '?';
  } finally {
    file.close();
  }
  await task.export(flags.out, weights, { step, weights: flags.raw ? 'raw' : 'ema' });
  process.stdout.write(`exported step ${step} (${flags.raw ? 'raw' : 'EMA'} weights) to ${flags.out}\n`);
}

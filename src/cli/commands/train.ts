/**
 * `s2i train`: train the shapes-world text-to-image model from scratch (resumable), and export it as a model
 * folder. Long runs belong in the background: checkpoints every few hundred steps, a log line every 25.
 */
import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from '@commander-js/extra-typings';
import { SafetensorsFile } from '../../io/safetensors.js';
import { UserError } from '../../errors.js';
import { checkReplaceableModelFolder } from '../../shapes/model.js';
import { checkInputFile } from '../../io/regular-file.js';
import {
  readRunOptions,
  SHAPES_TRAIN_DEFAULTS,
  TRAIN_MODELS,
  trainShapes,
  type ShapesTrainOptions,
  type TrainModel,
  type TrainProgress,
} from '../../shapes/train.js';
import { taskFor } from '../../shapes/tasks.js';
import { onInterrupt } from '../../util/cleanup.js';
import { integerOption, interactive, numberOption, typedOption } from '../options.js';
import { quote } from '../../util/quote.js';

/** The flags that set a run's trajectory settings (see RUN_SETTINGS), by commander's option key. */
const FLAG_SETTING = {
  batch: 'batchSize',
  lr: 'lr',
  warmup: 'warmupSteps',
  emaDecay: 'emaDecay',
  seed: 'seed',
  klWeight: 'klWeight',
} as const;

/** A model name `s2i train` knows (TRAIN_MODELS). */
function parseTrainModel(value: string, flag: string): TrainModel {
  if (!(TRAIN_MODELS as readonly string[]).includes(value))
    throw new UserError(`${flag} ${quote(value)}: expected one of ${TRAIN_MODELS.join(', ')}`);
  return value as TrainModel;
}

/** The flags as commander parsed them: their types come from the declarations in `trainCommand`. */
type TrainFlags = ReturnType<ReturnType<typeof trainCommand>['opts']>;

/** The command and its options: each flag, its type, default (the library's) and help text declared once. */
function trainCommand(program: Command) {
  const d = SHAPES_TRAIN_DEFAULTS;
  return program
    .command('train')
    .description("train the shapes-world models from scratch with the project's own engine (resumable)")
    .requiredOption('--run <dir>', 'run folder: checkpoint, log.jsonl, samples/ and the exported model/')
    .addOption(
      typedOption('--model <name>', `what to train: ${TRAIN_MODELS.join(', ')}`, parseTrainModel).default(d.model),
    )
    .option('--vae <dir>', 'shapes-ldm: the trained VAE folder (s2i export-model of a shapes-ldm-vae run)')
    .option(
      '--init <dir>',
      'start from the weights of this model folder (fresh optimiser state) instead of from scratch',
    )
    .addOption(integerOption('--steps <n>', 'train until this many optimiser steps in total', 1).default(d.steps))
    .addOption(integerOption('--batch <n>', 'images per step', 1, 4096).default(d.batchSize))
    .addOption(numberOption('--lr <x>', 'AdamW learning rate after warm-up', 0, 1).default(d.lr))
    .addOption(integerOption('--warmup <n>', 'linear warm-up steps', 0).default(d.warmupSteps))
    .addOption(numberOption('--ema-decay <x>', 'EMA decay of the exported weights', 0, 1).default(d.emaDecay))
    .addOption(
      numberOption('--kl-weight <x>', 'shapes-ldm-vae: weight of the KL term (SD: 1e-6)', 0, 1).default(d.klWeight),
    )
    .addOption(
      integerOption('--seed <n>', 'seed of the data, noise and initial weights', 0, 2 ** 31 - 1).default(d.seed),
    )
    .addOption(integerOption('--checkpoint-every <n>', 'steps between checkpoints', 1).default(d.checkpointEvery))
    .addOption(
      integerOption('--sample-every <n>', 'steps between scored sample grids (0: never)', 0).default(d.sampleEvery),
    )
    .addOption(
      integerOption('--sample-prompts <n>', 'held-out prompts per sample grid', 1, 10000).default(d.samplePrompts),
    )
    .addOption(
      integerOption(
        '--sample-steps <n>',
        "sampling steps of the sample grids (and of the pixel model's s2i.json)",
        1,
        1000,
      ).default(d.sampleSteps),
    )
    .addOption(
      numberOption(
        '--sample-guidance <x>',
        "guidance of the sample grids (and of the pixel model's s2i.json)",
        0,
        100,
      ).default(d.sampleGuidance),
    )
    .option('--resume', 'continue the run in --run')
    .option('--json', 'no progress bar; one JSON line per log interval on stdout')
    .addHelpText(
      'after',
      `
Examples:
  s2i train --run runs/shapes --steps 20000          start a run
  s2i train --run runs/shapes --steps 40000 --resume continue it to 40000 steps
  s2i export-model --run runs/shapes --out models/shapes

  The latent model (models/shapes-ldm): its VAE first, then the text encoder + UNet on the VAE's latents:
  s2i train --model shapes-ldm-vae --run runs/ldm-vae --steps 3000 --batch 16 --lr 1e-3
  s2i export-model --run runs/ldm-vae --out runs/ldm-vae/vae
  s2i train --model shapes-ldm --vae runs/ldm-vae/vae --run runs/ldm --steps 20000
  s2i export-model --run runs/ldm --out models/shapes-ldm
  s2i train --model shapes-ldm --vae models/shapes-ldm/vae --init models/shapes-ldm --run runs/ldm2 --steps 40000
                                                     continue from committed weights (fresh optimiser state)
`,
    )
    .option(
      '--change-settings',
      'with --resume: continue with a different --batch, --lr, --warmup, --ema-decay or --seed',
    );
}

function exportCommand(program: Command) {
  return program
    .command('export-model')
    .description("write a run's EMA (or raw) weights as a model folder the pipeline loads")
    .requiredOption('--run <dir>', 'run folder holding checkpoint.safetensors')
    .requiredOption('--out <dir>', 'model folder to write (replaced atomically)')
    .option('--raw', 'export the raw weights instead of the EMA');
}

type ExportFlags = ReturnType<ReturnType<typeof exportCommand>['opts']>;

export function register(program: Command): void {
  trainCommand(program).action(async (flags, cmd) => train(flags, cmd));
  exportCommand(program).action(async (flags) => exportModel(flags));
}

/** `s2i train`: one training run, with a progress bar or log lines, that Ctrl-C ends after a checkpoint. */
async function train(flags: TrainFlags, cmd: Command): Promise<void> {
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
async function exportModel(flags: ExportFlags): Promise<void> {
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

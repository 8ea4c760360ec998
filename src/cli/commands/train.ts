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
import { interactive, parseInteger, parseNumber } from '../options.js';

/** The flags that set a run's trajectory settings (see RUN_SETTINGS), by commander's option key. */
const FLAG_SETTING = {
  batch: 'batchSize',
  lr: 'lr',
  warmup: 'warmupSteps',
  emaDecay: 'emaDecay',
  seed: 'seed',
  klWeight: 'klWeight',
} as const;

interface TrainFlags {
  run: string;
  model: string;
  vae?: string;
  init?: string;
  sampleSteps: string;
  sampleGuidance: string;
  steps: string;
  batch: string;
  lr: string;
  warmup: string;
  emaDecay: string;
  seed: string;
  klWeight: string;
  checkpointEvery: string;
  sampleEvery: string;
  samplePrompts: string;
  resume?: boolean;
  changeSettings?: boolean;
  json?: boolean;
}

interface ExportFlags {
  run: string;
  out: string;
  raw?: boolean;
}

export function register(program: Command): void {
  const d = SHAPES_TRAIN_DEFAULTS;
  program
    .command('train')
    .description("train the shapes-world models from scratch with the project's own engine (resumable)")
    .requiredOption('--run <dir>', 'run folder: checkpoint, log.jsonl, samples/ and the exported model/')
    .option('--model <name>', `what to train: ${TRAIN_MODELS.join(', ')}`, d.model)
    .option('--vae <dir>', 'shapes-ldm: the trained VAE folder (s2i export-model of a shapes-ldm-vae run)')
    .option(
      '--init <dir>',
      'start from the weights of this model folder (fresh optimiser state) instead of from scratch',
    )
    .option('--steps <n>', 'train until this many optimiser steps in total', String(d.steps))
    .option('--batch <n>', 'images per step', String(d.batchSize))
    .option('--lr <x>', 'AdamW learning rate after warm-up', String(d.lr))
    .option('--warmup <n>', 'linear warm-up steps', String(d.warmupSteps))
    .option('--ema-decay <x>', 'EMA decay of the exported weights', String(d.emaDecay))
    .option('--kl-weight <x>', 'shapes-ldm-vae: weight of the KL term (SD: 1e-6)', String(d.klWeight))
    .option('--seed <n>', 'seed of the data, noise and initial weights', String(d.seed))
    .option('--checkpoint-every <n>', 'steps between checkpoints', String(d.checkpointEvery))
    .option('--sample-every <n>', 'steps between scored sample grids (0: never)', String(d.sampleEvery))
    .option('--sample-prompts <n>', 'held-out prompts per sample grid', String(d.samplePrompts))
    .option(
      '--sample-steps <n>',
      "sampling steps of the sample grids (and of the pixel model's s2i.json)",
      String(d.sampleSteps),
    )
    .option(
      '--sample-guidance <x>',
      "guidance of the sample grids (and of the pixel model's s2i.json)",
      String(d.sampleGuidance),
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
    )
    .action(async (flags: TrainFlags, cmd: Command) => train(flags, cmd));

  program
    .command('export-model')
    .description("write a run's EMA (or raw) weights as a model folder the pipeline loads")
    .requiredOption('--run <dir>', 'run folder holding checkpoint.safetensors')
    .requiredOption('--out <dir>', 'model folder to write (replaced atomically)')
    .option('--raw', 'export the raw weights instead of the EMA')
    .action(async (flags: ExportFlags) => exportModel(flags));
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
  const model = (
    cmd.getOptionValueSource('model') === 'default' && stored?.model ? stored.model : flags.model
  ) as TrainModel;
  if (!(TRAIN_MODELS as readonly string[]).includes(model))
    throw new UserError(`--model ${flags.model}: expected one of ${TRAIN_MODELS.join(', ')}`);
  const vae = flags.vae ?? stored?.vae ?? '';
  const pick = (key: keyof TrainFlags & keyof typeof FLAG_SETTING, value: string): string => {
    const was = stored?.[FLAG_SETTING[key]];
    return cmd.getOptionValueSource(key) === 'default' && was !== undefined ? String(was) : value;
  };
  return {
    ...SHAPES_TRAIN_DEFAULTS,
    runDir: flags.run,
    model,
    vae,
    init: flags.init ?? '',
    sampleSteps: parseInteger(flags.sampleSteps, '--sample-steps', 1, 1000),
    sampleGuidance: parseNumber(flags.sampleGuidance, '--sample-guidance', 0, 100),
    steps: parseInteger(flags.steps, '--steps', 1),
    batchSize: parseInteger(pick('batch', flags.batch), '--batch', 1, 4096),
    lr: parseNumber(pick('lr', flags.lr), '--lr', 0, 1),
    warmupSteps: parseInteger(pick('warmup', flags.warmup), '--warmup', 0),
    emaDecay: parseNumber(pick('emaDecay', flags.emaDecay), '--ema-decay', 0, 1),
    seed: parseInteger(pick('seed', flags.seed), '--seed', 0, 2 ** 31 - 1),
    klWeight: parseNumber(pick('klWeight', flags.klWeight), '--kl-weight', 0, 1),
    checkpointEvery: parseInteger(flags.checkpointEvery, '--checkpoint-every', 1),
    sampleEvery: parseInteger(flags.sampleEvery, '--sample-every', 0),
    samplePrompts: parseInteger(flags.samplePrompts, '--sample-prompts', 1, 10000),
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

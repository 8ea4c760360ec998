/**
 * `s2i train`: train the shapes-world text-to-image model from scratch (resumable), and export it as a model
 * folder. Long runs belong in the background: checkpoints every few hundred steps, a log line every 25. This file
 * declares the commands; their runs are train-run.ts, imported only when one runs.
 */
import type { Command } from '@commander-js/extra-typings';
import { UserError } from '../../errors.js';
import { SHAPES_TRAIN_DEFAULTS, TRAIN_MODELS, type TrainModel } from '../../shapes/train-settings.js';
import { integerOption, numberOption, typedOption } from '../options.js';
import { quote } from '../../util/quote.js';

/** A model name `s2i train` knows (TRAIN_MODELS). */
function parseTrainModel(value: string, flag: string): TrainModel {
  if (!(TRAIN_MODELS as readonly string[]).includes(value))
    throw new UserError(`${flag} ${quote(value)}: expected one of ${TRAIN_MODELS.join(', ')}`);
  return value as TrainModel;
}

/** The flags as commander parsed them: their types come from the declarations in `trainCommand`. */
export type TrainFlags = ReturnType<ReturnType<typeof trainCommand>['opts']>;

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

export type ExportFlags = ReturnType<ReturnType<typeof exportCommand>['opts']>;

export function register(program: Command): void {
  trainCommand(program).action(async (flags, cmd) => (await import('./train-run.js')).train(flags, cmd));
  exportCommand(program).action(async (flags) => (await import('./train-run.js')).exportModel(flags));
}

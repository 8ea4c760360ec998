/**
 * `s2i shapes`: the synthetic shapes world.
 *   s2i shapes sample --count N [--seed S] [--size 32] [--objects 1-3] [--out DIR] [--json]
 *   s2i shapes score IMAGE.png --prompt "..." [--json]
 * This file declares the commands; their runs are shapes-run.ts, imported only when one runs.
 */
import type { Command } from '@commander-js/extra-typings';
import { UserError } from '../../errors.js';
import { DEFAULT_PREFIX_PROBABILITY } from '../../shapes/generate.js';
import { DEFAULT_SIZE } from '../../shapes/world.js';
import { quote } from '../../util/quote.js';
import { integerOption, numberOption, typedOption } from '../options.js';

/** `N` or `LO-HI` objects per image. */
function parseObjects(value: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(value);
  if (!m) throw new UserError(`--objects must be a count or a range such as 1-3, got ${quote(value)}`);
  const lo = Number(m[1]),
    hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi < lo)
    throw new UserError(`--objects must be a count or a range such as 1-3 with 1 <= low <= high, got ${quote(value)}`);
  return [lo, hi];
}

/** The flags as commander parsed them: their types come from the declarations in `shapesCommands`. */
export type SampleFlags = ReturnType<ReturnType<typeof shapesCommands>['sample']['opts']>;
export type ScoreFlags = ReturnType<ReturnType<typeof shapesCommands>['score']['opts']>;

/** The commands and their options: each flag, its type, default (the library's) and help text declared once. */
function shapesCommands(program: Command) {
  const shapes = program
    .command('shapes')
    .description('the synthetic shapes world: sample training images, score generated images');
  const sample = shapes
    .command('sample')
    .description('write random shapes-world images as PNGs plus captions.jsonl (file, caption, objects per line)')
    .addOption(integerOption('--count <n>', 'number of images', 1, 1_000_000).makeOptionMandatory())
    .addOption(
      integerOption(
        '--seed <s>',
        'random seed (integer); the same seed gives the same images',
        -(2 ** 53 - 1),
        2 ** 53 - 1,
      ).default(0),
    )
    .addOption(integerOption('--size <px>', 'image side in pixels', 16, 1024).default(DEFAULT_SIZE))
    .addOption(
      typedOption('--objects <range>', 'objects per image: a count or a range such as 1-3', parseObjects).default(
        [1, 3] as [number, number],
        '1-3',
      ),
    )
    .option('--out <dir>', 'output directory (created if missing)', 'shapes-samples')
    .option('--same-colour', 'allow two objects of the same colour in one image')
    .option('--same-shape', 'allow two objects of the same shape in one image')
    .addOption(
      numberOption('--prefix-prob <p>', 'probability of a caption prefix such as "a photo of"', 0, 1).default(
        DEFAULT_PREFIX_PROBABILITY,
      ),
    )
    .option('--json', 'print one JSON object (output paths and every example) instead of a summary');
  const score = shapes
    .command('score')
    .description('detect the objects in a shapes-world image and score them against a prompt')
    .argument('<image>', 'PNG image')
    .requiredOption('--prompt <text>', 'the prompt, e.g. "a red circle and a blue square"')
    .addOption(
      integerOption(
        '--min-blob-area <px>',
        'ignore blobs of fewer pixels: specks, or objects too small to count (default: 12 at 32x32, scaled with the image area)',
        1,
      ),
    )
    .option('--json', 'print one JSON object with the full report');
  return { sample, score };
}

export function register(program: Command): void {
  const { sample, score } = shapesCommands(program);
  sample.action(async (flags) => (await import('./shapes-run.js')).runSample(flags));
  score.action(async (image, flags) => (await import('./shapes-run.js')).runScore(image, flags));
}

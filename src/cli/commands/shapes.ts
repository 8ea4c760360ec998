/**
 * `s2i shapes`: the synthetic shapes world.
 *   s2i shapes sample --count N [--seed S] [--size 32] [--objects 1-3] [--out DIR] [--json]
 *   s2i shapes score IMAGE.png --prompt "..." [--json]
 */
import { join } from 'node:path';
import type { Command } from '@commander-js/extra-typings';
import { UserError } from '../../errors.js';
import { decodePng, encodePng } from '../../image/png.js';
import { OutputFiles } from '../../io/outputs.js';
import { DEFAULT_PREFIX_PROBABILITY, sampleImage, type ExampleOptions } from '../../shapes/generate.js';
import { parsePrompt } from '../../shapes/prompt.js';
import { Rng } from '../../shapes/rng.js';
import { COLOURS, DEFAULT_SIZE, SHAPES } from '../../shapes/world.js';
import { SCORE_BYTES_PER_PIXEL, type ScoreReport, scoreImage } from '../../shapes/score.js';
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

async function runSample(flags: SampleFlags): Promise<void> {
  const { count, seed, size } = flags;
  const [minObjects, maxObjects] = flags.objects;
  const prefixProbability = flags.prefixProb;
  const options: ExampleOptions = {
    size,
    minObjects,
    maxObjects,
    allowSameColour: flags.sameColour ?? false,
    allowSameShape: flags.sameShape ?? false,
    prefixProbability,
  };
  // Reject impossible vocab/count combinations with the flag names before writing anything.
  if (!options.allowSameShape && maxObjects > SHAPES.length) {
    throw new UserError(
      `--objects: at most ${SHAPES.length} objects per image with distinct shapes; add --same-shape for more`,
    );
  }
  if (!options.allowSameColour && maxObjects > COLOURS.length) {
    throw new UserError(
      `--objects: at most ${COLOURS.length} objects per image with distinct colours; add --same-colour for more`,
    );
  }
  const out = flags.out;
  // All files or none: each is checked first, written to a temporary file, and put in place at the end.
  const outputs = new OutputFiles();
  outputs.folder(out, '--out');
  const digits = Math.max(5, String(count - 1).length);
  const names = Array.from({ length: count }, (_, i) => `${String(i).padStart(digits, '0')}.png`);
  for (const name of names) outputs.file(join(out, name), '--out');
  const captionsPath = join(out, 'captions.jsonl');
  outputs.file(captionsPath, '--out');
  const rng = new Rng(seed);
  const lines: string[] = [];
  const examples: { file: string; caption: string; objects: unknown[] }[] = [];
  await outputs.run((o) => {
    for (const file of names) {
      const ex = sampleImage(rng, options);
      o.write(join(out, file), encodePng(ex.image, size, size));
      const entry = { file, caption: ex.caption, objects: ex.scene.objects };
      lines.push(JSON.stringify(entry));
      if (flags.json) examples.push(entry);
    }
    o.write(captionsPath, lines.join('\n') + '\n');
  });
  if (flags.json) {
    process.stdout.write(JSON.stringify({ out, count, seed, size, captions: captionsPath, examples }) + '\n');
    return;
  }
  process.stdout.write(
    `wrote ${count} image${count === 1 ? '' : 's'} (${size}x${size}, seed ${seed}) and captions.jsonl to ${out}\n`,
  );
  for (const line of lines.slice(0, 5)) {
    const e = JSON.parse(line) as { file: string; caption: string };
    process.stdout.write(`  ${e.file}  ${e.caption}\n`);
  }
  if (count > 5) process.stdout.write(`  ... (${count - 5} more)\n`);
}

const pct = (v: number): string => `${(100 * v).toFixed(0)}%`;

/** The human-readable form of a score report. */
export function formatReport(report: ScoreReport, image: string): string {
  const lines: string[] = [];
  lines.push(
    `${image} (${report.width}x${report.height})${report.prompt !== undefined ? `  prompt: ${quote(report.prompt, 300)}` : ''}`,
  );
  const name = (colour: string | null, shape: string | null): string =>
    [colour ?? 'any-colour', shape].filter(Boolean).join(' ');
  for (const o of report.objects) {
    const want = name(o.colour, o.shape);
    let status: string;
    if (!o.found) status = 'MISSING';
    else {
      const d = report.detections[o.detection!]!;
      const got = `${d.colour ?? 'grey/dark'} ${d.shape} at (${d.bbox[0]},${d.bbox[1]}) ${d.bbox[2]}x${d.bbox[3]}`;
      if (o.found_shape_match && o.colour_correct) status = `ok       ${got}`;
      else if (!o.found_shape_match) status = `wrong shape: ${got}`;
      else status = `wrong colour${o.leaked ? ' (leaked from another object)' : ''}: ${got}`;
    }
    lines.push(`  ${want.padEnd(16)} ${status}`);
  }
  for (const d of report.detections) {
    if (d.matched_to !== null) continue;
    lines.push(
      `  ${'extra'.padEnd(16)} ${d.colour ?? 'grey/dark'} ${d.shape} at (${d.bbox[0]},${d.bbox[1]}) ${d.bbox[2]}x${d.bbox[3]}, ${d.area} px`,
    );
  }
  lines.push(
    `object recall ${pct(report.object_recall)}, binding ${pct(report.binding)}, leakage ${pct(report.leakage)}, ` +
      `extra objects ${report.extra_objects}, full success: ${report.full_success ? 'yes' : 'no'}`,
  );
  return lines.join('\n') + '\n';
}

function runScore(imagePath: string, flags: ScoreFlags): void {
  const objects = parsePrompt(flags.prompt).objects; // parse first: a bad prompt is reported even with a bad image
  const img = decodePng(imagePath, { bytesPerPixel: SCORE_BYTES_PER_PIXEL });
  const report = scoreImage(img, undefined, undefined, { objects }, { minBlobArea: flags.minBlobArea });
  report.prompt = flags.prompt;
  if (flags.json) {
    const { prompt, ...rest } = report;
    process.stdout.write(JSON.stringify({ image: imagePath, prompt, ...rest }) + '\n');
  } else process.stdout.write(formatReport(report, imagePath));
}

/** The flags as commander parsed them: their types come from the declarations in `shapesCommands`. */
type SampleFlags = ReturnType<ReturnType<typeof shapesCommands>['sample']['opts']>;
type ScoreFlags = ReturnType<ReturnType<typeof shapesCommands>['score']['opts']>;

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
  sample.action(async (flags) => runSample(flags));
  score.action((image, flags) => runScore(image, flags));
}

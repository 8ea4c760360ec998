/**
 * `s2i shapes sample` and `s2i shapes score` runs (declared in shapes.ts).
 */
import { join } from 'node:path';
import { UserError } from '../../errors.js';
import { decodePng, encodePng } from '../../image/png.js';
import { OutputFiles } from '../../io/outputs.js';
import { sampleImage, type ExampleOptions } from '../../shapes/generate.js';
import { parsePrompt } from '../../shapes/prompt.js';
import { Rng } from '../../shapes/rng.js';
import { COLOURS, SHAPES } from '../../shapes/world.js';
import { SCORE_BYTES_PER_PIXEL, type ScoreReport, scoreImage } from '../../shapes/score.js';
import { quote } from '../../util/quote.js';
import type { SampleFlags, ScoreFlags } from './shapes.js';

export async function runSample(flags: SampleFlags): Promise<void> {
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

export function runScore(imagePath: string, flags: ScoreFlags): void {
  const objects = parsePrompt(flags.prompt).objects; // parse first: a bad prompt is reported even with a bad image
  const img = decodePng(imagePath, { bytesPerPixel: SCORE_BYTES_PER_PIXEL });
  const report = scoreImage(img, undefined, undefined, { objects }, { minBlobArea: flags.minBlobArea });
  report.prompt = flags.prompt;
  if (flags.json) {
    const { prompt, ...rest } = report;
    process.stdout.write(JSON.stringify({ image: imagePath, prompt, ...rest }) + '\n');
  } else process.stdout.write(formatReport(report, imagePath));
}

/**
 * `s2i bench`: the benchmark. Every prompt of a suite × seed × method with one loaded model, each image scored by
 * the shapes-world scorer and appended to DIR/results.jsonl (resumable), then the summary table (or --json), the
 * Markdown table in DIR/summary.md and optionally a self-contained HTML report. See src/bench/. This file declares
 * the command; the run is bench-run.ts, imported only when the command runs.
 */
import type { Command } from '@commander-js/extra-typings';
import { DEFAULT_BENCH_BATCH, parseMethods, parseSeeds } from '../../bench/plan.js';
import { parseRedisUrl } from '../../bench/redis-url.js';
import { BUILTIN_SUITES, parseSplit, SPLITS } from '../../bench/suites.js';
import { METHOD_NAMES } from '../../methods/registry.js';
import { GUIDANCE_RANGE } from '../../pipeline/generate.js';
import { parseSamplerName, SAMPLER_NAMES } from '../../schedulers/index.js';
import {
  integerOption,
  methodOptions,
  numberOption,
  parsePredictionType,
  parseResolution,
  typedOption,
} from '../options.js';

/**
 * Inference steps for a model without an `s2i.json`: A&E-style methods cost ~3x plain sampling per step on CPU; 25
 * keeps a suite practical. A model that has one (both shapes models) is benchmarked at its recommendation, as
 * `s2i generate` runs it.
 */
export const BENCH_DEFAULT_STEPS = 25;
/** Guidance for a model without an `s2i.json`: the pixel shapes model's (its training sample grids use it). */
export const BENCH_DEFAULT_GUIDANCE = 5;
export const BENCH_DEFAULT_METHODS = 'none,attend-and-excite,suppress';
export const BENCH_DEFAULT_SEEDS = '0-3';

/** The flags as commander parsed them: their types come from the declarations in `benchCommand`. */
export type BenchFlags = ReturnType<ReturnType<typeof benchCommand>['opts']>;

const BENCH_HELP = `
Description:
  For every prompt x seed x method: picks the subjects automatically (the
  prompt's nouns and their adjectives), generates from initial noise drawn
  from (seed, prompt) — every image its own draw, the same for every method of
  a pair —, scores the image with the shapes-world scorer and appends one
  line to DIR/results.jsonl (its noise_seed reproduces the image with
  s2i generate --seed). A rerun with the same --out skips
  the images already there (same prompt, seed, method, settings and model),
  so an interrupted run resumes where it stopped. Up to --batch-size pairs
  are generated together, one batch per method; a batch gives every image
  its one-at-a-time pixels (rows record their share of the batch's time).
  Method settings (--gamma, --scale-factor, ...) apply to every listed
  method that takes them and enter those rows' settings; one that none of
  --methods takes is an error. Settings the model cannot run fail before
  --out is created.

Suites (built in; tuning / held-apart prompts):
  shapes-1  single objects, 6 / 12 (the model's own quality check)
  shapes-2  two objects, 48 / 96, including same-shape and same-colour pairs
  shapes-3  three objects, 48 / 96
  The held-apart split is two balanced halves in order: --limit 48 (shapes-1:
  --limit 6) runs the first half, as balanced as the whole.

Job queue (--queue redis://HOST:PORT/DB):
  Instead of generating, enqueue one job per image (BullMQ on Redis) and
  collect what workers return (s2i worker --queue URL, on any machines with
  the same model) into DIR exactly as a local run writes it. A worker that
  dies loses nothing (its jobs go to others); a job that fails 3 times is
  listed as FAILED in the summary; Ctrl-C leaves the queue as it is and a
  rerun collects the rest. The password may also come from
  $S2I_REDIS_PASSWORD; it is never printed.

Statistics:
  full success (per image), object recall, binding and leakage (per object),
  the share of images with an object missing / recoloured / an extra object,
  each with a 95% two-way bootstrap interval over prompts and seeds; full
  success seed by seed; seconds per image. Against none and
  attend-and-excite (and the rivals, when they ran), over the same
  (prompt, seed) pairs: the failure ratio with a bootstrap interval, the
  exact McNemar test and an exact sign-flip test that keeps each prompt's
  pairs together.

Defaults:
  --steps and --guidance: the model's s2i.json (both shapes models: 25 steps;
  guidance 5 for models/shapes, 7.5 for models/shapes-ldm), else --steps
  ${BENCH_DEFAULT_STEPS} (gradient methods cost about 3x plain sampling per image on
  CPU; the 50-step A&E schedule is scaled to the step count) and
  --guidance ${BENCH_DEFAULT_GUIDANCE}. --seeds ${BENCH_DEFAULT_SEEDS}, --split tuning.

Examples:
  s2i bench --suite shapes-2 --methods none,attend-and-excite,suppress \\
      --seeds 0-3 --model models/shapes --out out/bench/s2
  s2i bench --suite shapes-2,shapes-3 --split held-apart --seeds 0-3 \\
      --methods none,suppress --report report.html --json
  s2i bench --suite prompts.jsonl --methods none,suppress-edit --seeds 0,1
  s2i bench --suite shapes-2 --seeds 0-3 --queue redis://10.0.0.5:6379/0
`;

/** The command and its options: each flag, its type, default and help text declared once. */
function benchCommand(program: Command) {
  const command = program
    .command('bench')
    .description('benchmark methods on a prompt suite: generate, score, resume, summarise with confidence intervals')
    .requiredOption(
      '--suite <name>',
      `prompt suite: ${BUILTIN_SUITES.join(', ')}, or FILE.jsonl ({"prompt": "..."} per line); several with commas`,
    )
    .addOption(typedOption('--split <split>', `built-in suites: ${SPLITS.join(', ')} (default: tuning)`, parseSplit))
    .addOption(
      typedOption('--methods <list>', `methods, comma-separated (known: ${METHOD_NAMES.join(', ')})`, (v) =>
        parseMethods(v),
      ).default(parseMethods(BENCH_DEFAULT_METHODS), BENCH_DEFAULT_METHODS),
    )
    .addOption(
      typedOption(
        '--seeds <list>',
        'seeds, e.g. 0-63 or 0,1,2 (each (prompt, seed) pair is its own noise draw, shared by every method)',
        (v) => parseSeeds(v),
      ).default(parseSeeds(BENCH_DEFAULT_SEEDS), BENCH_DEFAULT_SEEDS),
    )
    .addOption(
      integerOption(
        '--steps <n>',
        `inference steps (default: the model's s2i.json, else ${BENCH_DEFAULT_STEPS})`,
        1,
        1000,
      ),
    )
    .addOption(
      numberOption(
        '--guidance <x>',
        `classifier-free guidance scale (default: the model's s2i.json, else ${BENCH_DEFAULT_GUIDANCE})`,
        ...GUIDANCE_RANGE,
      ),
    )
    .addOption(
      typedOption(
        '--scheduler <name>',
        `sampler: ${SAMPLER_NAMES.join(', ')} (default: the model's own)`,
        parseSamplerName,
      ),
    )
    .option(
      '--model <path>',
      'model folder or single-file SD 1.x/2.x .safetensors (default: the installed pixel shapes model, models/shapes)',
    )
    .option('--config <dir>', "a single file's configs and tokenizer: a diffusers folder without weights")
    .addOption(
      typedOption(
        '--prediction-type <type>',
        'what the UNet predicts: epsilon, v_prediction, sample (default: the config)',
        parsePredictionType,
      ),
    )
    .option(
      '--out <dir>',
      'output folder: results.jsonl, images/, summary.md, summary.json (default: out/bench/SUITE-SPLIT)',
    )
    .addOption(
      typedOption(
        '--attn-res <size>',
        "guided methods: query resolution of the maps they read, e.g. 8 or 8x8 (default: the resolution rule); enters the rows' settings",
        parseResolution,
      ),
    )
    .addOption(integerOption('--limit <n>', 'only the first n prompts of each suite', 1))
    .option(
      '--json',
      'print one JSON object (per-method rates with intervals, comparisons, run settings) instead of the table',
    )
    .option('--report <file>', 'also write a self-contained HTML report (tables and image grids with scores)')
    .option('--report-maps', 'record attention maps for new images and show them in the report')
    .addOption(integerOption('--threads <n>', 'ONNX Runtime threads (default: all cores)', 1, 1024))
    .addOption(
      integerOption(
        '--batch-size <n>',
        '(prompt, seed) pairs generated together, one batch per method (same images at any size)',
        1,
        1024,
      ).default(DEFAULT_BENCH_BATCH),
    )
    .addOption(
      typedOption(
        '--queue <url>',
        'generate on workers through a job queue: redis://[:PASSWORD@]HOST[:PORT][/DB] (see s2i worker --help)',
        parseRedisUrl,
      ),
    );
  return methodOptions(command).addHelpText('after', BENCH_HELP);
}

export function register(program: Command): void {
  benchCommand(program).action(async (flags) => (await import('./bench-run.js')).run(flags));
}

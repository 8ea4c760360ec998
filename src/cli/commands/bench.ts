/**
 * `s2i bench`: the benchmark. Every prompt of a suite × seed × method with one loaded model, each image scored by
 * the shapes-world scorer and appended to DIR/results.jsonl (resumable), then the summary table (or --json), the
 * Markdown table in DIR/summary.md and optionally a self-contained HTML report. See src/bench/.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from '@commander-js/extra-typings';
import {
  benchSummary,
  formatSummaryMarkdown,
  formatSummaryText,
  renderHtmlReport,
  renderPngGrid,
  type BenchSummary,
} from '../../bench/report.js';
import { encodePng } from '../../image/png.js';
import { OutputFiles } from '../../io/outputs.js';
import { runBenchOnQueue, type QueueBenchHooks } from '../../bench/queue.js';
import { parseRedisUrl, probeRedis, type RedisTarget } from '../../bench/redis.js';
import {
  checkBenchOptions,
  DEFAULT_BENCH_BATCH,
  parseMethods,
  parseSeeds,
  type BenchOptions,
} from '../../bench/plan.js';
import { runBench, type BenchOutcome } from '../../bench/run.js';
import { BUILTIN_SUITES, loadSuite, parseSplit, SPLITS, type Split, type Suite } from '../../bench/suites.js';
import { UserError } from '../../errors.js';
import { onInterrupt } from '../../util/cleanup.js';
import { METHOD_NAMES } from '../../methods/registry.js';
import { StableDiffusion, type LoadOptions } from '../../pipeline/stable-diffusion.js';
import { parseSamplerName, SAMPLER_NAMES } from '../../schedulers/index.js';
import { defaultModelDir } from '../defaults.js';
import {
  integerOption,
  interactive,
  methodOptions,
  numberOption,
  parsePredictionType,
  parseResolution,
  typedOption,
} from '../options.js';
import { methodOverridesFromFlags } from '../method-flags.js';
import { boundLine, quote } from '../../util/quote.js';
import { GUIDANCE_RANGE } from '../../pipeline/generate.js';

/** Default inference steps: A&E-style methods cost ~3x plain sampling per step on CPU; 25 keeps a suite practical. */
export const BENCH_DEFAULT_STEPS = 25;
/** Default guidance: what the shapes model's training sample grids use. */
export const BENCH_DEFAULT_GUIDANCE = 5;
export const BENCH_DEFAULT_METHODS = 'none,attend-and-excite,suppress';
export const BENCH_DEFAULT_SEEDS = '0-3';

/** The flags as commander parsed them: their types come from the declarations in `benchCommand`. */
type BenchFlags = ReturnType<ReturnType<typeof benchCommand>['opts']>;

function suiteList(value: string, split: Split | undefined): Suite[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new UserError(`--suite needs a suite (${BUILTIN_SUITES.join(', ')}) or a FILE.jsonl`);
  if (new Set(names).size !== names.length) throw new UserError(`--suite lists a suite twice: ${value}`);
  return names.map((n) => loadSuite(n, split));
}

function defaultOut(suites: Suite[]): string {
  const name = suites
    .map((s) => (s.split ? `${s.name}-${s.split}` : basename(s.name).replace(/\.jsonl$/i, '')))
    .join('+');
  return join('out', 'bench', name.replace(/[^A-Za-z0-9._+-]+/g, '-'));
}

/** One benchmark run as the flags ask for it, every option checked. */
interface BenchRequest {
  suites: Suite[];
  options: BenchOptions;
  modelDir: string;
  load: LoadOptions;
  /** The job queue to generate on, or null to generate here. */
  queue: RedisTarget | null;
  /** The files written at the end: planned (checked) before anything runs. */
  outputs: OutputFiles;
  summaryMd: string;
  summaryJson: string;
  gridPng: string;
  report: string | null;
}

async function run(flags: BenchFlags): Promise<void> {
  const request = benchRequest(flags);
  const { suites, options, queue } = request;
  if (queue) await probeRedis(queue); // fail fast, before the model is loaded
  const model = await StableDiffusion.load(request.modelDir, request.load);
  const bar = interactive(flags.json)
    ? new SingleBar({
        format: `bench {bar} {value}/{total} images${queue ? ' | workers {workers}' : ''} | {rate} s/image | eta {eta_formatted} | {what}`,
        hideCursor: true,
        etaBuffer: 20,
      })
    : null;
  let outcome;
  // On a job queue, Ctrl-C stops collecting and leaves the queue as it is (a rerun collects the rest).
  const interrupt = new AbortController();
  const stopCollecting = queue
    ? onInterrupt((signal) => {
        if (signal !== 'SIGINT' || interrupt.signal.aborted) return false;
        interrupt.abort();
        return true;
      })
    : () => {};
  try {
    const hooks = progressHooks(bar, !bar && !flags.json, options.out);
    outcome = queue
      ? await runBenchOnQueue(model, suites, options, { target: queue, signal: interrupt.signal }, hooks)
      : await runBench(model, suites, options, hooks);
  } finally {
    stopCollecting();
    bar?.stop();
    await model.release();
  }

  const summary = benchSummary(outcome, { methods: options.methods, seeds: options.seeds, model: request.modelDir });
  await writeSummaries(request, summary, outcome);
  if (flags.json) {
    const { out } = options;
    process.stdout.write(
      `${JSON.stringify({ ...summary, out, results: outcome.resultsPath, report: request.report })}\n`,
    );
  } else {
    process.stdout.write(`${formatSummaryText(summary)}\n${notes(request, outcome).join('\n')}\n`);
  }
  failedForGood(summary.failed.length, summary.run.images + summary.failed.length);
}

/** Parses and checks every option: all of them are checked before the model is loaded. */
function benchRequest(flags: BenchFlags): BenchRequest {
  const suites = suiteList(flags.suite, flags.split);
  const { methods, seeds, steps, guidance, limit, threads, batchSize } = flags;
  const sampler = flags.scheduler;
  // Applied to every suppress method of the run (tuning runs); they enter each row's settings hash.
  const methodOverrides = {
    ...methodOverridesFromFlags(flags),
    ...(flags.attnRes !== undefined ? { attnRes: flags.attnRes } : {}),
  };
  const out = flags.out ?? defaultOut(suites);
  // The summaries and the report are written together at the end (results.jsonl and images/ are the run's
  // resumable store, kept whatever happens).
  const outputs = new OutputFiles();
  outputs.folder(out, '--out');
  const summaryMd = outputs.file(join(out, 'summary.md'), '--out');
  const summaryJson = outputs.file(join(out, 'summary.json'), '--out');
  const gridPng = outputs.file(join(out, 'grid.png'), '--out');
  const report = flags.report !== undefined ? outputs.file(flags.report, '--report') : null;
  if (flags.reportMaps && !report) throw new UserError('--report-maps needs --report FILE');
  checkBenchOptions({ methods, seeds, out });
  const modelDir = flags.model ?? defaultModelDir();
  if (modelDir === null)
    throw new UserError(
      'no --model given and no default model is installed (give --model DIR, e.g. the shapes model folder)',
    );
  if (!existsSync(modelDir)) throw new UserError(`--model ${modelDir}: no such folder or file`);
  const predictionType = flags.predictionType;
  const queue = flags.queue ?? null;
  return {
    suites,
    options: {
      out,
      methods,
      seeds,
      steps,
      guidance,
      ...(sampler ? { sampler } : {}),
      ...(limit !== undefined ? { limit } : {}),
      maps: flags.reportMaps === true,
      batchSize,
      ...(Object.keys(methodOverrides).length ? { methodOverrides } : {}),
    },
    modelDir,
    load: {
      ...(threads !== undefined ? { threads } : {}),
      ...(flags.config !== undefined ? { config: flags.config } : {}),
      ...(predictionType !== undefined ? { predictionType } : {}),
    },
    queue,
    outputs,
    summaryMd,
    summaryJson,
    gridPng,
    report,
  };
}

/**
 * Shows the run's progress on the bar (interactive), or as `bench:` lines on stderr (`logLines`: no bar and no
 * --json): one every 25 new images and at the end, and one for each queue event and failure.
 */
function progressHooks(bar: SingleBar | null, logLines: boolean, out: string): QueueBenchHooks {
  // The rate counts only images generated in this run (reused rows took no time here).
  let newSeconds = 0,
    newCount = 0,
    total = 0;
  let workers = '?';
  const say = (line: string, what = line) => {
    if (logLines) process.stderr.write(`bench: ${boundLine(line)}\n`);
    bar?.update({ what });
  };
  return {
    onStart: ({ total: t, existing }) => {
      total = t;
      if (logLines)
        process.stderr.write(`bench: ${t} images planned into ${out} (${existing} rows already in results.jsonl)\n`);
      bar?.start(t, 0, { rate: '-', what: '', workers });
    },
    onQueued: ({ jobs, retried, queue: where }) =>
      say(
        `${jobs} jobs queued on ${where}${retried ? ` (${retried} that failed before are retried)` : ''}; waiting for workers (s2i worker --queue ...)`,
      ),
    onStalled: () => say('a worker stopped answering; its job went back to the queue for another worker'),
    onWorkers: (n) => {
      workers = String(n);
      bar?.update({ workers });
    },
    onFailed: (f) => {
      const line = boundLine(`FAILED ${f.method} seed ${f.seed} ${quote(f.prompt)}: ${f.reason}`);
      say(line, line.slice(0, 80));
    },
    onProgress: ({ done, skipped, row }) => {
      if (row) {
        newSeconds += row.seconds + row.compile_seconds;
        newCount++;
      }
      const rate = newCount ? (newSeconds / newCount).toFixed(2) : '-';
      bar?.update(done, {
        rate,
        what: row ? `${row.method} | ${row.prompt.slice(0, 40)}` : 'skipped (already in results.jsonl)',
      });
      if (logLines && row && (newCount % 25 === 0 || done === total)) {
        process.stderr.write(`bench: ${done}/${total} images (${skipped} reused), ${rate} s/image\n`);
      }
    },
  };
}

/** Writes summary.md, summary.json, grid.png (when there are images) and the report, together. */
async function writeSummaries(request: BenchRequest, summary: BenchSummary, outcome: BenchOutcome): Promise<void> {
  const { out, maps } = request.options;
  const { report } = request;
  await request.outputs.run((o) => {
    o.write(request.summaryMd, formatSummaryMarkdown(summary));
    o.write(request.summaryJson, `${JSON.stringify(summary, null, 2)}\n`);
    if (outcome.items.length > 0) {
      const grid = renderPngGrid(summary, outcome.items, out);
      o.write(request.gridPng, encodePng(grid.data, grid.width, grid.height));
    }
    if (report) o.write(report, renderHtmlReport(summary, outcome.items, out, { maps: maps === true }));
  });
}

/** The lines under the summary table: where the images came from and what was written. */
function notes(request: BenchRequest, outcome: BenchOutcome): string[] {
  const { out } = request.options;
  const { queue, report } = request;
  const lines: string[] = [];
  lines.push(
    `${outcome.generated} images generated${queue ? ` by workers on ${queue.display}` : ''}, ${outcome.skipped} reused from ${outcome.resultsPath}`,
  );
  if (outcome.ignoredLines)
    lines.push(
      `${outcome.ignoredLines} unreadable line${outcome.ignoredLines > 1 ? 's' : ''} of results.jsonl ignored (a partial last line from an interrupted run is dropped)`,
    );
  lines.push(`wrote ${join(out, 'summary.md')}, ${join(out, 'grid.png')}${report ? ` and ${report}` : ''}`);
  return lines;
}

/** A run with images that failed for good ends with exit code 1 (after its summary is written). */
function failedForGood(n: number, total: number): void {
  if (n > 0)
    throw new UserError(
      `${n} of ${total} images failed for good (listed as FAILED in the summary); a rerun of the same command retries them`,
    );
}

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
  --steps ${BENCH_DEFAULT_STEPS} (gradient methods cost about 3x plain sampling per image on CPU;
  the 50-step A&E schedule is scaled to the step count), --guidance ${BENCH_DEFAULT_GUIDANCE} (as the
  shapes model's training samples), --seeds ${BENCH_DEFAULT_SEEDS}, --split tuning.

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
    .addOption(integerOption('--steps <n>', 'inference steps', 1, 1000).default(BENCH_DEFAULT_STEPS))
    .addOption(
      numberOption('--guidance <x>', 'classifier-free guidance scale', ...GUIDANCE_RANGE).default(
        BENCH_DEFAULT_GUIDANCE,
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
      'model folder or single-file SD 1.x/2.x .safetensors (default: the installed shapes model, when there is one)',
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
        'guided methods: query resolution of the maps they read, e.g. 8 or 8x8 (default: the resolution rule); enters the rows\' settings',
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
  benchCommand(program).action(async (flags) => run(flags));
}

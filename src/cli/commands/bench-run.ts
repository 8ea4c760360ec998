/**
 * `s2i bench` run (declared in bench.ts): every option checked, then the images generated here or on workers
 * through the job queue, and the summaries written together at the end.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SingleBar } from 'cli-progress';
import {
  benchSummary,
  formatSummaryMarkdown,
  formatSummaryText,
  renderHtmlReport,
  renderPngGrid,
  type BenchSummary,
} from '../../bench/report.js';
import { encodePng } from '../../image/png.js';
import { readSamplingDefaults } from '../../io/model-folder.js';
import { OutputFiles } from '../../io/outputs.js';
import { runBenchOnQueue, type QueueBenchHooks } from '../../bench/queue.js';
import { probeRedis, type RedisTarget } from '../../bench/redis.js';
import { checkBenchOptions, type BenchOptions } from '../../bench/plan.js';
import { runBench, type BenchOutcome } from '../../bench/run.js';
import { BUILTIN_SUITES, loadSuite, type Split, type Suite } from '../../bench/suites.js';
import { UserError } from '../../errors.js';
import { onInterrupt } from '../../util/cleanup.js';
import { StableDiffusion, type LoadOptions } from '../../pipeline/stable-diffusion.js';
import { defaultBenchModelDir } from '../defaults.js';
import { interactive } from '../options.js';
import { methodOverridesFromFlags } from '../method-flags.js';
import { boundLine, quote } from '../../util/quote.js';
import { BENCH_DEFAULT_GUIDANCE, BENCH_DEFAULT_STEPS, type BenchFlags } from './bench.js';

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

export async function run(flags: BenchFlags): Promise<void> {
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
  const { methods, seeds, limit, threads, batchSize } = flags;
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
  checkBenchOptions({ methods, seeds, out, methodOverrides });
  const modelDir = flags.model ?? defaultBenchModelDir();
  if (modelDir === null)
    throw new UserError(
      'no --model given and no default model is installed (give --model DIR, e.g. the shapes model folder)',
    );
  if (!existsSync(modelDir)) throw new UserError(`--model ${modelDir}: no such folder or file`);
  // As `s2i generate` runs the model: its s2i.json's steps and guidance, unless given.
  const recommended = readSamplingDefaults(modelDir);
  const steps = flags.steps ?? recommended.steps ?? BENCH_DEFAULT_STEPS;
  const guidance = flags.guidance ?? recommended.guidance ?? BENCH_DEFAULT_GUIDANCE;
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

/**
 * The speed benchmark's parent process: for every selected case, one child process for the timed runs, one for
 * the ONNX Runtime profile (the sum of every node's best kernel time) and one for the PyTorch reference
 * (`scripts/perf_reference.py` under /usr/bin/python3, skipped when `import torch` fails there), one after the
 * other so they never compete for the cores.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CompileOptions } from '../../src/graph/runtime.js';
import { shapesTextConfigJson, shapesUNetConfigJson } from '../../src/shapes/model.js';
import { buildShapesVocabulary } from '../../src/shapes/vocab.js';
import { CASE_LABELS, PARTS, TRAIN_BATCH, type CaseName, type PartName } from './cases.js';
import { BATCH_CASES, type BatchResult } from './batch.js';
import type { ProfileResult, TimeResult } from './measure.js';
import { defaultBenchCache, ensureRandomUNetFolder, SD15_UNET_CONFIG_JSON, SDXL_UNET_CONFIG_JSON } from './weights.js';

export const DEFAULT_RUNS: Record<PartName, number> = {
  tiny: 10,
  sd15: 3,
  'sd15-batch': 1,
  sdxl: 1,
  train: 5,
  batch: 3,
};

export interface PerfOptions {
  parts: PartName[];
  /** Timed runs per part (after the first step). */
  runs?: Partial<Record<PartName, number>>;
  /** Profiled runs per part (after one warm-up); default: min(runs, 3). */
  profileRuns?: Partial<Record<PartName, number>>;
  torch?: boolean;
  profile?: boolean;
  python?: string;
  /** The tiny oracle model folder (its `unet/` is used). */
  tinyDir: string;
  /** The shapes model folder of the batch part (default: the shipped models/shapes). */
  shapesDir?: string;
  cacheDir?: string;
  /** Passed to every ONNX Runtime session (threads, optimisation level...). */
  compile?: CompileOptions;
  log?: (line: string) => void;
  /** Per child process, ms. */
  childTimeoutMs?: number;
  /**
   * One process per case instead of three: the profiled child's first step, timed runs and peak memory stand for
   * the timing child's (profiling adds its event records to them), and no cached first step is measured. For
   * models whose sessions take many minutes to create (SDXL) on a shared machine: the step and its kernels come
   * from the same runs.
   */
  oneProcess?: boolean;
  /** Only these cases of the parts, in the parts' order (default: all). */
  cases?: CaseName[];
  /** Stop a child whose resident memory exceeds this many MB (Linux /proc; polled 4 times a second). */
  maxRssMb?: number;
  /**
   * Measure the first step with ONNX Runtime's optimized-model cache too (default true): the timed child starts
   * with an empty cache (and fills it), then a second child measures a first step that finds it.
   */
  cache?: boolean;
  /** Extra environment for our child processes (e.g. S2I_ORT_SPINNING, S2I_FUSED_ATTENTION). */
  env?: Record<string, string>;
  /** Reduced SD-1.5 for testing the harness: block_out_channels w, 2w, 4w, 4w (default 320: the real one). */
  sd15Width?: number;
  /** SD-1.5 latent size (default 64). */
  sd15Latent?: number;
  /** Reduced SDXL for testing the harness: block_out_channels w, 2w, 4w (default 320: the real one; w % 160 = 0). */
  sdxlWidth?: number;
  /** SDXL latent size of the 1024-px cases (default 128; the 768-px case is 3/4 of it). */
  sdxlLatent?: number;
}

export interface TorchResult {
  case: CaseName;
  torch: string;
  threads: number;
  firstStepMs: number;
  setup: { buildMs: number; loadMs: number };
  timesMs: number[];
  medianMs: number;
  gradMs?: number[];
  stepMs?: number[];
  peakRssMb: number;
  rssAfterFirstStepMb: number;
  params: number;
  loadavg: { start: number[]; end: number[] };
}

export interface CaseReport {
  case: CaseName;
  label: string;
  ours: TimeResult | null;
  /** A second process's first step, finding the optimized models the first one cached. */
  oursCached: TimeResult | null;
  kernels: ProfileResult | null;
  torch: TorchResult | null;
  errors: string[];
}

export interface PerfReport {
  date: string;
  machine: { cpu: string; cores: number; memoryGb: number; node: string; onnxruntime: string; torch: string | null };
  loadavg: { start: number[]; end: number[] };
  runs: Record<PartName, number>;
  compile: CompileOptions;
  env: Record<string, string>;
  sd15: { width: number; latent: number };
  cases: CaseReport[];
  /** The batch part: batched generation against one image at a time. */
  batches: BatchResult[];
  notes: string[];
}

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root: tools/perf, two levels up. */
export const packageRoot = resolve(here, '..', '..');
const childScript = join(here, `child${extname(fileURLToPath(import.meta.url))}`);

function onnxruntimeVersion(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(join(packageRoot, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8'),
    ) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** The torch version under `python`, or null when it cannot import torch. */
export function torchVersion(python: string): string | null {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** A child's resident memory in MB from /proc (Linux), or null where it cannot be read. */
function rssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Why a child was stopped: its time or the resident-memory limit (the error names it). */
let stoppedBecause = '';

function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
  log: (s: string) => void,
  env?: NodeJS.ProcessEnv,
  maxRssMb?: number,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    const started = performance.now();
    stoppedBecause = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
    });
    const timer = setTimeout(() => {
      stoppedBecause = `timed out after ${(timeoutMs / 1000).toFixed(0)} s`;
      log(`  ${stoppedBecause}; stopping ${cmd} (pid ${child.pid})`);
      child.kill('SIGKILL');
    }, timeoutMs);
    // A shared machine's guard: a case that outgrows the limit is stopped before it crowds out other work, and
    // the resident memory it had reached is the measurement.
    const watch = maxRssMb
      ? setInterval(() => {
          const mb = rssMb(child.pid);
          if (mb === null) return;
          if (mb > maxRssMb) {
            stoppedBecause = `stopped at ${(mb / 1024).toFixed(2)} GB resident, over the --max-rss limit of ${+(maxRssMb / 1024).toFixed(2)} GB, ${((performance.now() - started) / 1000).toFixed(0)} s after it started`;
            log(`  ${stoppedBecause} (pid ${child.pid})`);
            child.kill('SIGKILL');
          }
        }, 250)
      : null;
    child.on('close', (code) => {
      clearTimeout(timer);
      if (watch) clearInterval(watch);
      resolvePromise({ code, stderr });
    });
  });
}

async function runJson<T>(
  what: string,
  cmd: string,
  args: string[],
  resultFile: string,
  timeoutMs: number,
  log: (s: string) => void,
  env?: NodeJS.ProcessEnv,
  maxRssMb?: number,
): Promise<T> {
  rmSync(resultFile, { force: true });
  const { code, stderr } = await run(cmd, [...args, '--result', resultFile], timeoutMs, log, env, maxRssMb);
  let text: string | null = null;
  try {
    text = readFileSync(resultFile, 'utf8');
  } catch {
    // fall through
  }
  if (code !== 0 || !text) {
    const tail = stderr.trim().split('\n').slice(-6).join(' | ');
    if (stoppedBecause) throw new Error(`${what} ${stoppedBecause}`);
    throw new Error(`${what} failed (exit ${code}): ${tail || 'no output'}`);
  }
  return JSON.parse(text) as T;
}

export async function runPerfBench(options: PerfOptions): Promise<PerfReport> {
  const log = options.log ?? (() => {});
  const runs: Record<PartName, number> = { ...DEFAULT_RUNS, ...options.runs };
  const profileRuns = (p: PartName) => options.profileRuns?.[p] ?? Math.min(runs[p], 3);
  const python = options.python ?? '/usr/bin/python3';
  const timeoutMs = options.childTimeoutMs ?? 90 * 60_000;
  const compileJson = JSON.stringify(options.compile ?? {});
  const notes: string[] = [];
  const start = loadavg();

  let torch: string | null = null;
  if (options.torch !== false) {
    torch = torchVersion(python);
    if (!torch)
      notes.push(`PyTorch column skipped: \`${python} -c "import torch"\` failed (install Debian's python3-torch).`);
  }

  const tmp = mkdtempSync(join(tmpdir(), 's2i-perf-'));
  try {
    const tinyUNet = join(resolve(options.tinyDir), 'unet');
    const shapesDir = resolve(options.shapesDir ?? join(packageRoot, 'models', 'shapes'));
    const cacheDir = options.cacheDir ?? defaultBenchCache();
    const width = options.sd15Width ?? 320;
    const latent = options.sd15Latent ?? 64;
    const sd15UNet = join(cacheDir, width === 320 ? 'sd15-random-unet' : `sd15-w${width}-random-unet`);
    if (options.parts.includes('sd15')) {
      log(`SD-1.5 random weights: ${sd15UNet} (written once${width === 320 ? ', 3.4 GB' : ''})`);
      ensureRandomUNetFolder(
        sd15UNet,
        { ...SD15_UNET_CONFIG_JSON, block_out_channels: [width, 2 * width, 4 * width, 4 * width] },
        0,
        log,
      );
    }
    const xlWidth = options.sdxlWidth ?? 320;
    const xlLatent = options.sdxlLatent ?? 128;
    const sdxlUNet = join(cacheDir, xlWidth === 320 ? 'sdxl-random-unet' : `sdxl-w${xlWidth}-random-unet`);
    if (options.parts.includes('sdxl')) {
      log(`SDXL random weights: ${sdxlUNet} (written once${xlWidth === 320 ? ', 10.3 GB' : ''})`);
      ensureRandomUNetFolder(
        sdxlUNet,
        { ...SDXL_UNET_CONFIG_JSON, block_out_channels: [xlWidth, 2 * xlWidth, 4 * xlWidth] },
        0,
        log,
      );
    }
    const useCache = options.cache !== false;
    // The per-case cache may hold SD-1.5's two graphs (3.4 + ~5 GB): no eviction within a case.
    const childEnv = (ortCache: string | null): NodeJS.ProcessEnv => ({
      ...process.env,
      S2I_ORT_CACHE_MAX_GB: '64',
      ...options.env,
      S2I_ORT_CACHE: ortCache ?? '0',
    });
    // The training case's configs for the PyTorch script.
    const trainUNet = join(tmp, 'train-unet.json');
    const trainText = join(tmp, 'train-text.json');
    writeFileSync(trainUNet, JSON.stringify(shapesUNetConfigJson()));
    writeFileSync(trainText, JSON.stringify(shapesTextConfigJson(Object.keys(buildShapesVocabulary().vocab).length)));

    const cases: CaseReport[] = [];
    const batches: BatchResult[] = [];
    for (const part of options.parts) {
      for (const name of PARTS[part]) {
        if (options.cases && !options.cases.includes(name)) continue;
        if (name in BATCH_CASES) {
          // Whole generations side by side in one process per method: no profile, no PyTorch counterpart.
          try {
            log(`${name}: 16 images one at a time and as one batch (${runs[part]} runs each)`);
            const r = await runJson<BatchResult>(
              `${name}`,
              process.execPath,
              [
                ...process.execArgv,
                childScript,
                '--case',
                name,
                '--purpose',
                'batch',
                '--runs',
                String(runs[part]),
                '--model',
                shapesDir,
                '--compile',
                compileJson,
              ],
              join(tmp, 'b.json'),
              timeoutMs,
              log,
              childEnv(null),
              options.maxRssMb,
            );
            batches.push(r);
            log(
              `  ${r.single.imagesPerSecond.toFixed(2)} → ${r.batched.imagesPerSecond.toFixed(2)} images/s: ${r.speedup.toFixed(2)}x (CPU time per image: ${r.cpuSpeedup.toFixed(2)}x)`,
            );
          } catch (e) {
            notes.push(`${name}: ${(e as Error).message}`);
            log(`  ${(e as Error).message}`);
          }
          continue;
        }
        const label =
          name.startsWith('sd15') && (width !== 320 || latent !== 64)
            ? `${CASE_LABELS[name]} [reduced: width ${width}, ${latent}x${latent}]`
            : name.startsWith('sdxl') && (xlWidth !== 320 || xlLatent !== 128)
              ? `${CASE_LABELS[name]} [reduced: width ${xlWidth}, latents ${xlLatent}x${xlLatent} for 1024 px]`
              : CASE_LABELS[name];
        const report: CaseReport = {
          case: name,
          label,
          ours: null,
          oursCached: null,
          kernels: null,
          torch: null,
          errors: [],
        };
        cases.push(report);
        const common = [
          '--case',
          name,
          '--tiny',
          tinyUNet,
          '--shapes',
          join(shapesDir, 'unet'),
          '--sd15',
          sd15UNet,
          '--sd15-latent',
          String(latent),
          '--sdxl',
          sdxlUNet,
          '--sdxl-latent',
          String(xlLatent),
          '--compile',
          compileJson,
        ];
        const node = [...process.execArgv, childScript];
        // A fresh optimized-model cache per case: the timed child fills it, the next ones find it.
        const ortCache = useCache ? mkdtempSync(join(tmp, 'ort-')) : null;
        try {
          if (options.oneProcess) {
            try {
              log(`${name}: first step, ${profileRuns(part)} timed run(s) and the ONNX Runtime profile, one process`);
              report.kernels = await runJson<ProfileResult>(
                `${name} profile`,
                process.execPath,
                [...node, ...common, '--purpose', 'profile', '--runs', String(profileRuns(part))],
                join(tmp, 'p.json'),
                timeoutMs,
                log,
                childEnv(ortCache),
                options.maxRssMb,
              );
              report.ours = report.kernels.time ?? null;
              log(
                `  median ${fmtMs(report.kernels.profiledMedianMs)}, kernels ${fmtMs(report.kernels.bestKernelSumMs)}, first step ${fmtMs(report.ours?.firstStepMs)}, peak RSS ${report.ours?.peakRssMb.toFixed(0)} MB`,
              );
            } catch (e) {
              report.errors.push((e as Error).message);
              log(`  ${(e as Error).message}`);
            }
          } else {
            try {
              log(`${name}: timing (${runs[part]} runs)`);
              report.ours = await runJson<TimeResult>(
                `${name} timing`,
                process.execPath,
                [...node, ...common, '--purpose', 'time', '--runs', String(runs[part])],
                join(tmp, 'r.json'),
                timeoutMs,
                log,
                childEnv(ortCache),
                options.maxRssMb,
              );
              log(
                `  median ${fmtMs(report.ours.medianMs)}, first step ${fmtMs(report.ours.firstStepMs)}, peak RSS ${report.ours.peakRssMb.toFixed(0)} MB`,
              );
              if (ortCache) {
                log(`${name}: first step with the optimized-model cache`);
                report.oursCached = await runJson<TimeResult>(
                  `${name} cached first step`,
                  process.execPath,
                  [...node, ...common, '--purpose', 'time', '--runs', '0'],
                  join(tmp, 'r.json'),
                  timeoutMs,
                  log,
                  childEnv(ortCache),
                  options.maxRssMb,
                );
                log(
                  `  first step ${fmtMs(report.oursCached.firstStepMs)} (${report.oursCached.cache.join(', ')}), peak RSS ${report.oursCached.peakRssMb.toFixed(0)} MB`,
                );
              }
            } catch (e) {
              report.errors.push((e as Error).message);
              log(`  ${(e as Error).message}`);
            }
          }
          if (options.profile !== false && !options.oneProcess) {
            try {
              log(`${name}: ONNX Runtime profile (${profileRuns(part)} runs)`);
              report.kernels = await runJson<ProfileResult>(
                `${name} profile`,
                process.execPath,
                [...node, ...common, '--purpose', 'profile', '--runs', String(profileRuns(part))],
                join(tmp, 'p.json'),
                timeoutMs,
                log,
                childEnv(ortCache),
                options.maxRssMb,
              );
              log(`  kernels ${fmtMs(report.kernels.bestKernelSumMs)}`);
            } catch (e) {
              report.errors.push((e as Error).message);
              log(`  ${(e as Error).message}`);
            }
          }
        } finally {
          if (ortCache) rmSync(ortCache, { recursive: true, force: true });
        }
        // (scripts/perf_reference.py has no SDXL: diffusers' SDXL UNet is not in its PyTorch-only reference)
        if (torch && !name.startsWith('shapes') && !name.startsWith('sdxl')) {
          try {
            log(`${name}: PyTorch ${torch} (${runs[part]} runs)`);
            const args = [
              join(packageRoot, 'scripts', 'perf_reference.py'),
              '--case',
              name,
              '--runs',
              String(runs[part]),
              '--threads',
              String(options.compile?.threads ?? availableParallelism()),
            ];
            args.push(
              '--tiny',
              tinyUNet,
              '--sd15',
              sd15UNet,
              '--sd15-latent',
              String(latent),
              '--train-unet',
              trainUNet,
              '--train-text',
              trainText,
              '--batch',
              String(TRAIN_BATCH),
            );
            report.torch = await runJson<TorchResult>(
              `${name} PyTorch`,
              python,
              args,
              join(tmp, 't.json'),
              timeoutMs,
              log,
            );
            log(
              `  median ${fmtMs(report.torch.medianMs)}, first step ${fmtMs(report.torch.firstStepMs)}, peak RSS ${report.torch.peakRssMb.toFixed(0)} MB`,
            );
          } catch (e) {
            report.errors.push((e as Error).message);
            log(`  ${(e as Error).message}`);
          }
        }
      }
    }
    return {
      date: new Date().toISOString(),
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: availableParallelism(),
        memoryGb: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
        node: process.version,
        onnxruntime: onnxruntimeVersion(),
        torch,
      },
      loadavg: { start: round2(start), end: round2(loadavg()) },
      runs,
      compile: options.compile ?? {},
      env: options.env ?? {},
      sd15: { width, latent },
      cases,
      batches,
      notes,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const round2 = (xs: number[]) => xs.map((x) => Math.round(x * 100) / 100);

export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/**
 * One benchmark case in the current process: first-step latency (weight store opened, graphs built, serialised,
 * sessions created, first run), then `runs` timed runs; or, for `profile`, the same work in profiled sessions,
 * summarised as the sum of every node's best kernel time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CompileOptions } from '../../src/graph/runtime.js';
import {
  aeGradPass,
  BenchUNet,
  s2iStep,
  caseImages,
  guidedStep,
  trainingStep,
  type CaseName,
  type GraphTiming,
} from './cases.js';
import { median, readProfile, type KernelSummary } from './profile.js';

export interface CaseInputs {
  tinyUNetDir: string;
  sd15UNetDir: string;
  /** SDXL's random UNet folder (sdxl-* cases) and the latent size of its 1024-px cases (128; smaller to test). */
  sdxlUNetDir?: string;
  sdxlLatent?: number;
  /** The shipped shapes model's unet/ (shapes-step cases). */
  shapesUNetDir?: string;
  /** Latent size of the SD-1.5 cases (64 = 512 px; smaller only to test the harness). */
  sd15Latent?: number;
  runs: number;
  compile?: CompileOptions;
}

export interface TimeResult {
  case: CaseName;
  purpose: 'time';
  /** Whether the sessions came from ONNX Runtime's optimized-model cache ('hit'), were stored there, or neither. */
  cache: string[];
  /** Weight store opened → first step finished, ms (graph build, serialisation, session creation, first run). */
  firstStepMs: number;
  setup: { openMs: number; buildMs: number; serializeMs: number; sessionMs: number; firstRunMs: number };
  graphs: GraphTiming[];
  /** Per-run step times, ms (for *-ae: gradient pass + plain step). */
  timesMs: number[];
  medianMs: number;
  /** *-ae only: the two parts of each run. */
  gradMs?: number[];
  stepMs?: number[];
  peakRssMb: number;
  rssAfterFirstStepMb: number;
  loadavg: { start: number[]; end: number[] };
}

export interface ProfileResult {
  case: CaseName;
  purpose: 'profile';
  /** Per graph (key): kernel summary. */
  graphs: { key: string; summary: KernelSummary }[];
  /** Σ of the graphs' best-kernel sums, ms: what one step costs in kernels alone. */
  bestKernelSumMs: number;
  /** Median measured step with profiling on, ms (with no timed runs: the first step's run). */
  profiledMedianMs: number;
  loadavg: { start: number[]; end: number[] };
  /**
   * The same process's first step, timed runs and peak memory (its sessions profiled: the harness's
   * `oneProcess`, where a model is too large to create its sessions three times): the timed runs and the kernels
   * they spent come from the very same runs, so their ratio does not depend on the machine's load changing.
   */
  time?: TimeResult;
}

const mb = (kb: number) => kb / 1024;
const la = () => loadavg().map((x) => Math.round(x * 100) / 100);

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await f();
  return [performance.now() - t0, r];
}

export async function runCase(
  name: CaseName,
  purpose: 'time' | 'profile',
  inputs: CaseInputs,
): Promise<TimeResult | ProfileResult> {
  const start = la();
  const profDir = purpose === 'profile' ? mkdtempSync(join(tmpdir(), 's2i-prof-')) : null;
  const compileOptions: CompileOptions = { ...inputs.compile, ...(profDir ? { profile: join(profDir, 'p') } : {}) };
  try {
    if (name === 'train') return await runTrain(purpose, inputs, start, profDir);
    const t0 = performance.now();
    const small = name.startsWith('tiny') || name.startsWith('shapes');
    const xl = name.startsWith('sdxl');
    const dir = name.startsWith('tiny')
      ? inputs.tinyUNetDir
      : name.startsWith('shapes')
        ? inputs.shapesUNetDir!
        : xl
          ? inputs.sdxlUNetDir!
          : inputs.sd15UNetDir;
    const xlLatent = inputs.sdxlLatent ?? 128;
    const latent = small
      ? 32
      : xl
        ? name.endsWith('-768')
          ? (xlLatent * 3) / 4
          : xlLatent
        : (inputs.sd15Latent ?? 64);
    const unet = BenchUNet.open(dir, latent, compileOptions);
    const openMs = performance.now() - t0;
    const ae = name.endsWith('-ae');
    // Gradient pass first, as A&E runs it before the guided pass.
    const grad = ae ? await aeGradPass(unet) : null;
    const step = name.endsWith('-s2i') ? await s2iStep(unet) : await guidedStep(unet, caseImages(name));
    const [firstStepRun] = await timed(step.run);
    const firstStepMs = performance.now() - t0;
    const rssAfterFirstStepMb = mb(process.resourceUsage().maxRSS);
    const timesMs: number[] = [];
    const gradMs: number[] = [];
    const stepMs: number[] = [];
    for (let i = 0; i < inputs.runs; i++) {
      const [g] = grad ? await timed(grad.run) : [0];
      const [s] = await timed(step.run);
      gradMs.push(g);
      stepMs.push(s);
      timesMs.push(g + s);
    }
    const time = (): TimeResult => {
      const sum = (k: 'buildMs' | 'serializeMs' | 'sessionMs') => unet.timings.reduce((s, t) => s + t[k], 0);
      // For *-ae this includes the gradient pass's first evaluation as well as the step's first run.
      const firstRunMs = firstStepMs - openMs - sum('buildMs') - sum('serializeMs') - sum('sessionMs');
      return {
        case: name,
        purpose: 'time',
        firstStepMs,
        setup: {
          openMs,
          buildMs: sum('buildMs'),
          serializeMs: sum('serializeMs'),
          sessionMs: sum('sessionMs'),
          firstRunMs,
        },
        graphs: unet.timings,
        cache: [...unet.sessions.values()].map((s) => s.timings.cache ?? 'off'),
        timesMs,
        medianMs: median(timesMs),
        ...(ae ? { gradMs, stepMs } : {}),
        peakRssMb: mb(process.resourceUsage().maxRSS),
        rssAfterFirstStepMb,
        loadavg: { start, end: la() },
      };
    };
    if (profDir) {
      const timeResult = time();
      const graphs = [...unet.sessions].map(([key, s]) => {
        const file = s.endProfiling();
        if (!file) throw new Error(`no profile written for ${key}`);
        // The A&E graph ran once more than the step graph before the timed runs (its first evaluation). With no
        // timed runs (a model too slow for two steps) the first run is the profiled one, its arena growth included.
        return { key, summary: readProfile(file, inputs.runs === 0 ? 0 : 1) };
      });
      await unet.release();
      return {
        case: name,
        purpose: 'profile',
        graphs,
        bestKernelSumMs: graphs.reduce((s, g) => s + g.summary.bestKernelSumMs, 0),
        profiledMedianMs: inputs.runs === 0 ? firstStepRun : median(timesMs),
        loadavg: { start, end: la() },
        time: timeResult,
      };
    }
    void firstStepRun;
    const result = time();
    await unet.release();
    return result;
  } finally {
    if (profDir) rmSync(profDir, { recursive: true, force: true });
  }
}

async function runTrain(
  purpose: 'time' | 'profile',
  inputs: CaseInputs,
  start: number[],
  profDir: string | null,
): Promise<TimeResult | ProfileResult> {
  // TrainingStep compiles with the default options; the environment variable reaches its session.
  const prevEnv = process.env['S2I_ORT_PROFILE'];
  if (profDir) process.env['S2I_ORT_PROFILE'] = join(profDir, 'train');
  const t0 = performance.now();
  let built: Awaited<ReturnType<typeof trainingStep>>;
  let initMs = 0;
  try {
    built = await trainingStep(undefined, (ms) => (initMs = ms));
  } finally {
    if (prevEnv === undefined) delete process.env['S2I_ORT_PROFILE'];
    else process.env['S2I_ORT_PROFILE'] = prevEnv;
  }
  const { step, params, data } = built;
  const createMs = performance.now() - t0;
  const [firstRunMs] = await timed(() => step.run(params, data));
  const firstStepMs = performance.now() - t0;
  const rssAfterFirstStepMb = mb(process.resourceUsage().maxRSS);
  const timesMs: number[] = [];
  for (let i = 0; i < inputs.runs; i++) timesMs.push((await timed(() => step.run(params, data)))[0]);
  const ct = step.compileTimings;
  if (profDir) {
    await step.release(); // writes the profile
    const { readdirSync } = await import('node:fs');
    const file = readdirSync(profDir).find((f) => f.startsWith('train') && f.endsWith('.json'));
    if (!file) throw new Error('no profile written for the training step');
    const summary = readProfile(join(profDir, file), 1);
    return {
      case: 'train',
      purpose: 'profile',
      graphs: [{ key: 'train', summary }],
      bestKernelSumMs: summary.bestKernelSumMs,
      profiledMedianMs: median(timesMs),
      loadavg: { start, end: la() },
    };
  }
  const buildMs = createMs - initMs - ct.serializeMs - ct.sessionMs;
  const result: TimeResult = {
    case: 'train',
    purpose: 'time',
    firstStepMs,
    setup: { openMs: initMs, buildMs, serializeMs: ct.serializeMs, sessionMs: ct.sessionMs, firstRunMs },
    graphs: [{ key: 'train', buildMs, serializeMs: ct.serializeMs, sessionMs: ct.sessionMs, nodes: ct.nodes }],
    cache: [ct.cache ?? 'off'],
    timesMs,
    medianMs: median(timesMs),
    peakRssMb: mb(process.resourceUsage().maxRSS),
    rssAfterFirstStepMb,
    loadavg: { start, end: la() },
  };
  await step.release();
  return result;
}

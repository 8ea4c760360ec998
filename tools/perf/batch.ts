/**
 * Batched generation's speed-up, measured side by side in one process: the same (prompt, seed) pairs generated
 * one image at a time and as one batch, through the library's `generateBatch` on the shipped shapes model, for
 * plain sampling, Suppress-to-Impress's default mode and Attend-and-Excite. Graph compilation (first use of each
 * batch size's graphs) is measured apart and left out of images/s, as a long run pays it once.
 */
import { autoSubjects } from '../../src/prompt/auto-subjects.js';
import { buildMethod, methodTargets } from '../../src/methods/registry.js';
import { generateBatch, type SampleRequest } from '../../src/pipeline/generate.js';
import { StableDiffusion } from '../../src/pipeline/stable-diffusion.js';
import type { CompileOptions } from '../../src/graph/runtime.js';
import { loadSuite } from '../../src/bench/suites.js';
import { median } from './profile.js';

export const BATCH_CASES = {
  'batch-none': 'none',
  'batch-suppress': 'suppress',
  'batch-ae': 'attend-and-excite',
} as const;
export type BatchCaseName = keyof typeof BATCH_CASES;

export interface BatchSide {
  batchSize: number;
  /** Seconds for all images of a run, without graph compilation, per run. */
  seconds: number[];
  /** CPU seconds of the process (all threads) per run, less graph compilation's wall time. */
  cpuSeconds: number[];
  /** Graph compilation seconds seen in the first run (sessions for this side's batch sizes). */
  compileSeconds: number;
  /** Images ÷ the fastest run's seconds (the run least disturbed by other work on the machine). */
  imagesPerSecond: number;
  /** Median CPU seconds per image over the runs after the first. */
  cpuSecondsPerImage: number;
}

export interface BatchResult {
  case: BatchCaseName;
  purpose: 'batch';
  method: string;
  model: string;
  images: number;
  steps: number;
  guidance: number;
  single: BatchSide;
  batched: BatchSide;
  /** batched images/s ÷ single images/s. */
  speedup: number;
  /** CPU seconds per image, single ÷ batched: the work saved, whatever else runs on the machine. */
  cpuSpeedup: number;
  peakRssMb: number;
  loadavg: { start: number[]; end: number[] };
}

export interface BatchInputs {
  modelDir: string;
  images: number;
  batchSize: number;
  runs: number;
  compile?: CompileOptions;
}

/** The first `n` two-object prompts of the tuning split, seeds 0, 1, …: the benchmark's own kind of images. */
function requests(model: StableDiffusion, method: string, n: number, steps: number): SampleRequest[] {
  const prompts = loadSuite('shapes-2', 'tuning').prompts;
  return Array.from({ length: n }, (_, i) => {
    const prompt = prompts[i % prompts.length]!.prompt;
    const auto = autoSubjects(model.tokenizer, prompt);
    const m = buildMethod(method, methodTargets(auto.subjects, auto.attributes), { steps });
    return { prompt, seed: i, ...(m ? { method: m } : {}) };
  });
}

export async function runBatchCase(name: BatchCaseName, inputs: BatchInputs, la: () => number[]): Promise<BatchResult> {
  const start = la();
  const method = BATCH_CASES[name];
  const model = await StableDiffusion.load(inputs.modelDir, { threads: inputs.compile?.threads });
  const steps = 25;
  const guidance = 5;
  const side = (batchSize: number): BatchSide => ({
    batchSize,
    seconds: [],
    cpuSeconds: [],
    compileSeconds: 0,
    imagesPerSecond: 0,
    cpuSecondsPerImage: 0,
  });
  const single = side(1);
  const batched = side(inputs.batchSize);
  const once = async (s: BatchSide, first: boolean) => {
    const before = model.graphTimings.length;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await generateBatch(model, requests(model, method, inputs.images, steps), {
      steps,
      guidanceScale: guidance,
      batchSize: s.batchSize,
    });
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const compileMs = model.graphTimings.slice(before).reduce((a, g) => a + g.buildMs + g.serializeMs + g.sessionMs, 0);
    if (first) s.compileSeconds = compileMs / 1000;
    s.seconds.push((ms - compileMs) / 1000);
    // Compilation runs mostly on this thread: its wall time stands in for its CPU time.
    s.cpuSeconds.push(Math.max(0, (cpu.user + cpu.system) / 1e6 - compileMs / 1000));
  };
  // Alternating sides, so that a change in the machine's load falls on both.
  for (let r = 0; r < inputs.runs; r++) {
    await once(single, r === 0);
    await once(batched, r === 0);
  }
  for (const s of [single, batched]) {
    s.imagesPerSecond = inputs.images / Math.min(...s.seconds);
    // The first run also created sessions and ran each new graph for the first time: left out when others exist.
    s.cpuSecondsPerImage = median(s.cpuSeconds.length > 1 ? s.cpuSeconds.slice(1) : s.cpuSeconds) / inputs.images;
  }
  await model.release();
  return {
    case: name,
    purpose: 'batch',
    method,
    model: inputs.modelDir,
    images: inputs.images,
    steps,
    guidance,
    single,
    batched,
    speedup: batched.imagesPerSecond / single.imagesPerSecond,
    cpuSpeedup: single.cpuSecondsPerImage / batched.cpuSecondsPerImage,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    loadavg: { start, end: la() },
  };
}

/**
 * What scripts/token-localisation.ts and scripts/layer-localisation.ts share: a suite's prompts × seeds run in
 * batches (each image seeded as the benchmark seeds it), and which cells of a map grid lie inside a detected box.
 */
import { noiseSeed } from '../src/bench/plan.js';
import { plan } from '../src/pipeline/plan.js';
import type { GenerateRequest, GenerateRun } from '../src/pipeline/request.js';
import { run } from '../src/pipeline/run.js';
import type { StableDiffusion } from '../src/pipeline/stable-diffusion.js';

const BATCH = 16;

/** Every (prompt, seed) of the suite through `request`, batched; progress on stderr. */
export async function* suiteRuns<P extends { prompt: string }>(
  model: StableDiffusion,
  prompts: readonly P[],
  seeds: readonly number[],
  request: Omit<GenerateRequest, 'prompt' | 'seed'>,
): AsyncGenerator<{ r: GenerateRun; p: P; pi: number }> {
  const jobs = prompts.flatMap((p, pi) => seeds.map((seed) => ({ p, pi, seed })));
  for (let b = 0; b < jobs.length; b += BATCH) {
    const chunk = jobs.slice(b, b + BATCH);
    const plans = chunk.map(({ p, seed }) =>
      plan({ ...request, prompt: p.prompt, seed: noiseSeed(seed, p.prompt) }, model),
    );
    const runs = await run(plans, { batchSize: BATCH });
    for (let k = 0; k < runs.length; k++) yield { r: runs[k]!, p: chunk[k]!.p, pi: chunk[k]!.pi };
    process.stderr.write(`${Math.min(b + BATCH, jobs.length)}/${jobs.length} images\n`);
  }
}

/** The cells of a w × h grid over an imgW × imgH image whose centres lie inside bbox [x, y, width, height]. */
export function boxCells(bbox: readonly number[], imgW: number, imgH: number, w: number, h: number): Uint8Array {
  const [x, y, bw, bh] = bbox as [number, number, number, number];
  const cells = new Uint8Array(w * h);
  for (let r = 0; r < h; r++)
    for (let c = 0; c < w; c++) {
      const cx = ((c + 0.5) * imgW) / w;
      const cy = ((r + 0.5) * imgH) / h;
      if (cx >= x && cx < x + bw && cy >= y && cy < y + bh) cells[r * w + c] = 1;
    }
  return cells;
}

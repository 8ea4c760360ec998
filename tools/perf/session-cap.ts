/**
 * Memory of a long benchmark against the cap on compiled graphs (LoadOptions.maxSessions, $S2I_MAX_SESSIONS): runs
 * suppress and initno on 12 held-apart three-object prompts × 4 seeds of the shapes model (96 images, a minute or
 * two) and prints, every 16 images, how many graphs were compiled, how many the model holds and the process's RSS.
 *
 *   npx tsx tools/perf/session-cap.ts                       # the default cap (32: nothing is dropped here)
 *   S2I_MAX_SESSIONS=4 npx tsx tools/perf/session-cap.ts    # graphs dropped and compiled again; RSS stays lower
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import '../../src/node.js';
import { runBench } from '../../src/bench/run.js';
import { loadSuite } from '../../src/bench/suites.js';
import { StableDiffusion } from '../../src/pipeline/stable-diffusion.js';

const model = await StableDiffusion.load(resolve(import.meta.dirname, '..', '..', 'models', 'shapes'), { threads: 1 });
const suite = loadSuite('shapes-3', 'held-apart');
const out = mkdtempSync(join(tmpdir(), 's2i-session-cap-'));
const report = (done: number) =>
  console.log(
    `${done} images: ${model.graphTimings.length} graphs compiled, ${model.sessionCount} held, RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`,
  );
let last = 0;
try {
  await runBench(
    model,
    [{ ...suite, prompts: suite.prompts.slice(0, 12) }],
    { out, methods: ['suppress', 'initno'], seeds: [0, 1, 2, 3], steps: 25, guidance: 5 },
    { onProgress: (p) => void (p.done - last >= 16 && report((last = p.done))) },
  );
} finally {
  await model.release();
  rmSync(out, { recursive: true, force: true });
}

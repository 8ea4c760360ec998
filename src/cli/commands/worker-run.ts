/**
 * `s2i worker` run (declared in worker.ts): one loaded model taking jobs from the queue until interrupted.
 */
import { existsSync } from 'node:fs';
import { startBenchWorker, type BenchWorker } from '../../bench/queue-worker.js';
import { UserError } from '../../errors.js';
import { onInterrupt } from '../../util/cleanup.js';
import { defaultBenchModelDir } from '../defaults.js';
import { boundLine } from '../../util/quote.js';
import type { WorkerFlags } from './worker.js';

export async function run(flags: WorkerFlags): Promise<void> {
  const { queue: target, concurrency, threads, lockSeconds, predictionType } = flags;
  const modelDir = flags.model ?? defaultBenchModelDir();
  if (modelDir === null)
    throw new UserError('no --model given and no default model is installed (give --model DIR, the benchmark model)');
  if (!existsSync(modelDir)) throw new UserError(`--model ${modelDir}: no such folder or file`);

  const log = (line: string) => process.stderr.write(`worker: ${boundLine(line)}\n`);
  let signals = 0;
  let worker: BenchWorker | null = null;
  const handler = () => {
    if (++signals === 1) log('closing: finishing the active jobs (interrupt again to stop at once)');
    worker?.close(signals > 1);
    return true; // this command closes itself on every signal
  };
  const stopHandling = onInterrupt(handler);
  try {
    worker = await startBenchWorker({
      target,
      modelDir,
      ...(threads !== undefined ? { threads } : {}),
      ...(flags.config !== undefined ? { config: flags.config } : {}),
      ...(predictionType !== undefined ? { predictionType } : {}),
      concurrency,
      lockMs: lockSeconds * 1000,
      log,
      ...(flags.out !== undefined ? { out: flags.out } : {}),
    });
    if (signals > 0) worker.close(signals > 1);
    const summary = await worker.done;
    log(`closed: ${summary.completed} jobs done, ${summary.failed} failed`);
  } finally {
    stopHandling();
  }
}

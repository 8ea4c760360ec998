/**
 * `s2i worker --queue URL`: takes benchmark jobs from a job queue (BullMQ on Redis) that `s2i bench --queue URL`
 * fills, generates and scores each image with one loaded model, and returns the row and image. Runs until
 * interrupted (Ctrl-C: finish the active jobs; twice: stop at once, the jobs go to other workers). See
 * src/bench/queue-worker.ts (and queue.ts for the producer). This file declares the command; the run is
 * worker-run.ts, imported only when the command runs.
 */
import type { Command } from '@commander-js/extra-typings';
import { DEFAULT_LOCK_MS, QUEUE_NAME } from '../../bench/queue-settings.js';
import { parseRedisUrl } from '../../bench/redis-url.js';
import { integerOption, numberOption, parsePredictionType, typedOption } from '../options.js';

/** The flags as commander parsed them: their types come from the declarations in `workerCommand`. */
export type WorkerFlags = ReturnType<ReturnType<typeof workerCommand>['opts']>;

/** The command and its options: each flag, its type, default and help text declared once. */
function workerCommand(program: Command) {
  return program
    .command('worker')
    .description('generate benchmark images for s2i bench --queue: take jobs from Redis, return rows and images')
    .addOption(
      typedOption(
        '--queue <url>',
        'the job queue: redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)',
        parseRedisUrl,
      ).makeOptionMandatory(),
    )
    .option(
      '--model <path>',
      "the benchmark's model: a folder or single-file .safetensors (default: the installed pixel shapes model, models/shapes)",
    )
    .option('--config <dir>', "a single file's configs and tokenizer, as s2i bench --config")
    .addOption(
      typedOption(
        '--prediction-type <type>',
        'what the UNet predicts, as s2i bench --prediction-type',
        parsePredictionType,
      ),
    )
    .addOption(integerOption('--concurrency <n>', 'jobs run at once through the one loaded model', 1, 64).default(1))
    .option('--out <dir>', "write images into this folder (the benchmark's --out, shared) instead of returning them")
    .addOption(integerOption('--threads <n>', 'ONNX Runtime threads (default: all cores)', 1, 1024))
    .addOption(
      numberOption(
        '--lock-seconds <s>',
        "how long a job's lock lasts without renewal: when a worker dies, its jobs go to other workers after about twice this",
        1,
        3600,
      ).default(DEFAULT_LOCK_MS / 1000),
    )
    .addHelpText(
      'after',
      `
Description:
  Connects to the Redis server of the URL (the password may also come from
  $S2I_REDIS_PASSWORD; it is never printed), takes jobs from the queue
  "${QUEUE_NAME}" that s2i bench --queue fills, and for each: checks that
  the job was planned for this model (its fingerprint) and these method
  settings (else the job fails with an error saying so), generates and
  scores the image exactly as a local s2i bench would, and returns the row
  and the PNG bytes to the producer. Runs until interrupted: Ctrl-C (or
  SIGTERM) finishes the active jobs and exits; a second one exits at once.
  A worker that dies (SIGKILL, power loss) loses nothing: its jobs go back to
  the queue after the lock expires and other workers take them.

  Run one worker per machine: ONNX Runtime already uses every core
  (--threads), so --concurrency above 1 rarely helps on CPU.

Examples:
  s2i worker --queue redis://10.0.0.5:6379/0 --model models/shapes
  S2I_REDIS_PASSWORD=... s2i worker --queue redis://10.0.0.5:6379 --threads 8
`,
    );
}

export function register(program: Command): void {
  workerCommand(program).action(async (flags) => (await import('./worker-run.js')).run(flags));
}

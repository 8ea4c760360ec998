/**
 * A benchmark worker (`s2i worker --queue URL`): takes jobs from the queue the producer fills (queue.ts), runs each
 * in its model thread (queue-thread.ts, so that ONNX Runtime's synchronous calls never stop this thread from
 * renewing the jobs' locks) and hands back the row and the PNGs, or writes the files into a shared `--out` folder.
 * A worker gives up, in one line, when it loses Redis or its model thread.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker as Thread } from 'node:worker_threads';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { FieldError, UserError } from '../errors.js';
import { makeFolders } from '../io/durable.js';
import type { PredictionType } from '../schedulers/index.js';
import { closeWithin } from './queue.js';
import { DEFAULT_LOCK_MS, JOB_ATTEMPTS, MAX_STALLED, QUEUE_NAME } from './queue-settings.js';
import type { QueuedJob, QueuedResult } from './queue-job.js';
import type { FromThread, ThreadData, ToThread } from './queue-thread.js';
import { bullConnection, probeRedis, redact, watchRedis, type RedisTarget } from './redis.js';

export interface WorkerOptions {
  target: RedisTarget;
  /** The model folder: loaded in the worker's model thread (queue-thread.ts). */
  modelDir: string;
  /** ONNX Runtime threads (default: all cores). */
  threads?: number;
  /** Load options, as `s2i bench` takes them: a single file's configs, the UNet's prediction type. */
  config?: string;
  predictionType?: PredictionType;
  /** Jobs this worker holds and runs at once through its one model (ONNX Runtime sessions take concurrent runs). */
  concurrency: number;
  /** Write the images into this (shared) folder instead of returning their bytes. */
  out?: string;
  /**
   * How long a job's lock lasts without renewal: a worker that dies is noticed this long after its last renewal
   * (plus one stalled-check interval, the same length) and its jobs go back to the queue. Default 30 s.
   */
  lockMs?: number;
  /** Give up when Redis has been unreachable this long (default 60 s). */
  lostAfterMs?: number;
  log?(line: string): void;
}

export interface WorkerSummary {
  completed: number;
  failed: number;
}

export interface BenchWorker {
  /** Closes the worker: gracefully (the active jobs finish first), or at once (they go back to the queue). */
  close(force: boolean): void;
  /** Resolves when the worker has closed; rejects (one-line UserError) when it lost Redis or its model thread. */
  done: Promise<WorkerSummary>;
}

/** The worker's model thread (queue-thread.ts): jobs in, results out. */
class ModelThread {
  private next = 0;
  private readonly waiting = new Map<number, { resolve(r: QueuedResult): void; reject(e: Error): void }>();
  private closing = false;
  /** Called once if the thread dies on its own. */
  onDeath: (message: string) => void = () => {};

  private constructor(
    private readonly thread: Thread,
    readonly fingerprint: string,
    readonly dir: string,
  ) {
    thread.on('message', (m: FromThread) => {
      if (m.type !== 'result' && m.type !== 'failed') return;
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.type === 'result') w?.resolve(m.result as QueuedResult);
      else w?.reject(m.unrecoverable ? new UnrecoverableError(m.message) : new Error(m.message));
    });
    const died = (why: string) => {
      if (this.closing) return;
      this.closing = true;
      for (const w of this.waiting.values()) w.reject(new Error(`the worker's model thread stopped: ${why}`));
      this.waiting.clear();
      this.onDeath(`the model thread stopped: ${why}`);
    };
    thread.on('error', (e) => died(e.message.split('\n')[0]!));
    thread.on('exit', (code) => died(`exit code ${code}`));
  }

  /** Starts the thread and waits for its model; a model that cannot be loaded is a one-line UserError. */
  static start(data: ThreadData): Promise<ModelThread> {
    const thread = new Thread(new URL('./queue-thread.js', import.meta.url), {
      workerData: { ...data, s2iBenchWorker: true },
    });
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromThread) => {
        if (m.type === 'ready') {
          cleanup();
          resolve(new ModelThread(thread, m.fingerprint, m.dir));
        } else if (m.type === 'fatal') {
          cleanup();
          void thread.terminate();
          reject(m.user ? new UserError(m.message) : new Error(m.message));
        }
      };
      const onError = (e: Error) => (cleanup(), reject(e));
      const onExit = (code: number) => (cleanup(), reject(new Error(`the model thread exited (code ${code})`)));
      const cleanup = () => {
        thread.off('message', onMessage);
        thread.off('error', onError);
        thread.off('exit', onExit);
      };
      thread.on('message', onMessage);
      thread.on('error', onError);
      thread.on('exit', onExit);
    });
  }

  run(data: unknown): Promise<QueuedResult> {
    if (this.closing) return Promise.reject(new Error("the worker's model thread is closed"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.thread.postMessage({ type: 'job', id, data } satisfies ToThread);
    });
  }

  /** Lets the thread release its model and end; ends it anyway after `ms`. */
  async close(ms = 5000): Promise<void> {
    if (this.closing) return void (await this.thread.terminate());
    this.closing = true;
    const exited = new Promise<void>((resolve) => this.thread.once('exit', () => resolve()));
    this.thread.postMessage({ type: 'close' } satisfies ToThread);
    await closeWithin([exited], ms);
    await this.thread.terminate();
  }
}

/**
 * Takes benchmark jobs from the queue until closed. The model lives in a thread of its own (queue-thread.ts), so
 * that this thread keeps renewing the jobs' locks while ONNX Runtime computes; there each job is checked against
 * the model (fingerprint and row key), generated and scored with the same function as a local run
 * (`generateBenchImage`), and the row and PNG bytes come back. Resolves once connected and loaded (a one-line
 * UserError when Redis cannot be reached or the model cannot be loaded).
 *
 * Batching later: with `concurrency` N, up to N jobs are active at once and their names are their methods; the
 * model thread is the place to gather those of one method into one batched generation. Today each runs alone.
 */
export async function startBenchWorker(options: WorkerOptions): Promise<BenchWorker> {
  const { target } = options;
  const log = options.log ?? (() => {});
  await probeRedis(target);
  const out = options.out;
  if (out !== undefined) makeOutFolder(out);
  const model = await ModelThread.start({
    modelDir: options.modelDir,
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.config !== undefined ? { config: options.config } : {}),
    ...(options.predictionType !== undefined ? { predictionType: options.predictionType } : {}),
    ...(out !== undefined ? { out } : {}),
  });

  const processJob = async (job: Job): Promise<QueuedResult> => {
    log(`took ${describeJob(job)}${job.stalledCounter > 0 ? ' (from a worker that stopped answering)' : ''}`);
    return model.run(job.data);
  };

  const lockMs = options.lockMs ?? DEFAULT_LOCK_MS;
  const worker = new Worker(QUEUE_NAME, processJob, {
    connection: bullConnection(target),
    concurrency: options.concurrency,
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: MAX_STALLED,
    autorun: false,
  });
  const summary = countJobs(worker, target, log);
  let lastError = '';
  worker.on('error', (e) => (lastError = redact(e.message, target)));

  // A lost Redis ends the worker at once: BullMQ's close may never settle without a server to talk to.
  let lost: (e: UserError) => void = () => {};
  const lostRedis = new Promise<never>((_, reject) => (lost = reject));
  lostRedis.catch(() => {});
  const stopWatch = watchRedis(
    target,
    (why) => {
      lost(new UserError(why));
      void closeWithin([worker.close(true)], 2000);
    },
    { lostAfterMs: options.lostAfterMs ?? 60_000 },
  );
  model.onDeath = (why) => {
    lost(new UserError(why));
    void closeWithin([worker.close(true)], 2000);
  };
  try {
    await worker.waitUntilReady();
  } catch (e) {
    stopWatch();
    await closeWithin([worker.close(true), model.close()], 2000);
    throw new UserError(redact(`job queue at ${target.display}: ${lastError || (e as Error).message}`, target), {
      cause: e,
    });
  }
  log(
    `model ${model.dir} (fingerprint ${model.fingerprint}); taking jobs from ${target.display} (queue ${QUEUE_NAME}), ` +
      `${options.concurrency} at a time${out !== undefined ? `, images into ${out}` : ''}`,
  );
  const closing: Promise<void>[] = [];
  const running = (async () => {
    try {
      await worker.run();
      await Promise.allSettled(closing);
    } catch (e) {
      if (!worker.closing)
        throw new UserError(redact(`job queue at ${target.display}: ${lastError || (e as Error).message}`, target), {
          cause: e,
        });
    }
    return summary;
  })();
  const done = Promise.race([running, lostRedis]).finally(async () => {
    stopWatch();
    await model.close();
  });
  return {
    close: (force) => closing.push(worker.close(force)),
    done,
  };
}

/** The shared folder a worker writes its images into (`--out`), made now: a bad one is an error before any job. */
function makeOutFolder(out: string): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new FieldError('out', `${out} is not a directory`);
  try {
    makeFolders(join(out, 'images'));
  } catch (e) {
    throw new FieldError('out', `${out}: cannot create the folder: ${(e as Error).message}`, { cause: e });
  }
}

/** A job as the worker's log names it: method, seed and prompt (a benchmark's), else its id. */
function describeJob(job: Job | undefined): string {
  const d = job?.data as Partial<QueuedJob> | undefined;
  return d?.job ? `${d.job.method} s${d.job.seed} ${JSON.stringify(d.job.prompt)}` : `job ${job?.id ?? '?'}`;
}

/** Counts and logs the worker's completed and failed jobs. */
function countJobs(worker: Worker, target: RedisTarget, log: (line: string) => void): WorkerSummary {
  const summary: WorkerSummary = { completed: 0, failed: 0 };
  worker.on('completed', (job, result: QueuedResult) => {
    summary.completed++;
    // A request from s2i serve returns images, not a row.
    const seconds = result.row ? ` in ${(result.row.seconds + result.row.compile_seconds).toFixed(2)} s` : '';
    log(`done ${describeJob(job)}${seconds}`);
  });
  worker.on('failed', (job, err) => {
    summary.failed++;
    log(
      redact(
        `failed ${describeJob(job)} (try ${job?.attemptsMade ?? '?'} of ${JOB_ATTEMPTS}): ${err.message.split('\n')[0]}`,
        target,
      ),
    );
  });
  return summary;
}

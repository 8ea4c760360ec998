/**
 * A benchmark on a job queue (BullMQ on Redis): one producer (`s2i bench --queue URL`) enqueues one job per image
 * and collects the results into its output folder exactly as a local run writes them; any number of workers
 * (`s2i worker --queue URL`, on any machines that reach the Redis server; queue-worker.ts) generate and score the
 * images. This file holds the queue's constants and the producer.
 *
 * - Job id: `s2i-<row key>`; the row key hashes (prompt, seed, method, settings), and the settings hold the model's
 *   fingerprint and the method's configuration. Adding a job whose id exists is a no-op, so a rerun (or a second
 *   producer) never duplicates work. Rows already in results.jsonl are not enqueued (resume works as locally).
 * - A job carries the `BenchJob` (plain JSON) plus the expected model fingerprint and row key. A worker whose model
 *   has another fingerprint, or that derives another key (another s2i version), refuses the job with an error
 *   that says so. The worker returns the row and the PNG bytes (base64), or with `--out` writes the files itself
 *   into that (shared) folder and returns the row alone. Its model runs in a thread of its own (queue-thread.ts),
 *   so that ONNX Runtime's synchronous calls never stop the main thread from renewing the jobs' locks.
 * - Faults: a job is tried 3 times (exponential backoff); a job whose worker dies (SIGKILL, power loss) keeps its
 *   lock only for `lockMs`, then BullMQ's stalled-job check moves it back to wait for another worker (up to
 *   `MAX_STALLED` times). A job that fails for good is reported in the summary as failed (it stays in Redis'
 *   failed set; a rerun of the producer retries it).
 * - The producer writes each result once: a completed job is settled (in memory, before any await), its files
 *   written atomically, its row appended with one write, and only then is the job removed from Redis. A crash in
 *   between leaves the job completed in Redis; the rerun finds its row in results.jsonl and only removes the job.
 *   Completions are found by sweeping Redis' completed and failed sets, woken by QueueEvents (and every 2 s, so a
 *   missed event costs nothing); jobs that vanished from Redis (a restart without persistence) are enqueued again.
 * - SIGINT on the producer (an aborted `signal`) stops collecting and leaves the queue as it is: workers go on,
 *   their results wait in Redis for the rerun.
 */
import { closeSync, existsSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../image/png.js';
import type { StableDiffusion } from '../pipeline/stable-diffusion.js';
import { prepareBenchJob, type PreparedBenchJob } from './image.js';
import { benchImagePaths, planJob, type BenchJob, type BenchOptions } from './plan.js';
import { appendRow, withBenchFolder } from './results.js';
import {
  checkBenchPlan,
  startBench,
  type BenchFailure,
  type BenchHooks,
  type BenchItem,
  type BenchOutcome,
  type BenchStart,
} from './run.js';
import { encodeJson, jobIdOf, keyOfJobId, predictionTypeOf, type QueuedJob, type QueuedResult } from './queue-job.js';
import { isBenchRow, type BenchRow } from './row.js';
import { bullConnection, probeRedis, redact, watchRedis, type RedisTarget } from './redis.js';
import { JOB_ATTEMPTS, QUEUE_NAME } from './queue-settings.js';
import type { Suite } from './suites.js';
import { makeFolders, syncFolder } from '../io/durable.js';

const BACKOFF_MS = 1000;

// ------------------------------------------------------------------------------------------------------ producer

export interface QueueRunOptions {
  target: RedisTarget;
  /** Aborting stops collecting (SIGINT); the queue is left as it is, resumable. */
  signal?: AbortSignal;
  /** Give up when Redis has been unreachable this long during the run (default 60 s). */
  lostAfterMs?: number;
}

export interface QueueBenchHooks extends BenchHooks {
  /** After enqueueing: jobs added (or already waiting in the queue), and earlier failures set to run again. */
  onQueued?(info: { jobs: number; retried: number; queue: string }): void;
  /** Workers connected to the queue, checked every few seconds. */
  onWorkers?(count: number): void;
  onFailed?(failure: BenchFailure): void;
  /** A worker stopped answering during a job: the job went back to the queue for another worker. */
  onStalled?(): void;
}

/** An aborted wait: the run was interrupted or Redis was lost. */
class Stop extends Error {}

/**
 * Runs (or resumes) a benchmark into `options.out` through the job queue: enqueues what results.jsonl lacks,
 * collects the workers' results as they come, and returns the same outcome as `runBench` (items in plan order),
 * plus the jobs that failed for good. `model` is only read (tokenizer, configs, fingerprint), never run.
 */
export async function runBenchOnQueue(
  model: StableDiffusion,
  suites: readonly Suite[],
  options: BenchOptions,
  queue: QueueRunOptions,
  hooks: QueueBenchHooks = {},
): Promise<BenchOutcome> {
  const { target } = queue;
  await probeRedis(target); // fail fast, before the output folder is touched
  return withBenchFolder(
    options,
    () => collect(model, suites, options, queue, hooks),
    () => checkBenchPlan(model, suites, options),
  );
}

/**
 * The producer's run, inside the locked output folder: plans the jobs, enqueues the open ones, collects results
 * until every job is settled (or the run stops), then returns the outcome in plan order.
 */
async function collect(
  model: StableDiffusion,
  suites: readonly Suite[],
  options: BenchOptions,
  queue: QueueRunOptions,
  hooks: QueueBenchHooks,
): Promise<BenchOutcome> {
  const { target } = queue;
  const start = startBench(model, suites, options);
  hooks.onStart?.({ total: start.plan.length, existing: start.existing.rows.length });
  const jobs = planQueuedJobs(model, start, options);
  for (let i = 0; i < jobs.reused; i++)
    hooks.onProgress?.({ done: i + 1, total: start.plan.length, skipped: i + 1, row: null });

  const connection = bullConnection(target);
  // BullMQ reports connection trouble as events: the last one names the cause when the run fails.
  const errors: string[] = [];
  const onError = (e: unknown) => errors.push(redact((e as Error)?.message ?? String(e), target));
  const q = new Queue(QUEUE_NAME, { connection });
  q.on('error', onError);
  const events = new QueueEvents(QUEUE_NAME, { connection });
  events.on('error', onError);
  // Completions wake the collecting loop; an abort (SIGINT) or a lost Redis stops it.
  const alarm = new Alarm();
  events.on('completed', alarm.poke);
  events.on('failed', alarm.poke);
  events.on('stalled', () => hooks.onStalled?.());
  const onAbort = () => alarm.stopWith('interrupted');
  queue.signal?.addEventListener('abort', onAbort);
  if (queue.signal?.aborted) onAbort();
  const stopWatch = watchRedis(target, alarm.stopWith, { lostAfterMs: queue.lostAfterMs ?? 60_000 });

  const fd = openSync(start.resultsPath, 'a');
  syncFolder(dirname(start.resultsPath)); // results.jsonl's entry, when this run created it
  const collector = new Collector({ model, q, target, start, jobs, out: options.out, fd, hooks });
  try {
    await events.waitUntilReady();
    alarm.check();
    await collector.enqueue(alarm);
    await collector.collectAll(alarm);
  } catch (e) {
    if (e instanceof Stop || alarm.stopWhy !== null) throw collector.stopped(alarm.stopWhy ?? (e as Error).message, e);
    if (e instanceof UserError) throw e;
    throw new UserError(
      redact(`job queue at ${target.display}: ${errors.at(-1) ?? (e as Error).message}`, target).split('\n')[0]!,
      { cause: e },
    );
  } finally {
    closeSync(fd);
    queue.signal?.removeEventListener('abort', onAbort);
    stopWatch();
    await closeWithin([events.close(), q.close()], alarm.stopWhy === null ? 10_000 : 2000);
  }
  return collector.outcome();
}

/** The run's jobs: one per distinct row key of the plan, and those of them results.jsonl lacks. */
interface QueuePlan {
  /** One per plan entry, in plan order. */
  prepared: PreparedBenchJob[];
  /** Plan entries per key (a prompt in two suites is one image). */
  multiplicity: Map<string, number>;
  planKeys: Set<string>;
  /** The jobs to enqueue and collect, by key. */
  pending: Map<string, PreparedBenchJob>;
  /** Plan entries whose row is already in results.jsonl. */
  reused: number;
}

function planQueuedJobs(model: StableDiffusion, start: BenchStart, options: BenchOptions): QueuePlan {
  const { byKey, base, plan } = start;
  const prepared = plan.map((it) => prepareBenchJob(model, base.model, planJob(it, base, options)));
  const multiplicity = new Map<string, number>();
  for (const p of prepared) multiplicity.set(p.key, (multiplicity.get(p.key) ?? 0) + 1);
  const planKeys = new Set(prepared.map((p) => p.key));
  const pending = new Map<string, PreparedBenchJob>();
  for (const p of prepared) if (!byKey.has(p.key)) pending.set(p.key, p);
  const reused = plan.length - [...pending.keys()].reduce((s, k) => s + multiplicity.get(k)!, 0);
  return { prepared, multiplicity, planKeys, pending, reused };
}

/**
 * What the collecting loop sleeps on, one wake-up at a time: QueueEvents (`poke`), the 2 s tick, an abort or a
 * lost Redis (`stopWith`) end the sleep. A poke during a sweep is remembered, so that the next sleep ends at once.
 */
class Alarm {
  /** Why the run must stop (set once), or null while it goes on. */
  stopWhy: string | null = null;
  private wake: (() => void) | null = null;
  private poked = false;

  readonly poke = (): void => {
    this.poked = true; // an event during a sweep: sweep again at once
    const w = this.wake;
    this.wake = null;
    w?.();
  };

  readonly stopWith = (why: string): void => {
    this.stopWhy ??= why;
    this.poke();
  };

  /** Throws `Stop` once the run must stop: called between the awaits of the run. */
  check(): void {
    if (this.stopWhy !== null) throw new Stop(this.stopWhy);
  }

  /** Sleeps until poked, stopped, or `ms` have passed. */
  async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
      if (this.stopWhy !== null || this.poked) this.poke();
    });
    this.poked = false;
  }
}

interface CollectorParts {
  model: StableDiffusion;
  q: Queue;
  target: RedisTarget;
  start: BenchStart;
  jobs: QueuePlan;
  out: string;
  fd: number;
  hooks: QueueBenchHooks;
}

/**
 * One run's jobs on the queue and their results: enqueues the open jobs, then sweeps Redis' completed and failed
 * sets and settles each job once — written (files, then its row, then the job's removal from Redis) or failed.
 */
class Collector {
  /** Keys of jobs whose result was taken: marked before any await, so that no sweep takes one twice. */
  private readonly settled = new Set<string>();
  private readonly failed: BenchFailure[] = [];
  private done: number;
  private generated = 0;
  private readonly model: StableDiffusion;
  private readonly q: Queue;
  private readonly target: RedisTarget;
  private readonly start: BenchStart;
  private readonly jobs: QueuePlan;
  private readonly out: string;
  /** results.jsonl, open for appending. */
  private readonly fd: number;
  private readonly hooks: QueueBenchHooks;

  constructor(c: CollectorParts) {
    this.model = c.model;
    this.q = c.q;
    this.target = c.target;
    this.start = c.start;
    this.jobs = c.jobs;
    this.out = c.out;
    this.fd = c.fd;
    this.hooks = c.hooks;
    this.done = c.jobs.reused; // the rows already in results.jsonl were counted as progress before
  }

  /** Adds the open jobs (an id already in the queue is a no-op); ours that failed for good before are retried. */
  async enqueue(alarm: Alarm): Promise<void> {
    const { pending } = this.jobs;
    // Jobs of ours that failed for good in an earlier run get a fresh set of tries.
    let retried = 0;
    await forEachJob(this.q, 'failed', async (job) => {
      const key = keyOfJobId(job.id);
      if (key && pending.has(key)) {
        await job.remove();
        retried++;
        return true;
      }
      return false;
    });
    const all = [...pending.values()];
    for (let i = 0; i < all.length; i += 500) {
      alarm.check();
      await this.q.addBulk(
        all.slice(i, i + 500).map((p) => ({ name: p.job.method, data: this.wire(p), opts: jobOptions(p) })),
      );
    }
    this.hooks.onQueued?.({ jobs: all.length, retried, queue: `${this.target.display} (queue ${QUEUE_NAME})` });
  }

  /**
   * Sweeps until every open job is settled: after each event (or every 2 s), with a check for jobs Redis lost
   * every 15 s and a count of connected workers every 5 s.
   */
  async collectAll(alarm: Alarm): Promise<void> {
    const { pending } = this.jobs;
    let lastLostCheck = Date.now();
    let lastWorkers = 0;
    while (this.settled.size < pending.size) {
      alarm.check();
      await this.sweep();
      if (this.settled.size >= pending.size) break;
      alarm.check();
      if (Date.now() - lastLostCheck > 15_000) {
        await this.requeueLost();
        lastLostCheck = Date.now();
      }
      if (this.hooks.onWorkers && Date.now() - lastWorkers > 5000) {
        this.hooks.onWorkers(await this.q.getWorkersCount());
        lastWorkers = Date.now();
      }
      await alarm.sleep(2000);
    }
  }

  /** Settles the jobs in Redis' completed and failed sets; removes the completed ones once written. */
  private async sweep(): Promise<void> {
    const { pending, planKeys } = this.jobs;
    const { byKey } = this.start;
    await forEachJob(this.q, 'completed', async (job) => {
      const key = keyOfJobId(job.id);
      const p = key ? pending.get(key) : undefined;
      if (!p) {
        // Written by an earlier run that stopped before it removed the job: only the removal is left to do.
        if (key === null || !planKeys.has(key) || !byKey.has(key)) return false;
        await job.remove();
        return true;
      }
      if (!this.settled.has(p.key)) {
        this.settled.add(p.key); // before any await: a concurrent sweep never writes the same result again
        try {
          this.persist(p, job.returnvalue);
        } catch (e) {
          if (e instanceof UserError) throw e; // our own folder cannot be written: stop
          this.fail(p, (e as Error).message, job.attemptsMade);
        }
      }
      await job.remove();
      return true;
    });
    await forEachJob(this.q, 'failed', async (job) => {
      const key = keyOfJobId(job.id);
      const p = key ? pending.get(key) : undefined;
      if (p && !this.settled.has(p.key)) {
        this.settled.add(p.key);
        this.fail(p, redact(job.failedReason || 'failed', this.target), job.attemptsMade);
      }
      return false;
    });
  }

  /** Jobs that are in no state at all (Redis lost them) are enqueued again. */
  private async requeueLost(): Promise<void> {
    const open = [...this.jobs.pending.values()].filter((p) => !this.settled.has(p.key));
    for (let i = 0; i < open.length; i += 200) {
      const chunk = open.slice(i, i + 200);
      const states = await Promise.all(chunk.map((p) => this.q.getJobState(jobIdOf(p.key))));
      const lost = chunk.filter((p, k) => states[k] === 'unknown' && !this.settled.has(p.key));
      for (const p of lost) await this.q.add(p.job.method, this.wire(p), jobOptions(p));
    }
  }

  /** A job as it travels: plain JSON, with what the worker checks its model against. */
  private wire(p: PreparedBenchJob): QueuedJob {
    return {
      job: encodeJson(p.job) as BenchJob,
      model: this.start.base.model,
      key: p.key,
      predictionType: predictionTypeOf(this.model),
    };
  }

  /**
   * Writes a worker's result: its image files (unless the worker wrote them into this folder, shared), then its
   * row. A malformed result throws an Error (the job fails); a folder that cannot be written, a UserError.
   */
  private persist(p: PreparedBenchJob, value: unknown): void {
    const result = value as Partial<QueuedResult> | null;
    const why = malformed(p, result);
    if (why) throw new Error(`the worker returned a malformed result (${why})`);
    for (const f of result!.files!) {
      const path = join(this.out, f.path);
      if (typeof f.png === 'string') {
        makeFolders(dirname(path));
        writeFileAtomic(path, Buffer.from(f.png, 'base64'));
      } else if (!existsSync(path)) {
        throw new Error(
          `the worker wrote ${f.path} into its own output folder, which is not this run's folder ${this.out} (a worker's output folder must be this one, shared)`,
        );
      }
    }
    // The row names the producer's model folder, as a local run's does (the fingerprint says it is the same model).
    const row: BenchRow = { ...result!.row!, model_dir: this.model.dir };
    appendRow(this.fd, row);
    this.start.byKey.set(p.key, row);
    this.generated++;
    this.advance(p, row);
  }

  private fail(p: PreparedBenchJob, reason: string, attempts: number): void {
    const f = { key: p.key, prompt: p.job.prompt, seed: p.job.seed, method: p.job.method, reason, attempts };
    this.failed.push(f);
    this.hooks.onFailed?.(f);
    this.advance(p, null);
  }

  /** Counts a settled job once for each plan entry it stands for. */
  private advance(p: PreparedBenchJob, row: BenchRow | null): void {
    const total = this.start.plan.length;
    const skipped = this.jobs.reused;
    for (let i = 0; i < this.jobs.multiplicity.get(p.key)!; i++) {
      this.done++;
      this.hooks.onProgress?.({ done: this.done, total, skipped, row });
    }
  }

  /** The error for a run stopped by `why` ('interrupted', or a lost Redis): what was collected, what is left. */
  stopped(why: string, cause: unknown): UserError {
    const { pending } = this.jobs;
    const left = pending.size - this.settled.size;
    if (why === 'interrupted')
      return new UserError(
        `interrupted: ${this.settled.size} of ${pending.size} queued images collected into ${this.out}; the other ${left} stay queued in ${this.target.display} and workers go on: rerun the same command to collect them`,
        { cause },
      );
    return new UserError(why, { cause });
  }

  /** The run's outcome, items in plan order (as `runBench` returns it), plus the jobs that failed for good. */
  outcome(): BenchOutcome {
    const { plan, byKey, existing, resultsPath, base } = this.start;
    const { prepared, pending } = this.jobs;
    const items: BenchItem[] = [];
    let skippedItems = 0;
    for (let i = 0; i < plan.length; i++) {
      const row = byKey.get(prepared[i]!.key);
      if (!row) continue;
      if (!pending.has(prepared[i]!.key)) skippedItems++;
      items.push({ suite: plan[i]!.suite.name, split: plan[i]!.suite.split, kind: prepared[i]!.job.kind, row });
    }
    return {
      items,
      generated: this.generated,
      skipped: skippedItems,
      ignoredLines: existing.ignored,
      resultsPath,
      settings: base,
      failed: this.failed,
    };
  }
}

/** BullMQ options of a job: its id is the row key's (adding it twice is a no-op); kept in Redis when done. */
function jobOptions(p: PreparedBenchJob) {
  return {
    jobId: jobIdOf(p.key),
    attempts: JOB_ATTEMPTS,
    backoff: { type: 'exponential', delay: BACKOFF_MS },
    removeOnComplete: false,
    removeOnFail: false,
  };
}

/** Why a worker's result for `p` cannot be written (null when it can): rows and files must be this job's own. */
function malformed(p: PreparedBenchJob, result: Partial<QueuedResult> | null): string | null {
  const expected = benchImagePaths(p.job.prompt, p.job.method, p.job.seed, p.hash);
  return !result
    ? 'no result'
    : !isBenchRow(result.row)
      ? 'the row is malformed'
      : result.row.key !== p.key
        ? `its row key ${result.row.key} is not the job's ${p.key}`
        : result.row.prompt !== p.job.prompt || result.row.seed !== p.job.seed || result.row.method !== p.job.method
          ? 'its row is for another image'
          : result.row.image !== expected.image || (result.row.maps !== null && result.row.maps !== expected.maps)
            ? 'its file paths are not the expected ones'
            : !Array.isArray(result.files) ||
                !result.files.some((f) => f?.path === expected.image) ||
                result.files.some((f) => !f || (f.path !== expected.image && f.path !== expected.maps))
              ? 'it lists unexpected files'
              : null;
}

/**
 * Waits for BullMQ objects to close, at most `ms`: without a Redis server their close may never settle, and a
 * lost server must not keep the process waiting (their reconnect timers are stopped by the close itself).
 */
export async function closeWithin(closes: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(closes),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms).unref())),
  ]);
  clearTimeout(timer);
}

/**
 * Calls `fn` on every job in one state, a page at a time; `fn` returns whether it removed the job (the pages
 * then shift).
 */
async function forEachJob(q: Queue, state: 'completed' | 'failed', fn: (job: Job) => Promise<boolean>): Promise<void> {
  const page = 100;
  for (let start = 0; ;) {
    const jobs = await q.getJobs([state], start, start + page - 1, true);
    if (jobs.length === 0) return;
    let removed = 0;
    for (const job of jobs) if (job && (await fn(job))) removed++;
    start += jobs.length - removed;
    if (jobs.length < page) return;
  }
}

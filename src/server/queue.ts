/**
 * The server's one generation queue: a bounded FIFO of jobs (one per API request), run in batches. The head of the
 * queue always runs next; jobs behind it with the same batch key (same model, steps, guidance, sampler, size,
 * method and recording) join its batch up to `maxBatch` images, so requests that arrive together share one
 * `generateBatch` (one UNet pass per step over all of them). Batches run one after another (`concurrency` 1 for
 * a model in this process; more when the work goes to queue workers elsewhere).
 *
 * A job leaves the queue early when its client disconnects (`signal`), when its time limit passes (waiting or
 * running), or on `interrupt()` (the running batches). A running batch is stopped, at its next sampler call, only
 * when no job in it still wants its images; jobs that are given up on are answered at once and the others go on.
 * `close()` refuses new jobs and resolves when every accepted job has been answered.
 */

/** Why a job was not run to the end: each becomes an HTTP status in the API's error shape. */
export class JobRefused extends Error {
  constructor(
    readonly reason: 'queue-full' | 'closing' | 'timeout' | 'gone' | 'interrupted',
    message: string,
    /** Seconds a client should wait before trying again (429, 503). */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** Thrown from `BatchControl.step` to stop a batch that nobody waits for any more. */
class BatchStopped extends Error {}

export interface Job<P, R> {
  readonly id: number;
  readonly key: string;
  readonly images: number;
  readonly payload: P;
  readonly submittedAt: number;
  readonly deadline: number;
  state: 'waiting' | 'running' | 'settled';
  resolve(result: R): void;
  reject(e: Error): void;
}

/** What a running batch reports and checks between sampler calls. */
export interface BatchControl {
  /** Call before each sampler call: records progress and throws when the batch should stop. */
  step(index: number, total: number): void;
}

export interface QueueEvents {
  onLength?(waiting: number, running: number): void;
  onSettled?(outcome: 'ok' | 'failed' | 'timeout' | 'gone' | 'interrupted', seconds: number, images: number): void;
  onBatch?(jobs: number, images: number): void;
}

export interface QueueOptions<P, R> {
  /** Jobs that may wait (not counting running ones); one more is refused with 429. */
  maxQueue: number;
  /** Images per batch (the head job runs even when it alone has more). */
  maxBatch: number;
  /** Time limit of each job, from its arrival to its answer. */
  timeoutMs: number;
  /** Batches running at once. */
  concurrency?: number;
  /** Runs a batch: results in the order of `jobs`. A job may be settled (given up on) while it runs. */
  run(jobs: readonly Job<P, R>[], control: BatchControl): Promise<R[]>;
  events?: QueueEvents;
}

export interface Progress {
  /** Jobs waiting, and the running batches' jobs and progress (sampler call of calls; 0..1 overall). */
  waiting: number;
  running: { jobs: number; images: number; step: number; total: number; startedAt: number }[];
}

export class GenerationQueue<P, R> {
  private readonly waiting: Job<P, R>[] = [];
  private readonly batches = new Set<{
    jobs: Job<P, R>[];
    step: number;
    total: number;
    startedAt: number;
    interrupted: boolean;
  }>();
  private nextId = 0;
  private closing = false;
  private drained: (() => void) | null = null;
  private readonly drainedPromise: Promise<void>;
  /** Rough seconds per image, for Retry-After: updated from finished batches. */
  private secondsPerImage = 1;

  constructor(private readonly o: QueueOptions<P, R>) {
    this.drainedPromise = new Promise((resolve) => (this.drained = resolve));
  }

  get length(): number {
    return this.waiting.length;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  progress(): Progress {
    return {
      waiting: this.waiting.length,
      running: [...this.batches].map((b) => ({
        jobs: b.jobs.length,
        images: b.jobs.reduce((n, j) => n + j.images, 0),
        step: b.step,
        total: b.total,
        startedAt: b.startedAt,
      })),
    };
  }

  /** Seconds until a refused client might find room: the queue's images at the measured rate, at least 1. */
  retryAfter(): number {
    const images = this.waiting.reduce((n, j) => n + j.images, 0);
    return Math.max(1, Math.ceil((this.secondsPerImage * images) / (this.o.concurrency ?? 1)));
  }

  /**
   * Queues a job; resolves with its result. Rejects with JobRefused when the queue is full or closing, when the
   * time limit passes, when `signal` aborts (the client went away) or on interrupt; with the run's error otherwise.
   */
  /** Throws the JobRefused that `submit` would reject with now (closing, or a full queue). */
  checkRoom(): void {
    if (this.closing) throw new JobRefused('closing', 'the server is shutting down; try another server', 5);
    if (this.waiting.length >= this.o.maxQueue)
      throw new JobRefused(
        'queue-full',
        `the queue is full (${this.o.maxQueue} requests waiting); retry after the time in Retry-After`,
        this.retryAfter(),
      );
  }

  submit(key: string, images: number, payload: P, signal?: AbortSignal): Promise<R> {
    try {
      this.checkRoom();
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const now = Date.now();
    return new Promise<R>((resolve, reject) => {
      const onAbort = () => this.giveUp(job, new JobRefused('gone', 'the client closed the connection'));
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const job: Job<P, R> = {
        id: this.nextId++,
        key,
        images,
        payload,
        submittedAt: now,
        deadline: now + this.o.timeoutMs,
        state: 'waiting',
        resolve: (r) => {
          cleanup();
          resolve(r);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      };
      if (signal?.aborted) return reject(new JobRefused('gone', 'the client closed the connection'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(
        () =>
          this.giveUp(
            job,
            new JobRefused(
              'timeout',
              `the request did not finish within its time limit (${this.o.timeoutMs / 1000} s)`,
            ),
          ),
        this.o.timeoutMs,
      );
      this.waiting.push(job);
      this.report();
      this.pump();
    });
  }

  /** Stops the running batches at their next sampler call; their jobs are answered as interrupted. */
  interrupt(): number {
    let n = 0;
    for (const b of this.batches) {
      b.interrupted = true;
      for (const j of b.jobs) {
        if (j.state === 'settled') continue;
        this.settle(j, 'interrupted', () => j.reject(new JobRefused('interrupted', 'interrupted')));
        n++;
      }
    }
    return n;
  }

  /** Refuses new jobs; resolves once every accepted job has been answered. */
  close(): Promise<void> {
    this.closing = true;
    this.checkDrained();
    return this.drainedPromise;
  }

  private giveUp(job: Job<P, R>, why: JobRefused): void {
    if (job.state === 'settled') return;
    if (job.state === 'waiting') {
      const i = this.waiting.indexOf(job);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    // A running job is answered now; its batch stops at the next call if no job in it is left.
    this.settle(job, why.reason === 'timeout' ? 'timeout' : 'gone', () => job.reject(why));
    this.report();
    this.checkDrained();
  }

  private settle(job: Job<P, R>, outcome: Parameters<NonNullable<QueueEvents['onSettled']>>[0], fn: () => void) {
    job.state = 'settled';
    this.o.events?.onSettled?.(outcome, (Date.now() - job.submittedAt) / 1000, job.images);
    fn();
  }

  private report(): void {
    let running = 0;
    for (const b of this.batches) running += b.jobs.filter((j) => j.state === 'running').length;
    this.o.events?.onLength?.(this.waiting.length, running);
  }

  private checkDrained(): void {
    if (this.closing && this.waiting.length === 0 && this.batches.size === 0) this.drained?.();
  }

  /** Starts batches while there is work and room. */
  private pump(): void {
    while (this.waiting.length > 0 && this.batches.size < (this.o.concurrency ?? 1)) {
      const head = this.waiting.shift()!;
      const jobs = [head];
      let images = head.images;
      for (let i = 0; i < this.waiting.length && images < this.o.maxBatch;) {
        const j = this.waiting[i]!;
        if (j.key === head.key && images + j.images <= this.o.maxBatch) {
          jobs.push(j);
          images += j.images;
          this.waiting.splice(i, 1);
        } else i++;
      }
      void this.runBatch(jobs, images);
    }
  }

  private async runBatch(jobs: Job<P, R>[], images: number): Promise<void> {
    for (const j of jobs) j.state = 'running';
    const batch = { jobs, step: 0, total: 0, startedAt: Date.now(), interrupted: false };
    this.batches.add(batch);
    this.report();
    this.o.events?.onBatch?.(jobs.length, images);
    const control: BatchControl = {
      step: (index, total) => {
        batch.step = index;
        batch.total = total;
        const now = Date.now();
        for (const j of jobs)
          if (j.state === 'running' && now > j.deadline)
            this.giveUp(
              j,
              new JobRefused(
                'timeout',
                `the request did not finish within its time limit (${this.o.timeoutMs / 1000} s)`,
              ),
            );
        if (batch.interrupted || jobs.every((j) => j.state === 'settled')) throw new BatchStopped();
      },
    };
    try {
      const results = await this.o.run(jobs, control);
      const seconds = (Date.now() - batch.startedAt) / 1000;
      this.secondsPerImage = 0.7 * this.secondsPerImage + 0.3 * (seconds / Math.max(1, images));
      jobs.forEach((j, i) => {
        if (j.state !== 'settled') this.settle(j, 'ok', () => j.resolve(results[i]!));
      });
    } catch (e) {
      const error = e instanceof BatchStopped ? new JobRefused('interrupted', 'interrupted') : (e as Error);
      for (const j of jobs) if (j.state !== 'settled') this.settle(j, 'failed', () => j.reject(error));
    } finally {
      this.batches.delete(batch);
      this.report();
      this.pump();
      this.checkDrained();
    }
  }
}

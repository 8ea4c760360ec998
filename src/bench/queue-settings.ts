/**
 * The job queue's settings that producer (queue.ts), worker (queue-worker.ts), server and the CLI's flags and
 * help share: in a module of their own so that declaring `s2i worker`'s flags loads no BullMQ.
 */

/** The BullMQ queue every producer and worker uses (jobs of different sweeps never share an id). */
export const QUEUE_NAME = 's2i-bench';
/** Tries per job before it is failed for good. */
export const JOB_ATTEMPTS = 3;
/** Times a job may be recovered from a dead worker before it is failed. */
export const MAX_STALLED = 2;
/** How long a job's lock lasts without renewal (BullMQ's own default lock, 30 s). */
export const DEFAULT_LOCK_MS = 30_000;

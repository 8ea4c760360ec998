/**
 * Reaching the Redis server behind a benchmark's job queue (the `--queue redis://...` URL is read in redis-url.ts;
 * its password is never printed: every message that could hold it goes through `redact`): a probe that fails fast
 * with one line when the server cannot be reached (instead of ioredis' endless reconnect loop), the connection
 * options BullMQ gets, and a watchdog that gives up with one line when a running producer or worker loses the
 * server for too long.
 */
import type { RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { UserError } from '../errors.js';
import { redact, type RedisTarget } from './redis-url.js';

export { parseRedisUrl, redact, type RedisTarget } from './redis-url.js';

function baseOptions(target: RedisTarget): RedisOptions {
  return {
    host: target.host,
    port: target.port,
    db: target.db,
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
    connectTimeout: 5000,
  };
}

/**
 * Options for BullMQ's own connections: reconnect every second or so while the watchdog waits (it decides when to
 * give up), so that a restarted Redis is picked up again.
 */
export function bullConnection(target: RedisTarget): BullRedisOptions {
  const { tls, ...rest } = baseOptions(target);
  return { ...rest, ...(tls ? { tls } : {}), retryStrategy: (times: number) => Math.min(250 * times, 2000) };
}

function errorText(e: unknown): string {
  const err = e as { message?: string; code?: string; errors?: unknown[] };
  if (Array.isArray(err.errors) && err.errors.length) return errorText(err.errors[0]);
  const msg = (err.message ?? String(e)).split('\n')[0]!;
  return msg || err.code || 'unknown error';
}

/** The smallest Redis version BullMQ supports. */
const MIN_VERSION = [6, 2, 0];

/**
 * Connects once, without retrying, and checks the server: reachable, password accepted, version new enough. A
 * failure is a one-line UserError naming the (redacted) URL. Returns the server's version.
 */
export async function probeRedis(target: RedisTarget): Promise<string> {
  const client = new Redis({
    ...baseOptions(target),
    db: 0, // selected below, where a refusal is an error: ioredis only emits it and goes on in database 0
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
  });
  let lastError: unknown = null;
  client.on('error', (e: unknown) => (lastError = e));
  const fail = (e: unknown) =>
    new UserError(redact(`cannot reach Redis at ${target.display}: ${errorText(lastError ?? e)}`, target));
  try {
    try {
      await client.connect();
      await client.ping();
    } catch (e) {
      throw fail(e);
    }
    if (target.db !== 0) await selectDatabase(client, target);
    const info = await client.info('server').catch((e: unknown) => {
      throw fail(e);
    });
    const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0';
    const parts = version.split('.').map(Number);
    for (let i = 0; i < 3; i++) {
      const a = parts[i] ?? 0,
        b = MIN_VERSION[i]!;
      if (a > b) break;
      if (a < b)
        throw new UserError(`Redis at ${target.display} is version ${version}; the job queue needs 6.2 or newer`);
    }
    return version;
  } finally {
    client.disconnect();
  }
}

/**
 * SELECTs the target's database, or fails with one line naming the databases the server has: BullMQ's connections
 * would otherwise stay in database 0 (ioredis reports a refused SELECT as an event and carries on), so a producer
 * would queue there and wait for workers that look elsewhere.
 */
async function selectDatabase(client: Redis, target: RedisTarget): Promise<void> {
  try {
    await client.select(target.db);
  } catch (e) {
    const count = await client
      .config('GET', 'databases')
      .then((r) => Number((r as string[])[1]))
      .catch(() => NaN); // CONFIG may be disabled (managed servers)
    const has = Number.isInteger(count) && count > 0 ? ` (it has databases 0 to ${count - 1})` : '';
    throw new UserError(
      redact(`Redis at ${target.display} has no database ${target.db}${has}: ${errorText(e)}`, target),
    );
  }
}

/**
 * Pings the server every `everyMs`; when no ping has succeeded for `lostAfterMs`, calls `onLost` once with a
 * one-line message (redacted). Stop it with the returned function.
 */
export function watchRedis(
  target: RedisTarget,
  onLost: (message: string) => void,
  { everyMs = 2000, lostAfterMs = 60_000 } = {},
): () => void {
  const client = new Redis({
    ...baseOptions(target),
    retryStrategy: () => Math.min(everyMs, 1000),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  let lastError: unknown = null;
  client.on('error', (e: unknown) => (lastError = e));
  let lastOk = Date.now();
  let stopped = false;
  const timer = setInterval(() => {
    client.ping().then(
      () => (lastOk = Date.now()),
      (e: unknown) => {
        lastError ??= e;
        if (!stopped && Date.now() - lastOk > lostAfterMs) {
          stop();
          onLost(
            redact(
              `lost the connection to Redis at ${target.display} for ${Math.round(lostAfterMs / 1000)} s: ${errorText(lastError)}`,
              target,
            ),
          );
        }
      },
    );
  }, everyMs);
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    client.disconnect();
  };
  return stop;
}

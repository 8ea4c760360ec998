/**
 * `s2i serve` run (declared in serve.ts): checks the flags, loads the models and serves until interrupted.
 */
import { existsSync } from 'node:fs';
import { parseRedisUrl } from '../../bench/redis-url.js';
import { UserError } from '../../errors.js';
import { createServer, isLoopback, type Backend } from '../../server/app.js';
import { loadModels } from '../../server/engine.js';
import { redisBackend } from '../../server/redis.js';
import { onInterrupt } from '../../util/cleanup.js';
import { defaultModelDir } from '../defaults.js';
import { parseInteger, parseNumber } from '../options.js';
import { API_KEY_ENV, type ServeFlags } from './serve.js';

export async function run(flags: ServeFlags): Promise<void> {
  const paths = flags.model?.length ? flags.model : [defaultModelDir()].filter((d): d is string => d !== null);
  if (paths.length === 0) throw new UserError('no --model given and no default model is installed (give --model DIR)');
  for (const p of paths) if (!existsSync(p)) throw new UserError(`--model ${p}: no such folder or file`);
  const port = parseInteger(flags.port, '--port', 0, 65535);
  const apiKey = flags.apiKey ?? process.env[API_KEY_ENV] ?? undefined;
  if (apiKey !== undefined && apiKey.length < 16)
    throw new UserError(`--api-key (or ${API_KEY_ENV}) must be at least 16 characters`);
  if (!isLoopback(flags.host) && apiKey === undefined)
    throw new UserError(
      `--host ${flags.host} is not a loopback address: serving it needs an API key (--api-key KEY or ${API_KEY_ENV}); without one, bind 127.0.0.1`,
    );
  const maxQueue = parseInteger(flags.maxQueue, '--max-queue', 1, 100000);
  const maxBatch = parseInteger(flags.maxBatch, '--max-batch', 1, 256);
  const timeoutMs = parseNumber(flags.timeout, '--timeout', 1, 86400) * 1000;
  const maxSideFactor = parseNumber(flags.maxSideFactor, '--max-side-factor', 1, 16);
  const threads = flags.threads !== undefined ? parseInteger(flags.threads, '--threads', 1, 1024) : undefined;
  const limits = {
    images: parseInteger(flags.maxImages, '--max-images', 1, 256),
    steps: parseInteger(flags.maxSteps, '--max-steps', 1, 1000),
  };
  const target = flags.queue !== undefined ? parseRedisUrl(flags.queue, '--queue') : undefined;
  const log = flags.quiet ? () => {} : (line: string) => process.stderr.write(`serve: ${line}\n`);

  const models = await loadModels(paths, { maxSideFactor, ...(threads !== undefined ? { threads } : {}) });
  const backend: Backend<unknown> | undefined = target
    ? ((await redisBackend({ target, models, timeoutMs, log })) as Backend<unknown>)
    : undefined;
  const server = createServer({
    models,
    ...(apiKey !== undefined ? { apiKey } : {}),
    limits,
    maxQueue,
    maxBatch,
    timeoutMs,
    ...(backend ? { backend } : {}),
    log,
    logPrompts: flags.logPrompts === true,
  });
  let signals = 0;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stopHandling = onInterrupt(() => {
    if (++signals > 1) return false; // the second signal ends the process at once
    log('closing: answering the accepted requests, refusing new ones (interrupt again to stop at once)');
    void server.close().then(stopped);
    return true;
  });
  try {
    const address = await server.listen(flags.host, port).catch((e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EACCES' ? 'not allowed' : e.message;
      throw new UserError(`--host ${flags.host} --port ${port}: cannot listen: ${why}`, { cause: e });
    });
    log(
      `${models.map((m) => m.title).join(', ')} on ${address} (OpenAI: ${address}/v1, Automatic1111: ${address}/sdapi/v1)` +
        `${apiKey !== undefined ? ', API key required' : ''}${target ? `, generating on workers at ${target.display}` : ''}`,
    );
    await done;
    log('closed');
  } finally {
    stopHandling();
    for (const m of models) await m.model.release();
  }
}

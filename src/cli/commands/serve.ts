/**
 * `s2i serve`: an image server speaking the OpenAI Images API and Automatic1111's API over one generation queue
 * with dynamic batching (src/server). Binds 127.0.0.1 by default; any other address needs an API key.
 */
import { existsSync } from 'node:fs';
import type { Command } from '@commander-js/extra-typings';
import { parseRedisUrl } from '../../bench/redis.js';
import { UserError } from '../../errors.js';
import { createServer, isLoopback, type Backend } from '../../server/app.js';
import { loadModels } from '../../server/engine.js';
import { redisBackend } from '../../server/redis.js';
import { onInterrupt } from '../../util/cleanup.js';
import { defaultModelDir } from '../defaults.js';
import { parseInteger, parseNumber } from '../options.js';

interface ServeFlags {
  model?: string[];
  host: string;
  port: string;
  apiKey?: string;
  queue?: string;
  maxQueue: string;
  maxBatch: string;
  timeout: string;
  maxImages: string;
  maxSteps: string;
  maxSideFactor: string;
  threads?: string;
  logPrompts?: boolean;
  quiet?: boolean;
}

const API_KEY_ENV = 'S2I_API_KEY';

async function run(flags: ServeFlags): Promise<void> {
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

export function register(program: Command): void {
  program
    .command('serve')
    .description('an image server: the OpenAI Images API and Automatic1111’s API, one queue with dynamic batching')
    .option(
      '--model <path>',
      'a model folder or single-file .safetensors to serve (repeat for several; default: the shapes model)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--host <address>', 'address to bind (anything but loopback needs an API key)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', '7860')
    .option(
      '--api-key <key>',
      `require this key (Authorization: Bearer KEY); default: $${API_KEY_ENV}, which keeps it out of ps`,
    )
    .option('--queue <url>', 'generate on s2i workers through this job queue: redis://[:PASSWORD@]HOST[:PORT][/DB]')
    .option('--max-queue <n>', 'requests that may wait; more are answered 429 with Retry-After', '64')
    .option('--max-batch <n>', 'images generated together in one batch', '16')
    .option('--timeout <s>', 'time limit of each request, waiting included', '600')
    .option('--max-images <n>', 'images per request (n; batch_size × n_iter)', '8')
    .option('--max-steps <n>', 'sampler steps per request', '150')
    .option('--max-side-factor <x>', 'largest image side, as a multiple of the model’s own size', '2')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .option('--log-prompts', 'log each request’s prompt (not logged by default)')
    .option('--quiet', 'no log lines')
    .addHelpText(
      'after',
      `
Description:
  Serves the models given with --model to clients of the OpenAI Images API
  (POST /v1/images/generations, GET /v1/models) and of Automatic1111's API
  (POST /sdapi/v1/txt2img, GET /sdapi/v1/sd-models, samplers, options,
  progress; POST /sdapi/v1/options, interrupt), plus GET /healthz and
  GET /metrics (Prometheus). Requests wait in one bounded queue; those that
  arrive together with the same settings are generated as one batch. A
  client that disconnects has its waiting work dropped. Ctrl-C (or SIGTERM)
  answers every accepted request, refuses new ones and exits; a second one
  exits at once.

Examples:
  s2i serve
  S2I_API_KEY=$(openssl rand -hex 24) s2i serve --host 0.0.0.0 --port 7860
  s2i serve --model ~/models/stable-diffusion-v1-5 --max-images 4
  s2i serve --queue redis://10.0.0.5:6379/0     # generation on s2i workers
`,
    )
    .action(async (flags: ServeFlags) => run(flags));
}

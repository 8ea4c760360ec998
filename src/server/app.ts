/**
 * `s2i serve`'s HTTP server (Fastify): the OpenAI Images API (openai.ts) and Automatic1111's API (a1111.ts) over
 * one generation queue (queue.ts), `/healthz` and `/metrics` (Prometheus text, prom-client).
 *
 * Security by default: the CLI binds 127.0.0.1 and refuses another address without an API key; with a key, every
 * route but `/healthz` wants it (`Authorization: Bearer KEY`, or HTTP Basic with the key as password, which is
 * what Automatic1111 clients such as Open WebUI send), compared in constant time (SHA-256 of both, then
 * `timingSafeEqual`) and never logged or echoed. Bodies are bounded (`bodyLimit`), every field is bounded (fields.ts),
 * models are named from the list the server was started with (no request reaches a path), and prompts are not
 * logged unless `logPrompts`.
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FieldError, UserError, isUserError } from '../errors.js';
import type { GenerateRequest } from '../pipeline/request.js';
import { servedImages, type ServedImages } from '../pipeline/request-json.js';
import { registerA1111, a1111Error } from './a1111.js';
import { prepareJob, runLocalBatch, type LocalPayload, type ServedModel } from './engine.js';
import { ApiError } from './errors.js';
import { openaiError, registerOpenAI } from './openai.js';
import { GenerationQueue, JobRefused, type BatchControl, type Job, type QueueEvents } from './queue.js';

export interface ServerLimits {
  /** Images per request (n; batch_size × n_iter). */
  images: number;
  steps: number;
  promptChars: number;
  /** Request body bytes. */
  bodyBytes: number;
}

export const DEFAULT_LIMITS: ServerLimits = { images: 8, steps: 150, promptChars: 2000, bodyBytes: 64 * 1024 };

export type { ServedImages };

/** A request as the APIs hand it over: the model and the library request. */
export interface ImageOrder {
  served: ServedModel;
  request: GenerateRequest;
}

/**
 * Where the queue's batches run: in this process (the loaded models), or elsewhere (`--queue redis://`: one job
 * per request for `s2i worker`s). `prepare` checks a request (a FieldError names the field at fault).
 */
export interface Backend<P> {
  prepare(order: ImageOrder): { key: string; images: number; payload: P };
  run(jobs: readonly Job<P, ServedImages>[], control: BatchControl): Promise<ServedImages[]>;
  /** Batches running at once, and images per batch. */
  concurrency: number;
  maxBatch: number;
  close?(): Promise<void>;
}

export interface ServerOptions<P = unknown> {
  models: ServedModel[];
  /** Required for any address but loopback (checked by the CLI and by `listen`). */
  apiKey?: string;
  limits?: Partial<ServerLimits>;
  /** Jobs that may wait; one more is answered 429 with Retry-After. */
  maxQueue?: number;
  /** Images per batch (default: 16). */
  maxBatch?: number;
  /** Each request's time limit in ms (default 10 minutes). */
  timeoutMs?: number;
  /** Default: generate in this process. */
  backend?: Backend<P>;
  /** One line per request (method, path, status, seconds; never a header or a body). */
  log?: (line: string) => void;
  /** Also log each generation's prompt. */
  logPrompts?: boolean;
}

/** What the API modules use. */
export interface ServerContext {
  models: ServedModel[];
  limits: ServerLimits;
  startedAt: number;
  /** The model a request names (by name or A1111 title), or the default one (the first, or A1111's option). */
  findModel(name: string | undefined): ServedModel | undefined;
  /** A1111's `sd_model_checkpoint` option: the model requests get when they name none. */
  defaultModel: ServedModel;
  randomSeed(): number;
  /** A method name as the CLI takes it (ae → attend-and-excite, s2i → suppress). */
  methodName(name: string): string;
  generate(
    order: ImageOrder,
    request: FastifyRequest,
    reply: FastifyReply,
    nameOf: (field: string) => string,
  ): Promise<ServedImages>;
  queue: GenerationQueue<unknown, ServedImages>;
}

const METHOD_ALIASES: Record<string, string> = {
  ae: 'attend-and-excite',
  'attend-excite': 'attend-and-excite',
  s2i: 'suppress',
};

/** A loopback address: the only kind served without an API key. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/** Compares a presented key with the server's in constant time (hashes of equal length, timingSafeEqual). */
export function keyMatches(given: string, key: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(key));
}

/** The key a request presents: `Bearer KEY`, or HTTP Basic with the key as the password (A1111's --api-auth). */
function presentedKey(header: string | undefined): string | null {
  if (!header || header.length > 4096) return null;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic) {
    const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    return colon >= 0 ? text.slice(colon + 1) : text;
  }
  return null;
}

/** The local backend: batches run through the models loaded in this process. */
export function localBackend(maxBatch: number): Backend<LocalPayload> {
  return {
    concurrency: 1,
    maxBatch,
    prepare: (order) => {
      const { key, ...payload } = prepareJob(order.served, order.request);
      return { key, images: payload.plan.samples.length, payload };
    },
    run: async (jobs, control) => (await runLocalBatch(jobs, control)).map(servedImages),
  };
}

export interface Server {
  app: FastifyInstance;
  queue: GenerationQueue<unknown, ServedImages>;
  /** Listens; a non-loopback host without an API key is refused. Resolves with the address. */
  listen(host: string, port: number): Promise<string>;
  /** Refuses new requests (503), answers every accepted one, then closes the server. */
  close(): Promise<void>;
}

/** A queue refusal or a library error as the API's answer (other errors pass through: a 500). */
function apiError(e: unknown, nameOf: (field: string) => string): unknown {
  if (e instanceof JobRefused) {
    const status = { 'queue-full': 429, closing: 503, timeout: 504, gone: 499, interrupted: 409 }[e.reason];
    return new ApiError(status, e.message, {
      code: e.reason === 'queue-full' ? 'rate_limit_exceeded' : e.reason,
      ...(e.retryAfter !== undefined ? { retryAfter: e.retryAfter } : {}),
      kind: e.reason === 'interrupted' ? 'Interrupted' : 'HTTPException',
    });
  }
  if (e instanceof FieldError)
    return new ApiError(400, e.messageFor(nameOf), { field: nameOf(e.field), kind: 'ValueError' });
  if (isUserError(e)) return new ApiError(400, e.message, { kind: 'ValueError' });
  return e;
}

/** `/metrics`' registry, the queue events that feed it, and the one count the queue cannot see (refusals). */
interface ServerMetrics {
  registry: Registry;
  queueEvents: QueueEvents;
  /** A request refused before it reached the queue (queue full, or closing). */
  countRefused(): void;
}

function serverMetrics(): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 's2i_' });
  const queueLength = new Gauge({
    name: 's2i_queue_length',
    help: 'Requests waiting in the queue',
    registers: [registry],
  });
  const running = new Gauge({ name: 's2i_queue_running', help: 'Requests being generated', registers: [registry] });
  const imagesTotal = new Counter({
    name: 's2i_images_total',
    help: 'Images generated and answered',
    registers: [registry],
  });
  const requests = new Counter({
    name: 's2i_generation_requests_total',
    help: 'Generation requests by outcome (ok, failed, timeout, gone, interrupted, refused)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const failures = new Counter({
    name: 's2i_failures_total',
    help: 'Generation requests that failed',
    registers: [registry],
  });
  const latency = new Histogram({
    name: 's2i_request_latency_seconds',
    help: 'Seconds from a generation request’s arrival to its answer (answered ones)',
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  const batchImages = new Histogram({
    name: 's2i_batch_images',
    help: 'Images per batched generation',
    buckets: [1, 2, 4, 8, 16, 32],
    registers: [registry],
  });
  return {
    registry,
    queueEvents: {
      onLength: (w, r) => (queueLength.set(w), running.set(r)),
      onSettled: (outcome, seconds, images) => {
        requests.inc({ outcome });
        if (outcome === 'ok') {
          latency.observe(seconds);
          imagesTotal.inc(images);
        }
        if (outcome === 'failed') failures.inc();
      },
      onBatch: (_jobs, images) => batchImages.observe(images),
    },
    countRefused: () => requests.inc({ outcome: 'refused' }),
  };
}

/** A method name as the CLI takes it: case, `_` and spaces folded to `-`, then the aliases resolved. */
function methodName(name: string): string {
  const n = name
    .trim()
    .toLowerCase()
    .replace(/[_\s]+/g, '-');
  return METHOD_ALIASES[n] ?? n;
}

/** The context the API modules share: the models, the limits, and `generate` through the queue. */
function makeContext(
  o: ServerOptions<unknown>,
  limits: ServerLimits,
  queue: GenerationQueue<unknown, ServedImages>,
  backend: Backend<unknown>,
  metrics: ServerMetrics,
  log: (line: string) => void,
): ServerContext {
  // A1111's options endpoint may change it; findModel and defaultModel read the current one.
  let defaultModel = o.models[0]!;
  return {
    models: o.models,
    limits,
    startedAt: Math.floor(Date.now() / 1000),
    queue,
    get defaultModel() {
      return defaultModel;
    },
    set defaultModel(m: ServedModel) {
      defaultModel = m;
    },
    findModel: (name) => {
      if (name === undefined) return defaultModel;
      return o.models.find((m) => m.name === name || m.title === name);
    },
    randomSeed: () => randomInt(0, 2 ** 32 - 1),
    methodName,
    generate: async (order, _request, reply, nameOf) => {
      try {
        queue.checkRoom(); // a full queue refuses before any work is spent on the request
        const job = backend.prepare(order);
        if (o.logPrompts)
          log(`prompt ${JSON.stringify(order.request.prompt)} (${order.served.name}, ${job.images} images)`);
        // The client going away drops its work: waiting, it leaves the queue; running alone, its batch stops.
        const gone = new AbortController();
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) gone.abort();
        });
        return await queue.submit(job.key, job.images, job.payload, gone.signal);
      } catch (e) {
        if (e instanceof JobRefused && (e.reason === 'queue-full' || e.reason === 'closing')) metrics.countRefused();
        throw apiError(e, nameOf);
      }
    },
  };
}

/** Which API a path belongs to: its errors are answered in that API's shape. */
function apiOf(url: string): 'openai' | 'a1111' | 'plain' {
  return url.startsWith('/v1/') ? 'openai' : url.startsWith('/sdapi/') ? 'a1111' : 'plain';
}

/** Answers an ApiError in the shape of the API the request's path belongs to. */
function sendApiError(reply: FastifyReply, url: string, e: ApiError) {
  if (e.options.retryAfter !== undefined) void reply.header('Retry-After', String(e.options.retryAfter));
  if (e.status === 401) void reply.header('WWW-Authenticate', apiOf(url) === 'a1111' ? 'Basic' : 'Bearer');
  const api = apiOf(url);
  if (api === 'a1111') {
    const { status, body } = a1111Error(e);
    return reply.code(status).send(body);
  }
  return reply.code(e.status).send(api === 'openai' ? openaiError(e) : { error: e.message });
}

/** Fastify's own refusals (body too large, bad JSON, wrong content type, ...) as one line for the client. */
function fastifyRefusalMessage(
  error: Error & { code?: string },
  bodyBytes: number,
  contentType: string | undefined,
): string {
  const firstLine = () => error.message.split('\n')[0]!.slice(0, 200);
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `the request body is larger than ${bodyBytes} bytes`;
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return `the body must be JSON (Content-Type: application/json), got ${JSON.stringify((contentType ?? '').slice(0, 60))}`;
  if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'the body is empty; send a JSON object';
  if (error instanceof SyntaxError || error.code === 'FST_ERR_CTP_INVALID_JSON_BODY')
    return `the body is not valid JSON: ${firstLine()}`;
  return `the request was refused: ${firstLine()}`;
}

/** The key check and request log, the error and not-found answers, `/healthz` and `/metrics`. */
function installHandlers(
  app: FastifyInstance,
  o: ServerOptions<unknown>,
  limits: ServerLimits,
  queue: GenerationQueue<unknown, ServedImages>,
  registry: Registry,
  log: (line: string) => void,
): void {
  app.addHook('onRequest', async (request, reply) => {
    const t0 = performance.now();
    reply.raw.once('finish', () =>
      log(
        `${request.method} ${request.routeOptions.url ?? '(no route)'} ${reply.statusCode} ${((performance.now() - t0) / 1000).toFixed(2)} s`,
      ),
    );
    if (o.apiKey === undefined || request.url === '/healthz') return;
    const given = presentedKey(request.headers.authorization);
    if (given === null || !keyMatches(given, o.apiKey))
      return sendApiError(
        reply,
        request.url,
        new ApiError(
          401,
          given === null ? 'No API key provided: send Authorization: Bearer KEY' : 'Incorrect API key provided',
          {
            code: 'invalid_api_key',
            kind: 'HTTPException',
          },
        ),
      );
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof ApiError) return sendApiError(reply, request.url, error);
    const status = error.statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      const message = fastifyRefusalMessage(error, limits.bodyBytes, request.headers['content-type']);
      return sendApiError(
        reply,
        request.url,
        new ApiError(status === 415 || status === 413 ? status : 400, message, {
          validation: status !== 415 && status !== 413,
        }),
      );
    }
    log(`internal error on ${request.method} ${request.routeOptions.url ?? '?'}: ${error.message.split('\n')[0]}`);
    return sendApiError(
      reply,
      request.url,
      new ApiError(500, 'internal error: the server could not generate this request', { kind: 'Exception' }),
    );
  });

  app.setNotFoundHandler((request, reply) =>
    sendApiError(
      reply,
      request.url,
      new ApiError(404, `no such endpoint: ${request.method} ${request.url.split('?')[0]!.slice(0, 100)}`, {
        kind: 'HTTPException',
      }),
    ),
  );

  app.get('/healthz', async (_request, reply) => {
    const body = {
      status: queue.isClosing ? 'closing' : 'ok',
      models: o.models.map((m) => m.name),
      queue: queue.length,
    };
    return reply.code(queue.isClosing ? 503 : 200).send(body);
  });

  app.get('/metrics', async (_request, reply) => {
    return reply.header('Content-Type', registry.contentType).send(await registry.metrics());
  });
}

export function createServer<P>(o: ServerOptions<P>): Server {
  if (o.models.length === 0) throw new Error('a server needs at least one model');
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...o.limits };
  const maxBatch = o.maxBatch ?? 16;
  const backend = (o.backend ?? localBackend(maxBatch)) as Backend<unknown>;
  const options = o as ServerOptions<unknown>;
  const log = o.log ?? (() => {});
  const metrics = serverMetrics();
  const queue = new GenerationQueue<unknown, ServedImages>({
    maxQueue: o.maxQueue ?? 64,
    maxBatch: backend.maxBatch,
    timeoutMs: o.timeoutMs ?? 600_000,
    concurrency: backend.concurrency,
    run: (jobs, control) => backend.run(jobs, control),
    events: metrics.queueEvents,
  });
  const ctx = makeContext(options, limits, queue, backend, metrics, log);

  const app = Fastify({
    logger: false,
    bodyLimit: limits.bodyBytes,
    // Slow clients: a request must arrive whole within 30 s; idle keep-alive connections close after 5 s.
    requestTimeout: 30_000,
    keepAliveTimeout: 5_000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  installHandlers(app, options, limits, queue, metrics.registry, log);
  registerOpenAI(app, ctx);
  registerA1111(app, ctx);

  let closing: Promise<void> | null = null;
  return {
    app,
    queue,
    listen: async (host, port) => {
      if (!isLoopback(host) && o.apiKey === undefined)
        throw new UserError(
          `refusing to listen on ${host} without an API key: give --api-key or S2I_API_KEY, or bind 127.0.0.1`,
        );
      return app.listen({ host, port });
    },
    close: () =>
      (closing ??= (async () => {
        const drained = queue.close();
        const closed = app.close();
        await drained;
        await closed;
        await backend.close?.();
      })()),
  };
}

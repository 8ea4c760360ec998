/**
 * `s2i serve` against real clients on loopback only: the official `openai` npm client, and Automatic1111-shaped
 * requests whose fixture is copied field for field from A1111's own API model (modules/api/models.py
 * StableDiffusionTxt2ImgProcessingAPI over modules/processing.py's defaults). The shipped shapes model, few steps.
 *
 * Checked: the image for a seed is the PNG `s2i generate` writes; each API's error shape for bad bodies; 401
 * without or with a wrong key; 429 with Retry-After on a full queue; a client that leaves has its waiting work
 * dropped; the time limit; requests that arrive together are batched (and their images are their solo images);
 * SIGTERM answers the accepted requests and refuses new ones; 1,000 fuzzed malformed bodies, each a 4xx with one
 * message, the server still serving.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../src/image/png.js';
import { createServer, isLoopback, keyMatches, type Server } from '../src/server/app.js';
import { GenerationQueue, JobRefused } from '../src/server/queue.js';
import { loadModels, type ServedModel } from '../src/server/engine.js';
import { ensureBuilt, s2i } from './support/cli.js';
import { repoRoot } from './support/oracle.js';

const MODEL = join(repoRoot, 'models', 'shapes');
const PROMPT = 'a red circle and a blue square';
const KEY = 'test-key-0123456789abcdef';

/**
 * Automatic1111's txt2img request with every field at its default, as its API model declares them
 * (StableDiffusionProcessing / StableDiffusionProcessingTxt2Img parameters, then the API's additional fields).
 */
const A1111_TXT2IMG_FIXTURE = {
  prompt: '',
  negative_prompt: '',
  styles: null,
  seed: -1,
  subseed: -1,
  subseed_strength: 0,
  seed_resize_from_h: -1,
  seed_resize_from_w: -1,
  sampler_name: null,
  scheduler: null,
  batch_size: 1,
  n_iter: 1,
  steps: 50,
  cfg_scale: 7.0,
  width: 512,
  height: 512,
  restore_faces: null,
  tiling: null,
  do_not_save_samples: false,
  do_not_save_grid: false,
  eta: null,
  denoising_strength: 0.75,
  s_min_uncond: null,
  s_churn: null,
  s_tmax: null,
  s_tmin: null,
  s_noise: null,
  override_settings: null,
  override_settings_restore_afterwards: true,
  refiner_checkpoint: null,
  refiner_switch_at: null,
  disable_extra_networks: false,
  firstpass_image: null,
  comments: null,
  enable_hr: false,
  firstphase_width: 0,
  firstphase_height: 0,
  hr_scale: 2.0,
  hr_upscaler: null,
  hr_second_pass_steps: 0,
  hr_resize_x: 0,
  hr_resize_y: 0,
  hr_checkpoint_name: null,
  hr_sampler_name: null,
  hr_scheduler: null,
  hr_prompt: '',
  hr_negative_prompt: '',
  force_task_id: null,
  sampler_index: 'Euler',
  script_name: null,
  script_args: [],
  send_images: true,
  save_images: false,
  alwayson_scripts: {},
  infotext: null,
};

let models: ServedModel[];
let tmp: string;
const started: Server[] = [];

async function start(
  options: Partial<Parameters<typeof createServer>[0]> = {},
): Promise<{ server: Server; base: string }> {
  const server = createServer({ models, ...options });
  started.push(server);
  const base = await server.listen('127.0.0.1', 0);
  return { server, base };
}

/** The PNG `s2i generate` writes for these flags. */
function cliPng(name: string, args: string[]): Buffer {
  const out = join(tmp, `${name}.png`);
  const r = s2i(['generate', PROMPT, '--model', MODEL, '--out', out, ...args]);
  expect(r.code, r.stderr).toBe(0);
  return readFileSync(out);
}

async function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

beforeAll(async () => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 's2i-serve-'));
  models = await loadModels([MODEL]);
});

afterAll(async () => {
  for (const s of started) await s.close();
  for (const m of models ?? []) await m.model.release();
  rmSync(tmp, { recursive: true, force: true });
});

describe('the queue (no model)', () => {
  /** A queue whose batches take `ms` each and record which payloads ran together. */
  const make = (o: { maxQueue?: number; maxBatch?: number; timeoutMs?: number; ms?: number } = {}) => {
    const batches: string[][] = [];
    const q = new GenerationQueue<string, string>({
      maxQueue: o.maxQueue ?? 10,
      maxBatch: o.maxBatch ?? 4,
      timeoutMs: o.timeoutMs ?? 10_000,
      run: async (jobs, control) => {
        batches.push(jobs.map((j) => j.payload));
        for (let i = 0; i < 5; i++) {
          control.step(i, 5);
          await new Promise((r) => setTimeout(r, (o.ms ?? 20) / 5));
        }
        return jobs.map((j) => `done ${j.payload}`);
      },
    });
    return { q, batches };
  };

  it('runs the head first; compatible jobs behind it join its batch up to maxBatch images; FIFO otherwise', async () => {
    const { q, batches } = make({ maxBatch: 3 });
    const all = [
      q.submit('a', 1, 'a1'),
      q.submit('a', 1, 'a2'),
      q.submit('b', 1, 'b1'),
      q.submit('a', 1, 'a3'),
      q.submit('a', 2, 'a4'),
      q.submit('a', 1, 'a5'),
    ];
    expect(await Promise.all(all)).toEqual(['done a1', 'done a2', 'done b1', 'done a3', 'done a4', 'done a5']);
    // a1 ran alone (nothing waited yet); then a2 with a3 and a5 (a4's two images would pass 3); b1; a4.
    expect(batches).toEqual([['a1'], ['a2', 'a3', 'a5'], ['b1'], ['a4']]);
  });

  it('refuses past maxQueue with a Retry-After; drops a job whose client left or whose time ran out', async () => {
    const { q, batches } = make({ maxQueue: 2, timeoutMs: 150, ms: 100 });
    const running = q.submit('a', 1, 'r');
    const left = new AbortController();
    const leaving = q.submit('b', 1, 'leaves', left.signal);
    const late = q.submit('c', 1, 'times out');
    const full = await q.submit('d', 1, 'refused').catch((e: unknown) => e);
    expect(full).toBeInstanceOf(JobRefused);
    expect((full as JobRefused).reason).toBe('queue-full');
    expect((full as JobRefused).retryAfter).toBeGreaterThanOrEqual(1);
    left.abort();
    expect(((await leaving.catch((e: unknown) => e)) as JobRefused).reason).toBe('gone');
    expect(await running).toBe('done r');
    const t = (await late.then(
      () => null,
      (e: unknown) => e,
    )) as JobRefused | null;
    // 'c' started after 'r' (100 ms) and its 150 ms limit passed during its own batch, or it finished in time.
    if (t) expect(t.reason).toBe('timeout');
    expect(batches.flat()).not.toContain('leaves');
  });

  it('close() refuses new jobs and resolves once the accepted ones are answered', async () => {
    const { q } = make({ ms: 50 });
    const a = q.submit('a', 1, 'a');
    const b = q.submit('b', 1, 'b');
    const closed = q.close();
    expect(((await q.submit('a', 1, 'c').catch((e: unknown) => e)) as JobRefused).reason).toBe('closing');
    await closed;
    expect(await Promise.all([a, b])).toEqual(['done a', 'done b']);
  });

  it('knows loopback addresses and compares keys', () => {
    for (const h of ['127.0.0.1', '::1', '[::1]', 'localhost', '127.1.2.3']) expect(isLoopback(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'example.com']) expect(isLoopback(h)).toBe(false);
    expect(keyMatches(KEY, KEY)).toBe(true);
    expect(keyMatches(`${KEY}x`, KEY)).toBe(false);
    expect(keyMatches('', KEY)).toBe(false);
  });
});

describe('the OpenAI Images API, through the official openai client', () => {
  let base: string;
  let client: OpenAI;
  beforeAll(async () => {
    ({ base } = await start());
    // One retry, as the client's default (2) would: the server generates on its own event loop (in this process,
    // the test's), so a pooled keep-alive socket can pass the server's 5 s idle limit while the loop is busy and be
    // closed just as the next request goes out (ECONNRESET, seen once under load) — the HTTP/1.1 race the client
    // retries connection errors for. Only connection errors and 408/409/429/5xx are retried; these tests expect 400s.
    client = new OpenAI({ apiKey: 'not-checked-on-loopback', baseURL: `${base}/v1`, maxRetries: 1 });
  });

  it('lists the served model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['shapes']);
  });

  it('gives, for a seed, the PNG s2i generate writes (default method, and plain sampling)', async () => {
    for (const [method, flags] of [
      [undefined, []],
      ['none', ['--method', 'none']],
    ] as const) {
      const extra = { seed: 3, steps: 6, ...(method ? { method } : {}) };
      const res = await client.images.generate({
        model: 'shapes',
        prompt: PROMPT,
        n: 1,
        size: '32x32' as '256x256',
        response_format: 'b64_json',
        ...extra,
      });
      expect(res.data).toHaveLength(1);
      const png = Buffer.from(res.data![0]!.b64_json!, 'base64');
      expect(png.equals(cliPng(`openai-${method ?? 'default'}`, ['--seed', '3', '--steps', '6', ...flags]))).toBe(true);
    }
  });

  it('answers n images with seeds seed..seed+n-1 and attention maps when asked', async () => {
    const res = (await client.images.generate({
      prompt: PROMPT,
      n: 2,
      ...{ seed: 10, steps: 3, s2i: { method: 'suppress', attention_maps: true } },
    })) as unknown as { data: { s2i: { seed: number; attention_maps: string } }[] };
    expect(res.data.map((d) => d.s2i.seed)).toEqual([10, 11]);
    for (const d of res.data) expect(decodePng(Buffer.from(d.s2i.attention_maps, 'base64')).width).toBeGreaterThan(32);
  });

  it('refuses bad bodies with 400 in OpenAI’s error shape, naming the field', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ prompt: PROMPT, n: 0 }, 'n', /n must be an integer from 1 to 8, got 0/],
      [{ prompt: PROMPT, size: 'big' }, 'size', /size must be "WIDTHxHEIGHT"/],
      [{ prompt: PROMPT, size: '4096x4096' }, 'size', /size 4096x4096 is not served/],
      [{ prompt: PROMPT, steps: 9999 }, 'steps', /steps must be an integer from 1 to 150/],
      [{ prompt: PROMPT, method: 'magic' }, 'method', /method/],
      [{ prompt: PROMPT, frobnicate: 1 }, 'frobnicate', /Unrecognized request argument supplied: frobnicate/],
      [{ prompt: PROMPT, response_format: 'url' }, 'response_format', /"url" is not served/],
      [{ n: 1 }, 'prompt', /prompt is required/],
    ];
    for (const [body, param, message] of cases) {
      const e = await client.images.generate(body as never).catch((x: unknown) => x);
      expect(e, JSON.stringify(body)).toBeInstanceOf(OpenAI.BadRequestError);
      const err = e as InstanceType<typeof OpenAI.BadRequestError>;
      expect(err.status).toBe(400);
      expect(err.param).toBe(param);
      expect(err.type).toBe('invalid_request_error');
      expect(err.message).toMatch(message);
    }
    const e = await client.images.generate({ prompt: PROMPT, model: 'dall-e-3' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect((e as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
  });
});

describe('Automatic1111’s API, with requests shaped as A1111’s models', () => {
  let base: string;
  beforeAll(async () => {
    ({ base } = await start());
  });

  it('txt2img: the fixture with a prompt, seed and size gives the PNG s2i generate writes; types as A1111’s', async () => {
    const body = {
      ...A1111_TXT2IMG_FIXTURE,
      prompt: PROMPT,
      seed: 3,
      steps: 6,
      cfg_scale: 5,
      width: 32,
      height: 32,
      sampler_name: 'DDIM',
    };
    const res = await post(base, '/sdapi/v1/txt2img', body);
    expect(res.status).toBe(200);
    const { images, parameters, info } = res.body as { images: string[]; parameters: object; info: string };
    expect(images).toHaveLength(1);
    expect(typeof parameters).toBe('object');
    expect(typeof info).toBe('string');
    const png = Buffer.from(images[0]!, 'base64');
    expect(png.equals(cliPng('a1111', ['--seed', '3', '--steps', '6', '--guidance', '5', '--scheduler', 'ddim']))).toBe(
      true,
    );
    const i = JSON.parse(info) as Record<string, unknown>;
    expect(i).toMatchObject({
      seed: 3,
      all_seeds: [3],
      width: 32,
      height: 32,
      sampler_name: 'DDIM',
      cfg_scale: 5,
      steps: 6,
    });
    expect((i['infotexts'] as string[])[0]).toMatch(
      /^a red circle and a blue square\nSteps: 6, Sampler: DDIM, CFG scale: 5.0, Seed: 3, Size: 32x32/,
    );
    // Open WebUI's request: prompt, batch_size, width, height, steps; seed -1 (the default) draws one.
    const owui = await post(base, '/sdapi/v1/txt2img', {
      prompt: PROMPT,
      batch_size: 2,
      width: 32,
      height: 32,
      steps: 2,
    });
    expect(owui.status).toBe(200);
    const seeds = (JSON.parse(owui.body['info'] as string) as { all_seeds: number[] }).all_seeds;
    expect(seeds).toHaveLength(2);
    expect(seeds[1]).toBe(seeds[0]! + 1);
  });

  it('sd-models, samplers, options (Open WebUI’s get-modify-post), progress, interrupt', async () => {
    const modelsList = (await (await fetch(`${base}/sdapi/v1/sd-models`)).json()) as Record<string, unknown>[];
    expect(modelsList).toHaveLength(1);
    expect(Object.keys(modelsList[0]!).sort()).toEqual(['config', 'filename', 'hash', 'model_name', 'sha256', 'title']);
    expect(modelsList[0]!['model_name']).toBe('shapes');
    const samplers = (await (await fetch(`${base}/sdapi/v1/samplers`)).json()) as { name: string; aliases: string[] }[];
    expect(samplers.map((s) => s.name)).toEqual(
      expect.arrayContaining(['Euler', 'Euler a', 'DDIM', 'DPM++ 2M', 'PLMS']),
    );
    for (const s of samplers) expect(Array.isArray(s.aliases)).toBe(true);
    const options = (await (await fetch(`${base}/sdapi/v1/options`)).json()) as Record<string, unknown>;
    expect(options['sd_model_checkpoint']).toBe(modelsList[0]!['title']);
    options['sd_model_checkpoint'] = modelsList[0]!['title'];
    const set = await fetch(`${base}/sdapi/v1/options`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(options),
    });
    expect(set.status).toBe(200);
    expect(await set.json()).toBeNull();
    const bad = await post(base, '/sdapi/v1/options', { sd_model_checkpoint: '../../etc/passwd' });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: 'RuntimeError' });
    const progress = (await (await fetch(`${base}/sdapi/v1/progress`)).json()) as Record<string, unknown>;
    expect(progress).toMatchObject({ progress: 0, eta_relative: 0, current_image: null });
    expect(Object.keys(progress['state'] as object)).toEqual(
      expect.arrayContaining(['interrupted', 'job', 'job_count', 'job_no', 'sampling_step', 'sampling_steps']),
    );
    expect((await post(base, '/sdapi/v1/interrupt', {})).body).toEqual({});
  });

  it('interrupt stops the running request; it is answered 409', async () => {
    const running = post(base, '/sdapi/v1/txt2img', {
      prompt: PROMPT,
      steps: 150,
      width: 32,
      height: 32,
      s2i: { method: 'none' },
    });
    for (let i = 0; i < 200 && (await metric(base, 's2i_queue_running')) === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    await post(base, '/sdapi/v1/interrupt', {});
    const r = await running;
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ error: 'Interrupted' });
  });

  it('refuses bad bodies with FastAPI’s 422 {detail: [{loc, msg, type}]}', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ steps: 'many' }, 'steps', /steps must be an integer/],
      [{ cfg_scale: 1e9 }, 'cfg_scale', /cfg_scale must be a number from 0 to 100/],
      [{ width: 33 }, 'width', /width must be a multiple of 8 from 8 to 64/],
      [{ batch_size: 8, n_iter: 2 }, 'batch_size', /at most 8 images/],
      [{ enable_hr: true }, 'enable_hr', /hires fix is not implemented/],
    ];
    for (const [body, field, message] of cases) {
      const r = await post(base, '/sdapi/v1/txt2img', { ...A1111_TXT2IMG_FIXTURE, width: 32, height: 32, ...body });
      expect(r.status, JSON.stringify(body)).toBe(422);
      const detail = r.body['detail'] as { loc: string[]; msg: string; type: string }[];
      expect(detail).toHaveLength(1);
      expect(detail[0]!.loc).toEqual(['body', field]);
      expect(detail[0]!.msg).toMatch(message);
    }
    const s = await post(base, '/sdapi/v1/txt2img', { prompt: PROMPT, sampler_name: 'Heun', width: 32, height: 32 });
    expect(s.status).toBe(404);
    expect(s.body).toMatchObject({ error: 'HTTPException', detail: expect.stringMatching(/^Sampler not found/) });
  });
});

describe('security, the queue and shutting down', () => {
  it('wants the key when given one: 401 without or with a wrong key, in each API’s shape; Basic works for A1111', async () => {
    const { base } = await start({ apiKey: KEY });
    const wrong = new OpenAI({ apiKey: 'wrong-key-0123456789', baseURL: `${base}/v1`, maxRetries: 0 });
    const e = await wrong.models.list().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((e as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
    expect(JSON.stringify((e as InstanceType<typeof OpenAI.AuthenticationError>).error)).not.toContain(KEY);
    // No key at all (the openai client will not send none): OpenAI's shape, 401.
    const none = await fetch(`${base}/v1/models`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_api_key' } });
    const right = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0 });
    expect((await right.models.list()).data).toHaveLength(1);
    const a = await fetch(`${base}/sdapi/v1/sd-models`);
    expect(a.status).toBe(401);
    expect(await a.json()).toMatchObject({ error: 'HTTPException' });
    const basic = `Basic ${Buffer.from(`webui:${KEY}`).toString('base64')}`;
    expect((await fetch(`${base}/sdapi/v1/sd-models`, { headers: { authorization: basic } })).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('answers a full queue with 429 and Retry-After; a client that leaves has its waiting work dropped', async () => {
    const { base } = await start({ maxQueue: 1 });
    const slow = { prompt: PROMPT, steps: 60, method: 'none' };
    const first = post(base, '/v1/images/generations', slow); // runs
    for (let i = 0; i < 200 && (await metric(base, 's2i_queue_running')) === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    const leaving = new AbortController();
    const second = fetch(`${base}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...slow, steps: 59 }),
      signal: leaving.signal,
    }).catch(() => 'aborted'); // waits
    for (let i = 0; i < 200 && (await metric(base, 's2i_queue_length')) === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    const client = new OpenAI({ apiKey: 'x', baseURL: `${base}/v1`, maxRetries: 0 });
    const e = await client.images.generate({ prompt: PROMPT, ...{ steps: 2 } }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    const err = e as InstanceType<typeof OpenAI.RateLimitError>;
    expect(Number(err.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(err.message).toMatch(/queue is full/);
    leaving.abort();
    expect(await second).toBe('aborted');
    for (let i = 0; i < 200 && (await metric(base, 's2i_queue_length')) > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(await metric(base, 's2i_queue_length')).toBe(0);
    expect((await first).status).toBe(200);
    expect(await metric(base, 's2i_generation_requests_total{outcome="gone"}')).toBe(1);
    expect(await metric(base, 's2i_images_total')).toBe(1); // the dropped request was never generated
  });

  it('stops a running batch whose only client left', async () => {
    const { base } = await start();
    const leaving = new AbortController();
    const gone = fetch(`${base}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, steps: 150, method: 'none' }),
      signal: leaving.signal,
    }).catch(() => 'aborted');
    for (let i = 0; i < 400 && (await metric(base, 's2i_queue_running')) === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    const t0 = Date.now();
    leaving.abort();
    expect(await gone).toBe('aborted');
    for (let i = 0; i < 400 && (await metric(base, 's2i_queue_running')) > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(await metric(base, 's2i_queue_running')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000); // stopped at its next sampler call, not after 150 of them
    expect(await metric(base, 's2i_generation_requests_total{outcome="gone"}')).toBe(1);
    expect(await metric(base, 's2i_images_total')).toBe(0);
  });

  it('answers a request past its time limit with 504', async () => {
    const { base } = await start({ timeoutMs: 300 });
    const r = await post(base, '/v1/images/generations', { prompt: PROMPT, steps: 150, method: 'none' });
    expect(r.status).toBe(504);
    expect((r.body['error'] as { message: string }).message).toMatch(/time limit/);
  });

  it('batches requests that arrive together; each image is its solo image (within one level)', async () => {
    const { base } = await start();
    const body = (seed: number) => ({ prompt: PROMPT, steps: 4, seed, method: 'none' });
    const one: Awaited<ReturnType<typeof post>>[] = [];
    for (const s of [0, 1, 2, 3]) one.push(await post(base, '/v1/images/generations', body(s)));
    const before = await metric(base, 's2i_batch_images_count');
    const together = await Promise.all([0, 1, 2, 3].map((s) => post(base, '/v1/images/generations', body(s))));
    const batches = (await metric(base, 's2i_batch_images_count')) - before;
    expect(batches).toBeLessThan(4); // at least two of the four shared a batch
    together.forEach((r, i) => {
      const img = (x: typeof r) =>
        decodePng(Buffer.from((x.body['data'] as { b64_json: string }[])[0]!.b64_json, 'base64')).data;
      const [a, b] = [img(r), img(one[i]!)];
      let worst = 0;
      for (let k = 0; k < a.length; k++) worst = Math.max(worst, Math.abs(a[k]! - b[k]!));
      expect(worst).toBeLessThanOrEqual(1);
    });
  });

  it('1,000 fuzzed malformed bodies: each a 4xx with one one-line message; the server still serves', async () => {
    const { base } = await start();
    const openaiValid = { prompt: PROMPT, steps: 1 };
    const a1111Valid = { prompt: PROMPT, steps: 1, width: 32, height: 32 };
    const badValue = fc.oneof(
      fc.constant(null),
      fc.string({ maxLength: 20 }),
      fc.integer({ min: -1e9, max: 1e9 }).filter((n) => n < -1 || n > 300),
      fc.double(),
      fc.boolean(),
      fc.array(fc.integer(), { maxLength: 3 }),
      fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
      fc.string({ minLength: 2100, maxLength: 2200 }),
    );
    const openaiFields = ['n', 'size', 'steps', 'guidance', 'seed', 'scheduler', 'response_format', 's2i', 'prompt'];
    const a1111Fields = [
      'steps',
      'cfg_scale',
      'width',
      'height',
      'batch_size',
      'seed',
      'sampler_name',
      'enable_hr',
      's2i',
      'prompt',
    ];
    const raw = fc.oneof(
      fc.constant('{'),
      fc.constant('[]'),
      fc.constant('null'),
      fc.constant('"text"'),
      fc.constant('{"__proto__": {"admin": true}}'),
      fc.string({ maxLength: 50 }).map((s) => `{"prompt": ${s}`),
      fc.integer({ min: 1, max: 20 }).map((d) => '['.repeat(d * 50)),
      fc.constant(`{"prompt": "${'x'.repeat(70 * 1024)}"}`),
    );
    const cases = fc.oneof(
      fc.record({ api: fc.constant('openai' as const), field: fc.constantFrom(...openaiFields), value: badValue }),
      fc.record({ api: fc.constant('a1111' as const), field: fc.constantFrom(...a1111Fields), value: badValue }),
      fc.record({ api: fc.constantFrom('openai' as const, 'a1111' as const), raw }),
    );
    const samples = fc.sample(cases, { numRuns: 1500, seed: 24 });
    let n = 0;
    for (const c of samples) {
      if (n === 1000) break;
      const path = c.api === 'openai' ? '/v1/images/generations' : '/sdapi/v1/txt2img';
      let body: string;
      if ('raw' in c) body = c.raw;
      else {
        // A value the field takes would make a valid request: only ones it cannot take are sent.
        const valid = c.api === 'openai' ? openaiValid : a1111Valid;
        const v = c.value;
        const fine =
          (c.field === 'prompt' && typeof v === 'string' && v.length <= 2000 && v.trim() !== '') ||
          (c.field === 'seed' && typeof v === 'number' && Number.isSafeInteger(v) && v >= -1) ||
          (c.field === 'guidance' && typeof v === 'number' && v >= 0 && v <= 100) ||
          (c.field === 'cfg_scale' && typeof v === 'number' && v >= 0 && v <= 100) ||
          (c.field === 'enable_hr' && v === false) ||
          (c.field === 's2i' &&
            v !== null &&
            typeof v === 'object' &&
            !Array.isArray(v) &&
            Object.keys(v).length === 0) ||
          v === null;
        if (fine) continue;
        body = JSON.stringify({ ...valid, [c.field]: v });
      }
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      const text = await res.text();
      expect(res.status, `${path} ${body.slice(0, 200)} → ${text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `${path} ${body.slice(0, 200)}`).toBeLessThan(500);
      const json = JSON.parse(text) as { error?: { message?: string } | string; detail?: { msg: string }[] | string };
      const message =
        c.api === 'openai'
          ? (json.error as { message: string }).message
          : Array.isArray(json.detail)
            ? json.detail[0]!.msg
            : (json.detail as string);
      expect(typeof message, text).toBe('string');
      expect(message.length).toBeGreaterThan(5);
      expect(message).not.toContain('\n');
      n++;
    }
    expect(n).toBe(1000);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await metric(base, 's2i_images_total')).toBe(0);
  });

  it('refuses a non-loopback host without an API key, in one line', () => {
    const r = s2i(['serve', '--host', '0.0.0.0', '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^s2i: error: --host 0\.0\.0\.0 is not a loopback address: serving it needs an API key[^\n]*\n$/,
    );
  });

  it('SIGTERM: the accepted request is answered, new ones are refused, the process exits 0', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 's2i.js'), 'serve', '--port', '0', '--model', MODEL], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let base = '';
    for (let i = 0; i < 600 && !base; i++) {
      await new Promise((r) => setTimeout(r, 50));
      base = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1] ?? '';
    }
    expect(base, stderr).not.toBe('');
    const accepted = post(base, '/v1/images/generations', { prompt: PROMPT, steps: 40, method: 'none', seed: 1 });
    for (let i = 0; i < 400 && (await metric(base, 's2i_queue_running')) === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    // The signal is taken between sampler calls; from then on new requests are refused.
    for (let i = 0; i < 400 && !/closing:/.test(stderr); i++) await new Promise((r) => setTimeout(r, 20));
    const late = await fetch(`${base}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, steps: 2 }),
    }).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(late);
    const r = await accepted;
    expect(r.status).toBe(200);
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/closing: answering the accepted requests/);
    expect(stderr).not.toContain(PROMPT); // prompts are not logged unless --log-prompts
  });
});

/**
 * Benchmark sweeps on a job queue (BullMQ) against a real `redis-server` started on a free loopback port, with a
 * password: two workers, one SIGKILLed in the middle of a job, give the same rows and image bytes as a local run,
 * each row once; a job that fails 3 times is reported as FAILED and retried by a rerun; Ctrl-C on the producer
 * leaves the queue resumable; an unreachable Redis or a wrong password is a one-line error; the password is never
 * printed. Skipped, with one loud line, only where redis-server is not installed (.ci/run installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRedisUrl, redact } from '../src/bench/redis.js';
import { readResults } from '../src/bench/results.js';
import { runBench } from '../src/bench/run.js';
import type { BenchRow } from '../src/bench/row.js';
import { loadSuite } from '../src/bench/suites.js';
import { UserError } from '../src/errors.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { ensureBuilt, expectOneLineError } from './support/cli.js';
import { repoRoot, tinySdDir } from './support/oracle.js';
import { missingUnderCi } from './support/ci.js';

const tmp = mkdtempSync(join(tmpdir(), 's2i-queue-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const PASSWORD = 'pw-s3cret-7f1c';
const hasRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status === 0;
if (!hasRedis) {
  missingUnderCi(
    '\n**********\n** SKIPPED test/queue.test.ts: redis-server is not installed (apt-get install redis-server) **\n**********\n',
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A child process of the built CLI, its output gathered as it comes. */
interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name). */
  exit: Promise<number | string>;
  /** Resolves when stderr has a line matching `re` (with that line). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
}

function start(args: string[]): Running {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 's2i.js'), ...args], {
    cwd: tmp,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '',
    err = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      const line = err.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    check();
  });
  const exit = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal!)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitFor: (re, timeoutMs = 90_000) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`no line ${re} within ${timeoutMs} ms; stderr:\n${err}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
        check();
        void exit.then(() => setTimeout(() => reject(new Error(`exited without ${re}; stderr:\n${err}`)), 50));
      }),
  };
}

async function stop(r: Running): Promise<void> {
  if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
  await r.exit;
}

/** Rows without the fields that measure time (the batch size their timings are a share of, the creation time). */
function untimed(row: BenchRow): Partial<BenchRow> {
  const { seconds: _s, compile_seconds: _c, timings: _t, batch_size: _b, created: _d, ...rest } = row;
  return rest;
}

describe('parsing --queue', () => {
  it('reads redis:// URLs and never shows the password', () => {
    expect(parseRedisUrl('redis://10.1.2.3:6380/2', '--queue', {})).toEqual({
      host: '10.1.2.3',
      port: 6380,
      db: 2,
      tls: false,
      display: 'redis://10.1.2.3:6380/2',
    });
    const t = parseRedisUrl('rediss://bench:p%40ss@host.example', '--queue', {});
    expect(t).toMatchObject({
      host: 'host.example',
      port: 6379,
      db: 0,
      username: 'bench',
      password: 'p@ss',
      tls: true,
    });
    expect(t.display).toBe('rediss://bench:***@host.example/0');
    expect(redact('auth p@ss failed (p%40ss)', t)).toBe('auth *** failed (***)');
    // The password may come from the environment, out of the process list.
    expect(parseRedisUrl('redis://h', '--queue', { S2I_REDIS_PASSWORD: 'x' })).toMatchObject({
      password: 'x',
      display: 'redis://:***@h/0',
    });
    for (const bad of ['http://h', 'redis://', 'redis://:secretpw@h/db', 'redis://h?x=1', 'nonsense secretpw']) {
      expect(() => parseRedisUrl(bad, '--queue', {})).toThrow(UserError);
      try {
        parseRedisUrl(bad, '--queue', {});
      } catch (e) {
        expect((e as Error).message).not.toContain('secretpw');
      }
    }
  });
});

describe.skipIf(!hasRedis)('bench on a job queue (redis-server)', () => {
  let redis: ChildProcess;
  let port = 0;
  const url = (db: number, password = PASSWORD) => `redis://:${password}@127.0.0.1:${port}/${db}`;
  const children: Running[] = [];
  const run = (args: string[]) => {
    const r = start(args);
    children.push(r);
    return r;
  };
  /** Every line any of our processes printed: the password must be in none. */
  const allOutput = () => children.map((c) => c.stdout() + c.stderr()).join('\n');

  const promptFile = join(tmp, 'prompts.jsonl');
  writeFileSync(promptFile, '{"prompt": "a red circle and a blue square"}\n{"prompt": "a green triangle"}\n');
  const common = ['--suite', promptFile, '--steps', '2', '--scheduler', 'ddim', '--model', tinySdDir];
  const worker = (db: number, ...extra: string[]) =>
    run(['worker', '--queue', url(db), '--lock-seconds', '2', '--model', tinySdDir, ...extra]);

  beforeAll(async () => {
    ensureBuilt();
    port = await freePort();
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp],
      { stdio: 'ignore' },
    );
    // requirepass is set through CONFIG so that it is not in redis-server's command line (ps) for long.
    let client: Redis;
    for (let i = 0; ; i++) {
      client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
      client.on('error', () => {});
      try {
        await client.connect();
        break;
      } catch (e) {
        client.disconnect();
        if (i > 100) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await client.config('SET', 'requirepass', PASSWORD);
    client.disconnect();
  });

  afterAll(async () => {
    await Promise.all(children.map(stop));
    if (redis) {
      const gone = new Promise((r) => redis.once('exit', r));
      redis.kill('SIGTERM');
      await gone;
    }
    expect(allOutput()).not.toContain(PASSWORD);
  });

  it('an unreachable Redis or a wrong password is a one-line error, before any output', async () => {
    // Spawned, not spawnSync'ed: this file never blocks vitest's event loop (see test/support/setup.ts).
    const cli = async (args: string[]) => {
      const r = run(args);
      const code = await r.exit;
      return { code: typeof code === 'number' ? code : null, stdout: r.stdout(), stderr: r.stderr() };
    };
    const closed = await freePort();
    const out = join(tmp, 'unreachable');
    const bench = await cli([
      'bench',
      ...common,
      '--queue',
      `redis://:${PASSWORD}@127.0.0.1:${closed}/0`,
      '--out',
      out,
    ]);
    expectOneLineError(bench, `cannot reach Redis at redis://:***@127.0.0.1:${closed}/0`, 'ECONNREFUSED');
    expect(existsSync(out)).toBe(false);
    const wrong = await cli(['worker', '--queue', url(0, 'not-the-password'), '--model', tinySdDir]);
    expectOneLineError(wrong, `cannot reach Redis at redis://:***@127.0.0.1:${port}/0`);
    expect(wrong.stderr).not.toContain('not-the-password');
  });

  it(
    'two workers, one SIGKILLed mid-job: the same rows and image bytes as a local run, each row once',
    { timeout: 300_000 },
    async () => {
      const options = { methods: ['none', 'suppress-edit'], seeds: [0, 1], steps: 2, guidance: 5 };
      const localOut = join(tmp, 'local');
      const model = await StableDiffusion.load(tinySdDir);
      try {
        await runBench(model, [loadSuite(promptFile)], { ...options, sampler: 'ddim', out: localOut });
      } finally {
        await model.release();
      }

      const w1 = worker(1);
      const w2 = worker(1);
      await Promise.all([w1.waitFor(/taking jobs/), w2.waitFor(/taking jobs/)]);
      const out = join(tmp, 'queued');
      const producer = run([
        'bench',
        ...common,
        '--methods',
        'none,suppress-edit',
        '--seeds',
        '0,1',
        '--out',
        out,
        '--queue',
        url(1),
        '--json',
      ]);
      // Worker 1 dies at the start of its first job (which compiles its graphs: far longer than the kill takes).
      const took = await w1.waitFor(/^worker: took /);
      w1.child.kill('SIGKILL');
      expect(await w1.exit).toBe('SIGKILL');
      const job = took.replace(/^worker: took /, '');

      expect(await producer.exit, producer.stderr()).toBe(0);
      await stop(w2);
      expect(w1.stderr()).not.toContain(`done ${job}`);
      expect(w2.stderr()).toContain(`took ${job} (from a worker that stopped answering)`);
      expect(w2.stderr()).toContain(`done ${job}`);
      // Only that job was taken over: the others' locks were renewed while the model thread computed.
      expect(w2.stderr().match(/from a worker that stopped answering/g)).toHaveLength(1);

      const summary = JSON.parse(producer.stdout());
      expect(summary.run).toMatchObject({ images: 8, generated: 8, failed: 0 });
      const text = readFileSync(join(out, 'results.jsonl'), 'utf8');
      const rows = readResults(join(out, 'results.jsonl')).rows;
      expect(text.trimEnd().split('\n')).toHaveLength(8);
      expect(new Set(rows.map((r) => r.key)).size).toBe(8);
      const local = new Map(readResults(join(localOut, 'results.jsonl')).rows.map((r) => [r.key, r]));
      expect(local.size).toBe(8);
      for (const row of rows) {
        const mine = local.get(row.key);
        expect(mine, row.key).toBeDefined();
        expect(untimed(row)).toEqual(untimed(mine!));
        expect(readFileSync(join(out, row.image)).equals(readFileSync(join(localOut, mine!.image)))).toBe(true);
      }
      expect(existsSync(join(out, 'summary.md'))).toBe(true);
      expect(existsSync(join(out, '.bench.lock'))).toBe(false);

      // The jobs were collected: nothing of this run is left in Redis.
      const client = new Redis({ port, host: '127.0.0.1', password: PASSWORD, db: 1 });
      try {
        expect(await client.keys('bull:s2i-bench:s2i-*')).toEqual([]);
      } finally {
        client.disconnect();
      }
    },
  );

  it(
    'Ctrl-C leaves the queue resumable; a job failing 3 times is reported as FAILED; a rerun retries it',
    { timeout: 300_000 },
    async () => {
      const out = join(tmp, 'resume');
      const args = ['bench', ...common, '--methods', 'none', '--seeds', '0', '--out', out, '--queue', url(2)];
      // No worker yet: interrupt the producer while it waits.
      const first = run(args);
      await first.waitFor(/^bench: 2 jobs queued on redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/2/);
      first.child.kill('SIGINT');
      expect(await first.exit).toBe(1);
      expect(first.stderr()).toMatch(
        /^s2i: error: interrupted: 0 of 2 queued images collected .* rerun the same command/m,
      );
      expect(existsSync(join(out, '.bench.lock'))).toBe(false);

      // A worker with another model (another fingerprint) refuses every job: 3 tries each, then FAILED.
      const other = join(tmp, 'other-model');
      cpSync(tinySdDir, other, { recursive: true });
      writeFileSync(join(other, 'NOTES.txt'), 'a copy: another fingerprint\n');
      const wrong = run(['worker', '--queue', url(2), '--lock-seconds', '2', '--model', other]);
      await wrong.waitFor(/taking jobs/);
      const second = run([...args, '--json']);
      expect(await second.exit, second.stderr()).toBe(1);
      await stop(wrong);
      const summary = JSON.parse(second.stdout());
      expect(summary.run).toMatchObject({ images: 0, failed: 2 });
      expect(summary.failed).toHaveLength(2);
      for (const f of summary.failed) {
        expect(f.attempts).toBe(3);
        expect(f.reason).toMatch(/model fingerprint \w+ of the benchmark differs from this worker's/);
      }
      expect(second.stderr()).toMatch(/^s2i: error: 2 of 2 images failed for good .* retries them\n$/m);
      expect(readFileSync(join(out, 'summary.md'), 'utf8')).toMatch(/FAILED: 2 images could not be made/);
      expect(readResults(join(out, 'results.jsonl')).rows).toEqual([]);
      expect(wrong.stderr()).toMatch(/failed none s0 .* \(try 3 of 3\): model fingerprint/);

      // The right worker, writing the images into the (here shared) output folder itself: the rerun retries the
      // failed jobs and completes.
      const good = worker(2, '--out', out);
      await good.waitFor(/taking jobs/);
      const third = run(args);
      expect(await third.exit, third.stderr()).toBe(0);
      expect(third.stderr()).toMatch(/2 jobs queued .*\(2 that failed before are retried\)/);
      expect(third.stdout()).toMatch(/2 images generated by workers on redis:\/\/:\*\*\*@127\.0\.0\.1/);
      await stop(good);
      const rows = readResults(join(out, 'results.jsonl')).rows;
      expect(rows.map((r) => r.method).sort()).toEqual(['none', 'none']);
      for (const r of rows) expect(existsSync(join(out, r.image))).toBe(true);
      expect(good.stderr()).toMatch(/images into /);
      expect(new Set(rows.map((r) => r.key)).size).toBe(2);
    },
  );
});

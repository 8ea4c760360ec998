/**
 * `npm run bench:serve`: the load benchmark of `s2i serve` on loopback (autocannon). Starts the built server as a
 * child process on 127.0.0.1 (a free port), and for each point drives it with N concurrent clients for a bounded
 * time, each request `POST /v1/images/generations` with its own seed (two-object prompts of the shapes world, the
 * model's 25 steps; a bounded count of requests per point, each point bounded in time by the server's own time
 * limit): throughput, p50/p99 latency, refusals (429, each must carry Retry-After), and whether every
 * request sent was answered once (autocannon's counts against the server's own /metrics). The server's peak
 * memory is its VmHWM. The batching gain is 16 clients against 1 (sequential requests), and 16 clients against a
 * server started with --max-batch 1 (the same concurrency, no batching).
 *
 *   npm run bench:serve                                   1, 4, 16 clients, 64 requests each, plain sampling
 *   npm run bench:serve -- --requests 256 --method suppress --connections 1,4,16 --out out/bench-serve
 *
 * A last point drives a server started with --max-queue 4 with the most clients: refusals must be 429s with
 * Retry-After, and every request is still answered (200 or 429).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

const root = resolve(import.meta.dirname, '..', '..');
const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '64' },
    connections: { type: 'string', default: '1,4,16' },
    method: { type: 'string', default: 'none' },
    steps: { type: 'string', default: '25' },
    'max-queue': { type: 'string', default: '64' },
    'no-small-queue': { type: 'boolean', default: false },
    'no-unbatched': { type: 'boolean', default: false },
    out: { type: 'string', default: 'out/bench-serve' },
  },
});
const amount = Number(values.requests);
const connections = values.connections.split(',').map(Number);
if (!(Number.isInteger(amount) && amount >= 1 && amount <= 10000) || connections.some((c) => !(c >= 1 && c <= 64)))
  throw new Error('--requests must be 1..10000 and --connections a list of 1..64');

const PROMPTS = [
  'a red circle and a blue square',
  'a green triangle and a yellow circle',
  'a purple square and an orange triangle',
  'a blue circle and a red triangle',
];

interface Started {
  child: ChildProcess;
  base: string;
}

async function startServer(extra: string[]): Promise<Started> {
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin', 's2i.js'),
      'serve',
      // The pixel shapes model, as the figures in the README were measured (serve's default is now the latent one).
      '--model',
      join(root, 'models', 'shapes'),
      '--port',
      '0',
      '--max-queue',
      values['max-queue'],
      '--timeout',
      '600',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  for (let i = 0; i < 1200; i++) {
    const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
    if (m) return { child, base: m[1]! };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`the server did not start: ${stderr.trim().split('\n').at(-1)}`);
}

/** The server's peak resident memory (VmHWM), in MB. */
function peakMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

interface Point {
  server: string;
  clients: number;
  seconds: number;
  sent: number;
  ok: number;
  refused429: number;
  refusedWithoutRetryAfter: number;
  otherErrors: number;
  imagesPerSecond: number;
  p50ms: number;
  p99ms: number;
  serverAnswered: number;
  peakMb: number;
}

let seed = 0;
async function drive(s: Started, label: string, clients: number): Promise<Point> {
  const okBefore = await metric(s.base, 's2i_generation_requests_total{outcome="ok"}');
  let missingRetryAfter = 0;
  const result = await autocannon({
    url: `${s.base}/v1/images/generations`,
    connections: clients,
    amount,
    timeout: 600,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    requests: [
      {
        method: 'POST',
        path: '/v1/images/generations',
        setupRequest: (req) => {
          const i = seed++;
          return {
            ...req,
            body: JSON.stringify({
              prompt: PROMPTS[i % PROMPTS.length],
              seed: i,
              steps: Number(values.steps),
              method: values.method,
            }),
          };
        },
        onResponse: (status, _body, _context, headers) => {
          if (status === 429 && !(headers as Record<string, string> | undefined)?.['retry-after']) missingRetryAfter++;
        },
      },
    ],
  });
  const codes = result.statusCodeStats ?? {};
  const count = (c: string) => (codes as Record<string, { count?: number }>)[c]?.count ?? 0;
  const ok = count('200');
  const refused = count('429');
  const answered = (await metric(s.base, 's2i_generation_requests_total{outcome="ok"}')) - okBefore;
  return {
    server: label,
    clients,
    seconds: result.duration,
    sent: result.requests.sent,
    ok,
    refused429: refused,
    refusedWithoutRetryAfter: missingRetryAfter,
    otherErrors: result.errors + result.timeouts + (result.non2xx - refused),
    imagesPerSecond: ok / result.duration,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    serverAnswered: answered,
    peakMb: peakMb(s.child.pid!),
  };
}

async function stop(s: Started): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

const points: Point[] = [];
const batched = await startServer([]);
try {
  // One warm-up request: graph compilation is not part of any point.
  await fetch(`${batched.base}/v1/images/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: PROMPTS[0], steps: 2, method: values.method }),
  });
  for (const c of connections) {
    points.push(await drive(batched, 'max-batch 16', c));
    console.error(JSON.stringify(points.at(-1)));
  }
} finally {
  await stop(batched);
}
const most = Math.max(...connections);
if (!values['no-unbatched']) {
  const unbatched = await startServer(['--max-batch', '1']);
  try {
    await fetch(`${unbatched.base}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPTS[0], steps: 2, method: values.method }),
    });
    points.push(await drive(unbatched, 'max-batch 1', most));
    console.error(JSON.stringify(points.at(-1)));
  } finally {
    await stop(unbatched);
  }
}

if (!values['no-small-queue']) {
  const small = await startServer(['--max-queue', '4']);
  try {
    points.push(await drive(small, 'max-queue 4', most));
    console.error(JSON.stringify(points.at(-1)));
  } finally {
    await stop(small);
  }
}

const at = (server: string, c: number) => points.find((p) => p.server === server && p.clients === c);
const seq = at('max-batch 16', 1);
const top = at('max-batch 16', most);
const plain = at('max-batch 1', most);
const lines = [
  `load: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (1, 5, 15 min) after the run; ${amount} requests per point, method ${values.method}, ${values.steps} steps, shapes model`,
  '',
  '| server | clients | images/s | p50 | p99 | sent | 200 | 429 (all with Retry-After) | other errors | answered (server) | peak RSS |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...points.map(
    (p) =>
      `| ${p.server} | ${p.clients} | ${p.imagesPerSecond.toFixed(2)} | ${(p.p50ms / 1000).toFixed(2)} s | ${(p.p99ms / 1000).toFixed(2)} s | ${p.sent} | ${p.ok} | ${p.refused429}${p.refusedWithoutRetryAfter ? ` (${p.refusedWithoutRetryAfter} without)` : ''} | ${p.otherErrors} | ${p.serverAnswered} | ${p.peakMb.toFixed(0)} MB |`,
  ),
  '',
  seq && top
    ? `batching gain, ${most} clients vs 1 (sequential): ${(top.imagesPerSecond / seq.imagesPerSecond).toFixed(2)}×`
    : '',
  top && plain
    ? `batching gain, ${most} clients, max-batch 16 vs 1: ${(top.imagesPerSecond / plain.imagesPerSecond).toFixed(2)}×`
    : '',
  `nothing lost: ${points.every((p) => p.otherErrors === 0 && p.ok === p.serverAnswered) ? 'yes' : 'NO'} (every request answered, each 200 counted once by the server)`,
];
const outDir = resolve(values.out);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'serve.json'), JSON.stringify({ requests: amount, method: values.method, points }, null, 2));
writeFileSync(join(outDir, 'serve.md'), lines.join('\n') + '\n');
console.log(lines.join('\n'));

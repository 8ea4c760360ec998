/**
 * `npm run bench:web`: the page's time to its first image in headless Chromium against the Node CLI's time for
 * the same image, measured in one run, rounds interleaved (so that a busy machine slows both alike), and the
 * page's weight (gzip).
 *
 *   npm run bench:web -- [--rounds 3] [--steps 25] [--threads N]
 *
 * Browser: a fresh browser context per run (nothing cached), from navigation to `data-status=done` (the page's own
 * performance.now() when the image is drawn). Node: `s2i generate` from spawn to exit (start-up, model load,
 * sessions, sampling, PNG written). Both use the default model, the same prompt, seed and method.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import puppeteer from 'puppeteer-core';
import { preview } from 'vite';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '25' },
    threads: { type: 'string' },
    chromium: { type: 'string', default: process.env['S2I_CHROMIUM'] ?? '/usr/bin/chromium' },
  },
});
const rounds = Number(values.rounds);
const steps = values.steps!;
const PROMPT = 'a red circle and a blue square';
const CASES = ['none', 'suppress'];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function nodeRun(method: string, out: string): Promise<number> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [
        join(root, 'bin', 's2i.js'),
        'generate',
        PROMPT,
        // the page's model (the CLI's default is the latent one)
        '--model',
        join(root, 'models', 'shapes'),
        '--seed',
        '7',
        '--steps',
        steps,
        '--method',
        method,
        '--out',
        out,
      ],
      { stdio: 'ignore' },
    );
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done(performance.now() - t0) : fail(new Error(`s2i exited ${code}`))));
  });
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

const build = spawnSync(
  process.execPath,
  [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'error', '-c', join(root, 'web/vite.config.ts')],
  {
    stdio: 'inherit',
  },
);
if (build.status !== 0) process.exit(1);

// Page weight: what a visitor without WebGPU downloads (the WebGPU build's binary is fetched only with WebGPU).
const dist = join(root, 'web', 'dist');
const weight = { scripts: 0, wasm: 0, model: 0, other: 0 };
for (const f of walk(dist)) {
  const rel = relative(dist, f);
  const gz = gzipSync(readFileSync(f), { level: 9 }).length;
  if (rel.includes('asyncify') || rel.startsWith('assets/ort.webgpu')) continue;
  if (rel.startsWith('models/')) weight.model += statSync(f).size;
  else if (rel.endsWith('.wasm')) weight.wasm += gz;
  else if (rel.endsWith('.js')) weight.scripts += gz;
  else weight.other += gz;
}

const server = await preview({
  configFile: join(root, 'web/vite.config.ts'),
  preview: { port: 0, host: '127.0.0.1' },
  logLevel: 'silent',
});
const url = server.resolvedUrls!.local[0]!;
const tmp = mkdtempSync(join(tmpdir(), 's2i-web-timing-'));
const browser = await puppeteer.launch({
  executablePath: values.chromium,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--user-data-dir=${join(tmp, 'profile')}`,
  ],
});

async function pageRun(method: string): Promise<{ firstImageMs: number; generateMs: number; runtime: string }> {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const q = new URLSearchParams({
    prompt: PROMPT,
    seed: '7',
    method,
    steps,
    ...(values.threads ? { threads: values.threads } : {}),
  });
  await page.goto(`${url}?${q}`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset['status'] ?? ''), {
    timeout: 600_000,
    polling: 100,
  });
  const r = await page.evaluate(() => ({
    status: document.body.dataset['status'],
    firstImageMs: Number(document.body.dataset['firstImageMs']),
    generateMs: Number(document.body.dataset['generateMs']),
    runtime: document.getElementById('status-text')!.textContent ?? '',
    error: document.getElementById('error')!.textContent,
  }));
  const runtime = await page.evaluate(() => document.body.dataset['runtime'] ?? '');
  await context.close();
  if (r.status !== 'done') throw new Error(`the page failed: ${r.error}`);
  return { firstImageMs: r.firstImageMs, generateMs: r.generateMs, runtime };
}

const results: Record<string, { node: number[]; page: number[]; pageGen: number[]; ratio: number[] }> = {};
let runtime = '';
for (let r = 0; r < rounds; r++) {
  for (const method of CASES) {
    const row = (results[method] ??= { node: [], page: [], pageGen: [], ratio: [] });
    const node = await nodeRun(method, join(tmp, `${method}.png`));
    const page = await pageRun(method);
    runtime = page.runtime;
    row.node.push(node);
    row.page.push(page.firstImageMs);
    row.pageGen.push(page.generateMs);
    row.ratio.push(page.firstImageMs / node);
    console.error(
      `round ${r + 1} ${method}: node ${(node / 1000).toFixed(2)} s, page ${(page.firstImageMs / 1000).toFixed(2)} s`,
    );
  }
}
await browser.close();
await server.close();
rmSync(tmp, { recursive: true, force: true });

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
console.log(
  `\n${steps} steps, "${PROMPT}", seed 7, default model; ${rounds} rounds, medians; page on ${runtime || 'onnxruntime-web'}\n`,
);
console.log('| method | Node CLI, spawn to PNG | page, load to first image | of which generating | page ÷ Node |');
console.log('|---|---:|---:|---:|---:|');
for (const [m, r] of Object.entries(results))
  console.log(
    `| ${m} | ${s(median(r.node))} | ${s(median(r.page))} | ${s(median(r.pageGen))} | ${median(r.ratio).toFixed(1)}× |`,
  );
const sup = results['suppress']!;
const none = results['none']!;
console.log(`\nsuppress ÷ plain on the page: ${(median(sup.page) / median(none.page)).toFixed(2)}×`);
const kb = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
console.log(
  `page weight (gzip): scripts ${kb(weight.scripts)}, ONNX Runtime's WebAssembly ${kb(weight.wasm)}, other ${kb(weight.other)}; model ${(weight.model / 2 ** 20).toFixed(1)} MiB`,
);

/**
 * `npm run bench:startup`: how long the `s2i` command takes from the shell, start-up included: `s2i --help` (module
 * loading alone) and `s2i generate` of one prompt on the shipped models (models/shapes, models/shapes-ldm), each
 * run as a fresh `node bin/s2i.js` process. Per case: the median (and range) of the wall time, measured here, and
 * of the process's CPU time (user + system, all threads), which the child reports at exit (startup-probe.mjs).
 * CPU time is the steadier of the two on a shared machine: a busy neighbour stretches the wall time.
 *
 * Each case runs once first unmeasured, so that ONNX Runtime's optimized-model cache (~/.cache/s2i/ort) holds
 * its graphs, as it does on every run after a model's first. Runs are interleaved (case by case, checkout by
 * checkout, round after round) so that a change of load affects them all alike.
 *
 *   npm run bench:startup                                  5 rounds, this checkout
 *   npm run bench:startup -- --runs 9 --root /path/to/other/checkout   this checkout against another (built) one
 *   npm run bench:startup -- --json --out startup.json
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { median } from './profile.js';

const here = resolve(import.meta.dirname, '..', '..');
const PROBE = join(here, 'tools', 'perf', 'startup-probe.mjs');
const PROMPT = 'a red circle and a blue square';

const USAGE = `usage: npm run bench:startup -- [--runs N] [--root DIR]... [--cases help,shapes,shapes-ldm,shapes-ldm-25,shapes-ldm-50] [--json] [--out FILE]`;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    root: { type: 'string', multiple: true },
    cases: { type: 'string', default: 'help,shapes,shapes-ldm' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

/** The measured commands; the image goes to a temporary folder, the model is the measured checkout's own. */
const CASES: Record<string, (out: string) => string[]> = {
  help: () => ['--help'],
  shapes: (out) => ['generate', PROMPT, '--model', 'models/shapes', '--seed', '0', '--out', join(out, 'shapes.png')],
  'shapes-ldm': (out) => [
    'generate',
    PROMPT,
    '--model',
    'models/shapes-ldm',
    '--seed',
    '0',
    '--out',
    join(out, 'ldm.png'),
  ],
  // The same at a given number of steps, whatever the model's s2i.json recommends (to compare checkouts whose
  // models recommend different ones).
  'shapes-ldm-25': (out) => [...CASES['shapes-ldm']!(out), '--steps', '25'],
  'shapes-ldm-50': (out) => [...CASES['shapes-ldm']!(out), '--steps', '50'],
};

const runs = Number(values.runs);
const cases = values.cases.split(',').map((c) => c.trim());
const bad = cases.filter((c) => !(c in CASES));
if (!Number.isInteger(runs) || runs < 1 || bad.length) {
  console.error(`${bad.length ? `unknown case(s) ${bad.join(', ')}` : '--runs must be a positive integer'}\n${USAGE}`);
  process.exit(2);
}
const roots = (values.root?.length ? [here, ...values.root] : [here]).map((r) => resolve(r));

interface Sample {
  wallMs: number;
  cpuMs: number;
}

/** One `node bin/s2i.js ARGS` in `root`: its wall time, and its CPU time as it reported it. */
function runOnce(root: string, args: string[], scratch: string): Promise<Sample> {
  const probe = join(scratch, 'probe.json');
  rmSync(probe, { force: true });
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', PROBE, 'bin/s2i.js', ...args], {
      cwd: root,
      env: { ...process.env, S2I_STARTUP_PROBE: probe },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      const wallMs = performance.now() - t0;
      if (code !== 0) return fail(new Error(`s2i ${args.join(' ')} in ${root}: exit code ${code}\n${stderr}`));
      const { userMs, systemMs } = JSON.parse(readFileSync(probe, 'utf8')) as { userMs: number; systemMs: number };
      done({ wallMs, cpuMs: userMs + systemMs });
    });
  });
}

const scratch = mkdtempSync(join(tmpdir(), 's2i-startup-'));
const samples = new Map<string, Sample[]>(); // `${case}\0${root}`
const load = { start: loadavg().map((x) => +x.toFixed(2)), end: [] as number[] };
try {
  for (const root of roots) for (const c of cases) await runOnce(root, CASES[c]!(scratch), scratch); // warm the cache
  for (let i = 0; i < runs; i++)
    for (const c of cases)
      for (const root of roots) {
        const key = `${c}\0${root}`;
        samples.set(key, [...(samples.get(key) ?? []), await runOnce(root, CASES[c]!(scratch), scratch)]);
      }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
load.end = loadavg().map((x) => +x.toFixed(2));

const rows = [...samples].map(([key, xs]) => {
  const [name, root] = key.split('\0') as [string, string];
  const wall = xs.map((x) => x.wallMs);
  const cpu = xs.map((x) => x.cpuMs);
  return {
    case: name,
    command: `s2i ${CASES[name]!('OUT')
      .map((a) => (a.includes(' ') ? `"${a}"` : a))
      .join(' ')}`,
    root,
    runs: xs.length,
    wallMs: { median: median(wall), min: Math.min(...wall), max: Math.max(...wall) },
    cpuMs: { median: median(cpu), min: Math.min(...cpu), max: Math.max(...cpu) },
  };
});
const report = { node: process.version, loadavg: load, rows };
if (values.out) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
if (values.json) console.log(JSON.stringify(report));
else {
  const s = (ms: number) => (ms / 1000).toFixed(2);
  const range = (m: { median: number; min: number; max: number }) => `${s(m.median)} (${s(m.min)}–${s(m.max)})`;
  console.log(`| case | checkout | runs | wall s, median (range) | CPU s (user + sys), median (range) |`);
  console.log(`|---|---|---|---|---|`);
  for (const r of rows)
    console.log(`| ${r.command} | ${r.root} | ${r.runs} | ${range(r.wallMs)} | ${range(r.cpuMs)} |`);
  console.log(
    `\nnode ${process.version}; load average ${load.start.join(' ')} at the start, ${load.end.join(' ')} at the end`,
  );
}

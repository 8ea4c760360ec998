/**
 * `npm run bench`: the speed benchmark (see harness.ts). Prints a Markdown table (or the JSON report with --json).
 *
 *   npm run bench                          tiny-sd step, A&E step, the training step and batched generation
 *                                          (batch 16 vs one at a time on the shapes model; several minutes)
 *   npm run bench -- --sd15                ... plus SD-1.5's UNet (random weights; tens of minutes, ~15 GB peak)
 *   npm run bench -- --only sd15-batch     SD-1.5's guided step for 1, 2 and 4 images (peak memory of batches)
 *   npm run bench -- --only sdxl --no-torch  SDXL base's UNet (random weights, 10.3 GB): plain step at 768 and
 *                                          1024 px, S2I's edit-mode step, A&E's gradient pass (with --one-process
 *                                          --runs 0: ~9 minutes and 12-14 GB a case; A&E needs over 17 GB)
 *   npm run bench -- --only tiny,train     exactly these parts (tiny, sd15, sd15-batch, train, batch)
 *   npm run bench -- --runs 5 --json --out perf.json --no-torch --no-profile --threads 2
 *   npm run bench -- --only sdxl --max-rss 20   stop a case whose process outgrows 20 GB resident (a shared machine)
 *   npm run bench -- --only sdxl --one-process  one profiled process per case: first step, timed run(s), kernels
 */
import '../../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CompileOptions } from '../../src/graph/runtime.js';
import { CASES, PARTS, type CaseName, type PartName } from './cases.js';
import { DEFAULT_RUNS, packageRoot, runPerfBench } from './harness.js';
import { formatPerfMarkdown } from './report.js';

const USAGE = `usage: npm run bench -- [--only tiny,sd15,sd15-batch,sdxl,train,batch | --sd15] [--runs N] [--json] [--out FILE] [--md FILE]
                        [--no-torch] [--no-profile] [--no-ort-cache] [--python PATH] [--tiny DIR] [--cache DIR]
                        [--threads N] [--spinning 0|1] [--fused-attention 0|1]
                        [--optimization disabled|basic|extended|all] [--sd15-width N] [--sd15-latent N]
                        [--sdxl-width N] [--sdxl-latent N] [--max-rss GB] [--one-process]
                        [--cases sdxl-step,sdxl-s2i,...]`;

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    sd15: { type: 'boolean', default: false },
    runs: { type: 'string' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    md: { type: 'string' },
    'no-torch': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'no-ort-cache': { type: 'boolean', default: false },
    spinning: { type: 'string' },
    'fused-attention': { type: 'string' },
    'sd15-width': { type: 'string' },
    'sd15-latent': { type: 'string' },
    'sdxl-width': { type: 'string' },
    'sdxl-latent': { type: 'string' },
    'max-rss': { type: 'string' },
    'one-process': { type: 'boolean', default: false },
    cases: { type: 'string' },
    python: { type: 'string', default: '/usr/bin/python3' },
    tiny: { type: 'string' },
    cache: { type: 'string' },
    threads: { type: 'string' },
    optimization: { type: 'string' },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const all = Object.keys(PARTS) as PartName[];
let parts: PartName[];
if (values.only) {
  parts = values.only.split(',').map((s) => s.trim()) as PartName[];
  const bad = parts.filter((p) => !all.includes(p));
  if (bad.length || parts.length === 0) {
    console.error(`--only: unknown part(s) ${bad.join(', ')} (parts: ${all.join(', ')})\n${USAGE}`);
    process.exit(2);
  }
} else {
  parts = values.sd15 ? ['tiny', 'sd15', 'train', 'batch'] : ['tiny', 'train', 'batch'];
}

const runs: Partial<Record<PartName, number>> = {};
if (values.runs) {
  const n = Number(values.runs);
  // 0: the first step only (with --one-process, its run is the profiled one)
  if (!Number.isInteger(n) || n < 0 || (n === 0 && !values['one-process'])) {
    console.error(`--runs must be a positive integer (0 only with --one-process)\n${USAGE}`);
    process.exit(2);
  }
  for (const p of parts) runs[p] = n;
}
const compile: CompileOptions = {};
if (values.threads) compile.threads = Number(values.threads);
if (values.optimization) compile.optimization = values.optimization as CompileOptions['optimization'];

const env: Record<string, string> = {};
if (values.spinning !== undefined)
  env['S2I_ORT_SPINNING'] = values.spinning === '1' || values.spinning === 'true' ? '1' : '0';
if (values['fused-attention'] !== undefined)
  env['S2I_FUSED_ATTENTION'] = values['fused-attention'] === '0' || values['fused-attention'] === 'false' ? '0' : '1';
const positive = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const sd15Width = positive('sd15-width', values['sd15-width']);
const sd15Latent = positive('sd15-latent', values['sd15-latent']);
if (sd15Width !== undefined && sd15Width % 32 !== 0) {
  console.error('--sd15-width must be a multiple of 32 (GroupNorm has 32 groups)');
  process.exit(2);
}

const sdxlWidth = positive('sdxl-width', values['sdxl-width']);
const sdxlLatent = positive('sdxl-latent', values['sdxl-latent']);
if (sdxlWidth !== undefined && sdxlWidth % 160 !== 0) {
  console.error('--sdxl-width must be a multiple of 160 (32 GroupNorm groups and 5, 10, 20 heads)');
  process.exit(2);
}
if (sdxlLatent !== undefined && sdxlLatent % 16 !== 0) {
  console.error('--sdxl-latent must be a multiple of 16 (3/4 of it is the 768-px case, down-sampled twice)');
  process.exit(2);
}

const cases = values.cases?.split(',').map((s) => s.trim()) as CaseName[] | undefined;
const unknownCases = cases?.filter((c) => !CASES.includes(c)) ?? [];
if (unknownCases.length) {
  console.error(`--cases: unknown case(s) ${unknownCases.join(', ')} (cases: ${CASES.join(', ')})\n${USAGE}`);
  process.exit(2);
}

let maxRssMb: number | undefined;
if (values['max-rss'] !== undefined) {
  const gb = Number(values['max-rss']);
  if (!(gb > 0)) {
    console.error(`--max-rss must be a positive number of GB\n${USAGE}`);
    process.exit(2);
  }
  maxRssMb = gb * 1024;
}

const tinyDir = resolve(
  values.tiny ??
    process.env['S2I_TINY_SD'] ??
    join(process.env['S2I_ORACLE'] ?? join(packageRoot, 'test', 'fixtures', 'oracle'), 'tiny-sd'),
);
const log = values.quiet ? () => {} : (s: string) => process.stderr.write(s + '\n');
log(
  `speed benchmark: ${parts.join(', ')} (runs: ${parts.map((p) => `${p} ${runs[p] ?? DEFAULT_RUNS[p]}`).join(', ')})`,
);

const report = await runPerfBench({
  parts,
  runs,
  torch: !values['no-torch'],
  profile: !values['no-profile'],
  python: values.python,
  tinyDir,
  cacheDir: values.cache,
  compile,
  cache: !values['no-ort-cache'],
  env,
  sd15Width,
  sd15Latent,
  sdxlWidth,
  sdxlLatent,
  maxRssMb,
  oneProcess: values['one-process'],
  ...(cases ? { cases } : {}),
  log,
});

const md = formatPerfMarkdown(report);
if (values.out) writeFileSync(values.out, JSON.stringify(report, null, 2) + '\n');
if (values.md) writeFileSync(values.md, md);
process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : md);
process.exitCode = report.cases.some((c) => c.errors.length) ? 1 : 0;

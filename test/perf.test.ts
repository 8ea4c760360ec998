/**
 * The speed benchmark's harness end to end on the tiny part (`npm run bench -- --only tiny`): child processes
 * for the timed runs, the cached first step and the ONNX Runtime profile, the JSON report and its Markdown.
 * One timed run and no PyTorch column, to stay quick. No timing assertions: timings are measured by the
 * benchmark, never by tests.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PerfReport } from '../tools/perf/harness.js';
import { formatPerfMarkdown } from '../tools/perf/report.js';
import { repoRoot, tinySdDir } from './support/oracle.js';

describe('npm run bench -- --only tiny', () => {
  it('measures the tiny guided step and the A&E step in child processes and reports them', async () => {
    // Asynchronous: a synchronous spawn this long would starve vitest's worker RPC.
    const r = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        join(repoRoot, 'tools/perf/cli.ts'),
        '--only',
        'tiny',
        '--runs',
        '1',
        '--no-torch',
        '--json',
        '--quiet',
        '--tiny',
        tinySdDir,
      ],
      { cwd: repoRoot, encoding: 'utf8', timeout: 110_000, maxBuffer: 64 * 1024 * 1024 },
    );
    expect(r.stderr).not.toMatch(/error/i);
    const report = JSON.parse(r.stdout) as PerfReport;
    expect(report.cases.map((c) => c.case)).toEqual(['tiny-step', 'tiny-ae']);
    expect(report.notes).toEqual([]);
    for (const c of report.cases) {
      expect(c.errors).toEqual([]);
      expect(c.torch).toBeNull();
      expect(c.ours!.timesMs).toHaveLength(1);
      expect(c.ours!.medianMs).toBeGreaterThan(0);
      expect(c.ours!.firstStepMs).toBeGreaterThan(c.ours!.setup.sessionMs);
      expect(c.ours!.peakRssMb).toBeGreaterThan(0);
      // The second process found what the first stored in the optimized-model cache.
      expect(c.ours!.cache.every((s) => s === 'stored')).toBe(true);
      expect(c.oursCached!.cache.every((s) => s === 'hit')).toBe(true);
      expect(c.kernels!.bestKernelSumMs).toBeGreaterThan(0);
    }
    const [step, ae] = report.cases;
    expect(step!.ours!.graphs.map((g) => g.key)).toEqual(['guided:b1:rec=-:edit=0']);
    expect(ae!.ours!.graphs.map((g) => g.key)).toEqual(['ae:16x16:n2:3/0.5:grad:b1', 'guided:b1:rec=-:edit=0']);
    expect(ae!.ours!.gradMs).toHaveLength(1);
    expect(ae!.kernels!.graphs).toHaveLength(2);
    const md = formatPerfMarkdown(report);
    expect(md).toContain('| tiny-sd guided step (UNet batch 2, 32x32) |');
    expect(md).toContain('A&E step ÷ plain step');
  });

  it('--one-process: first step, timed run, kernels and peak from one profiled child; --max-rss stops a case', async () => {
    const bench = (...extra: string[]) =>
      promisify(execFile)(
        process.execPath,
        [
          '--import',
          'tsx',
          join(repoRoot, 'tools/perf/cli.ts'),
          '--only',
          'tiny',
          '--cases',
          'tiny-step',
          '--runs',
          '1',
          '--no-torch',
          '--json',
          '--quiet',
          '--tiny',
          tinySdDir,
          ...extra,
        ],
        { cwd: repoRoot, encoding: 'utf8', timeout: 110_000, maxBuffer: 64 * 1024 * 1024 },
      ).catch((e: { stdout: string }) => e);
    const one = JSON.parse((await bench('--one-process')).stdout) as PerfReport;
    expect(one.cases.map((c) => c.case)).toEqual(['tiny-step']);
    const [c] = one.cases;
    expect(c!.errors).toEqual([]);
    expect(c!.oursCached).toBeNull();
    expect(c!.ours!.timesMs).toHaveLength(1);
    // the timed run is the profiled one: its time is the profile's
    expect(c!.ours!.medianMs).toBe(c!.kernels!.profiledMedianMs);
    expect(c!.kernels!.bestKernelSumMs).toBeGreaterThan(0);
    expect(c!.ours!.peakRssMb).toBeGreaterThan(0);
    // 50 MB: less than Node itself; the case is stopped and says why
    const stopped = JSON.parse((await bench('--one-process', '--max-rss', '0.05')).stdout) as PerfReport;
    expect(stopped.cases[0]!.ours).toBeNull();
    expect(stopped.cases[0]!.errors.join()).toMatch(
      /^tiny-step profile stopped at \d+\.\d\d GB resident, over the --max-rss limit of 0\.05 GB, \d+ s after it started$/,
    );
  });
});

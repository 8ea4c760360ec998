/** Running the built `s2i` command as a user does: build dist/ when stale, spawn node bin/s2i.js. */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { repoRoot } from './oracle.js';

/** Newest modification time of the .ts files under `dir`. */
function newestSource(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newestSource(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

/** `npm test` builds first; a test file run alone rebuilds dist/ when any source is newer than it. */
export function ensureBuilt(): void {
  const built = join(repoRoot, 'dist', 'cli', 'main.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newestSource(join(repoRoot, 'src'))) {
    spawnSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', repoRoot], {
      stdio: 'ignore',
      timeout: 300_000,
    });
  }
  expect(existsSync(built), 'dist/ is not built (run npx tsc -p .)').toBe(true);
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function s2i(args: readonly string[], options: { cwd?: string; timeout?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 's2i.js'), ...args], {
    cwd: options.cwd ?? repoRoot,
    encoding: 'utf8',
    timeout: options.timeout ?? 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit code 1, nothing on stdout, exactly one line `s2i: error: ...` on stderr, no stack frames. */
export function expectOneLineError(r: CliResult, ...parts: string[]): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^s2i: error: [^\n]+\n$/);
  expect(r.stderr).not.toMatch(/\bat .*:\d+:\d+/);
  for (const p of parts) expect(r.stderr).toContain(p);
}

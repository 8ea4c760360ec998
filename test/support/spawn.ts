/**
 * Running the built CLI with a chosen environment, synchronously or as a child to signal, and the checks every
 * failing run must pass: exit 1, exactly one line `s2i: error: ...` on stderr, no stack frame.
 */
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { repoRoot } from './oracle.js';

export const binPath = join(repoRoot, 'bin', 's2i.js');

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  timeout?: number;
  /** Run under `sh -c 'ulimit -f BLOCKS'`: writes past BLOCKS × 512 bytes fail with EFBIG. */
  fileSizeBlocks?: number;
  /** Variables taken out of the inherited environment (e.g. CI, which the test runner may set). */
  unset?: readonly string[];
}

/** The child's environment: ours, the ONNX Runtime cache off, `env` on top, `unset` removed. */
function childEnv(options: RunOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, S2I_ORT_CACHE: '0', ...options.env };
  for (const k of options.unset ?? []) delete env[k];
  return env;
}

/** Spawns `node bin/s2i.js ...args` and waits (the ONNX Runtime cache off unless the env says otherwise). */
export function runCli(args: readonly string[], options: RunOptions = {}): Run {
  const env = childEnv(options);
  const r =
    options.fileSizeBlocks !== undefined
      ? spawnSync(
          'sh',
          ['-c', `ulimit -f ${options.fileSizeBlocks} && exec "$0" "$@"`, process.execPath, binPath, ...args],
          { cwd: options.cwd, env, encoding: 'utf8', timeout: options.timeout ?? 120_000, killSignal: 'SIGKILL' },
        )
      : spawnSync(process.execPath, [binPath, ...args], {
          cwd: options.cwd,
          env,
          encoding: 'utf8',
          timeout: options.timeout ?? 120_000,
          killSignal: 'SIGKILL',
        });
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Starts the CLI as a child; `done` resolves when it exits. */
export function startCli(
  args: readonly string[],
  options: RunOptions = {},
): { pid: number; kill: (s: NodeJS.Signals) => void; done: Promise<Run> } {
  const child = spawn(process.execPath, [binPath, ...args], {
    cwd: options.cwd,
    env: childEnv(options),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { pid: child.pid!, kill: (s) => child.kill(s), done };
}

/** Exit 1, exactly one line `s2i: error: ...` matching every pattern, no stack frame. */
export function expectOneLineError(r: Run, ...patterns: RegExp[]): void {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(/^s2i: error: [^\n]+\n$/);
  expect(r.stderr).not.toMatch(/\bat .*:\d+:\d+/);
  for (const p of patterns) expect(r.stderr).toMatch(p);
}

/** Polls `check` every 20 ms until it is true (false after `ms`). */
export async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

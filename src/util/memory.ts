/**
 * The memory budget: one check, made before a large allocation, that turns "this would need 300 GB" into a
 * one-line error instead of minutes of swapping and an out-of-memory kill.
 *
 * The budget is, in order: what `setMemoryBudget` was given (the CLI's `--max-memory`), the environment variable
 * `S2I_MAX_MEMORY`, else this machine's physical memory (or the cgroup's limit when it is smaller). Sizes are
 * written `800M`, `16G`, `1.5T` (binary units; `B`/`iB` suffixes accepted) or a plain byte count; `off` disables
 * the check. Estimates are lower bounds (the bytes that must exist at once), so the check refuses only what cannot
 * fit; swap is not counted.
 *
 * The machine's memory is what the platform's entry installed (`src/node.ts`: node:os and the cgroup's limit); a
 * browser page tells none, so there only a given budget is checked.
 */
import { UserError } from '../errors.js';
import { quote } from './quote.js';

export const MEMORY_ENV = 'S2I_MAX_MEMORY';

export interface MemoryBudget {
  /** Bytes, or Infinity when the check is off. */
  bytes: number;
  /** Where the number comes from, for messages: "--max-memory 16G", "S2I_MAX_MEMORY=16G", "physical memory". */
  source: string;
}

let given: MemoryBudget | null = null;

/** This machine's physical memory and the container's limit when there is one (bytes). */
export interface MachineMemory {
  total: number;
  constrained?: number;
}

let probe: (() => MachineMemory) | null = null;

/** Make `fn` the source of the machine's memory (done once by the platform's entry point). */
export function setMachineMemory(fn: () => MachineMemory): void {
  probe = fn;
}

/** Physical memory in bytes; Infinity where the platform tells none (a browser). */
export function physicalMemory(): number {
  return probe ? probe().total : Infinity;
}

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** `16G`, `800MiB`, `1.5T`, `123456` → bytes; `off`/`none`/`unlimited` → Infinity; anything else → null. */
export function parseByteSize(text: string): number | null {
  const v = text.trim();
  if (/^(off|none|unlimited)$/i.test(v)) return Infinity;
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(v);
  if (!m) return null;
  const n = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : null;
}

/** `1536` → "1.5 KiB"-style, in the largest unit that keeps the number ≥ 1 (GB here means GiB). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return 'unlimited';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) ((v /= 1024), i++);
  return i === 0 ? `${v} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Physical memory, or the cgroup's limit when it is smaller (containers). */
function machineMemory(): MemoryBudget {
  if (!probe) return { bytes: Infinity, source: 'no known memory size' };
  const { total, constrained = 0 } = probe();
  if (constrained > 0 && constrained < total) return { bytes: constrained, source: "the container's memory limit" };
  return { bytes: total, source: "this machine's physical memory" };
}

/** The budget from an option value (the CLI's `--max-memory`); `flag` names it in messages. */
export function setMemoryBudget(value: string, flag = '--max-memory'): void {
  const bytes = parseByteSize(value);
  if (bytes === null)
    throw new UserError(`${flag} must be a size such as 800M, 16G or 1.5T, or off; got ${quote(value)}`);
  given = { bytes, source: `${flag} ${value.trim()}` };
}

/** Forget `setMemoryBudget` (tests). */
export function resetMemoryBudget(): void {
  given = null;
}

export function memoryBudget(): MemoryBudget {
  if (given) return given;
  // (globalThis.process: there is none in a browser.)
  const env = globalThis.process?.env[MEMORY_ENV];
  if (env !== undefined && env.trim() !== '') {
    const bytes = parseByteSize(env);
    if (bytes === null)
      throw new UserError(`${MEMORY_ENV} must be a size such as 800M, 16G or 1.5T, or off; got ${quote(env)}`);
    return { bytes, source: `${MEMORY_ENV}=${env.trim()}` };
  }
  return machineMemory();
}

/**
 * Throws a one-line `UserError` when `bytes` (an estimate of what `what` needs at once) exceeds the budget.
 * `what` says what is being sized, e.g. "a 4096x4096 image (UNet self-attention at 512x512 latents)".
 */
export function checkMemory(bytes: number, what: string): void {
  const budget = memoryBudget();
  if (bytes <= budget.bytes) return; // NaN (a broken estimate) is refused too
  throw new UserError(
    `${what} needs an estimated ${formatBytes(bytes)}, more than the memory budget of ${formatBytes(budget.bytes)} ` +
      `(${budget.source}); raise it with --max-memory SIZE or ${MEMORY_ENV}=SIZE if you are sure`,
  );
}

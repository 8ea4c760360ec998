/**
 * Reading ONNX Runtime's profiler output (a Chrome-trace JSON array) into "what the kernels alone cost":
 * for every node, its best (smallest) kernel time over the profiled runs, summed. Comparing a measured step
 * with that sum says how much of the step is overhead (allocation, thread hand-offs, copies between JS and
 * ONNX Runtime, the profiler itself) rather than arithmetic.
 */
import { readFileSync } from 'node:fs';

interface TraceEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: { op_name?: string };
}

export interface KernelSummary {
  /** Profiled runs (after dropping `skipRuns`). */
  runs: number;
  /** Σ over nodes of min over runs of the node's kernel time, ms. */
  bestKernelSumMs: number;
  /** Median over runs of the run's own kernel-time total, ms. */
  medianKernelSumMs: number;
  /** Median over runs of ONNX Runtime's `model_run` duration, ms. */
  medianModelRunMs: number;
  /** Nodes executed per run. */
  nodes: number;
  /** Best kernel time per operator type, ms, largest first. */
  byOp: { op: string; ms: number; nodes: number }[];
  /** ONNX Runtime's own `session_initialization` time, ms (null if absent). */
  sessionInitMs: number | null;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Summarise a profile; the first `skipRuns` model runs (warm-up) are ignored. */
export function summarizeProfile(events: readonly TraceEvent[], skipRuns = 1): KernelSummary {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts! - b.ts!);
  const kept = runs.slice(Math.min(skipRuns, Math.max(0, runs.length - 1)));
  const init = events.find((e) => e.cat === 'Session' && e.name === 'session_initialization');
  const nodeEvents = events.filter((e) => e.cat === 'Node' && e.name?.endsWith('_kernel_time'));
  const best = new Map<string, { ms: number; op: string }>();
  const perRun = kept.map(() => 0);
  for (const e of nodeEvents) {
    const r = kept.findIndex((run) => e.ts! >= run.ts! && e.ts! <= run.ts! + run.dur!);
    if (r < 0) continue;
    const ms = e.dur! / 1000;
    perRun[r]! += ms;
    const key = e.name!;
    const cur = best.get(key);
    if (!cur || ms < cur.ms) best.set(key, { ms, op: e.args?.op_name ?? key.replace(/_kernel_time$/, '') });
  }
  const byOpMap = new Map<string, { ms: number; nodes: number }>();
  let sum = 0;
  for (const { ms, op } of best.values()) {
    sum += ms;
    const o = byOpMap.get(op) ?? { ms: 0, nodes: 0 };
    o.ms += ms;
    o.nodes += 1;
    byOpMap.set(op, o);
  }
  return {
    runs: kept.length,
    bestKernelSumMs: sum,
    medianKernelSumMs: median(perRun),
    medianModelRunMs: median(kept.map((r) => r.dur! / 1000)),
    nodes: best.size,
    byOp: [...byOpMap].map(([op, v]) => ({ op, ...v })).sort((a, b) => b.ms - a.ms),
    sessionInitMs: init?.dur !== undefined ? init.dur / 1000 : null,
  };
}

export function readProfile(path: string, skipRuns = 1): KernelSummary {
  return summarizeProfile(JSON.parse(readFileSync(path, 'utf8')) as TraceEvent[], skipRuns);
}

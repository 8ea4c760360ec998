/**
 * One paired comparison from a benchmark's results.jsonl, with the benchmark's own statistics (src/bench/stats.ts):
 * the failure ratio with its paired bootstrap interval, exact McNemar p and the sign-flip p by prompt, per suite —
 * for pairs of methods the summary does not set against each other (e.g. S2I against its start choice alone).
 *
 *   npx tsx scripts/compare-methods.ts out/bench-rivals/results.jsonl suppress suppress-select
 *
 * With a second file, the baseline's rows come from it (the same method run with other settings into another
 * folder, e.g. `--attribute-regions on` against the default):
 *
 *   npx tsx scripts/compare-methods.ts out/px-attr-on/results.jsonl suppress suppress out/px-attr-off/results.jsonl
 *
 * Under each suite, its pairs by prompt kind (distinct, same-colour, same-shape): each method's images fully right
 * and those with an object recoloured (the summary's "object recoloured" failure kind).
 */
import { METRICS } from '../src/bench/metrics.js';
import type { BenchRow } from '../src/bench/row.js';
import { compareMethods } from '../src/bench/stats.js';
import { resultRows } from './result-rows.js';

const [file, method, baselineName, baselineFile] = process.argv.slice(2);
if (!file || !method || !baselineName) {
  process.stderr.write('usage: compare-methods.ts RESULTS.jsonl METHOD BASELINE [BASELINE_RESULTS.jsonl]\n');
  process.exit(2);
}
type Row = BenchRow;
const read = (f: string): Row[] => resultRows(f, 'compare-methods');
// The baseline from another file is renamed so that it cannot be mistaken for the method's own rows.
const baseline = baselineFile ? `${baselineName} (${baselineFile})` : baselineName;
const rows: Row[] = baselineFile
  ? [
      ...read(file).filter((r) => r.method === method),
      ...read(baselineFile)
        .filter((r) => r.method === baselineName)
        .map((r) => ({ ...r, method: baseline })),
    ]
  : read(file);
for (const suite of [...new Set(rows.map((r) => r.suite))]) {
  const c = compareMethods(
    rows.filter((r) => r.suite === suite),
    method,
    baseline,
  );
  const f = c.failure_ratio;
  console.log(
    `${suite}: ${method} vs ${baseline}, ${c.pairs} pairs: failures ÷ baseline's ${f.rate?.toFixed(2)} [${f.low?.toFixed(2)}–${f.high?.toFixed(2)}], +${c.method_only} −${c.baseline_only}, p (McNemar) ${c.p.toPrecision(2)}, p (by prompt) ${c.p_cluster.toPrecision(2)}`,
  );
  for (const line of byKind(
    rows.filter((r) => r.suite === suite),
    method,
    baseline,
  ))
    console.log(`  ${line}`);
}

/** The suite's pairs (prompt, seed) both methods made, by prompt kind: full successes and recoloured images. */
function byKind(rows: Row[], method: string, baseline: string): string[] {
  const recoloured = METRICS.find((m) => m.key === 'recoloured')!.stat.success as (r: Row) => boolean;
  const pairs = new Map<string, Map<string, Row>>();
  for (const r of rows) {
    const key = `${r.seed}\u0000${r.prompt}`;
    pairs.set(key, (pairs.get(key) ?? new Map<string, Row>()).set(r.method, r));
  }
  const kinds = new Map<string, Row[][]>();
  for (const pair of pairs.values()) {
    const both = [pair.get(method), pair.get(baseline)];
    if (!both[0] || !both[1]) continue;
    const kind = both[0].kind ?? 'unknown';
    kinds.set(kind, [...(kinds.get(kind) ?? []), both as Row[]]);
  }
  const count = (xs: Row[][], i: number) =>
    `${xs.filter((p) => p[i]!.full_success).length} / ${xs.length} (recoloured ${xs.filter((p) => recoloured(p[i]!)).length})`;
  return [...kinds]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([kind, xs]) => `${kind}: ${method} ${count(xs, 0)}, ${baseline} ${count(xs, 1)}`);
}

/**
 * One paired comparison from a benchmark's results.jsonl, with the benchmark's own statistics (src/bench/stats.ts):
 * the failure ratio with its paired bootstrap interval, exact McNemar p and the sign-flip p by prompt, per suite —
 * for pairs of methods the summary does not set against each other (e.g. S2I against its start choice alone).
 *
 *   npx tsx scripts/compare-methods.ts out/bench-rivals/results.jsonl suppress suppress-select
 */
import { readFileSync } from 'node:fs';
import { compareMethods, type PairRow } from '../src/bench/stats.js';

const [file, method, baseline] = process.argv.slice(2);
if (!file || !method || !baseline) {
  process.stderr.write('usage: compare-methods.ts RESULTS.jsonl METHOD BASELINE\n');
  process.exit(2);
}
const rows = readFileSync(file, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as PairRow & { suite: string });
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
}

/**
 * Where S2I's edit adds to its choice of start, and where it does not (issue 21: "the suppression carries its
 * weight"): S2I (`suppress`) against the choice alone (`suppress-select`) over the same (prompt, seed) pairs of a
 * benchmark's results.jsonl, split by how many starts each ran. A method that kept its first start (starts = 1)
 * accepted it early (layout score ≤ --accept); when both did, both images come from the same initial noise and
 * differ only by the edit, so those pairs measure the edit alone — including whether it erases objects the
 * unedited run drew (counted with their area in the unedited image, to see whether small ones go).
 *
 *   npx tsx scripts/edit-vs-select.ts out/bench-rivals/results.jsonl [METHOD BASELINE]
 */
import { failureKinds } from '../src/bench/metrics.js';
import type { BenchRow } from '../src/bench/row.js';
import { resultRows } from './result-rows.js';

type Row = BenchRow;

const [file, method = 'suppress', baseline = 'suppress-select'] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: edit-vs-select.ts RESULTS.jsonl [METHOD BASELINE]\n');
  process.exit(2);
}
const rows = resultRows(file, 'edit-vs-select');
const pairs = new Map<string, Partial<Record<'a' | 'b', Row>>>();
for (const r of rows) {
  const side = r.method === method ? 'a' : r.method === baseline ? 'b' : null;
  if (!side) continue;
  const key = `${r.suite}\u0000${r.prompt}\u0000${r.seed}`;
  pairs.set(key, { ...pairs.get(key), [side]: r });
}

/** What went wrong in an image: the benchmark's own failure kinds (missing, recoloured, extra), joined. */
const failure = (r: Row) =>
  Object.entries(failureKinds(r))
    .filter(([, failed]) => failed)
    .map(([kind]) => kind)
    .join('+') || 'ok';
const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};
const count = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
const show = (m: Map<string, number>) => [...m].map(([k, v]) => `${k} ${v}`).join(', ');

for (const suite of [...new Set(rows.map((r) => r.suite))]) {
  let n = 0,
    aFirst = 0,
    bFirst = 0;
  const cells = new Map<string, { won: number; lost: number }>();
  const lostBy = new Map<string, number>(),
    wonBy = new Map<string, number>();
  const erased: number[] = [],
    kept: number[] = [];
  for (const [key, { a, b }] of pairs) {
    if (!key.startsWith(`${suite}\u0000`) || !a || !b) continue;
    n++;
    if (a.starts === 1) aFirst++;
    if (b.starts === 1) bFirst++;
    const cell = `${method} ${a.starts === 1 ? 'first start' : 'searched'}, ${baseline} ${b.starts === 1 ? 'first start' : 'searched'}`;
    const c = cells.get(cell) ?? { won: 0, lost: 0 };
    if (a.full_success && !b.full_success) (c.won++, count(wonBy, failure(b)));
    if (b.full_success && !a.full_success) (c.lost++, count(lostBy, failure(a)));
    cells.set(cell, c);
    if (a.starts === 1 && b.starts === 1)
      a.objects.forEach((o, i) => {
        const d = b.objects[i]?.detection;
        if (b.objects[i]?.found && d !== null && d !== undefined) (o.found ? kept : erased).push(b.detections[d]!.area);
      });
  }
  console.log(`\n${suite}: ${n} pairs; first start kept: ${method} ${aFirst}, ${baseline} ${bFirst}`);
  for (const [cell, c] of [...cells].sort()) console.log(`  ${cell}: +${c.won} −${c.lost}`);
  console.log(`  ${method}'s losses fail by: ${show(lostBy)}`);
  console.log(`  ${baseline}'s losses (${method}'s wins) fail by: ${show(wonBy)}`);
  console.log(
    `  same start: of the objects ${baseline} drew, ${method} lost ${erased.length} (median area ${median(erased)} px) and kept ${kept.length} (median ${median(kept)} px)`,
  );
}

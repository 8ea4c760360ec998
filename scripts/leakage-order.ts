/**
 * Which way colours leak, from a benchmark's results.jsonl: for every leaked object (drawn with its shape in another
 * prompted object's colour), whether the colour belongs to an object named earlier or later in the prompt, per suite
 * and method. A causal text encoder lets a noun carry the adjectives before it, never after it, so leakage that
 * comes only through the nouns would be one-sided (docs/method.md, "Why three objects were hard").
 *
 *   npx tsx scripts/leakage-order.ts out/bench-transfer-ldm/results.jsonl
 */
import { resultRows } from './result-rows.js';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: leakage-order.ts RESULTS.jsonl\n');
  process.exit(2);
}
const rows = resultRows(file, 'leakage-order');

const counts = new Map<string, { objects: number; earlier: number; later: number }>();
for (const r of rows) {
  const key = `${r.suite}\t${r.method}`;
  const c = counts.get(key) ?? { objects: 0, earlier: 0, later: 0 };
  counts.set(key, c);
  r.objects.forEach((o, i) => {
    c.objects++;
    if (!o.leaked) return;
    // The first other object with the drawn colour (prompts name each colour once per object).
    const j = r.objects.findIndex((p, k) => k !== i && p.colour === o.detected_colour);
    if (j >= 0) c[j < i ? 'earlier' : 'later']++;
  });
}
console.log('suite\tmethod\tobjects\tleaked, colour of an earlier object\tleaked, colour of a later object');
for (const [key, c] of [...counts].sort(([a], [b]) => a.localeCompare(b)))
  console.log(`${key}\t${c.objects}\t${c.earlier}\t${c.later}`);

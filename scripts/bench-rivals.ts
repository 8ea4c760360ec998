/**
 * The rivals at matched cost (issue 21, item 4), one resumable command (`npm run bench:rivals`): the held-apart
 * two- and three-object suites × seeds 0–3 at 25 steps, guidance 5, on the shapes model.
 *
 *  1. Every method at its authors' defaults (scaled to 25 steps): none, attend-and-excite, astar, initno, syngen,
 *     divide-and-bind, conform, suppress-select (S2I's start choice alone), suppress-v2 (the default until issue 22),
 *     suppress-v3 (the default before its edit was shortened) and suppress.
 *  2. Each rival's cost from those rows: mean guided UNet passes per image, forward + backward (a gradient pass is
 *     counted twice: its forward and its backward). Where it is above S2I's own cost, S2I is run again held to it
 *     (`suppress@<passes>`: as many starts as fit, registry.ts), and the summary compares it with every rival —
 *     the row against the rival whose cost it was given is the matched comparison.
 *
 * Both stages write into one folder; the benchmark skips rows it already has, so an interrupted run goes on where it
 * stopped when run again (the budgets come from stage 1's rows, so they are the same on every rerun). Extra
 * arguments go to both `s2i bench` calls (e.g. `-- --limit 2 --seeds 0` for a smoke run, `--out DIR`).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const RIVALS = ['attend-and-excite', 'astar', 'initno', 'syngen', 'divide-and-bind', 'conform'];
// suppress-select (the start choice alone) is there for the target that the suppression carries its weight;
// suppress-v2 (the default until issue 22) and suppress-v3 (the default until its edit was shortened) to show what
// the current rule changed.
const METHODS = ['none', ...RIVALS, 'suppress-select', 'suppress-v2', 'suppress-v3', 'suppress'];

const extra = process.argv.slice(2).filter((a) => a !== '--');
const outAt = extra.indexOf('--out');
const out = outAt >= 0 ? extra[outAt + 1]! : 'out/bench-rivals';
const common = [
  '--model',
  'models/shapes',
  '--steps',
  '25',
  '--guidance',
  '5',
  '--suite',
  'shapes-2,shapes-3',
  '--split',
  'held-apart',
  '--seeds',
  '0-3',
  ...(outAt >= 0 ? [] : ['--out', out]),
  ...extra,
];

function bench(methods: readonly string[], more: readonly string[] = []): void {
  const args = ['bin/s2i.js', 'bench', ...common, '--methods', methods.join(','), ...more];
  console.log(`\n$ node ${args.join(' ')}`);
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

interface MethodStats {
  n: number;
  passes_per_image?: number | null;
  backward_per_image?: number | null;
  seconds_per_image?: number | null;
}

bench(METHODS);
const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as {
  methods: Record<string, MethodStats>;
};
const cost = (m: string) => {
  const s = summary.methods[m];
  if (!s?.n || s.passes_per_image == null) throw new Error(`bench-rivals: no cost for ${m} in ${out}/summary.json`);
  return s.passes_per_image + (s.backward_per_image ?? 0);
};
const own = cost('suppress');
const matched = RIVALS.filter((m) => cost(m) > own).map((m) => ({ rival: m, passes: Math.floor(cost(m)) }));
console.log('\nCosts (guided UNet passes per image, forward + backward; seconds per image):');
for (const m of METHODS)
  console.log(`  ${m.padEnd(18)} ${cost(m).toFixed(1).padStart(7)}  ${summary.methods[m]!.seconds_per_image ?? '–'} s`);
for (const { rival, passes } of matched) console.log(`  suppress@${passes} is S2I at ${rival}'s cost`);
const atCost = [...new Set(matched.map((x) => `suppress@${x.passes}`))];
bench([...METHODS, ...atCost], ['--report', join(out, 'report.html')]);

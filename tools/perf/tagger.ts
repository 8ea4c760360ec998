/**
 * `npx tsx tools/perf/tagger.ts [--runs N]`: the part-of-speech tagger's load (src/prompt/tagger.ts), compromise's
 * ES modules (what `import 'compromise'` loads) against its CommonJS bundle (what `require('compromise')` loads)
 * and the bundle of its part-of-speech layer alone (`require('compromise/two')`, Node's choice: TAGGER_MODULE), each
 * in fresh processes: wall and CPU time of the load and of the first tagging. Then whether they tag alike: `json()`
 * of every prompt of the built-in suites (all splits), each way, compared whole (less the terms' random ids; the
 * layer's terms also lack the full build's phrase chunks, which the subject finder does not read).
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import esm from 'compromise';
import { BUILTIN_SUITES, builtinSuitePrompts } from '../../src/bench/suites.js';
import type { Tagger } from '../../src/prompt/tagger.js';
import { median } from './profile.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '7' } } });
const runs = Number(values.runs);

/** Wall and CPU time, ms, of the load and of the first tagging (where a lazy part of the load may fall). */
interface Sample {
  loadMs: number;
  loadCpuMs: number;
  firstMs: number;
  firstCpuMs: number;
}

/** One fresh process loading compromise one way. */
type How = 'import' | 'require' | 'require-two';
const LABELS: Record<How, string> = {
  import: 'ES modules (import)',
  require: 'CommonJS bundle (require)',
  'require-two': "CommonJS bundle of the part-of-speech layer (require 'compromise/two')",
};

function measure(how: How): Sample {
  const load =
    how === 'import'
      ? `(await import('compromise')).default`
      : `createRequire(process.cwd() + '/')('${how === 'require' ? 'compromise' : 'compromise/two'}')`;
  const script = `
    import { createRequire } from 'node:module';
    const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    const t0 = performance.now(), c0 = cpu();
    const nlp = ${load};
    const t1 = performance.now(), c1 = cpu();
    nlp('a red circle and a blue square').json();
    console.log(JSON.stringify({ loadMs: t1 - t0, loadCpuMs: c1 - c0, firstMs: performance.now() - t1, firstCpuMs: cpu() - c1 }));`;
  return JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
  ) as Sample;
}

const HOWS: How[] = ['import', 'require', 'require-two'];
const samples: Record<How, Sample[]> = { import: [], require: [], 'require-two': [] };
for (let i = 0; i < runs; i++) for (const how of HOWS) samples[how].push(measure(how));
for (const how of HOWS) {
  const xs = samples[how];
  const m = (k: keyof Sample) => median(xs.map((x) => x[k])).toFixed(0);
  const both = median(xs.map((x) => x.loadCpuMs + x.firstCpuMs)).toFixed(0);
  console.log(
    `${LABELS[how]}: load ${m('loadMs')} ms wall, ${m('loadCpuMs')} ms CPU; ` +
      `first tagging ${m('firstMs')} ms wall, ${m('firstCpuMs')} ms CPU; both ${both} ms CPU (medians of ${runs})`,
  );
}

const cjs = createRequire(import.meta.url)('compromise') as Tagger;
const two = createRequire(import.meta.url)('compromise/two') as Tagger;
const withoutIds = (doc: unknown) =>
  JSON.stringify(doc, (k, v: unknown) => (k === 'id' || k === 'chunk' ? undefined : v));
const prompts = new Set(BUILTIN_SUITES.flatMap((s) => builtinSuitePrompts(s).map((p) => p.prompt)));
for (const [name, other] of [
  ['CommonJS bundle', cjs],
  ['part-of-speech layer', two],
] as const) {
  const differ = [...prompts].filter((p) => withoutIds(esm(p).json()) !== withoutIds(other(p).json()));
  console.log(
    `tags, ES modules against the ${name}: ${prompts.size} prompts, ${differ.length} tagged differently${differ.length ? `: ${differ[0]}` : ''}`,
  );
}

/**
 * Prompts outside the built-in suites (any split), for a check on prompts and seeds the method was never tuned or
 * tested on: 48 two-object and 48 three-object prompts of different coloured shapes, every other one with a prefix
 * of the training captions ("a photo of ..."). Seeded: the same files on every machine.
 *
 *   npx tsx scripts/outside-prompts.ts    # writes out/outside-prompts/outside-{2,3}.jsonl (npm run bench:outside)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { builtinSuitePrompts } from '../src/bench/suites.js';
import { Rng } from '../src/shapes/rng.js';
import { COLOURS, SHAPES } from '../src/shapes/world.js';
import { captionFor, DEFAULT_PREFIXES } from '../src/shapes/generate.js';

const known = new Set([...builtinSuitePrompts('shapes-2'), ...builtinSuitePrompts('shapes-3')].map((p) => p.prompt));
mkdirSync('out/outside-prompts', { recursive: true });
const rng = new Rng(20261129);
for (const n of [2, 3]) {
  const out: string[] = [];
  const seen = new Set<string>();
  while (out.length < 48) {
    const objs = Array.from({ length: n }, () => ({ shape: rng.pick(SHAPES), colour: rng.pick(COLOURS) }));
    if (new Set(objs.map((o) => `${o.shape}${o.colour}`)).size < n) continue; // no identical objects
    const body = captionFor(objs);
    if (known.has(body) || seen.has(body)) continue;
    seen.add(body);
    const prompt = out.length % 2 === 0 ? body : `${DEFAULT_PREFIXES[out.length % 3]} ${body}`;
    out.push(JSON.stringify({ prompt }));
  }
  writeFileSync(`out/outside-prompts/outside-${n}.jsonl`, out.join('\n') + '\n');
}

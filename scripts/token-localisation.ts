/**
 * Which tokens' cross-attention maps point at their own object, on each model (issue 22: why S2I transfers or not).
 * Plain sampling on a suite's prompts × seeds; the image is scored (shapes-world detections with their boxes), and
 * for every prompted object the scorer found, each of its tokens — the adjective, the noun, the token right after
 * the noun (the first carrier: "and", ",", the end token) — gets
 *
 *   share = the token's map mass inside the object's box ÷ its mass inside all found objects' boxes,
 *
 * against chance = the box's cells ÷ all boxes' cells (what a map spread evenly over the objects would give), and
 * peak = whether the map's maximum lies in the object's box. Maps: the conditional pass's cross-attention at the
 * resolution the methods read (mean over those layers and their heads), at a few points of the run.
 *
 *   npx tsx scripts/token-localisation.ts --model models/shapes-ldm --suite shapes-3 --seeds 0-1
 *   npx tsx scripts/token-localisation.ts --model models/shapes-ldm --suite shapes-3 --seeds 0-1 --attn-res 8
 *
 * Prints one table (mean over objects, with a 95% bootstrap interval over prompts for share − chance).
 */
import '../src/node.js';
import { parseArgs } from 'node:util';
import { loadSuite } from '../src/bench/suites.js';
import { readSamplingDefaults } from '../src/io/model-folder.js';
import { boxCells, suiteRuns } from './localisation-common.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { scoreImage } from '../src/shapes/score.js';
import { correlation } from '../src/methods/carriers.js';
import { parseResolution } from '../src/cli/options.js';
import type { Tensor } from '../src/tensor.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/shapes-ldm' },
    suite: { type: 'string', default: 'shapes-3' },
    split: { type: 'string', default: 'tuning' },
    seeds: { type: 'string', default: '0-1' },
    limit: { type: 'string' },
    at: { type: 'string', default: '0.04,0.2,0.5' },
    method: { type: 'string', default: 'none' },
    threads: { type: 'string' },
    'attn-res': { type: 'string' },
  },
});
const attnRes = values['attn-res'] ? parseResolution(values['attn-res'], '--attn-res') : undefined;
const [s0, s1] = values.seeds!.split('-').map(Number) as [number, number?];
const seeds = Array.from({ length: (s1 ?? s0) - s0 + 1 }, (_, i) => s0 + i);
const suite = loadSuite(values.suite!, values.split as 'tuning');
const prompts = suite.prompts.slice(0, values.limit ? Number(values.limit) : undefined);
const model = await StableDiffusion.load(values.model!, values.threads ? { threads: Number(values.threads) } : {});
const defaults = readSamplingDefaults(values.model!);
const steps = defaults.steps ?? 50;
const guidance = defaults.guidance ?? 7.5;
const calls = values.at!.split(',').map((f) => Math.min(steps - 1, Math.round(Number(f) * steps)));

type Role = 'adjective' | 'noun' | 'next';
const ROLES: Role[] = ['adjective', 'noun', 'next'];
/** Per role and call: one entry per found object (with the prompt it came from, for the bootstrap). */
const rows = new Map<string, { prompt: number; share: number; chance: number; peak: number }[]>();
const add = (key: string, v: { prompt: number; share: number; chance: number; peak: number }) =>
  (rows.get(key) ?? rows.set(key, []).get(key)!).push(v);

for await (const { r, p, pi } of suiteRuns(model, prompts, seeds, {
  steps,
  guidanceScale: guidance,
  method: values.method!,
  subjects: 'auto',
  attentionPicture: { steps: calls },
  ...(attnRes ? { attnRes } : {}),
})) {
  const score = scoreImage(r.image, undefined, undefined, p.objects);
  const subjects = r.subjects!.subjects;
  const found = p.objects
    .map((_, i) => score.objects[i]!.detection)
    .map((d, i) => (d === null ? null : { i, bbox: score.detections[d]!.bbox }));
  const present = found.filter((f): f is { i: number; bbox: [number, number, number, number] } => f !== null);
  if (present.length < 2) continue;
  for (const call of calls) {
    const maps: Tensor = r.result.attentionMaps.get(call)!;
    const [h, w, t] = maps.shape as [number, number, number];
    const data = maps.data as Float32Array;
    const boxes = present.map((f) => ({ i: f.i, cells: boxCells(f.bbox, r.image.width, r.image.height, w, h) }));
    const anyBox = new Uint8Array(w * h);
    for (const bx of boxes) bx.cells.forEach((v, q) => (anyBox[q] = anyBox[q]! | v));
    const allCells = anyBox.reduce((a, v) => a + v, 0);
    // Each subject's token maps by role, as unit-mass maps (so roles of different attention mass weigh alike).
    const unit = (tok: number | undefined): Float32Array | null => {
      if (tok === undefined || tok >= t) return null;
      const m = new Float32Array(w * h);
      let sum = 0;
      for (let q = 0; q < w * h; q++) sum += m[q] = data[q * t + tok]!;
      return sum > 0 ? m.map((v) => v / sum) : m;
    };
    const byRole = subjects.map((sub, i) => {
      const noun = sub.tokenIndex;
      const adjective = r.attributes.find((a) => a.subject === i)?.attribute.tokenIndex;
      return { adjective: unit(adjective), noun: unit(noun), next: unit(noun + 1) };
    });
    const combine = (parts: (Float32Array | null)[], weights: number[]) => {
      const m = new Float32Array(w * h);
      parts.forEach((x, k) => x && x.forEach((v, q) => (m[q] = m[q]! + weights[k]! * v)));
      return m;
    };
    // How distinct a role's map is from the other subjects' maps of that role: 1 − their mean correlation.
    const distinct = (i: number, role: Role) => {
      const mine = byRole[i]![role];
      if (!mine) return 0;
      const others = byRole.flatMap((o, j) => (j !== i && o[role] ? [o[role]!] : []));
      if (!others.length) return 1;
      const c = others.reduce((a, o) => a + correlation(mine, o), 0) / others.length;
      return Math.max(0, 1 - c);
    };
    const rules: Record<string, (i: number) => Float32Array> = {
      'rule noun+next': (i) => combine([byRole[i]!.noun, byRole[i]!.next], [1, 1]),
      'rule adjective': (i) => combine([byRole[i]!.adjective], [1]),
      'rule noun+adjective': (i) => combine([byRole[i]!.noun, byRole[i]!.next, byRole[i]!.adjective], [0.5, 0.5, 1]),
      'rule distinct-weighted': (i) =>
        combine(
          [byRole[i]!.noun, byRole[i]!.next, byRole[i]!.adjective],
          [distinct(i, 'noun'), distinct(i, 'next'), distinct(i, 'adjective')].map((d) => d * d),
        ),
    };
    /** One map's share inside the object's box (of its mass inside all boxes), and whether its peak is there. */
    const measure = (key: string, cells: Uint8Array, value: (q: number) => number) => {
      let inside = 0,
        total = 0,
        best = -1,
        at = 0;
      for (let q = 0; q < w * h; q++) {
        const v = value(q);
        if (anyBox[q]) total += v;
        if (cells[q]) inside += v;
        if (v > best) ((best = v), (at = q));
      }
      const chance = cells.reduce((a, v) => a + v, 0) / allCells;
      add(`${key}@${call}`, { prompt: pi, share: total > 0 ? inside / total : 0, chance, peak: cells[at]! });
    };
    for (const bx of boxes) {
      for (const [name, rule] of Object.entries(rules)) {
        const m = rule(bx.i);
        measure(name, bx.cells, (q) => m[q]!);
      }
      // Subjects come in prompt order, one per object; the attribute linked to it is its adjective.
      const noun = subjects[bx.i]!.tokenIndex;
      const adjective = r.attributes.find((a) => a.subject === bx.i)?.attribute.tokenIndex;
      const tokens: Record<Role, number | undefined> = { adjective, noun, next: noun + 1 };
      for (const role of ROLES) {
        const tok = tokens[role];
        if (tok === undefined || tok >= t) continue;
        measure(role, bx.cells, (q) => data[q * t + tok]!);
      }
    }
  }
}
await model.release();

/** 95% interval of the mean of (share − chance) by resampling prompts (their objects and seeds together). */
function interval(list: { prompt: number; share: number; chance: number }[]): [number, number] {
  const byPrompt = new Map<number, number[]>();
  for (const x of list) (byPrompt.get(x.prompt) ?? byPrompt.set(x.prompt, []).get(x.prompt)!).push(x.share - x.chance);
  const groups = [...byPrompt.values()];
  let state = 12345;
  const rand = () => ((state = (state * 1103515245 + 12345) % 2147483648), state / 2147483648);
  const means: number[] = [];
  for (let rep = 0; rep < 2000; rep++) {
    let s = 0,
      n = 0;
    for (let g = 0; g < groups.length; g++)
      for (const v of groups[Math.floor(rand() * groups.length)]!) ((s += v), n++);
    means.push(s / n);
  }
  means.sort((a, b) => a - b);
  return [means[49]!, means[1949]!];
}

const pct = (x: number) => (100 * x).toFixed(1);
console.log(
  `\n${values.model} (${values.method}), ${values.suite} ${values.split}, seeds ${values.seeds}, ${steps} steps: maps${attnRes ? ` at ${attnRes.join('x')}` : ''} at calls ${calls.join(', ')}\n`,
);
console.log('| token | call | objects | share % | chance % | share − chance [95%] | peak in own box % |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const role of [...ROLES, 'rule noun+next', 'rule adjective', 'rule noun+adjective', 'rule distinct-weighted'])
  for (const call of calls) {
    const list = rows.get(`${role}@${call}`) ?? [];
    if (!list.length) continue;
    const mean = (f: (x: (typeof list)[number]) => number) => list.reduce((a, x) => a + f(x), 0) / list.length;
    const [lo, hi] = interval(list);
    console.log(
      `| ${role} | ${call} | ${list.length} | ${pct(mean((x) => x.share))} | ${pct(mean((x) => x.chance))} | ${pct(mean((x) => x.share - x.chance))} [${pct(lo)}, ${pct(hi)}] | ${pct(mean((x) => x.peak))} |`,
    );
  }

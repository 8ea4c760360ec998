/**
 * Which cross-attention layers and heads point each subject's tokens at their own object (issue 22: the layer-mean
 * map of the nouns does not localise on models/shapes-ldm — does any single layer or head?). Plain sampling on a
 * suite's prompts × seeds; at a few calls the conditional pass is rerun on the latents of that call with every
 * cross-attention layer's probabilities as outputs, and for each prompted object the scorer found, each layer's
 * (and head's) map of its noun and its adjective gets
 *
 *   share − chance (as scripts/token-localisation.ts: the map's mass in the object's box of its mass in all found
 *   objects' boxes, against the box's share of those cells) and peak (the map's maximum lies in the object's box),
 *
 * and, without the scorer, distinct = 1 − the mean correlation of the subjects' noun maps (what a method could
 * read on any model to weigh layers).
 *
 *   npx tsx scripts/layer-localisation.ts --model models/shapes-ldm --suite shapes-3 --seeds 0-1
 */
import '../src/node.js';
import { parseArgs } from 'node:util';
import { loadSuite } from '../src/bench/suites.js';
import { readSamplingDefaults } from '../src/io/model-folder.js';
import { boxCells, suiteRuns } from './localisation-common.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { scoreImage } from '../src/shapes/score.js';
import { correlation } from '../src/methods/carriers.js';
import { AttentionStore } from '../src/attention/store.js';
import * as op from '../src/graph/ops.js';
import type { AttentionLayer } from '../src/models/attention.js';
import type { Tensor } from '../src/tensor.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/shapes-ldm' },
    suite: { type: 'string', default: 'shapes-3' },
    split: { type: 'string', default: 'tuning' },
    seeds: { type: 'string', default: '0-1' },
    limit: { type: 'string' },
    at: { type: 'string', default: '0.04,0.2,0.5' },
    heads: { type: 'boolean', default: false },
    threads: { type: 'string' },
  },
});
const [s0, s1] = values.seeds!.split('-').map(Number) as [number, number?];
const seeds = Array.from({ length: (s1 ?? s0) - s0 + 1 }, (_, i) => s0 + i);
const suite = loadSuite(values.suite!, values.split as 'tuning');
const prompts = suite.prompts.slice(0, values.limit ? Number(values.limit) : undefined);
const model = await StableDiffusion.load(values.model!, values.threads ? { threads: Number(values.threads) } : {});
const defaults = readSamplingDefaults(values.model!);
const steps = defaults.steps ?? 50;
const guidance = defaults.guidance ?? 7.5;
const calls = values.at!.split(',').map((f) => Math.min(steps - 1, Math.round(Number(f) * steps)));

type Row = { prompt: number; share: number; chance: number; peak: number };
const rows = new Map<string, Row[]>();
const add = (key: string, v: Row) => (rows.get(key) ?? rows.set(key, []).get(key)!).push(v);
const distinctRows = new Map<string, number[]>();
const addDistinct = (key: string, v: number) => (distinctRows.get(key) ?? distinctRows.set(key, []).get(key)!).push(v);

/** The conditional pass with every cross-attention layer's probabilities [1, heads, q, T] as outputs. */
let layers: AttentionLayer[] = [];
async function layerMaps(latents: Tensor, timestep: number, context: Tensor): Promise<Tensor[]> {
  const [, c, h, w] = latents.shape as [number, number, number, number];
  const [, tokens] = context.shape as [number, number, number];
  const unet = model.unetAccess(h, w, tokens);
  const session = await unet.compile('diag:layers', (g, build) => {
    const sample = g.input('sample', [1, c, h, w]);
    const ts = g.input('timestep', [1]);
    const ctx = g.input('context', [1, tokens, unet.contextShape[1]]);
    const store = new AttentionStore({ kind: 'cross' });
    const { noisePred } = build({ sample, timestep: ts, encoderHiddenStates: ctx }, { attentionHook: store.hook });
    g.output('noise_pred', noisePred);
    layers = store.records.map((r) => r.layer);
    store.records.forEach((r, k) => g.output(`layer_${k}`, op.identity(r.probs)));
  });
  const out = await session.run({
    sample: latents,
    timestep: { data: new Float32Array([timestep]), shape: [1] },
    context,
  });
  return layers.map((_, k) => out[`layer_${k}`]!);
}

for await (const { r, p, pi } of suiteRuns(model, prompts, seeds, {
  steps,
  guidanceScale: guidance,
  method: 'none',
  subjects: 'auto',
  attentionPicture: { steps: [0] },
})) {
  const score = scoreImage(r.image, undefined, undefined, p.objects);
  const subjects = r.subjects!.subjects;
  const present = p.objects.flatMap((_, i) => {
    const d = score.objects[i]!.detection;
    return d === null ? [] : [{ i, bbox: score.detections[d]!.bbox }];
  });
  if (present.length < 2) continue;
  const context = await model.encodePrompt(p.prompt);
  const res = r.result;
  for (const call of calls) {
    const input = call === 0 ? null : res.latentsPerStep[call - 1]!;
    if (!input) continue; // call 0's input is the scaled noise; not measured
    const perLayer = await layerMaps(input, res.timesteps[call]!, context);
    perLayer.forEach((probs, li) => {
      const layer = layers[li]!;
      const [, heads, q, t] = probs.shape as [number, number, number, number];
      const { height: h, width: w } = layer;
      const data = probs.data as Float32Array;
      const boxes = present.map((f) => ({ i: f.i, cells: boxCells(f.bbox, r.image.width, r.image.height, w, h) }));
      const anyBox = new Uint8Array(w * h);
      for (const bx of boxes) bx.cells.forEach((v, qq) => (anyBox[qq] = anyBox[qq]! | v));
      const allCells = anyBox.reduce((a, v) => a + v, 0);
      const views: { name: string; map: (tok: number) => Float32Array }[] = [
        {
          name: `${layer.name.replace('.transformer_blocks.0.attn2', '')} (${h}x${w}) mean`,
          map: (tok) => {
            const m = new Float32Array(q);
            for (let hd = 0; hd < heads; hd++) for (let qq = 0; qq < q; qq++) m[qq]! += data[(hd * q + qq) * t + tok]!;
            return m;
          },
        },
        ...(values.heads
          ? Array.from({ length: heads }, (_, hd) => ({
              name: `${layer.name.replace('.transformer_blocks.0.attn2', '')} (${h}x${w}) head ${hd}`,
              map: (tok: number) => {
                const m = new Float32Array(q);
                for (let qq = 0; qq < q; qq++) m[qq] = data[(hd * q + qq) * t + tok]!;
                return m;
              },
            }))
          : []),
      ];
      for (const view of views) {
        const nounMaps = subjects.map((s) => view.map(s.tokenIndex));
        let cs = 0,
          n = 0;
        for (let i = 0; i < nounMaps.length; i++)
          for (let j = i + 1; j < nounMaps.length; j++) ((cs += correlation(nounMaps[i]!, nounMaps[j]!)), n++);
        addDistinct(`${view.name}@${call}`, n ? 1 - cs / n : 0);
        for (const bx of boxes) {
          const noun = subjects[bx.i]!.tokenIndex;
          const adjective = r.attributes.find((a) => a.subject === bx.i)?.attribute.tokenIndex;
          for (const [role, tok] of [
            ['noun', noun],
            ['adjective', adjective],
          ] as const) {
            if (tok === undefined) continue;
            const m = view.map(tok);
            let inside = 0,
              total = 0,
              best = -1,
              at = 0;
            for (let qq = 0; qq < q; qq++) {
              const v = m[qq]!;
              if (anyBox[qq]) total += v;
              if (bx.cells[qq]) inside += v;
              if (v > best) ((best = v), (at = qq));
            }
            const chance = bx.cells.reduce((a, v) => a + v, 0) / allCells;
            add(`${view.name}|${role}@${call}`, {
              prompt: pi,
              share: total > 0 ? inside / total : 0,
              chance,
              peak: bx.cells[at]!,
            });
          }
        }
      }
    });
  }
}
await model.release();

const pct = (x: number) => (100 * x).toFixed(1);
console.log(
  `\n${values.model}, ${values.suite} ${values.split}, seeds ${values.seeds}, ${steps} steps, plain sampling: calls ${calls.join(', ')}\n`,
);
console.log(
  '| layer | call | distinct (nouns) | noun share − chance | noun peak % | adjective share − chance | adjective peak % |',
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
const names = [...new Set([...distinctRows.keys()].map((k) => k.split('@')[0]!))];
for (const name of names)
  for (const call of calls) {
    const d = distinctRows.get(`${name}@${call}`);
    if (!d) continue;
    const stat = (role: string) => {
      const list = rows.get(`${name}|${role}@${call}`) ?? [];
      const mean = (f: (x: Row) => number) => list.reduce((a, x) => a + f(x), 0) / Math.max(1, list.length);
      return [pct(mean((x) => x.share - x.chance)), pct(mean((x) => x.peak))];
    };
    const [ns, np] = stat('noun');
    const [as, ap] = stat('adjective');
    console.log(
      `| ${name} | ${call} | ${(d.reduce((a, v) => a + v, 0) / d.length).toFixed(3)} | ${ns} | ${np} | ${as} | ${ap} |`,
    );
  }

/**
 * Before/after pictures for the README: from a benchmark's results, the first (prompt, seed) pairs where plain
 * sampling failed with each failure kind (an object missing, recoloured, an extra object) and Suppress-to-Impress
 * succeeded; each pair regenerated with attention recorded and drawn as one row: plain sampling's image and its
 * subjects' token-group maps at a step, then Suppress-to-Impress's image and the maps its guided pass used (after
 * the edit) at the same step.
 *
 *   npx tsx scripts/before-after.ts --results out/bench-shapes/results.jsonl --step 3 --out docs/images/before-after.png
 */
import '../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { BenchRow } from '../src/bench/row.js';
import { failureKinds, FAILURE_KINDS, type FailureKind } from '../src/bench/metrics.js';
import { overlayHeatmap } from '../src/image/colormap.js';
import { floatToRgb8 } from '../src/image/convert.js';
import { composeGrid } from '../src/image/grid.js';
import type { RgbImage } from '../src/image/image.js';
import { writePng } from '../src/image/png.js';
import { resizeImage } from '../src/image/resize.js';
import { findCarriers, groupMaps } from '../src/methods/carriers.js';
import { buildMethod, methodTargets } from '../src/methods/registry.js';
import { generate, type GenerateResult } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { autoSubjects } from '../src/prompt/auto-subjects.js';

const { values } = parseArgs({
  options: {
    results: { type: 'string', default: 'out/bench-shapes/results.jsonl' },
    model: { type: 'string', default: 'models/shapes' },
    step: { type: 'string', default: '3' },
    out: { type: 'string', default: 'docs/images/before-after.png' },
  },
});
const step = Number(values.step);
const rows = readFileSync(values.results!, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as BenchRow);
const byPair = new Map<string, Map<string, BenchRow>>();
for (const r of rows) {
  const key = `${r.seed}\u0000${r.prompt}`;
  byPair.set(key, (byPair.get(key) ?? new Map<string, BenchRow>()).set(r.method, r));
}
const chosen: { kind: FailureKind; plain: BenchRow }[] = [];
for (const kind of FAILURE_KINDS) {
  for (const methods of byPair.values()) {
    const plain = methods.get('none');
    const s2i = methods.get('suppress');
    if (!plain || !s2i || plain.full_success || !s2i.full_success || !failureKinds(plain)[kind]) continue;
    if (chosen.some((c) => c.plain.prompt === plain.prompt)) continue;
    chosen.push({ kind, plain });
    break;
  }
}

const model = await StableDiffusion.load(values.model!);
const tiles: RgbImage[] = [];
const labels: string[] = [];
const SIDE = 96;
for (const { kind, plain } of chosen) {
  const auto = autoSubjects(model.tokenizer, plain.prompt);
  const targets = methodTargets(auto.subjects, auto.attributes);
  const settings = { steps: 25 };
  const shared = { prompt: plain.prompt, seed: plain.noise_seed, steps: 25, guidanceScale: 5 };
  const before = await generate(model, { ...shared, recordAttention: { resolution: [8, 8] } });
  const after = await generate(model, { ...shared, method: buildMethod('suppress', targets, settings) });
  const row = (result: GenerateResult, label: string) => {
    const image = floatToRgb8(result.image);
    const big = resizeImage(image, SIDE, SIDE, 'nearest');
    tiles.push(big);
    labels.push(label);
    const maps = result.attentionMaps.get(step)!;
    const groups = findCarriers(
      result.rawAttentionMaps.get(step) ?? maps,
      targets.subjects,
      targets.attributes.flatMap((a) => a.tokens),
    );
    const [h, w] = maps.shape as [number, number, number];
    groupMaps(maps, groups, false).maps.forEach((m, i) => {
      tiles.push(overlayHeatmap(big, m, w, h, { normalize: 'max', alpha: 0.55 }));
      labels.push(`${auto.subjects[i]!.word}, step ${step}`);
    });
  };
  row(before, `plain: ${kind}`);
  row(after, 'suppress: right');
  process.stdout.write(`${kind}: "${plain.prompt}" seed ${plain.seed} (noise seed ${plain.noise_seed})\n`);
}
const cols = 1 + Math.max(...chosen.map((c) => autoSubjects(model.tokenizer, c.plain.prompt).subjects.length));
// Pad each half-row to the same number of tiles so plain and suppress line up.
const padded: RgbImage[] = [];
const padLabels: string[] = [];
let i = 0;
for (const { plain } of chosen) {
  const n = 1 + autoSubjects(model.tokenizer, plain.prompt).subjects.length;
  for (let half = 0; half < 2; half++) {
    for (let j = 0; j < cols; j++) {
      if (j < n) {
        padded.push(tiles[i]!);
        padLabels.push(labels[i]!);
        i++;
      } else {
        padded.push({ data: new Uint8Array(SIDE * SIDE * 3).fill(255), width: SIDE, height: SIDE });
        padLabels.push('');
      }
    }
  }
}
writePng(values.out!, composeGrid(padded, cols * 2, { pad: 3, labels: padLabels }));
await model.release();
process.stdout.write(`wrote ${values.out}\n`);

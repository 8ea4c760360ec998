/**
 * Pictures for docs/method.md (plain sampling on the shipped model): how Attend-and-Excite's map of a subject, its
 * raw cross-attention column and its token group's map differ at one step.
 *
 *   npx tsx scripts/method-pictures.ts --prompt "a purple square and a yellow triangle" --seed 476855456 \
 *       --step 2 --out docs/images/diagnosis-ae-vs-group.png
 *
 * Row per subject: the predicted image at that step, the subject's raw column, A&E's map (softmax over the text
 * tokens ×100, smoothed), the token group's map (the subject and the later tokens that carry it, summed, smoothed),
 * each max-normalised over the predicted image.
 */
import '../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { parseArgs } from 'node:util';
import { overlayHeatmap } from '../src/image/colormap.js';
import { floatToRgb8 } from '../src/image/convert.js';
import { composeGrid } from '../src/image/grid.js';
import type { RgbImage } from '../src/image/image.js';
import { writePng } from '../src/image/png.js';
import { resizeImage } from '../src/image/resize.js';
import { findCarriers, groupMaps, tokenColumn } from '../src/methods/carriers.js';
import { subjectMapsHost } from '../src/methods/focus.js';
import { generate } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { autoSubjects } from '../src/prompt/auto-subjects.js';
import type { Tensor } from '../src/tensor.js';

const { values } = parseArgs({
  options: {
    prompt: { type: 'string' },
    seed: { type: 'string' },
    step: { type: 'string', default: '2' },
    model: { type: 'string', default: 'models/shapes' },
    out: { type: 'string' },
  },
});
if (!values.prompt || !values.seed || !values.out) throw new Error('--prompt, --seed and --out are required');
const step = Number(values.step);
const model = await StableDiffusion.load(values.model!);
const auto = autoSubjects(model.tokenizer, values.prompt);
const predicted: Tensor[] = [];
const result = await generate(model, {
  prompt: values.prompt,
  seed: Number(values.seed),
  steps: 25,
  guidanceScale: 5,
  recordAttention: { resolution: [8, 8] },
  onStep: (s) => predicted.push(s.predictedOriginal[0]!),
});
const maps = result.attentionMaps.get(step)!;
const [h, w] = maps.shape as [number, number, number];
const subjects = auto.subjects.map((s) => ({ token: s.tokenIndex, tokens: s.tokenIndices }));
const ae = subjectMapsHost(
  maps,
  subjects.map((s) => s.token),
  { kernelSize: 3, sigma: 0.5 },
);
const groups = findCarriers(
  maps,
  subjects,
  auto.attributes.flatMap((a) => a.attribute.tokenIndices),
);
const grouped = groupMaps(maps, groups, true);
const image = floatToRgb8(predicted[step]!);
const big = resizeImage(image, 96, 96, 'nearest');
const over = (map: Float32Array): RgbImage => overlayHeatmap(big, map, w, h, { normalize: 'max', alpha: 0.55 });
const tiles: RgbImage[] = [];
const labels: string[] = [];
const words = model.tokenizer.tokenize(values.prompt).ids.map((id) => model.tokenizer.decode([id]).trim());
auto.subjects.forEach((s, i) => {
  tiles.push(big, over(tokenColumn(maps, s.tokenIndex)), over(ae.maps[i]!), over(grouped.maps[i]!));
  const carried = groups[i]!.carriers.map((k) => words[k] ?? String(k)).join(' ');
  labels.push(
    `step ${step}`,
    `${s.word}: raw`,
    `${s.word}: A&E`,
    `${s.word}${carried ? `+${carried}` : ': group'}`.slice(0, 24),
  );
});
writePng(values.out, composeGrid(tiles, 4, { pad: 2, labels }));
await model.release();
process.stdout.write(`wrote ${values.out}\n`);

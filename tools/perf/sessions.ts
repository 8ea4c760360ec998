/**
 * Where guided sampling's memory goes, session by session: the SD-1.5 UNet (random weights, 512 px) compiled as
 * the pipeline compiles it for plain sampling (one guided graph) and for Suppress-to-Impress's default edit mode
 * (its guided graph recording the 16x16 maps, with and without the edit), RSS after each session's creation and
 * after its first run, and the process's peak. One process per line-up, so peaks are their own.
 *
 *   tsx tools/perf/sessions.ts plain|s2i
 *
 * Measured 2026-12-06 (README, Performance): every session holds its own copy of the UNet's weights (+3.4 GB for
 * the second; the same with ONNX Runtime's session.disable_prepacking), while the recording-and-editing graph
 * itself peaks as the plain one does.
 */
import '../../src/node.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AttentionStore, composeHooks } from '../../src/attention/store.js';
import { multiplicativeEditor } from '../../src/attention/editors.js';
import * as op from '../../src/graph/ops.js';
import { BenchUNet } from './cases.js';
import { defaultBenchCache, ensureRandomUNetFolder, SD15_UNET_CONFIG_JSON } from './weights.js';

const mode = process.argv[2] ?? 'plain';
const dir = ensureRandomUNetFolder(join(defaultBenchCache(), 'sd15-random-unet'), SD15_UNET_CONFIG_JSON, 0, (s) =>
  process.stderr.write(s + '\n'),
);
const status = () => readFileSync('/proc/self/status', 'utf8');
const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status())![1]) / 1024 / 1024;
const line = (what: string) =>
  console.log(
    `${mode.padEnd(6)} ${what.padEnd(44)} RSS ${kb('VmRSS').toFixed(2)} GB, peak ${kb('VmHWM').toFixed(2)} GB`,
  );

const unet = BenchUNet.open(dir, 64);
const [c, h, w] = unet.latentShape;
const [tokens, dim] = unet.contextShape;
const variants =
  mode === 'plain'
    ? [{ rec: false, edit: false }]
    : [
        { rec: true, edit: true },
        { rec: true, edit: false },
      ];
line('weights opened');
for (const v of variants) {
  const key = `guided:b1:rec=${v.rec ? '16x16' : '-'}:edit=${v.edit ? 1 : 0}`;
  const t0 = performance.now();
  const session = await unet.compile(key, (g, build) => {
    const raw = v.rec ? new AttentionStore({ kind: 'cross', resolution: [16, 16] }) : null;
    const editor = v.edit ? multiplicativeEditor(g, 2) : null;
    const { noisePred } = build(
      {
        sample: g.input('sample', [2, c, h, w]),
        timestep: g.input('timestep', [2]),
        encoderHiddenStates: g.input('context', [2, tokens, dim]),
      },
      { attentionHook: composeHooks(raw?.hook, editor?.hook) },
    );
    g.output('noise_pred', noisePred);
    if (raw) g.output('attention_maps_raw', op.identity(raw.aggregate({ resolution: [16, 16], batches: [1, 2] })));
  });
  line(`${key} created (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  const feeds: Record<string, { data: Float32Array; shape: number[] }> = {
    sample: { data: new Float32Array(2 * c * h * w).fill(0.1), shape: [2, c, h, w] },
    timestep: { data: new Float32Array([981, 981]), shape: [2] },
    context: { data: new Float32Array(2 * tokens * dim).fill(0.01), shape: [2, tokens, dim] },
  };
  for (const input of session.graph.inputs)
    if (!(input.name in feeds))
      feeds[input.name] = {
        data: new Float32Array(input.shape.reduce((a, b) => a * b, 1)).fill(1),
        shape: [...input.shape],
      };
  const t1 = performance.now();
  await session.run(feeds);
  line(`${key} run (${((performance.now() - t1) / 1000).toFixed(0)} s)`);
}
await unet.release();

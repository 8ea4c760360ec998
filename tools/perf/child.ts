/**
 * Child-process entry of the speed benchmark: runs one case (see measure.ts) and writes its JSON result to the
 * file named by --result. Started by harness.ts, one process per case and purpose, so peak RSS is the case's own.
 *
 *   child --case tiny-step --purpose time --runs 10 --tiny DIR --sd15 DIR --result FILE [--compile JSON]
 *   child --case batch-ae --purpose batch --runs 2 --model DIR --result FILE
 */
import '../../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { CompileOptions } from '../../src/graph/runtime.js';
import { BATCH_CASES, runBatchCase, type BatchCaseName } from './batch.js';
import { CASES, type CaseName } from './cases.js';
import { runCase } from './measure.js';

const { values } = parseArgs({
  options: {
    case: { type: 'string' },
    purpose: { type: 'string', default: 'time' },
    runs: { type: 'string', default: '3' },
    tiny: { type: 'string', default: '' },
    shapes: { type: 'string', default: '' },
    sd15: { type: 'string', default: '' },
    'sd15-latent': { type: 'string', default: '64' },
    sdxl: { type: 'string', default: '' },
    'sdxl-latent': { type: 'string', default: '128' },
    result: { type: 'string' },
    compile: { type: 'string', default: '{}' },
    model: { type: 'string', default: '' },
  },
});
const name = values.case as CaseName;
if (!CASES.includes(name)) throw new Error(`unknown case '${values.case}' (${CASES.join(', ')})`);
const compile = JSON.parse(values.compile!) as CompileOptions;
let result: unknown;
if (values.purpose === 'batch') {
  if (!(name in BATCH_CASES))
    throw new Error(`--purpose batch needs a batch case (${Object.keys(BATCH_CASES).join(', ')})`);
  result = await runBatchCase(
    name as BatchCaseName,
    { modelDir: values.model!, images: 16, batchSize: 16, runs: Number(values.runs), compile },
    () => loadavg().map((x) => Math.round(x * 100) / 100),
  );
} else {
  if (values.purpose !== 'time' && values.purpose !== 'profile')
    throw new Error(`--purpose must be time, profile or batch`);
  result = await runCase(name, values.purpose, {
    tinyUNetDir: values.tiny!,
    shapesUNetDir: values.shapes!,
    sd15UNetDir: values.sd15!,
    sd15Latent: Number(values['sd15-latent']),
    sdxlUNetDir: values.sdxl!,
    sdxlLatent: Number(values['sdxl-latent']),
    runs: Number(values.runs),
    compile,
  });
}
const text = JSON.stringify(result);
if (values.result) writeFileSync(values.result, text);
else process.stdout.write(text + '\n');

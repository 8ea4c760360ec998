/**
 * Child-process entry of the speed benchmark: runs one case (see measure.ts) and writes its JSON result to the
 * file named by --result. Started by harness.ts, one process per case and purpose, so peak RSS is the case's own.
 *
 *   child --case tiny-step --purpose time --runs 10 --tiny DIR --sd15 DIR --result FILE [--compile JSON]
 */
import '../../node.js'; // Node's file system and onnxruntime-node as the defaults
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CASES, type CaseName } from './cases.js';
import { runCase } from './measure.js';

const { values } = parseArgs({
  options: {
    case: { type: 'string' },
    purpose: { type: 'string', default: 'time' },
    runs: { type: 'string', default: '3' },
    tiny: { type: 'string', default: '' },
    sd15: { type: 'string', default: '' },
    'sd15-latent': { type: 'string', default: '64' },
    result: { type: 'string' },
    compile: { type: 'string', default: '{}' },
  },
});
const name = values.case as CaseName;
if (!CASES.includes(name)) throw new Error(`unknown case '${values.case}' (${CASES.join(', ')})`);
if (values.purpose !== 'time' && values.purpose !== 'profile') throw new Error(`--purpose must be time or profile`);
const result = await runCase(name, values.purpose, {
  tinyUNetDir: values.tiny!,
  sd15UNetDir: values.sd15!,
  sd15Latent: Number(values['sd15-latent']),
  runs: Number(values.runs),
  compile: JSON.parse(values.compile!) as object,
});
const text = JSON.stringify(result);
if (values.result) writeFileSync(values.result, text);
else process.stdout.write(text + '\n');

/**
 * Carries benchmark rows into another folder under new keys, so that `s2i bench` reuses them instead of generating
 * them again:
 *
 * - `--from FP,...`: rows made on the same weights under an older model fingerprint get the folder's current one.
 *   Before `modelFingerprint` skipped Markdown files, editing a model's TRAINING.md gave the same weights a new
 *   fingerprint; so does a new `s2i.json` (the recommended steps and guidance, which every row states as its own). The script cannot tell whether the weights were the same — `--from` is the caller's word that they
 *   were. Check it by deleting a few carried rows from the new folder and letting the bench make them again: the
 *   images must be byte-identical (generation is deterministic on one machine).
 * - `--rename OLD=NEW,...`: rows of a method that was renamed (a preset that became the default) get its new name.
 *   The settings are kept, so the bench reuses a row only where the new name resolves to the same settings.
 *
 *   npx tsx scripts/rekey-rows.ts --model models/shapes-ldm --from a2b26af0bedc5f82 \
 *     --rename suppress=suppress-v2,suppress-v3=suppress --out out/tr13-all out/tr-new-ae/results.jsonl
 *
 * Rows on the current fingerprint are carried too (renamed where asked); rows on any other fingerprint, and rows
 * whose new key the output folder already holds, are left out. Images (and maps pictures) are hard-linked into the
 * output folder under their new names (copied where a link cannot be made); the rows are appended to its
 * results.jsonl.
 */
import '../src/node.js'; // Node's file system as the default
import { copyFileSync, existsSync, linkSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchImagePaths, modelFingerprint, rowKey, settingsHash } from '../src/bench/plan.js';
import { appendRow, readResults, RESULTS_FILE } from '../src/bench/results.js';
import { resultRows } from './result-rows.js';

const { values, positionals } = parseArgs({
  options: { model: { type: 'string' }, from: { type: 'string' }, rename: { type: 'string' }, out: { type: 'string' } },
  allowPositionals: true,
});
if (!values.model || !values.out || positionals.length === 0) {
  process.stderr.write(
    'usage: rekey-rows.ts --model DIR [--from FP,...] [--rename OLD=NEW,...] --out DIR RESULTS.jsonl...\n',
  );
  process.exit(2);
}
const to = modelFingerprint(values.model);
const from = new Set([to, ...(values.from ? values.from.split(',') : [])]);
const rename = new Map<string, string>();
for (const pair of values.rename ? values.rename.split(',') : []) {
  const [old, name, ...rest] = pair.split('=');
  if (!old || !name || rest.length) {
    process.stderr.write(`rekey-rows: --rename takes OLD=NEW pairs, got "${pair}"\n`);
    process.exit(2);
  }
  rename.set(old, name);
}
const out = values.out;
const outResults = join(out, RESULTS_FILE);
const have = new Set(readResults(outResults).rows.map((r) => r.key));

const place = (src: string, dst: string) => {
  mkdirSync(dirname(dst), { recursive: true });
  if (existsSync(dst)) return;
  try {
    linkSync(src, dst);
  } catch {
    try {
      copyFileSync(src, dst);
    } catch (e) {
      // The rows appended so far are whole and their files in place: a rerun goes on after them.
      process.stderr.write(`rekey-rows: ${src}: ${(e as Error).message}\n`);
      process.exit(1);
    }
  }
};

mkdirSync(out, { recursive: true });
const fd = openSync(outResults, 'a');
let carried = 0;
let otherModel = 0;
let present = 0;
try {
  for (const file of positionals) {
    const rows = resultRows(file, 'rekey-rows'); // exits on a file with no rows: what was carried before stays
    const srcDir = dirname(file);
    for (const row of rows) {
      if (!from.has(row.settings.model)) {
        otherModel++;
        continue;
      }
      const method = rename.get(row.method) ?? row.method;
      const settings = { ...row.settings, model: to };
      const hash = settingsHash(settings);
      const key = rowKey(row.prompt, row.seed, method, hash);
      if (have.has(key)) {
        present++;
        continue;
      }
      const paths = benchImagePaths(row.prompt, method, row.seed, hash);
      place(join(srcDir, row.image), join(out, paths.image));
      if (row.maps) place(join(srcDir, row.maps), join(out, paths.maps));
      const maps = row.maps ? paths.maps : null;
      appendRow(fd, { ...row, method, settings, settings_hash: hash, key, image: paths.image, maps }, outResults);
      have.add(key);
      carried++;
    }
  }
} finally {
  closeSync(fd);
}
console.log(
  `rekey-rows: ${carried} rows carried to fingerprint ${to} in ${out}${rename.size ? ' (methods renamed as asked)' : ''}; ${present} already there, ${otherModel} from other fingerprints left out`,
);

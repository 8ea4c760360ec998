/**
 * The rows of a benchmark's results.jsonl for the scripts, through the bench's own reader (typed rows, a partial last
 * line dropped): a file with no rows — missing, empty or not a results file — ends the script with a one-line error.
 */
import '../src/node.js'; // Node's file system as the default
import { readResults } from '../src/bench/results.js';
import type { BenchRow } from '../src/bench/row.js';

export function resultRows(file: string, script: string): BenchRow[] {
  let rows: BenchRow[];
  try {
    rows = readResults(file).rows;
  } catch (e) {
    process.stderr.write(`${script}: ${file}: ${(e as Error).message}\n`);
    process.exit(1);
  }
  if (rows.length === 0) {
    process.stderr.write(`${script}: ${file}: no benchmark rows\n`);
    process.exit(1);
  }
  return rows;
}

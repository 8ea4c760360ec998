/**
 * What the `s2i` binary does before the rest of the CLI loads (bin/s2i.js imports this module first and calls
 * `early`; it imports nothing of ours but the tagger thread): for `s2i generate`, start the part-of-speech tagger on
 * its own thread (tagger-thread.ts), as the ~0.25 s of loading the CLI, the engine and the model is time the other
 * core can spend unpacking the tagger's lexicon. The command line is read crudely here — commander parses it properly
 * later — so a wrong guess costs only that: a tagger thread a run did not need (it exits with the process), or one
 * started late.
 */
import { startTaggerThread } from '../tagger-thread.js';

/** Whether `argv` (after `node s2i`) looks like a `generate` that finds subjects: not `--method none`. */
export function generateFindsSubjects(argv: readonly string[]): boolean {
  let i = 0;
  // The one global option that takes a value, before the command.
  while (argv[i]?.startsWith('-')) i += argv[i] === '--max-memory' ? 2 : 1;
  if (argv[i] !== 'generate') return false;
  for (let k = i + 1; k < argv.length; k++) {
    if (argv[k] === '--') break;
    if (argv[k] === '--method=none' || (argv[k] === '--method' && argv[k + 1] === 'none')) return false;
  }
  return true;
}

/** Run by bin/s2i.js before it loads the CLI. */
export function early(argv: readonly string[]): void {
  if (generateFindsSubjects(argv)) startTaggerThread();
}

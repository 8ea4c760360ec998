/**
 * A benchmark folder's results file and its lock. `results.jsonl` holds one row per line, each appended with a
 * single write once the image's files are on disk: an interrupted run loses nothing already written, and a partial
 * last line (a crash mid-write) is dropped on resume. A lock (`.bench.lock`, proper-lockfile) keeps two runs from
 * writing to one folder.
 */
import * as fs from 'node:fs';
import { existsSync, fstatSync, ftruncateSync, writeSync } from 'node:fs';
import { makeFolders, syncFile } from '../io/durable.js';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { FieldError, UserError } from '../errors.js';
import { readInputFile } from '../io/regular-file.js';
import { onCleanup, pidAlive } from '../util/cleanup.js';
import { checkBenchOptions, type BenchOptions } from './plan.js';
import { isBenchRow, type BenchRow } from './row.js';

export const RESULTS_FILE = 'results.jsonl';

const LOCK_FILE = '.bench.lock';

/**
 * Checks the plan's options, runs `preflight` (checks that need the model: they fail before anything is written),
 * creates the output folder and holds its lock (`.bench.lock`) while `body` runs.
 */
export async function withBenchFolder<T>(
  options: BenchOptions,
  body: () => Promise<T>,
  preflight: () => void = () => {},
): Promise<T> {
  checkBenchOptions(options);
  preflight();
  const out = options.out;
  try {
    makeFolders(join(out, 'images'));
  } catch (e) {
    throw new FieldError('out', `${out}: cannot create the folder: ${(e as Error).message}`, { cause: e });
  }
  const release = acquireLock(out);
  try {
    return await body();
  } finally {
    release();
  }
}

export interface ReadResults {
  rows: BenchRow[];
  /** Lines that were not valid rows. */
  ignored: number;
  /** Byte length of the file up to and including its last newline (a partial tail lies beyond it). */
  completeBytes: number;
  bytes: number;
}

/** Rows of a results.jsonl; invalid lines (and a partial last line) are counted and skipped. */
export function readResults(path: string): ReadResults {
  if (!existsSync(path)) return { rows: [], ignored: 0, completeBytes: 0, bytes: 0 };
  const bytes = readInputFile(path, 'results file', Number.MAX_SAFE_INTEGER);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lastNl = buf.lastIndexOf(0x0a);
  const completeBytes = lastNl + 1;
  const rows: BenchRow[] = [];
  let ignored = completeBytes < buf.length ? 1 : 0;
  for (const line of buf.subarray(0, completeBytes).toString('utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (isBenchRow(v)) rows.push(v);
      else ignored++;
    } catch {
      ignored++;
    }
  }
  return { rows, ignored, completeBytes, bytes: buf.length };
}

/** Appends one row to results.jsonl (`path` names it in errors); see `appendLine`. */
export function appendRow(fd: number, row: BenchRow, path = RESULTS_FILE): void {
  appendLine(fd, path, Buffer.from(`${JSON.stringify(row)}\n`, 'utf8'));
}

/**
 * Appends one row with a single write. When the write fails (a full disk, a file-size limit, an I/O error), the
 * file is cut back to what it held before, so no partial line is left, and the error is one line naming the file:
 * the rows already there are kept and a rerun resumes after them.
 */
export function appendLine(fd: number, path: string, line: Uint8Array): void {
  let start: number | null = null;
  try {
    start = fstatSync(fd).size;
  } catch {
    // not a file we can measure: nothing to cut back
  }
  let off = 0;
  try {
    while (off < line.length) off += writeSync(fd, line, off, line.length - off);
    syncFile(fd); // on the disk before the next image starts: a crash loses no row the run counted
  } catch (e) {
    if (start !== null && off > 0) {
      try {
        ftruncateSync(fd, start);
      } catch {
        // the partial line is dropped on resume anyway
      }
    }
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'ENOSPC' ? 'no space left on the device' : code === 'EFBIG' ? 'the file is too large' : code;
    throw new UserError(
      `cannot append to ${path}: ${why} (${code}); the rows before it are kept, and a rerun resumes after them`,
      { cause: e },
    );
  }
}

/**
 * proper-lockfile removes its lock directory with rmdir (on release, and on exit and signals); ours also holds the
 * owner's pid, so removal is recursive.
 */
const lockFs = {
  ...fs,
  rmdir: (path: string, callback: (err: NodeJS.ErrnoException | null) => void) =>
    fs.rm(path, { recursive: true, force: true }, callback),
  rmdirSync: (path: string) => fs.rmSync(path, { recursive: true, force: true }),
};

/** The pid recorded in a lock (a directory holding `pid`; older runs wrote a file holding it), or null. */
function lockOwner(path: string): number | null {
  for (const file of [join(path, 'pid'), path]) {
    try {
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
    } catch {
      // not this layout
    }
  }
  return null;
}

/**
 * A lock is taken over by age only after a day: ONNX Runtime runs synchronously and blocks the refresh timer
 * (creating an SD-1.5 gradient session takes minutes), so age says little about whether the owner lives; the
 * recorded pid does.
 */
const LOCK_STALE_MS = 24 * 3600 * 1000;

/**
 * Takes the folder's lock with proper-lockfile (`.bench.lock`, a directory made atomically and kept fresh while
 * the run lasts, removed on exit and on signals). It records our pid, so the lock of a process that no longer runs
 * is taken over at once.
 */
function acquireLock(out: string): () => void {
  const path = join(out, LOCK_FILE);
  const busy = (pid: number | null) =>
    new FieldError(
      'out',
      (name) =>
        `${name} ${out}: another benchmark${pid ? ` (pid ${pid})` : ''} is writing to this folder; wait for it or use another ${name}`,
    );
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const release = lockfile.lockSync(out, {
        lockfilePath: path,
        realpath: false,
        stale: LOCK_STALE_MS,
        update: 60_000,
        // A late refresh (the event loop blocked by a long synchronous ONNX Runtime call) must not end the run:
        // ownership rests on the recorded pid, not on the lock's age.
        onCompromised: () => {},
        fs: lockFs,
      });
      // proper-lockfile removes the lock when the process exits; the cleanup handler releases it as well, so an
      // interrupted run (Ctrl-C, kill) gives it up before the process ends, whoever handles the signal.
      let released = false;
      const releaseOnce = () => {
        if (released) return;
        released = true;
        unregister();
        release();
      };
      const unregister = onCleanup(releaseOnce);
      try {
        // Writing the pid into the lock directory changes its mtime, which proper-lockfile would take for another
        // process touching its lock: put the mtime back.
        const made = fs.statSync(path);
        fs.writeFileSync(join(path, 'pid'), `${process.pid}\n`);
        fs.utimesSync(path, made.atime, made.mtime);
      } catch (e) {
        releaseOnce();
        throw e;
      }
      return releaseOnce;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED')
        throw new FieldError('out', (name) => `${name} ${out}: cannot take the lock ${path}: ${(e as Error).message}`, {
          cause: e,
        });
      const pid = lockOwner(path);
      if (pid === null || pid === process.pid || pidAlive(pid)) throw busy(pid);
      lockFs.rmdirSync(path); // its owner is gone
    }
  }
  throw busy(lockOwner(path));
}

/**
 * Writing that survives a crash of the machine, not only of the process, and folders made so that a failure names
 * its real cause. A file is written to a temporary name, fsynced, renamed into place, and then its folder is
 * fsynced, because the rename itself is only durable once the folder's entry is on disk: without both, a power loss
 * right after the summary said "wrote x.png" can leave no file, or an empty one. An appended row (results.jsonl)
 * is fsynced before the next image starts.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Flushes an open file's data and size to the disk (errors, such as EIO, are thrown). */
export function syncFile(fd: number): void {
  fsyncSync(fd);
}

/** Flushes the file at `path` to the disk (a file written by someone else, e.g. a library, before it is renamed). */
export function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Flushes a folder's entries (the renames and new files in it) to the disk. File systems that cannot fsync a
 * folder (EINVAL, ENOTSUP, EISDIR on some network and FUSE mounts) give no stronger guarantee; that is not an error.
 */
export function syncFolder(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR' && code !== 'EBADF') throw e;
  } finally {
    closeSync(fd);
  }
}

/**
 * Creates `dir` and its missing parents one level at a time, outermost first, and returns the folders it created.
 * Node's recursive mkdir reports the innermost path's ENOENT when a parent cannot be made (a read-only mount says
 * "ENOENT ... mkdir 'out/images'"); here the error is the one of the folder that failed, with its cause (EROFS,
 * EACCES, ENOSPC, ...).
 */
export function makeFolders(dir: string): string[] {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  const created: string[] = [];
  for (const d of missing) {
    try {
      mkdirSync(d);
      created.push(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(d).isDirectory()) continue; // made meanwhile
      throw e;
    }
  }
  return created;
}

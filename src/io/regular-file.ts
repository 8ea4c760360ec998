/**
 * The check before opening any input file: it must exist and be a regular file (after following symbolic links,
 * as the Hugging Face cache's snapshots/ layout needs). A FIFO would block the read forever, a device or a
 * folder would give a confusing error later, and an input far larger than its kind can be is refused before it
 * is read into memory.
 */
import { UserError } from '../errors.js';
import { errorCode, files, type FileStat } from './files.js';
import { oneLine } from './messages.js';

function kind(st: FileStat): string {
  if (st.kind === 'directory') return 'a folder';
  if (st.kind === 'fifo') return 'a FIFO (named pipe)';
  if (st.kind === 'socket') return 'a socket';
  if (st.kind === 'device') return 'a device';
  return 'a special file';
}

/** Stat `path` (following links); a UserError unless it is a regular file of at most `maxBytes`. */
export function checkRegularFile(path: string, maxBytes = Number.POSITIVE_INFINITY): FileStat {
  let st: FileStat;
  try {
    st = files().stat(path);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ENOENT') throw new UserError(`${path}: no such file`);
    if (code === 'ELOOP') throw new UserError(`${path}: symbolic links loop`);
    throw new UserError(`${path}: cannot read (${oneLine((e as Error).message)})`);
  }
  if (st.kind !== 'file') throw new UserError(`${path}: is ${kind(st)}, expected a regular file`);
  if (st.size > maxBytes) {
    throw new UserError(`${path}: is ${st.size} bytes, more than a file of this kind can be (limit ${maxBytes})`);
  }
  return st;
}

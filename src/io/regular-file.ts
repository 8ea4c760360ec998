/**
 * The check before opening any input file: it must exist and be a regular file (after following symbolic links,
 * as the Hugging Face cache's snapshots/ layout needs). A FIFO would block the read forever, a device or a
 * folder would give a confusing error later, and an input far larger than its kind can be is refused before it
 * is read into memory.
 *
 * The `*InputFile` functions are the same check for files named on the command line, with the option in their
 * messages ("--latents x is a FIFO (named pipe), not a regular file"); they open without blocking and check the
 * open file again, so a path swapped for a FIFO between the check and the open cannot block either.
 *
 * Files are reached through the installed FileSystem (io/files.ts), so the model loader that uses these checks
 * runs in a browser page too.
 */
import { UserError } from '../errors.js';
import { errorCode, files, type FileKind, type FileStat, type RandomAccessFile } from './files.js';
import { oneLine } from './messages.js';

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
  if (st.kind !== 'file') throw new UserError(`${path}: is ${describeFileType(st.kind)}, expected a regular file`);
  if (st.size > maxBytes) {
    throw new UserError(`${path}: is ${st.size} bytes, more than a file of this kind can be (limit ${maxBytes})`);
  }
  return st;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** "a directory", "a FIFO (named pipe)", ... for a file that is not a regular one. */
export function describeFileType(kind: FileKind): string {
  switch (kind) {
    case 'file':
      return 'a regular file';
    case 'directory':
      return 'a directory';
    case 'fifo':
      return 'a FIFO (named pipe)';
    case 'character-device':
      return 'a character device';
    case 'block-device':
      return 'a block device';
    case 'socket':
      return 'a socket';
    default:
      return 'a special file';
  }
}

/**
 * Checks that `path` exists and is a regular file (symbolic links followed); `what` names it in messages, e.g.
 * "--latents" or "image". Returns its stats.
 */
export function checkInputFile(path: string, what: string): FileStat {
  let st: FileStat;
  try {
    st = files().stat(path);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`${what} ${path} does not exist`);
    throw new UserError(`${what} ${path}: cannot read it (${oneLine(errorText(e))})`, { cause: e });
  }
  if (st.kind !== 'file') throw new UserError(`${what} ${path} is ${describeFileType(st.kind)}, not a regular file`);
  return st;
}

/** Opens a regular file for reading without ever blocking (see the module comment); the caller closes it. */
export function openInputFile(path: string, what: string): RandomAccessFile {
  checkInputFile(path, what);
  let file: RandomAccessFile;
  try {
    file = files().open(path);
  } catch (e) {
    throw new UserError(`${what} ${path}: cannot open it (${oneLine(errorText(e))})`, { cause: e });
  }
  if (file.kind !== 'file') {
    file.close();
    throw new UserError(`${what} ${path} is ${describeFileType(file.kind)}, not a regular file`);
  }
  return file;
}

/**
 * The whole of a regular file. `maxBytes` bounds what is read (a larger file is refused with its size), so a
 * multi-gigabyte file given where a small one belongs is not read into memory.
 */
export function readInputFile(path: string, what: string, maxBytes = 1024 ** 3): Uint8Array {
  const file = openInputFile(path, what);
  try {
    const size = file.size;
    if (size > maxBytes)
      throw new UserError(
        `${what} ${path} is ${size} bytes, more than the ${maxBytes} bytes a file of this kind may have`,
      );
    const buf = new Uint8Array(size);
    let off = 0;
    while (off < size) {
      const n = file.read(buf.subarray(off), off);
      if (n === 0) break; // shrank while reading
      off += n;
    }
    return off === size ? buf : buf.subarray(0, off);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${what} ${path}: cannot read it (${oneLine(errorText(e))})`, { cause: e });
  } finally {
    file.close();
  }
}

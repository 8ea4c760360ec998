/**
 * The check before opening any input file: it must exist and be a regular file (after following symbolic links,
 * as the Hugging Face cache's snapshots/ layout needs). A FIFO would block the read forever, a device or a
 * folder would give a confusing error later, and an input far larger than its kind can be is refused before it
 * is read into memory.
 *
 * The `*InputFile` functions are the same check for files named on the command line, with the option in their
 * messages ("--latents x is a FIFO (named pipe), not a regular file"); they open with O_NONBLOCK and check the
 * open descriptor again, so a path swapped for a FIFO between the check and the open cannot block either.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { UserError } from '../errors.js';
import { oneLine } from './messages.js';

/** Stat `path` (following links); a UserError unless it is a regular file of at most `maxBytes`. */
export function checkRegularFile(path: string, maxBytes = Number.POSITIVE_INFINITY): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${path}: no such file`);
    if (code === 'ELOOP') throw new UserError(`${path}: symbolic links loop`);
    throw new UserError(`${path}: cannot read (${oneLine((e as Error).message)})`);
  }
  if (!st.isFile()) throw new UserError(`${path}: is ${describeFileType(st)}, expected a regular file`);
  if (st.size > maxBytes) {
    throw new UserError(`${path}: is ${st.size} bytes, more than a file of this kind can be (limit ${maxBytes})`);
  }
  return st;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** "a directory", "a FIFO (named pipe)", ... for a file that is not a regular one. */
export function describeFileType(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}

/**
 * Checks that `path` exists and is a regular file (symbolic links followed); `what` names it in messages, e.g.
 * "--latents" or "image". Returns its stats.
 */
export function checkInputFile(path: string, what: string): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`${what} ${path} does not exist`);
    throw new UserError(`${what} ${path}: cannot read it (${oneLine(errorText(e))})`, { cause: e });
  }
  if (!st.isFile()) throw new UserError(`${what} ${path} is ${describeFileType(st)}, not a regular file`);
  return st;
}

/** Opens a regular file for reading without ever blocking (see the module comment); returns the descriptor. */
export function openInputFile(path: string, what: string): number {
  checkInputFile(path, what);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new UserError(`${what} ${path}: cannot open it (${oneLine(errorText(e))})`, { cause: e });
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new UserError(`${what} ${path} is ${describeFileType(st)}, not a regular file`);
  }
  return fd;
}

/**
 * The whole of a regular file. `maxBytes` bounds what is read (a larger file is refused with its size), so a
 * multi-gigabyte file given where a small one belongs is not read into memory.
 */
export function readInputFile(path: string, what: string, maxBytes = 1024 ** 3): Buffer {
  const fd = openInputFile(path, what);
  try {
    const size = fstatSync(fd).size;
    if (size > maxBytes)
      throw new UserError(
        `${what} ${path} is ${size} bytes, more than the ${maxBytes} bytes a file of this kind may have`,
      );
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) break; // shrank while reading
      off += n;
    }
    return off === size ? buf : buf.subarray(0, off);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${what} ${path}: cannot read it (${oneLine(errorText(e))})`, { cause: e });
  } finally {
    closeSync(fd);
  }
}

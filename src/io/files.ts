/**
 * Input files are regular files. Opening a FIFO for reading blocks until some other process writes to it, and a
 * device can be endless, so every input is checked before it is opened and again on the open descriptor: the
 * open uses O_NONBLOCK, so a path swapped for a FIFO between the check and the open cannot block either.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { UserError } from '../errors.js';

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

const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

/**
 * Checks that `path` exists and is a regular file (symbolic links followed); `what` names it in messages, e.g.
 * "--latents" or "image". Returns its stats.
 */
export function checkRegularFile(path: string, what: string): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`${what} ${path} does not exist`);
    throw new UserError(`${what} ${path}: cannot read it (${oneLine(e)})`, { cause: e });
  }
  if (!st.isFile()) throw new UserError(`${what} ${path} is ${describeFileType(st)}, not a regular file`);
  return st;
}

/** Opens a regular file for reading without ever blocking (see the module comment); returns the descriptor. */
export function openRegularFile(path: string, what: string): number {
  checkRegularFile(path, what);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new UserError(`${what} ${path}: cannot open it (${oneLine(e)})`, { cause: e });
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
export function readRegularFile(path: string, what: string, maxBytes = 1024 ** 3): Buffer {
  const fd = openRegularFile(path, what);
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
    throw new UserError(`${what} ${path}: cannot read it (${oneLine(e)})`, { cause: e });
  } finally {
    closeSync(fd);
  }
}

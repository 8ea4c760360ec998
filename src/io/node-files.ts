/** Node's file system behind the readers' `FileSystem` interface (io/files.ts). */
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { syncFolder } from './durable.js';
import type { FileKind, FileSystem, RandomAccessFile } from './files.js';

/** What a Node `Stats` describes, in the FileSystem's words. */
export function fileKind(st: Stats): FileKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  return 'other';
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function writeAll(fd: number, bytes: Uint8Array): void {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(CHUNK, bytes.length - done));
  }
}

export const nodeFileSystem: FileSystem = {
  path,

  stat(p) {
    const st = statSync(p);
    return { kind: fileKind(st), size: st.size };
  },

  realpath: (p) => realpathSync(p),

  linkTarget(p) {
    try {
      return readlinkSync(p);
    } catch {
      return null; // not a link, or nothing there
    }
  },

  listFiles(dir) {
    try {
      return readdirSync(dir, { withFileTypes: true })
        .filter((e) => {
          if (e.isFile()) return true;
          if (!e.isSymbolicLink()) return false;
          try {
            return statSync(path.join(dir, e.name)).isFile();
          } catch {
            return false; // a dangling link
          }
        })
        .map((e) => e.name)
        .sort();
    } catch {
      return [];
    }
  },

  readFile(p) {
    return readFileSync(p);
  },

  open(p): RandomAccessFile {
    // O_NONBLOCK: should the file have been swapped for a FIFO since it was checked, the open still returns.
    const fd = openSync(p, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      const st = fstatSync(fd);
      return {
        size: st.size,
        kind: fileKind(st),
        read: (target, position) => readSync(fd, target, 0, target.length, position),
        close: () => closeSync(fd),
      };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  },

  writeFileAtomic(target, chunks) {
    const temp = path.join(
      path.dirname(target),
      `.${path.basename(target)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`,
    );
    let fd: number;
    try {
      fd = openSync(temp, 'wx');
    } catch (e) {
      throw new UserError(`${target}: cannot write (${oneLine(String((e as Error).message))})`);
    }
    let ok = false;
    try {
      for (const c of chunks) writeAll(fd, c);
      fsyncSync(fd);
      ok = true;
    } catch (e) {
      throw new UserError(`${target}: write failed (${oneLine(String((e as Error).message))})`, { cause: e });
    } finally {
      closeSync(fd);
      if (!ok) {
        try {
          unlinkSync(temp);
        } catch {
          // already gone
        }
      }
    }
    try {
      renameSync(temp, target);
    } catch (e) {
      try {
        unlinkSync(temp);
      } catch {
        // already gone
      }
      throw new UserError(
        `${target}: cannot move the written file into place (${oneLine(String((e as Error).message))})`,
      );
    }
    syncFolder(path.dirname(target)); // the rename on the disk too
  },
};

/**
 * A command's output files, all or nothing. Every output is planned (and checked) before any work starts: a new
 * path in an existing folder, or an existing regular file, which is replaced — never a directory, a device node,
 * a FIFO or a socket. Each is then written to a temporary file beside it, and `commit` renames them all into place
 * once the whole command has succeeded. On an error (`abort`), or when the process is interrupted or exits first,
 * every temporary file is removed, and so are the outputs a failed commit had already put in place and the folders
 * the plan created: a failed command leaves nothing behind.
 *
 * Renames within one folder are atomic, so a reader never sees a half-written file; each file is fsynced before its
 * rename and each folder after the renames (io/durable.ts), so what the command reports as written survives a
 * crash of the machine too. A folder that cannot be made is named with its cause (a read-only mount: EROFS).
 */
import {
  closeSync,
  existsSync,
  lstatSync,
  openSync,
  realpathSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { onCleanup } from '../util/cleanup.js';
import { makeFolders, syncFile, syncFolder, syncPath } from './durable.js';
import { fileKind } from './node-files.js';
import { describeFileType } from './regular-file.js';

interface Planned {
  flag: string;
  /** Where the file goes (symbolic links to regular files resolved: the link stays, its target is replaced). */
  target: string;
  temp: string | null;
}

let counter = 0;

const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

function statOrNull(path: string, follow: boolean): Stats | null {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch {
    return null;
  }
}

export class OutputFiles {
  private readonly files = new Map<string, Planned>();
  private readonly folders: { flag: string; path: string }[] = [];
  /** Folders this plan created, deepest last (removed on abort when empty). */
  private readonly created: string[] = [];
  private committed: string[] = [];
  private readonly unregister: () => void;
  private done = false;

  constructor() {
    this.unregister = onCleanup(() => this.abort());
  }

  /**
   * Plans the output file `path` (given as `flag`, e.g. "--out"); returns its absolute path. Its folder must exist,
   * or lie inside a folder planned with `folder`.
   */
  file(path: string, flag: string): string {
    const abs = resolve(path);
    let target = abs;
    const link = statOrNull(abs, false);
    if (link) {
      const st = statOrNull(abs, true);
      if (!st) throw new UserError(`${flag} ${path} is a symbolic link to a missing file`);
      if (!st.isFile())
        throw new UserError(
          `${flag} ${path} is ${describeFileType(fileKind(st))}; an output must be a regular file or a new path`,
        );
      if (link.isSymbolicLink()) target = realpathSync(abs);
    } else {
      const dir = dirname(abs);
      const inPlanned = this.folders.some((f) => dir === f.path || dir.startsWith(f.path + '/'));
      const st = statOrNull(dir, true);
      if (!inPlanned && !st) throw new UserError(`${flag} ${path}: directory ${dir} does not exist`);
      if (st && !st.isDirectory()) throw new UserError(`${flag} ${path}: ${dir} is not a directory`);
    }
    const same = this.files.get(target);
    if (same) throw new UserError(`${same.flag} and ${flag} name the same file ${abs}`);
    this.files.set(target, { flag, target, temp: null });
    return target;
  }

  /** Plans an output folder: an existing directory or a new path (created when first written to). */
  folder(path: string, flag: string): string {
    const abs = resolve(path);
    const st = statOrNull(abs, true);
    if (st && !st.isDirectory()) throw new UserError(`${flag} ${path} exists and is not a directory`);
    if (!st && statOrNull(abs, false)) throw new UserError(`${flag} ${path} is a symbolic link to a missing folder`);
    this.folders.push({ flag, path: abs });
    return abs;
  }

  private planned(target: string): Planned {
    const p = this.files.get(resolve(target));
    if (!p) throw new Error(`OutputFiles: ${target} was not planned`);
    if (this.done) throw new Error(`OutputFiles: already committed or aborted`);
    return p;
  }

  private ensureFolder(dir: string, flag: string): void {
    if (existsSync(dir)) return;
    try {
      this.created.push(...makeFolders(dir));
    } catch (e) {
      throw new UserError(`${flag}: cannot create the folder ${dir} (${oneLine(e)})`, { cause: e });
    }
  }

  /** A fresh temporary path beside `target` (short, so a long file name still leaves room for it). */
  private tempFor(p: Planned): string {
    this.ensureFolder(dirname(p.target), p.flag);
    p.temp = join(dirname(p.target), `.s2i-${process.pid}-${++counter}-${basename(p.target).slice(0, 32)}.tmp`);
    return p.temp;
  }

  /** Writes the bytes of the planned file `target` (to its temporary file, until `commit`). */
  write(target: string, bytes: Uint8Array | string): void {
    const p = this.planned(target);
    this.removeTemp(p);
    const temp = this.tempFor(p);
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    let fd: number | undefined;
    try {
      fd = openSync(temp, 'wx');
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      syncFile(fd);
    } catch (e) {
      throw new UserError(`${p.flag} ${p.target}: cannot write it (${oneLine(e)})`, { cause: e });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /** Lets `writer` make the planned file itself, at the temporary path it is given. */
  writeWith(target: string, writer: (tempPath: string) => void): void {
    const p = this.planned(target);
    this.removeTemp(p);
    const temp = this.tempFor(p);
    try {
      writer(temp);
      if (existsSync(temp)) syncPath(temp);
    } catch (e) {
      if (e instanceof UserError) {
        const why = e.message.split(temp).join(p.target);
        const own = `${p.target}: `;
        throw new UserError(`${p.flag} ${p.target}: ${why.startsWith(own) ? why.slice(own.length) : why}`, {
          cause: e,
        });
      }
      throw new UserError(`${p.flag} ${p.target}: cannot write it (${oneLine(e)})`, { cause: e });
    }
    if (!existsSync(temp)) throw new Error(`OutputFiles: the writer of ${p.target} wrote nothing`);
  }

  /** Puts every written file in place. Planned files never written are skipped. */
  commit(): void {
    for (const p of this.files.values()) {
      if (!p.temp) continue;
      try {
        renameSync(p.temp, p.target);
      } catch (e) {
        const why = `${p.flag} ${p.target}: cannot put it in place (${oneLine(e)})`;
        this.abort();
        throw new UserError(why, { cause: e });
      }
      p.temp = null;
      this.committed.push(p.target);
    }
    // The renames, and the folders this plan created, on the disk.
    for (const dir of new Set([...this.committed.map((t) => dirname(t)), ...this.created.map((d) => dirname(d))])) {
      try {
        syncFolder(dir);
      } catch (e) {
        throw new UserError(`cannot flush ${dir} to the disk (${oneLine(e)})`, { cause: e });
      }
    }
    this.done = true;
    this.unregister();
  }

  private removeTemp(p: Planned): void {
    if (!p.temp) return;
    try {
      unlinkSync(p.temp);
    } catch {
      // already gone
    }
    p.temp = null;
  }

  /** Removes everything this plan wrote (idempotent). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.unregister();
    for (const p of this.files.values()) this.removeTemp(p);
    for (const path of this.committed) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
    this.committed = [];
    for (const dir of [...this.created].reverse()) {
      try {
        rmdirSync(dir); // only when empty
      } catch {
        // holds other files
      }
    }
  }

  /** Runs `fn` (which writes the outputs), then commits; on any error, aborts and rethrows. */
  async run<T>(fn: (outputs: this) => T | Promise<T>): Promise<T> {
    try {
      const result = await fn(this);
      this.commit();
      return result;
    } catch (e) {
      this.abort();
      throw e;
    }
  }
}

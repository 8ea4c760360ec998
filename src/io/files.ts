/**
 * File access behind a small interface, so that the model loader (model folders, safetensors, tokenizer and
 * scheduler files) runs on a real file system in Node and on fetched files in a browser.
 *
 * `nodeFileSystem` (io/node-files.ts) is Node's; `MemoryFileSystem` holds files in memory (a browser page fills it
 * with the model's fetched files). The readers use the installed one, looked up at each call (`files()`, `paths`):
 * `src/node.ts` (imported by the library's entry and the CLI) installs Node's, a page's worker installs its own.
 * This module imports nothing, so the shared core stays free of `node:` modules.
 */

/** What is at a path, after following symbolic links. */
export type FileKind = 'file' | 'directory' | 'fifo' | 'socket' | 'character-device' | 'block-device' | 'other';

export interface FileStat {
  kind: FileKind;
  size: number;
}

/** An open file read at any offset (safetensors tensors are read on demand). */
export interface RandomAccessFile {
  readonly size: number;
  /** What was opened (a folder or a device cannot hold a model; a FIFO swapped in must not be read). */
  readonly kind: FileKind;
  /** Read up to `target.length` bytes at `position` into `target`; returns how many were read (0 at the end). */
  read(target: Uint8Array, position: number): number;
  close(): void;
}

/** The path functions the readers use (Node's `node:path` has them all). */
export interface PathFunctions {
  join(...parts: string[]): string;
  dirname(path: string): string;
  basename(path: string, suffix?: string): string;
  extname(path: string): string;
  resolve(...parts: string[]): string;
}

export interface FileSystem {
  readonly path: PathFunctions;
  /** What is at `path` (following links); throws an error with a `code` ('ENOENT', 'ELOOP', ...) when nothing is. */
  stat(path: string): FileStat;
  /** The path with every symbolic link resolved. */
  realpath(path: string): string;
  /** Where the symbolic link `path` points (not followed), or null when `path` is not a link (optional). */
  linkTarget?(path: string): string | null;
  /** Names of the regular files directly in `dir` (links to regular files included), sorted; [] when unreadable. */
  listFiles(dir: string): string[];
  /** The whole file; throws an error with a `code` ('ENOENT' when missing). */
  readFile(path: string): Uint8Array;
  /** Open for random access, without blocking (a FIFO swapped in returns at once); throws as `readFile`. */
  open(path: string): RandomAccessFile;
  /**
   * Write `chunks` as the file `path`, atomically (a temporary name, then a rename): an interrupted write never
   * leaves a partial file. Throws a UserError naming the file.
   */
  writeFileAtomic(path: string, chunks: readonly Uint8Array[]): void;
}

/** A failed file operation with Node's error code ('ENOENT', 'EACCES', ...). */
export class FileSystemError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'FileSystemError';
  }
}

/** The error code of a failed file operation (Node's or a FileSystemError), if any. */
export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A file as text (UTF-8; a byte-order mark is kept, as Node's readFileSync(path, 'utf8') keeps it). */
export function readTextFile(fs: FileSystem, path: string): string {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(fs.readFile(path));
}

let installed: FileSystem | null = null;

/** Make `fs` the file system every reader uses (done once by the platform's entry point, or a page's worker). */
export function setDefaultFileSystem(fs: FileSystem): void {
  installed = fs;
}

/** The installed file system. */
export function files(): FileSystem {
  if (!installed)
    throw new Error("no file system installed: import 'suppress-to-impress' (or src/node.ts) in Node, or install one");
  return installed;
}

/** The installed file system's path functions, looked up at each call. */
export const paths: PathFunctions = {
  join: (...parts) => files().path.join(...parts),
  dirname: (path) => files().path.dirname(path),
  basename: (path, suffix) => files().path.basename(path, suffix),
  extname: (path) => files().path.extname(path),
  resolve: (...parts) => files().path.resolve(...parts),
};

/** Whether anything is at `path` (following links). */
export function exists(path: string): boolean {
  try {
    files().stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `path` is a folder (following links). */
export function isDirectory(path: string): boolean {
  try {
    return files().stat(path).kind === 'directory';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// paths and files in memory

function normalize(path: string): string {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return '/' + out.join('/');
}

/** POSIX path functions over absolute paths rooted at '/' (relative paths are taken from the root). */
export const posixPaths: PathFunctions = {
  join: (...parts) => normalize(parts.filter((p) => p !== '').join('/')),
  dirname: (path) => {
    const n = normalize(path);
    return n.slice(0, n.lastIndexOf('/')) || '/';
  },
  basename: (path, suffix) => {
    const b = normalize(path).split('/').pop() ?? '';
    return suffix && b.endsWith(suffix) && b !== suffix ? b.slice(0, -suffix.length) : b;
  },
  extname: (path) => {
    const b = posixPaths.basename(path);
    const i = b.lastIndexOf('.');
    return i <= 0 ? '' : b.slice(i);
  },
  resolve: (...parts) => {
    let start = 0;
    for (let i = parts.length - 1; i >= 0; i--) {
      if (parts[i]!.startsWith('/')) {
        start = i;
        break;
      }
    }
    return normalize(parts.slice(start).join('/'));
  },
};

/**
 * Files held in memory under absolute POSIX paths (folders exist implicitly). A browser page puts a model's
 * fetched files here and loads it as from disk, with the same checks and the same error messages.
 */
export class MemoryFileSystem implements FileSystem {
  readonly path = posixPaths;
  private readonly files = new Map<string, Uint8Array>();

  constructor(files: Iterable<[string, Uint8Array]> = []) {
    for (const [p, bytes] of files) this.add(p, bytes);
  }

  add(path: string, bytes: Uint8Array): void {
    this.files.set(normalize(path), bytes);
  }

  stat(path: string): FileStat {
    const p = normalize(path);
    const f = this.files.get(p);
    if (f) return { kind: 'file', size: f.length };
    const prefix = p === '/' ? '/' : `${p}/`;
    for (const k of this.files.keys()) if (k.startsWith(prefix)) return { kind: 'directory', size: 0 };
    throw new FileSystemError(`ENOENT: no such file or directory, stat '${p}'`, 'ENOENT');
  }

  realpath(path: string): string {
    return normalize(path);
  }

  listFiles(dir: string): string[] {
    const d = normalize(dir);
    const prefix = d === '/' ? '/' : `${d}/`;
    const names: string[] = [];
    for (const k of this.files.keys()) {
      if (k.startsWith(prefix) && !k.slice(prefix.length).includes('/')) names.push(k.slice(prefix.length));
    }
    return names.sort();
  }

  readFile(path: string): Uint8Array {
    const f = this.files.get(normalize(path));
    if (f) return f;
    const kind = this.stat(path).kind; // throws ENOENT
    throw new FileSystemError(`EISDIR: illegal operation on a ${kind}, read`, 'EISDIR');
  }

  open(path: string): RandomAccessFile {
    const isDir = this.stat(path).kind === 'directory';
    const f = isDir ? new Uint8Array(0) : this.readFile(path);
    return {
      size: f.length,
      kind: isDir ? 'directory' : 'file',
      read: (target, position) => {
        const n = Math.max(0, Math.min(target.length, f.length - position));
        target.set(f.subarray(position, position + n));
        return n;
      },
      close: () => {},
    };
  }

  writeFileAtomic(path: string, chunks: readonly Uint8Array[]): void {
    const total = chunks.reduce((s, c) => s + c.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.add(path, out);
  }
}

/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
 * (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`, padded with spaces),
 * then the raw little-endian tensor bytes; `data_offsets` are relative to the first byte after the header.
 *
 * `SafetensorsFile.open` reads only the length and the header, validates it as the reference implementation does
 * (safetensors-header.ts: every field, and offsets that cover the data section exactly), and reads tensors on
 * demand at their offsets, so a multi-GB checkpoint is never held in memory as a whole. Everything a malformed or
 * truncated file can trigger is a one-line UserError naming the file (and the tensor).
 */
import { UserError } from '../errors.js';
import { files, paths, type RandomAccessFile } from './files.js';
import type { WeightSource } from '../graph/graph.js';
import { numel, shapeString, type Int64Tensor, type Tensor } from '../tensor.js';
import { oneLine, quoteKey } from './messages.js';
import { checkRegularFile } from './regular-file.js';
import {
  DTYPE_SIZE,
  HeaderError,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  type SafetensorsDType,
  type TensorInfo,
} from './safetensors-header.js';

export { DTYPE_SIZE, MAX_HEADER_BYTES, quoteKey, type SafetensorsDType, type TensorInfo };

// ---------------------------------------------------------------------------------------------------------------
// dtypes

const FLOAT_DTYPES: ReadonlySet<SafetensorsDType> = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E5M2', 'F8_E4M3']);

export function isFloatDType(dtype: SafetensorsDType): boolean {
  return FLOAT_DTYPES.has(dtype);
}

const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
const { resolve } = paths;

// ---------------------------------------------------------------------------------------------------------------
// float conversions (exact: every F16 / BF16 / F8 value is representable in float32)

let f16Table: Float32Array | null = null;

/** All 65536 half-precision values as float32, built once (256 KB) so conversion is one lookup per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  const table = new Float32Array(bits.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant * 2^-24, exact in float32 (write the value, then restore the sign bit for -0)
      table[h] = mant * 2 ** -24;
      bits[h] = bits[h]! | sign;
    } else if (exp === 0x1f) {
      bits[h] = sign | 0x7f800000 | (mant << 13); // inf, or NaN keeping its payload
    } else {
      bits[h] = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
  }
  f16Table = table;
  return table;
}

/** IEEE half-precision bit patterns to float32 (exact, including subnormals, ±0, ±inf and NaN). */
export function f16ToF32(src: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

/** bfloat16 bit patterns to float32: bf16 is the top half of a float32, so this is a shift. */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return new Float32Array(bits.buffer);
}

/** float8 e5m2 is the top byte of a half. */
function f8e5m2ToF32(src: Uint8Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]! << 8]!;
  return out;
}

/** float8 e4m3fn (bias 7, no infinities; S.1111.111 is NaN), as torch.float8_e4m3fn. */
function f8e4m3ToF32(src: Uint8Array): Float32Array {
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exp = (b >> 3) & 0xf;
    const mant = b & 7;
    if (exp === 0xf && mant === 7) table[b] = NaN;
    else if (exp === 0) table[b] = sign * mant * 2 ** -9;
    else table[b] = sign * (1 + mant / 8) * 2 ** (exp - 7);
  }
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// errors

function fail(path: string, what: string): never {
  throw new UserError(`${path}: ${oneLine(what)}`);
}

function failKey(path: string, key: string, what: string): never {
  throw new UserError(`${path}: tensor ${quoteKey(key)}: ${oneLine(what)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// reading

/** Fill `target` from the file at `position`, in chunks (a single read is capped near 2 GB). */
function readFully(fd: RandomAccessFile, target: Uint8Array, position: number, path: string): void {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < target.length) {
    const want = Math.min(CHUNK, target.length - done);
    const n = fd.read(target.subarray(done, done + want), position + done);
    if (n === 0)
      fail(
        path,
        `unexpected end of file at byte ${position + done} (the file is truncated or was modified while open)`,
      );
    done += n;
  }
}

/** Reverse the bytes of each `size`-byte element in place (only ever needed on a big-endian host). */
function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}

/** One safetensors file, header parsed and validated, tensors read lazily. */
export class SafetensorsFile {
  private fd: RandomAccessFile | null;

  private constructor(
    /** Absolute path of the file, as given (messages name this). */
    readonly path: string,
    /**
     * The file itself, symbolic links resolved (the Hugging Face cache links snapshots/ to blobs/): what ONNX
     * Runtime is pointed at, since it refuses links outside a model's folder.
     */
    readonly realPath: string,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly tensors: ReadonlyMap<string, TensorInfo>,
    /** Size of the file in bytes when it was opened. */
    readonly fileSize: number,
    fd: RandomAccessFile,
  ) {
    this.fd = fd;
  }

  /** Open and validate `path`; reads only the header. */
  static open(path: string): SafetensorsFile {
    const abs = resolve(path);
    // Checked before opening: opening a FIFO for reading would block until a writer appears.
    checkRegularFile(abs);
    let fd: RandomAccessFile;
    let realPath: string;
    try {
      realPath = files().realpath(abs);
      // Opened without blocking: should the file have been swapped for a FIFO since the check, the open returns.
      fd = files().open(abs);
    } catch (e) {
      throw new UserError(`${abs}: cannot open safetensors file (${oneLine(String((e as Error).message))})`);
    }
    try {
      if (fd.kind !== 'file') fail(abs, 'not a regular file');
      const size = fd.size;
      if (size < 8) fail(abs, `file is ${size} bytes, too short for a safetensors header (8-byte length + JSON)`);
      const lenBytes = new Uint8Array(8);
      readFully(fd, lenBytes, 0, abs);
      const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        fail(abs, `header length ${headerLen} is absurdly large (limit ${MAX_HEADER_BYTES}); not a safetensors file?`);
      }
      const n = Number(headerLen);
      if (8 + n > size) {
        fail(
          abs,
          `header length ${n} runs past the end of the ${size}-byte file (truncated or not a safetensors file)`,
        );
      }
      const headerBytes = new Uint8Array(n);
      readFully(fd, headerBytes, 8, abs);
      let text: string;
      try {
        // ignoreBOM: keep a byte-order mark in the text, so the header parser refuses it as the reference does
        text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
      } catch {
        fail(abs, 'the safetensors header is not valid UTF-8');
      }
      let parsed;
      try {
        parsed = parseSafetensorsHeader(text, 8 + n, size - 8 - n);
      } catch (e) {
        if (e instanceof HeaderError) fail(abs, e.message);
        throw e;
      }
      return new SafetensorsFile(abs, realPath, Object.freeze(parsed.metadata), parsed.tensors, size, fd);
    } catch (e) {
      fd.close();
      throw e;
    }
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new UserError(`${this.path}: no tensor ${quoteKey(name)}`);
    return t;
  }

  infos(): TensorInfo[] {
    return [...this.tensors.values()];
  }

  /** The raw bytes of `t` (a tensor of this file, or a byte range of one) in host byte order, freshly allocated. */
  private readBytes(t: TensorInfo): Uint8Array {
    const bytes = new Uint8Array(t.byteLength);
    readFully(this.descriptor(), bytes, t.byteOffset, this.path);
    if (!LITTLE_ENDIAN_HOST) swapBytes(bytes, DTYPE_SIZE[t.dtype]);
    return bytes;
  }

  /** The open descriptor; after `close()` the file is reopened (weight sources may be read long after loading). */
  private descriptor(): RandomAccessFile {
    if (this.fd === null) {
      let fd: RandomAccessFile;
      try {
        fd = files().open(this.path);
      } catch (e) {
        throw new UserError(`${this.path}: cannot reopen safetensors file (${oneLine(String((e as Error).message))})`);
      }
      if (fd.kind !== 'file' || fd.size !== this.fileSize) {
        fd.close();
        throw new UserError(`${this.path}: the file changed since it was opened`);
      }
      this.fd = fd;
    }
    return this.fd;
  }

  /** A floating-point tensor as float32 (F64 is rounded; F16, BF16 and F8 convert exactly). */
  readFloat32(name: string): Float32Array {
    return this.readFloat32Of(this.info(name));
  }

  /**
   * The float32 values of `t`: a tensor of this file, or a view of one (another shape over the same bytes, or a
   * contiguous byte range of it, as single-file conversion makes them).
   */
  readFloat32Of(t: TensorInfo): Float32Array {
    if (!isFloatDType(t.dtype)) failKey(this.path, t.name, `is ${t.dtype}, expected a floating-point tensor`);
    const bytes = this.readBytes(t);
    const n = t.byteLength / DTYPE_SIZE[t.dtype];
    switch (t.dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer, 0, n);
      case 'F64':
        return Float32Array.from(new Float64Array(bytes.buffer, 0, n));
      case 'F16':
        return f16ToF32(new Uint16Array(bytes.buffer, 0, n));
      case 'BF16':
        return bf16ToF32(new Uint16Array(bytes.buffer, 0, n));
      case 'F8_E5M2':
        return f8e5m2ToF32(bytes);
      case 'F8_E4M3':
        return f8e4m3ToF32(bytes);
      default:
        throw new Error(`unreachable dtype ${t.dtype}`);
    }
  }

  /** The 16-bit patterns of an F16 or BF16 tensor (or view), unconverted. */
  readHalfBits(t: TensorInfo): Uint16Array {
    if (t.dtype !== 'F16' && t.dtype !== 'BF16') failKey(this.path, t.name, `is ${t.dtype}, expected F16 or BF16`);
    const bytes = this.readBytes(t);
    return new Uint16Array(bytes.buffer, 0, t.byteLength / 2);
  }

  /** An integer or boolean tensor as int64. */
  readInt64(name: string): BigInt64Array {
    const t = this.info(name);
    if (isFloatDType(t.dtype)) failKey(this.path, name, `is ${t.dtype}, expected an integer tensor`);
    const bytes = this.readBytes(t);
    const n = t.byteLength / DTYPE_SIZE[t.dtype];
    const widen = (src: ArrayLike<number>) => {
      const out = new BigInt64Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = BigInt(src[i]!);
      return out;
    };
    switch (t.dtype) {
      case 'I64':
        return new BigInt64Array(bytes.buffer, 0, n);
      case 'U64': {
        const u = new BigUint64Array(bytes.buffer, 0, n);
        for (let i = 0; i < n; i++) {
          if (u[i]! > 0x7fffffffffffffffn)
            failKey(this.path, name, `U64 value ${u[i]} at index ${i} does not fit in int64`);
        }
        return new BigInt64Array(bytes.buffer, 0, n);
      }
      case 'I32':
        return widen(new Int32Array(bytes.buffer, 0, n));
      case 'U32':
        return widen(new Uint32Array(bytes.buffer, 0, n));
      case 'I16':
        return widen(new Int16Array(bytes.buffer, 0, n));
      case 'U16':
        return widen(new Uint16Array(bytes.buffer, 0, n));
      case 'I8':
        return widen(new Int8Array(bytes.buffer, 0, n));
      case 'U8':
        return widen(bytes);
      case 'BOOL':
        return widen(bytes.map((b) => (b ? 1 : 0)));
      default:
        throw new Error(`unreachable dtype ${t.dtype}`);
    }
  }

  /** A floating-point tensor as a float32 Tensor. */
  read(name: string): Tensor {
    return { data: this.readFloat32(name), shape: [...this.info(name).shape] };
  }

  /** Any tensor: floats as a float32 Tensor, integers and booleans as an Int64Tensor. */
  readAny(name: string): Tensor | Int64Tensor {
    const t = this.info(name);
    return isFloatDType(t.dtype)
      ? { data: this.readFloat32(name), shape: [...t.shape] }
      : { data: this.readInt64(name), shape: [...t.shape] };
  }

  /** Release the file descriptor (a later read reopens the file). */
  close(): void {
    if (this.fd !== null) {
      this.fd.close();
      this.fd = null;
    }
  }
}

/** Read a whole (small) safetensors file: float tensors as float32, integer/bool tensors as int64. */
export function readSafetensors(path: string): Record<string, Tensor | Int64Tensor> {
  const file = SafetensorsFile.open(path);
  try {
    // fromEntries defines own properties, so even a tensor named "__proto__" comes back as an entry
    return Object.fromEntries(file.names().map((name) => [name, file.readAny(name)]));
  } finally {
    file.close();
  }
}

/**
 * A graph weight backed by tensor `name` of `file` (or by a view `t` of one of its tensors). F32 tensors on a
 * little-endian host also carry `external`, so a serialiser can point ONNX Runtime at the bytes in the file
 * instead of copying them; F16 and BF16 tensors carry `half`, so it can keep them half precision (see graph.ts).
 */
export function weightSource(file: SafetensorsFile, name: string, t: TensorInfo = file.info(name)): WeightSource {
  if (!isFloatDType(t.dtype)) failKey(file.path, name, `is ${t.dtype}, a weight must be a floating-point tensor`);
  const read = () => file.readFloat32Of(t);
  const external = LITTLE_ENDIAN_HOST ? { path: file.realPath, offset: t.byteOffset, length: t.byteLength } : undefined;
  if (t.dtype === 'F32' && external) return { shape: t.shape, read, external };
  if (t.dtype === 'F16' || t.dtype === 'BF16') {
    const half = {
      dtype: t.dtype === 'F16' ? ('float16' as const) : ('bfloat16' as const),
      read: () => file.readHalfBits(t),
      ...(external ? { external } : {}),
    };
    return { shape: t.shape, read, half };
  }
  return { shape: t.shape, read };
}

// ---------------------------------------------------------------------------------------------------------------
// writing

function isInt64Tensor(t: Tensor | Int64Tensor): t is Int64Tensor {
  return t.data instanceof BigInt64Array;
}

/** Byte-wise (UTF-8) string order, as the reference writer (Rust) sorts names. */
function compareUtf8(a: string, b: string): number {
  const [x, y] = [utf8.encode(a), utf8.encode(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

const utf8 = new TextEncoder();

/**
 * Write tensors in the standard layout: header padded with spaces to a multiple of 8, tensors ordered by dtype
 * size (descending) then name, like the reference writer. Float tensors are stored as F32, int64 tensors as I64.
 *
 * The file is written to a temporary name in the same folder and renamed into place, so an interrupted write
 * never leaves a partial file under `path`.
 *
 * `metadata` defaults to `{format: 'pt'}`: transformers refuses to load safetensors files whose metadata lacks
 * a `format`, and diffusers/torch writers always set it.
 */
export function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, Tensor | Int64Tensor>>,
  metadata: Readonly<Record<string, string>> = { format: 'pt' },
): void {
  const entries = Object.entries(tensors).map(([name, t]) => {
    if (name === '__metadata__')
      throw new Error(`writeSafetensors: '__metadata__' is reserved and cannot name a tensor`);
    if (t.data.length !== numel(t.shape)) {
      throw new Error(
        `writeSafetensors: tensor '${name}' has ${t.data.length} elements for shape ${shapeString(t.shape)}`,
      );
    }
    const dtype: SafetensorsDType = isInt64Tensor(t) ? 'I64' : 'F32';
    return { name, t, dtype };
  });
  entries.sort((a, b) => DTYPE_SIZE[b.dtype] - DTYPE_SIZE[a.dtype] || compareUtf8(a.name, b.name));

  // Built from pairs (Object.fromEntries defines own properties), so any tensor name, "__proto__" included, survives.
  const pairs: [string, unknown][] = [];
  if (Object.keys(metadata).length > 0) pairs.push(['__metadata__', Object.fromEntries(Object.entries(metadata))]);
  let offset = 0;
  for (const { name, t, dtype } of entries) {
    const size = t.data.length * DTYPE_SIZE[dtype];
    pairs.push([name, { dtype, shape: [...t.shape], data_offsets: [offset, offset + size] }]);
    offset += size;
  }
  let json = JSON.stringify(Object.fromEntries(pairs));
  const pad = (8 - (utf8.encode(json).length % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = utf8.encode(json);
  const lenBytes = new Uint8Array(8);
  new DataView(lenBytes.buffer).setBigUint64(0, BigInt(headerBytes.length), true);

  const chunks: Uint8Array[] = [lenBytes, headerBytes];
  for (const { t } of entries) {
    let bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (!LITTLE_ENDIAN_HOST) {
      bytes = bytes.slice();
      swapBytes(bytes, t.data.BYTES_PER_ELEMENT);
    }
    chunks.push(bytes);
  }
  files().writeFileAtomic(resolve(path), chunks);
}

/**
 * The safetensors header, read as strictly as the reference implementation (huggingface/safetensors, Rust,
 * `SafeTensors::read_metadata` and `Metadata::validate`) reads it, so that a file s2i accepts is a file
 * `safe_open` accepts, and what it refuses is refused with a one-line message naming the file and the tensor:
 *
 * - the header is UTF-8 JSON (no byte-order mark), one object, nothing after it but the padding spaces;
 * - each tensor entry has a known `dtype`, a `shape` of non-negative integers (`2.0`, `2e0`, `-1` are not: the
 *   reference reads them as `usize`) and `data_offsets` [begin, end]; a key or a field given twice is refused
 *   (JSON.parse would silently keep the last);
 * - `__metadata__` is null or an object of strings;
 * - sorted by offset, the tensors cover the data section exactly: each begins where the previous ends (no hole,
 *   no overlap), its byte length is numel × dtype size, and the last ends at the end of the file (no trailing
 *   bytes, nothing missing).
 *
 * JSON.parse cannot tell `2` from `2.0` or see duplicate keys, hence the small parser below; it also bounds the
 * nesting depth, where a hostile header of a million brackets would otherwise exhaust the stack further on.
 */
import { numel, shapeString } from '../tensor.js';
import { describeValue, oneLine, quoteKey } from './messages.js';

export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E5M2'
  | 'F8_E4M3'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

/** Bytes per element of each dtype this reader understands. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

function isKnownDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.hasOwn(DTYPE_SIZE, s);
}

/** The reference implementation refuses headers above 100 MB; a larger length means a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Deepest nesting a header may have; a valid one has 3 (object, entry, shape). serde_json's own limit is 128. */
const MAX_DEPTH = 64;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export class HeaderError extends Error {}

function fail(what: string): never {
  throw new HeaderError(oneLine(what));
}

function failKey(key: string, what: string): never {
  throw new HeaderError(`tensor ${quoteKey(key)}: ${oneLine(what)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// a strict JSON reader

/** A JSON number with the text it was written as (so integers can be told from `2.0`). */
class JsonNumber {
  constructor(
    readonly text: string,
    readonly value: number,
  ) {}
  toJSON(): number {
    return this.value;
  }
}

type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
/** Entries in file order; duplicate keys are refused while parsing. */
type JsonObject = Map<string, JsonValue>;

const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const INTEGER_RE = /^(?:0|[1-9]\d*)$/;

class Parser {
  private pos = 0;
  constructor(private readonly text: string) {}

  private where(): string {
    return `at character ${this.pos}`;
  }

  private error(what: string): never {
    fail(`the header is not valid JSON: ${what} ${this.where()}`);
  }

  private skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  parseDocument(): JsonValue {
    if (this.text.charCodeAt(0) === 0xfeff)
      fail('the header starts with a byte-order mark (U+FEFF), which JSON forbids');
    const v = this.value(0);
    this.skipSpace();
    if (this.pos !== this.text.length) this.error('unexpected text after the top-level object');
    return v;
  }

  private value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) fail(`the header nests deeper than ${MAX_DEPTH} levels`);
    this.skipSpace();
    const t = this.text;
    const c = t[this.pos];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      case undefined:
        return this.error('unexpected end');
      default: {
        NUMBER_RE.lastIndex = this.pos;
        const m = NUMBER_RE.exec(t);
        if (!m) return this.error(`unexpected ${describeValue(c)}`);
        this.pos += m[0].length;
        return new JsonNumber(m[0], Number(m[0]));
      }
    }
  }

  private literal<T>(word: string, v: T): T {
    if (!this.text.startsWith(word, this.pos)) this.error('unexpected word');
    this.pos += word.length;
    return v;
  }

  private object(depth: number): JsonObject {
    const out: JsonObject = new Map();
    this.pos++; // {
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.error('expected a quoted key');
      const keyAt = this.pos;
      const key = this.string();
      if (out.has(key)) {
        this.pos = keyAt;
        fail(`the header gives the key ${quoteKey(key)} twice (${this.where()})`);
      }
      this.skipSpace();
      if (this.text[this.pos] !== ':') this.error("expected ':'");
      this.pos++;
      out.set(key, this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') {
        this.pos--;
        this.error("expected ',' or '}'");
      }
    }
  }

  private array(depth: number): JsonValue[] {
    const out: JsonValue[] = [];
    this.pos++; // [
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') {
        this.pos--;
        this.error("expected ',' or ']'");
      }
    }
  }

  private string(): string {
    const t = this.text;
    const start = ++this.pos; // opening quote
    // Fast path: no escapes.
    let i = start;
    while (i < t.length) {
      const c = t.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return t.slice(start, i);
      }
      if (c === 0x5c || c < 0x20) break;
      i++;
    }
    let out = t.slice(start, i);
    for (;;) {
      if (i >= t.length) {
        this.pos = i;
        this.error('unterminated string');
      }
      const c = t.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return out;
      }
      if (c < 0x20) {
        this.pos = i;
        this.error('control character in a string');
      }
      if (c !== 0x5c) {
        out += t[i];
        i++;
        continue;
      }
      const e = t[i + 1];
      if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
        out += ESCAPES[e];
        i += 2;
      } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(t.slice(i + 2, i + 6))) {
        out += String.fromCharCode(parseInt(t.slice(i + 2, i + 6), 16));
        i += 6;
      } else {
        this.pos = i;
        this.error('bad escape in a string');
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the header's schema and the data section's coverage

const plain = (v: JsonValue | undefined): unknown =>
  v instanceof Map ? Object.fromEntries([...v].map(([k, x]) => [k, plain(x)])) : Array.isArray(v) ? v.map(plain) : v;

/** A JSON integer written as one (no fraction, no exponent, no sign), within the safe range. */
function asIndex(v: JsonValue): number | null {
  return v instanceof JsonNumber && INTEGER_RE.test(v.text) && Number.isSafeInteger(v.value) ? v.value : null;
}

export interface ParsedHeader {
  /** In header order. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/**
 * Parse and validate a header. `dataStart` is the file offset of the data section (8 + header length) and
 * `dataBytes` its length (the rest of the file). Throws HeaderError with a one-line reason.
 */
export function parseSafetensorsHeader(text: string, dataStart: number, dataBytes: number): ParsedHeader {
  const header = new Parser(text).parseDocument();
  if (!(header instanceof Map)) fail(`the header must be a JSON object, found ${describeValue(plain(header))}`);

  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, entry] of header) {
    if (name === '__metadata__') {
      if (entry === null) continue; // the reference reads it as Option<...>
      if (!(entry instanceof Map))
        fail(`__metadata__ must be an object of strings, found ${describeValue(plain(entry))}`);
      for (const [k, v] of entry) {
        if (typeof v !== 'string')
          fail(`__metadata__ value ${quoteKey(k)} must be a string, found ${describeValue(plain(v))}`);
        // defineProperty, not assignment: a key named "__proto__" must stay an ordinary entry
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    if (!(entry instanceof Map)) failKey(name, `entry must be an object, found ${describeValue(plain(entry))}`);
    const dtype = entry.get('dtype');
    const shape = entry.get('shape');
    const offsets = entry.get('data_offsets');
    if (dtype === undefined) failKey(name, 'missing "dtype"');
    if (shape === undefined) failKey(name, 'missing "shape"');
    if (offsets === undefined) failKey(name, 'missing "data_offsets"');
    if (!isKnownDType(dtype)) {
      failKey(name, `unknown dtype ${describeValue(plain(dtype))} (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`);
    }
    const dims = Array.isArray(shape) ? shape.map(asIndex) : null;
    if (dims === null || dims.some((d) => d === null)) {
      failKey(name, `shape must be a list of non-negative integers, found ${describeValue(plain(shape))}`);
    }
    const span = Array.isArray(offsets) && offsets.length === 2 ? offsets.map(asIndex) : null;
    if (span === null || span[0] === null || span[1] === null || span[0]! > span[1]!) {
      failKey(name, `data_offsets must be [begin, end] with 0 <= begin <= end, found ${describeValue(plain(offsets))}`);
    }
    const [begin, end] = span as [number, number];
    const count = numel(dims as number[]);
    const expected = count * DTYPE_SIZE[dtype];
    if (!Number.isSafeInteger(count) || !Number.isSafeInteger(expected)) {
      failKey(name, `shape ${shapeString(dims as number[])} is too large`);
    }
    if (expected !== end - begin) {
      failKey(
        name,
        `${dtype} ${shapeString(dims as number[])} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: dims as number[], begin, end });
  }

  // Coverage, as Metadata::validate: sorted by (begin, end), each tensor starts where the previous one ended.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: string | null = null;
  for (const t of sorted) {
    if (t.begin < at) {
      fail(`tensors ${quoteKey(prev!)} and ${quoteKey(t.name)} overlap (data_offsets ${t.begin} < ${at})`);
    }
    if (t.begin > at) {
      fail(`data bytes ${at}..${t.begin} belong to no tensor (a hole before tensor ${quoteKey(t.name)})`);
    }
    at = t.end;
    prev = t.name;
  }
  if (at > dataBytes) {
    fail(
      `the tensors need ${at} bytes of data but the file has ${dataBytes} after the header ` +
        `(it ends at byte ${dataStart + dataBytes}; truncated, or the header length is wrong)`,
    );
  }
  if (at < dataBytes) {
    fail(
      `${dataBytes - at} bytes after the last tensor belong to no tensor ` +
        `(the data ends at byte ${dataStart + at} of ${dataStart + dataBytes}; trailing data, or the header length is wrong)`,
    );
  }

  const tensors = new Map<string, TensorInfo>();
  for (const t of entries) {
    tensors.set(t.name, {
      name: t.name,
      dtype: t.dtype,
      shape: Object.freeze([...t.shape]),
      byteOffset: dataStart + t.begin,
      byteLength: t.end - t.begin,
    });
  }
  return { tensors, metadata };
}

/**
 * The ONNX model as protobuf bytes: the messages and fields of onnx.proto that s2i writes (graph/onnx.ts builds
 * them), each message's fields in field-number order, packed repeated numbers, as protobufjs's generated ONNX code
 * (the onnx-proto package) writes them — the same bytes, which test/unit/onnx-protobuf.test.ts checks against it.
 * Loading that package's ~330 KB of generated code for the whole format took 0.08–0.14 s of every CLI run that
 * serialises a graph (docs/measurements.md#onnx-encoder); this module loads at once.
 */

/** onnx.TensorProto.DataType values s2i writes. */
export const DATA_TYPE = { FLOAT: 1, FLOAT16: 10, BFLOAT16: 16 } as const;
/** onnx.TensorProto.DataLocation.EXTERNAL: the tensor's bytes lie in a file named by its externalData. */
export const DATA_LOCATION_EXTERNAL = 1;
/** onnx.AttributeProto.AttributeType values s2i writes. */
export const ATTRIBUTE_TYPE = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

export interface ModelProto {
  irVersion: number;
  producerName: string;
  graph: GraphProto;
  opsetImport: { domain: string; version: number }[];
}

export interface GraphProto {
  node: NodeProto[];
  name: string;
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
}

export interface NodeProto {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  attribute: AttributeProto[];
  domain?: string;
}

export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  floats?: number[];
  ints?: number[];
}

export interface TensorProto {
  dims: number[];
  dataType: number;
  name: string;
  rawData?: Uint8Array;
  externalData?: { key: string; value: string }[];
  dataLocation?: number;
}

export interface ValueInfoProto {
  name: string;
  type: { tensorType: { elemType: number; shape: { dim: { dimValue: number }[] } } };
}

const VARINT = 0;
const FIXED32 = 5;
const DELIMITED = 2;
/** Byte arrays longer than this are referenced, not copied, until `finish` (weights inside the model). */
const COPY_LIMIT = 4096;

const UTF8 = new TextEncoder();

/**
 * Bytes written in order into a growing buffer; a sub-message's bytes (written first, as its length comes before
 * them) and long byte arrays are kept as references (parts) and copied once, by `finish`.
 */
class Writer {
  length = 0;
  private readonly parts: Uint8Array[] = [];
  private buf = new Uint8Array(64);
  /** buf[start, pos) is written but not yet a part. */
  private start = 0;
  private pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.cut();
    this.buf = new Uint8Array(Math.max(2 * this.buf.length, n));
    this.start = this.pos = 0;
  }

  /** Makes what was written since the last part a part (the buffer stays, written on after it). */
  private cut(): void {
    if (this.pos === this.start) return;
    this.parts.push(this.buf.subarray(this.start, this.pos));
    this.start = this.pos;
  }

  private byte(b: number): void {
    this.buf[this.pos++] = b;
    this.length++;
  }

  private varint32(v: number): void {
    this.room(5);
    let x = v >>> 0;
    while (x > 127) {
      this.byte((x & 127) | 128);
      x >>>= 7;
    }
    this.byte(x);
  }

  private tag(field: number, wire: number): void {
    this.varint32((field << 3) | wire);
  }

  /** An int64 given as a JavaScript number, as protobufjs converts it (LongBits.fromNumber): two's complement. */
  private varint64(value: number): void {
    let lo = 0;
    let hi = 0;
    if (value !== 0) {
      const negative = value < 0;
      const magnitude = negative ? -value : value;
      lo = magnitude >>> 0;
      hi = ((magnitude - lo) / 4294967296) >>> 0;
      if (negative) {
        hi = ~hi >>> 0;
        lo = ~lo >>> 0;
        if (++lo > 4294967295) {
          lo = 0;
          if (++hi > 4294967295) hi = 0;
        }
      }
    }
    this.room(10);
    while (hi) {
      this.byte((lo & 127) | 128);
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 127) {
      this.byte((lo & 127) | 128);
      lo >>>= 7;
    }
    this.byte(lo);
  }

  private float(v: number): void {
    this.room(4);
    new DataView(this.buf.buffer, this.buf.byteOffset).setFloat32(this.pos, v, true);
    this.pos += 4;
    this.length += 4;
  }

  private rawBytes(b: Uint8Array): void {
    this.varint32(b.length);
    if (b.length > COPY_LIMIT) {
      this.cut();
      this.parts.push(b);
    } else {
      this.room(b.length);
      this.buf.set(b, this.pos);
      this.pos += b.length;
    }
    this.length += b.length;
  }

  int64(field: number, v: number | undefined): void {
    if (v === undefined) return;
    this.tag(field, VARINT);
    this.varint64(v);
  }

  /** int32 fields (enums): negative values take ten bytes, as int64. */
  int32(field: number, v: number | undefined): void {
    if (v === undefined) return;
    this.tag(field, VARINT);
    if (v < 0) this.varint64(v);
    else this.varint32(v);
  }

  float32(field: number, v: number | undefined): void {
    if (v === undefined) return;
    this.tag(field, FIXED32);
    this.float(v);
  }

  bytes(field: number, b: Uint8Array | undefined): void {
    if (b === undefined) return;
    this.tag(field, DELIMITED);
    this.rawBytes(b);
  }

  string(field: number, s: string | undefined): void {
    if (s === undefined) return;
    // Names are ASCII but for the odd one: their bytes are their char codes.
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return this.bytes(field, UTF8.encode(s));
    this.tag(field, DELIMITED);
    this.varint32(s.length);
    this.room(s.length);
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
    this.length += s.length;
  }

  strings(field: number, list: readonly string[]): void {
    for (const s of list) this.string(field, s);
  }

  /** A packed repeated field; nothing when empty. */
  packed(field: number, list: readonly number[] | undefined, each: (w: Writer, v: number) => void): void {
    if (!list?.length) return;
    const inner = new Writer();
    for (const v of list) each(inner, v);
    this.message(field, inner);
  }

  packedInt64(field: number, list: readonly number[] | undefined): void {
    this.packed(field, list, (w, v) => w.varint64(v));
  }

  packedFloat(field: number, list: readonly number[] | undefined): void {
    this.packed(field, list, (w, v) => w.float(v));
  }

  /** A sub-message (or a packed field's contents): tag, length, then its bytes. */
  message(field: number, inner: Writer): void {
    this.tag(field, DELIMITED);
    this.varint32(inner.length);
    this.cut();
    inner.cut();
    for (const p of inner.parts) this.parts.push(p);
    this.length += inner.length;
  }

  messages<T>(field: number, list: readonly T[], encode: (m: T) => Writer): void {
    for (const m of list) this.message(field, encode(m));
  }

  finish(): Uint8Array {
    this.cut();
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

function valueInfo(v: ValueInfoProto): Writer {
  const shape = new Writer();
  for (const d of v.type.tensorType.shape.dim) {
    const dim = new Writer();
    dim.int64(1, d.dimValue);
    shape.message(1, dim);
  }
  const tensorType = new Writer();
  tensorType.int32(1, v.type.tensorType.elemType);
  tensorType.message(2, shape);
  const type = new Writer();
  type.message(1, tensorType);
  const w = new Writer();
  w.string(1, v.name);
  w.message(2, type);
  return w;
}

function attribute(a: AttributeProto): Writer {
  const w = new Writer();
  w.string(1, a.name);
  w.float32(2, a.f);
  w.int64(3, a.i);
  w.bytes(4, a.s);
  w.packedFloat(7, a.floats);
  w.packedInt64(8, a.ints);
  w.int32(20, a.type);
  return w;
}

function node(n: NodeProto): Writer {
  const w = new Writer();
  w.strings(1, n.input);
  w.strings(2, n.output);
  w.string(3, n.name);
  w.string(4, n.opType);
  w.messages(5, n.attribute, attribute);
  w.string(7, n.domain);
  return w;
}

function tensor(t: TensorProto): Writer {
  const w = new Writer();
  w.packedInt64(1, t.dims);
  w.int32(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.rawData);
  w.messages(13, t.externalData ?? [], (e) => {
    const entry = new Writer();
    entry.string(1, e.key);
    entry.string(2, e.value);
    return entry;
  });
  w.int32(14, t.dataLocation);
  return w;
}

/** The model's protobuf bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  const g = new Writer();
  g.messages(1, model.graph.node, node);
  g.string(2, model.graph.name);
  g.messages(5, model.graph.initializer, tensor);
  g.messages(11, model.graph.input, valueInfo);
  g.messages(12, model.graph.output, valueInfo);
  const w = new Writer();
  w.int64(1, model.irVersion);
  w.string(2, model.producerName);
  w.message(7, g);
  w.messages(8, model.opsetImport, (o) => {
    const opset = new Writer();
    opset.string(1, o.domain);
    opset.int64(2, o.version);
    return opset;
  });
  return w.finish();
}

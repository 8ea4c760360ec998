import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import {
  configBool,
  configInt,
  configNumber,
  configNumberArray,
  configNumberOrArray,
  configString,
  configStringArray,
} from '../src/io/json-config.js';
import { openModelFolder, readSamplingDefaults } from '../src/io/model-folder.js';
import { WeightStore } from '../src/io/weight-store.js';
import {
  bf16ToF32,
  f16ToF32,
  readSafetensors,
  SafetensorsFile,
  weightSource,
  writeSafetensors,
} from '../src/io/safetensors.js';
import { numel, type Int64Tensor, type Tensor } from '../src/tensor.js';
import { goldenPath, tinySdDir } from './support/oracle.js';

const tmp = mkdtempSync(join(tmpdir(), 's2i-io-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpPath = (name: string) => join(tmp, `${counter++}-${name}`);

/** A raw safetensors file from a header object (or literal header text) and data bytes. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), name = 'raw.safetensors'): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const p = tmpPath(name);
  writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

/** Expect `fn` to throw a one-line UserError mentioning every string in `parts`. */
function expectUserError(fn: () => unknown, ...parts: string[]): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a UserError').toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  for (const p of parts) expect(msg).toContain(p);
  return msg;
}

const unetWeights = join(tinySdDir, 'unet', 'diffusion_pytorch_model.safetensors');
const textWeights = join(tinySdDir, 'text_encoder', 'model.safetensors');
const vaeWeights = join(tinySdDir, 'vae', 'diffusion_pytorch_model.safetensors');

describe('SafetensorsFile on real files', () => {
  it('reads every tensor of the c_unet golden', () => {
    const f = SafetensorsFile.open(goldenPath('c_unet'));
    try {
      expect(f.metadata['case']).toBe('c_unet');
      expect(f.names().length).toBe(21);
      for (const name of f.names()) {
        const info = f.info(name);
        const t = f.readAny(name);
        expect(t.shape).toEqual(info.shape);
        expect(t.data.length).toBe(numel(info.shape));
        if (t.data instanceof Float32Array) expect(t.data.every(Number.isFinite)).toBe(true);
      }
      expect(f.readInt64('timestep')).toEqual(BigInt64Array.of(981n));
      expect(f.info('noise_pred').shape).toEqual([2, 4, 32, 32]);
    } finally {
      f.close();
    }
  });

  it('reads the tiny-sd weights; position_ids are int64 0..76', () => {
    let total = 0;
    for (const p of [unetWeights, textWeights, vaeWeights]) {
      const f = SafetensorsFile.open(p);
      for (const name of f.names()) {
        const info = f.info(name);
        const t = f.readAny(name);
        expect(t.shape).toEqual(info.shape);
        expect(t.data.length * (info.dtype === 'I64' ? 8 : 4)).toBe(info.byteLength);
        if (t.data instanceof Float32Array) {
          expect(t.data.every(Number.isFinite)).toBe(true);
          total += t.data.length;
        }
      }
      f.close();
    }
    expect(total).toBe(2_164_452 + 1_621_696 + 658_375);

    const te = SafetensorsFile.open(textWeights);
    const info = te.info('text_model.embeddings.position_ids');
    expect(info.dtype).toBe('I64');
    expect(info.shape).toEqual([1, 77]);
    expect([...te.readInt64('text_model.embeddings.position_ids')]).toEqual(
      Array.from({ length: 77 }, (_, i) => BigInt(i)),
    );
    expectUserError(
      () => te.readFloat32('text_model.embeddings.position_ids'),
      textWeights,
      "'text_model.embeddings.position_ids'",
      'I64',
    );
    expectUserError(() => te.info('nope'), textWeights, "'nope'");
    te.close();
    // reading after close reopens the file
    expect(te.readFloat32('text_model.final_layer_norm.weight').length).toBe(32);
    te.close();
  });

  it('gives F32 weight sources an external pointer at the right bytes', () => {
    const f = SafetensorsFile.open(unetWeights);
    const src = weightSource(f, 'conv_in.weight');
    expect(src.shape).toEqual([32, 4, 3, 3]);
    expect(src.external).toBeDefined();
    const { path, offset, length } = src.external!;
    expect(path).toBe(f.path);
    expect(length).toBe(32 * 4 * 9 * 4);
    const bytes = readFileSync(path).subarray(offset, offset + length);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + length))).toEqual(src.read());
    f.close();
  });
});

describe('dtype conversion', () => {
  it('converts F16 exactly, including subnormals, signed zero, infinities and NaN', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x8001, -(2 ** -24)],
      [0x0000, 0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    const out = f16ToF32(Uint16Array.from(cases, (c) => c[0]));
    cases.forEach(([, v], i) => expect(out[i]).toBe(v));
    const special = f16ToF32(Uint16Array.of(0x8000, 0x7e00, 0xfc01));
    expect(Object.is(special[0], -0)).toBe(true);
    expect(Number.isNaN(special[1])).toBe(true);
    expect(Number.isNaN(special[2])).toBe(true);
    // every finite half agrees with the textbook formula
    const all = f16ToF32(Uint16Array.from({ length: 65536 }, (_, i) => i));
    for (let h = 0; h < 65536; h++) {
      const e = (h >> 10) & 31;
      if (e === 31) continue;
      const m = h & 1023;
      const v = (h & 0x8000 ? -1 : 1) * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
      if (all[h] !== v) throw new Error(`f16 0x${h.toString(16)}: ${all[h]} != ${v}`);
    }
  });

  it('converts BF16 exactly', () => {
    const out = bf16ToF32(Uint16Array.of(0x3f80, 0xc000, 0x4049, 0x7f80, 0xff80, 0x0001, 0x8000, 0x7fc0));
    expect([...out.subarray(0, 6)]).toEqual([1, -2, 3.140625, Infinity, -Infinity, 2 ** -133]);
    expect(Object.is(out[6], -0)).toBe(true);
    expect(Number.isNaN(out[7])).toBe(true);
  });

  it('reads F16, BF16, F64 and integer dtypes from a file', () => {
    const f16 = new Uint16Array([0x3c00, 0x0001, 0xfc00]);
    const bf16 = new Uint16Array([0x3f80, 0x4049]);
    const f64 = new Float64Array([0.1, -1e300]);
    const i32 = new Int32Array([-5, 2 ** 31 - 1]);
    const i16 = new Int16Array([-32768, 7]);
    const i8 = new Int8Array([-128, 127]);
    const u8 = new Uint8Array([0, 255]);
    const bool = new Uint8Array([0, 1]);
    const parts: [string, string, number[], ArrayBufferView][] = [
      ['f64', 'F64', [2], f64],
      ['i32', 'I32', [2], i32],
      ['f16', 'F16', [3], f16],
      ['bf16', 'BF16', [2], bf16],
      ['i16', 'I16', [2], i16],
      ['i8', 'I8', [2], i8],
      ['u8', 'U8', [2], u8],
      ['bool', 'BOOL', [2], bool],
    ];
    const header: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    let off = 0;
    for (const [name, dtype, shape, data] of parts) {
      header[name] = { dtype, shape, data_offsets: [off, off + data.byteLength] };
      chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      off += data.byteLength;
    }
    const f = SafetensorsFile.open(rawFile(header, Buffer.concat(chunks)));
    expect([...f.readFloat32('f16')]).toEqual([1, 2 ** -24, -Infinity]);
    expect([...f.readFloat32('bf16')]).toEqual([1, 3.140625]);
    expect([...f.readFloat32('f64')]).toEqual([Math.fround(0.1), -Infinity]);
    expect([...f.readInt64('i32')]).toEqual([-5n, 2147483647n]);
    expect([...f.readInt64('i16')]).toEqual([-32768n, 7n]);
    expect([...f.readInt64('i8')]).toEqual([-128n, 127n]);
    expect([...f.readInt64('u8')]).toEqual([0n, 255n]);
    expect([...f.readInt64('bool')]).toEqual([0n, 1n]);
    expect(f.read('f16').shape).toEqual([3]);
    expect(weightSource(f, 'f16').external).toBeUndefined();
    expectUserError(() => f.readInt64('f16'), "'f16'", 'F16');
    f.close();
  });
});

describe('writeSafetensors', () => {
  it('round-trips float32 and int64 tensors with metadata, in the reference layout', () => {
    const tensors: Record<string, Tensor | Int64Tensor> = {
      'b.weight': { data: Float32Array.of(1, -2.5, 3e-40, Infinity), shape: [2, 2] },
      'a.bias': { data: Float32Array.of(0.5), shape: [1] },
      scalar: { data: Float32Array.of(7), shape: [] },
      empty: { data: new Float32Array(0), shape: [0, 3] },
      ids: { data: BigInt64Array.of(-1n, 2n ** 62n, 3n), shape: [3] },
      unicodé: { data: Float32Array.of(1, 2), shape: [2] },
      ['__proto__']: { data: Float32Array.of(9), shape: [1] },
    };
    const p = tmpPath('round.safetensors');
    writeSafetensors(p, tensors, { format: 'pt', note: 'hello' });
    expect(Object.keys(tensors)).toContain('__proto__'); // a computed key is an own property
    const back = readSafetensors(p);
    expect(Object.keys(back).sort()).toEqual(Object.keys(tensors).sort());
    for (const [k, t] of Object.entries(tensors)) {
      expect(back[k]!.shape).toEqual(t.shape);
      expect(back[k]!.data).toEqual(t.data);
    }
    const f = SafetensorsFile.open(p);
    expect(f.metadata).toEqual({ format: 'pt', note: 'hello' });
    // 8-byte tensors first, then by name; data back to back from offset 0
    expect(f.names()).toEqual(['ids', '__proto__', 'a.bias', 'b.weight', 'empty', 'scalar', 'unicodé']);
    expect(f.info('ids').dtype).toBe('I64');
    f.close();
    const buf = readFileSync(p);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(buf.subarray(8, 8 + n).toString('utf8')).toMatch(
      /^\{"__metadata__":\{"format":"pt","note":"hello"\},"ids":\{"dtype":"I64","shape":\[3\],"data_offsets":\[0,24\]\}.*\} *$/,
    );
    expect(buf.length).toBe(8 + n + 24 + 4 + 4 + 16 + 0 + 4 + 8);
    // no temporary files left behind
    expect(readdirSync(tmp).filter((x) => x.includes('.tmp'))).toEqual([]);
  });

  it('defaults metadata to format=pt and replaces an existing file atomically', () => {
    const p = tmpPath('atomic.safetensors');
    writeSafetensors(p, { x: { data: Float32Array.of(1), shape: [1] } });
    expect(SafetensorsFile.open(p).metadata).toEqual({ format: 'pt' });
    // a failing write leaves the old file untouched and no temporary file
    expect(() => writeSafetensors(p, { x: { data: Float32Array.of(1, 2), shape: [3] } })).toThrow();
    expect(readSafetensors(p)['x']!.data).toEqual(Float32Array.of(1));
    writeSafetensors(p, { y: { data: Float32Array.of(2), shape: [1] } });
    expect(Object.keys(readSafetensors(p))).toEqual(['y']);
    expect(readdirSync(tmp).filter((x) => x.includes('.tmp'))).toEqual([]);
  });
});

describe('large files', () => {
  it('opens a (sparse) 4 GiB file reading only the header, and reads past 2^32 bytes', () => {
    const big = 2 ** 30; // F32 elements: 4 GiB of data
    const header = JSON.stringify({
      big: { dtype: 'F32', shape: [big], data_offsets: [0, big * 4] },
      tail: { dtype: 'F32', shape: [2], data_offsets: [big * 4, big * 4 + 8] },
    });
    const p = rawFile(header);
    const n = Buffer.byteLength(header);
    truncateSync(p, 8 + n + big * 4 + 8); // a hole: no disk or memory used
    const rss = process.memoryUsage().rss;
    const f = SafetensorsFile.open(p);
    expect(f.info('big').byteLength).toBe(big * 4);
    expect(f.info('tail').byteOffset).toBe(8 + n + big * 4);
    expect(f.readFloat32('tail')).toEqual(new Float32Array(2));
    expect(process.memoryUsage().rss - rss).toBeLessThan(256 * 2 ** 20);
    expect(weightSource(f, 'big').external).toEqual({ path: f.path, offset: 8 + n, length: big * 4 });
    f.close();
    rmSync(p);
  });
});

describe('malformed safetensors files', () => {
  const f32 = (n: number) => new Uint8Array(n * 4);

  it('rejects a file shorter than 8 bytes', () => {
    const p = tmpPath('short.safetensors');
    writeFileSync(p, Buffer.from([1, 2, 3]));
    expectUserError(() => SafetensorsFile.open(p), p, 'too short');
  });

  it('rejects a missing file', () => {
    const p = join(tmp, 'does-not-exist.safetensors');
    expectUserError(() => SafetensorsFile.open(p), p, 'no such file');
  });

  it('rejects a header length past the end or absurdly large', () => {
    const p = tmpPath('len.safetensors');
    const b = Buffer.alloc(20);
    b.writeBigUInt64LE(1000n);
    writeFileSync(p, b);
    expectUserError(() => SafetensorsFile.open(p), p, 'past the end');
    b.writeBigUInt64LE(2n ** 60n);
    writeFileSync(p, b);
    expectUserError(() => SafetensorsFile.open(p), p, 'absurdly large');
  });

  it('rejects a header that is not a JSON object', () => {
    let p = rawFile('{"a": {"dtype": "F32",');
    expectUserError(() => SafetensorsFile.open(p), p, 'not valid JSON');
    p = rawFile('[1, 2]');
    expectUserError(() => SafetensorsFile.open(p), p, 'JSON object');
    p = rawFile('{"x":\n\n');
    expectUserError(() => SafetensorsFile.open(p), p, 'not valid JSON');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(2n);
    p = tmpPath('utf8.safetensors');
    writeFileSync(p, Buffer.concat([len, Buffer.from([0xff, 0xfe])]));
    expectUserError(() => SafetensorsFile.open(p), p, 'UTF-8');
  });

  it('rejects entries missing dtype, shape or data_offsets', () => {
    for (const field of ['dtype', 'shape', 'data_offsets']) {
      const entry: Record<string, unknown> = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
      delete entry[field];
      const p = rawFile({ 'w.x': entry }, f32(2));
      expectUserError(() => SafetensorsFile.open(p), p, "'w.x'", field);
    }
    const p = rawFile({ 'w.x': 'F32' }, f32(2));
    expectUserError(() => SafetensorsFile.open(p), p, "'w.x'", 'object');
  });

  it('rejects an unknown dtype', () => {
    const p = rawFile({ k: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16));
    expectUserError(() => SafetensorsFile.open(p), p, "'k'", 'F128');
  });

  it('rejects negative or non-integer dimensions', () => {
    for (const shape of [[-1, 2], [1.5], ['2'], 3]) {
      const p = rawFile({ k: { dtype: 'F32', shape, data_offsets: [0, 8] } }, f32(2));
      expectUserError(() => SafetensorsFile.open(p), p, "'k'", 'shape');
    }
  });

  it('rejects malformed data_offsets', () => {
    for (const offsets of [[8, 0], [0], [0, 8, 16], ['0', '8'], [-8, 0], [0.5, 8]]) {
      const p = rawFile({ k: { dtype: 'F32', shape: [2], data_offsets: offsets } }, f32(2));
      expectUserError(() => SafetensorsFile.open(p), p, "'k'", 'data_offsets');
    }
  });

  it('rejects a byte length that does not match the shape', () => {
    const p = rawFile({ k: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, f32(2));
    expectUserError(() => SafetensorsFile.open(p), p, "'k'", 'needs 6 bytes');
  });

  it('rejects a truncated file', () => {
    const bytes = readFileSync(vaeWeights);
    const p = tmpPath('truncated.safetensors');
    writeFileSync(p, bytes.subarray(0, bytes.length - 100));
    expectUserError(() => SafetensorsFile.open(p), p, 'truncated');
  });

  it('rejects overlapping tensors', () => {
    const p = rawFile(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      },
      f32(3),
    );
    expectUserError(() => SafetensorsFile.open(p), p, "'a'", "'b'", 'overlap');
  });

  it('rejects __metadata__ that is not a string map', () => {
    let p = rawFile({ __metadata__: { format: 1 } });
    expectUserError(() => SafetensorsFile.open(p), p, '__metadata__', "'format'");
    p = rawFile({ __metadata__: ['pt'] });
    expectUserError(() => SafetensorsFile.open(p), p, '__metadata__');
  });

  it('keeps messages on one line even for names with newlines', () => {
    const p = rawFile({ 'evil\nname': { dtype: 'X', shape: [1], data_offsets: [0, 4] } }, f32(1));
    expectUserError(() => SafetensorsFile.open(p), p, "'evil\\nname'");
  });
});

describe('WeightStore', () => {
  it('hands out checked weight sources and tracks what was used', () => {
    const store = WeightStore.open(unetWeights);
    expect(store.paramCount()).toBe(2_164_452);
    expect(store.keys().length).toBe(494);
    expect(store.dtypeOf('conv_in.weight')).toBe('F32');
    const src = store.source('conv_in.weight', [32, 4, 3, 3]);
    expect(src.read().length).toBe(32 * 4 * 9);
    expectUserError(() => store.source('conv_in.nope', [1]), "missing weight 'conv_in.nope' in", unetWeights);
    expectUserError(
      () => store.source('conv_in.bias', [64]),
      `weight 'conv_in.bias' in ${unetWeights} has shape [32], the config expects [64]`,
    );
    expect(store.unused().length).toBe(493);
    const msg = expectUserError(() => store.assertAllUsed(), unetWeights, '493 unexpected weights', 'and 488 more');
    expect(msg).toContain("'conv_in.bias'");
    store.assertAllUsed((k) => k !== 'conv_in.weight');
    store.close();
  });

  it('refuses an integer tensor as a weight', () => {
    const store = WeightStore.open(textWeights);
    expect(store.paramCount()).toBe(1_621_696);
    expectUserError(() => store.source('text_model.embeddings.position_ids', [1, 77]), 'I64');
    store.close();
  });

  it('reads sharded checkpoints through their index', () => {
    const dir = tmpPath('sharded');
    mkdirSync(dir);
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: { data: Float32Array.of(1, 2), shape: [2] } });
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { b: { data: Float32Array.of(3), shape: [1] } });
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(
      index,
      JSON.stringify({
        metadata: {},
        weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
      }),
    );
    const store = WeightStore.openIndex(index);
    expect(store.keys().sort()).toEqual(['a', 'b']);
    expect(store.source('b', [1]).read()).toEqual(Float32Array.of(3));
    expectUserError(() => store.assertAllUsed(), index, "'a'");
    expectUserError(() => store.source('c', [1]), "missing weight 'c' in", index);
    store.close();
    writeFileSync(index, JSON.stringify({ weight_map: { a: 'model-00002-of-00002.safetensors' } }));
    expectUserError(() => WeightStore.openIndex(index), index, "'a'");
  });
});

describe('config accessors', () => {
  const file = '/x/unet/config.json';
  const cfg = { n: 3, f: 0.5, s: 'silu', b: true, arr: [1, 2], sarr: ['A', 'B'], nul: null, bad: 'x' };
  it('read typed values and defaults', () => {
    expect(configInt(cfg, 'n', file)).toBe(3);
    expect(configNumber(cfg, 'f', file)).toBe(0.5);
    expect(configString(cfg, 's', file)).toBe('silu');
    expect(configBool(cfg, 'b', file)).toBe(true);
    expect(configNumberArray(cfg, 'arr', file)).toEqual([1, 2]);
    expect(configStringArray(cfg, 'sarr', file)).toEqual(['A', 'B']);
    expect(configNumberOrArray(cfg, 'n', file)).toBe(3);
    expect(configNumber(cfg, 'missing', file, 7)).toBe(7);
    expect(configNumber(cfg, 'nul', file, 7)).toBe(7);
  });
  it('name the file and key on errors', () => {
    expectUserError(() => configNumber(cfg, 'missing', file), `${file}: missing config key 'missing'`);
    expectUserError(() => configNumber(cfg, 'bad', file), `${file}: config key 'bad' must be a number, found "x"`);
    expectUserError(() => configInt(cfg, 'f', file), "config key 'f' must be an integer, found 0.5");
    expectUserError(() => configStringArray(cfg, 'arr', file), "'arr' must be a list of strings");
    expectUserError(() => configNumber(cfg, 'nul', file), "'nul' must be a number, found null");
  });
});

describe('s2i.json sampling defaults', () => {
  const dir = mkdtempSync(join(tmpdir(), 's2i-sampling-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it('reads steps and guidance, is empty without the file, and names the file and key when wrong', () => {
    expect(readSamplingDefaults(dir)).toEqual({});
    writeFileSync(join(dir, 's2i.json'), '{"steps": 25, "guidance": 5}');
    expect(readSamplingDefaults(dir)).toEqual({ steps: 25, guidance: 5 });
    writeFileSync(join(dir, 's2i.json'), '{"steps": 2.5}');
    expectUserError(
      () => readSamplingDefaults(dir),
      `${join(dir, 's2i.json')}: config key 'steps' must be a positive integer`,
    );
    writeFileSync(join(dir, 's2i.json'), '{"guidance": "high"}');
    expectUserError(() => readSamplingDefaults(dir), "config key 'guidance' must be a number");
  });
});

describe('model folders', () => {
  it('opens tiny-sd and its components', () => {
    const m = openModelFolder(tinySdDir);
    expect(m.pipelineClass).toBe('StableDiffusionPipeline');
    expect(m.componentNames()).toEqual(['text_encoder', 'tokenizer', 'unet', 'vae', 'scheduler']);
    expect(m.has('safety_checker')).toBe(false);
    const unet = m.component('unet');
    expect(unet.className).toBe('UNet2DConditionModel');
    expect(configNumber(unet.config, 'sample_size', unet.configPath)).toBe(32);
    expect(unet.weights().paramCount()).toBe(2_164_452);
    expect(m.component('scheduler').config['_class_name']).toBe('PNDMScheduler');
    expect(m.component('tokenizer').hasWeights).toBe(false);
    expectUserError(() => m.component('tokenizer').weights(), 'no weights');
    expectUserError(() => m.component('safety_checker'), 'safety_checker');
    expect(m.componentDir('tokenizer')).toBe(join(tinySdDir, 'tokenizer'));
    m.close();
  });

  it('works without model_index.json, finds variants, and reports missing parts', () => {
    const dir = tmpPath('model');
    mkdirSync(join(dir, 'unet'), { recursive: true });
    mkdirSync(join(dir, 'vae'));
    copyFileSync(join(tinySdDir, 'unet', 'config.json'), join(dir, 'unet', 'config.json'));
    writeSafetensors(join(dir, 'unet', 'diffusion_pytorch_model.fp16.safetensors'), {
      w: { data: Float32Array.of(1), shape: [1] },
    });
    const m = openModelFolder(dir);
    expect(m.index).toBeNull();
    expect(m.componentNames()).toEqual(['unet', 'vae']);
    expect(m.component('unet').weights().keys()).toEqual(['w']);
    expect(openModelFolder(dir, { variant: 'fp16' }).component('unet').weights().keys()).toEqual(['w']);
    expectUserError(() => openModelFolder(dir, { variant: 'bf16' }).component('unet'), 'bf16');
    expectUserError(() => m.component('vae'), join(dir, 'vae'), 'config.json');
    writeFileSync(join(dir, 'vae', 'config.json'), '{}');
    expectUserError(() => openModelFolder(dir).component('vae'), join(dir, 'vae'), 'no weights');
    expectUserError(() => m.component('text_encoder'), 'text_encoder');
    writeFileSync(join(dir, 'unet', 'config.json'), '{"a": ');
    expectUserError(() => openModelFolder(dir).component('unet'), join(dir, 'unet', 'config.json'), 'not valid JSON');
  });

  it('reports a missing folder, or a file instead of a folder', () => {
    const p = join(tmp, 'no-such-model');
    expectUserError(() => openModelFolder(p), p, 'not found');
    expectUserError(() => openModelFolder(unetWeights), 'single-file checkpoint');
    const empty = tmpPath('empty');
    mkdirSync(empty);
    expectUserError(() => openModelFolder(empty), empty, 'not a diffusers model folder');
  });

  it('refuses pickle checkpoints without opening them', () => {
    for (const name of ['model.ckpt', 'x.pt', 'x.pth', 'x.bin', 'x.pkl']) {
      const p = tmpPath(name);
      writeFileSync(p, 'not really a pickle');
      const msg = expectUserError(() => openModelFolder(p), p, 'pickle', 'safetensors', 'safe_serialization=True');
      expect(msg).toContain('execute');
    }
    // a folder holding only a pickle checkpoint
    const dir = tmpPath('pickles');
    mkdirSync(dir);
    writeFileSync(join(dir, 'v1-5-pruned.ckpt'), 'x');
    expectUserError(() => openModelFolder(dir), join(dir, 'v1-5-pruned.ckpt'), 'pickle');
    // a component with only pytorch .bin weights
    mkdirSync(join(dir, 'unet'));
    writeFileSync(join(dir, 'unet', 'config.json'), '{}');
    writeFileSync(join(dir, 'unet', 'diffusion_pytorch_model.bin'), 'x');
    expectUserError(
      () => openModelFolder(dir).component('unet'),
      join(dir, 'unet', 'diffusion_pytorch_model.bin'),
      'pickle',
    );
  });
});

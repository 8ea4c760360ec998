import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { decodePng, encodePng, writePngAtomic } from '../../src/image/png.js';

const dir = mkdtempSync(join(tmpdir(), 's2i-png-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pattern(w: number, h: number): Uint8Array {
  const d = new Uint8Array(w * h * 3);
  for (let i = 0; i < d.length; i++) d[i] = (i * 37 + (i >> 5)) & 255;
  return d;
}

/** A PNG written by pngjs itself in the given colour type / bit depth, from RGBA 8-bit data. */
function foreignPng(rgba: Uint8Array, w: number, h: number, colorType: 0 | 2 | 4 | 6, bitDepth: 8 | 16): Buffer {
  const png = new PNG({ width: w, height: h });
  // pngjs takes 16-bit input as native-endian 16-bit samples.
  png.data = bitDepth === 8 ? Buffer.from(rgba) : Buffer.from(Uint16Array.from(rgba, (v) => v * 257).buffer);
  return PNG.sync.write(png, { colorType, bitDepth, inputColorType: 6, inputHasAlpha: true });
}

describe('encodePng / decodePng', () => {
  it('round-trips RGB exactly and writes an 8-bit RGB PNG', () => {
    const rgb = pattern(7, 5);
    const buf = encodePng(rgb, 7, 5);
    expect([...buf.subarray(1, 4)].map((c) => String.fromCharCode(c)).join('')).toBe('PNG');
    expect(buf[24]).toBe(8); // bit depth
    expect(buf[25]).toBe(2); // colour type RGB
    const img = decodePng(buf);
    expect(img.width).toBe(7);
    expect(img.height).toBe(5);
    expect(Buffer.from(img.data).equals(Buffer.from(rgb))).toBe(true);
  });

  it('accepts a subarray view (byteOffset) as input', () => {
    const big = new Uint8Array(3 + 4 * 4 * 3);
    big.set(pattern(4, 4), 3);
    const img = decodePng(encodePng(big.subarray(3), 4, 4));
    expect([...img.data]).toEqual([...pattern(4, 4)]);
  });

  it('rejects a wrong buffer length', () => {
    expect(() => encodePng(new Uint8Array(10), 2, 2)).toThrow(/2x2x3/);
  });

  it('composites RGBA over white (or a given background)', () => {
    const rgba = Uint8Array.from([255, 0, 0, 255, 255, 0, 0, 0, 0, 0, 255, 128, 10, 20, 30, 255]);
    const buf = foreignPng(rgba, 2, 2, 6, 8);
    expect([...decodePng(buf).data]).toEqual([255, 0, 0, 255, 255, 255, 127, 127, 255, 10, 20, 30]);
    expect([...decodePng(buf, { background: [0, 0, 0] }).data.subarray(3, 9)]).toEqual([0, 0, 0, 0, 0, 128]);
  });

  it('converts grey, grey+alpha and 16-bit PNGs to 8-bit RGB', () => {
    const rgba = Uint8Array.from([0, 0, 0, 255, 100, 100, 100, 255, 200, 200, 200, 255, 255, 255, 255, 255]);
    for (const [ct, depth] of [
      [0, 8],
      [4, 8],
      [0, 16],
      [2, 16],
      [6, 16],
    ] as const) {
      const img = decodePng(foreignPng(rgba, 2, 2, ct, depth));
      expect([...img.data], `colorType ${ct} depth ${depth}`).toEqual([
        0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255,
      ]);
    }
  });

  it('reads files by path; missing, corrupt and directory paths are UserErrors naming the file', () => {
    const good = join(dir, 'good.png');
    writeFileSync(good, encodePng(pattern(3, 3), 3, 3));
    expect(decodePng(good).width).toBe(3);

    const missing = join(dir, 'missing.png');
    expect(() => decodePng(missing)).toThrow(UserError);
    expect(() => decodePng(missing)).toThrow(missing);

    const corrupt = join(dir, 'corrupt.png');
    writeFileSync(corrupt, 'this is not a png');
    expect(() => decodePng(corrupt)).toThrow(UserError);
    expect(() => decodePng(corrupt)).toThrow(new RegExp(`${corrupt}.*not a valid PNG`));

    const truncated = join(dir, 'truncated.png');
    writeFileSync(truncated, encodePng(pattern(16, 16), 16, 16).subarray(0, 60));
    expect(() => decodePng(truncated)).toThrow(UserError);

    expect(() => decodePng(dir)).toThrow(/is a directory/);
    expect(() => decodePng(Buffer.from('nope'), { name: 'upload.png' })).toThrow(/upload\.png is not a valid PNG/);
  });
});

describe('writePngAtomic', () => {
  it('writes the file and leaves no temporary files', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'out.png');
    writePngAtomic(path, pattern(5, 6), 5, 6);
    writePngAtomic(path, pattern(5, 6), 5, 6); // overwriting is fine
    expect(readdirSync(sub)).toEqual(['out.png']);
    expect(decodePng(readFileSync(path)).height).toBe(6);
  });

  it('fails with a UserError when the directory is missing, and on bad data leaves nothing behind', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    expect(() => writePngAtomic(join(sub, 'no', 'such', 'x.png'), pattern(2, 2), 2, 2)).toThrow(UserError);
    expect(() => writePngAtomic(join(sub, 'x.png'), new Uint8Array(5), 2, 2)).toThrow();
    expect(readdirSync(sub)).toEqual([]);
  });
});

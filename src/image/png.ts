/**
 * PNG input/output (pngjs). Everything is 8-bit RGB in memory: grey, palette, 16-bit and alpha PNGs are converted on
 * load (16-bit rounded to 8-bit, alpha composited over a background, white unless told otherwise).
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { inflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { sync as writeFileAtomicSync } from 'write-file-atomic';
import { UserError } from '../errors.js';
import { syncFolder } from '../io/durable.js';
import { readInputFile } from '../io/regular-file.js';
import { checkMemory } from '../util/memory.js';
import { checkSize, type Rgb, type RgbImage, WHITE } from './image.js';

/** Encodes 8-bit interleaved RGB as a PNG (colour type 2, 8 bits per channel). */
export function encodePng(rgb: Uint8Array, width: number, height: number): Buffer {
  checkSize(width, height, 'encodePng');
  if (rgb.length !== width * height * 3) {
    throw new Error(`encodePng: ${rgb.length} bytes is not ${width}x${height}x3 = ${width * height * 3}`);
  }
  const png = new PNG({ width: 0, height: 0 }); // no buffer allocated; we supply the RGB one
  png.width = width;
  png.height = height;
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 8 });
}

export interface DecodeOptions {
  /** Colour that transparent pixels are composited over (default white, the shapes world's background). */
  background?: Rgb;
  /** Name used in error messages when `source` is a buffer (default "image"). */
  name?: string;
  /** Memory the caller will use per pixel after decoding, counted in the memory-budget check. */
  bytesPerPixel?: number;
}

/** A PNG file larger than this is refused before it is read (PNG files here are pictures, not archives). */
const MAX_PNG_FILE_BYTES = 1024 ** 3;

export interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  interlaced: boolean;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Bit depths allowed for each colour type (PNG spec, table 11.1) and samples per pixel. */
const COLOR_TYPES: Record<number, { depths: number[]; samples: number }> = {
  0: { depths: [1, 2, 4, 8, 16], samples: 1 },
  2: { depths: [8, 16], samples: 3 },
  3: { depths: [1, 2, 4, 8], samples: 1 },
  4: { depths: [8, 16], samples: 2 },
  6: { depths: [8, 16], samples: 4 },
};
/** CRC-32 as PNG chunks use it (zlib's; node:zlib's crc32 needs Node 20.15). */
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** PNG's own limit on a side (2^31 - 1). */
const MAX_SIDE = 0x7fffffff;

/** The IHDR of a PNG (the first 33 bytes suffice), checked; throws a `UserError` naming `name`. */
export function readPngHeader(buf: Uint8Array, name = 'image'): PngHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const bad = (why: string) => new UserError(`${name} is not a valid PNG file (${why})`);
  if (b.length < 8 || !b.subarray(0, 8).equals(PNG_SIGNATURE)) throw bad('no PNG signature');
  if (b.length < 33 || b.toString('latin1', 12, 16) !== 'IHDR' || b.readUInt32BE(8) !== 13)
    throw bad('the first chunk is not a 13-byte IHDR');
  const width = b.readUInt32BE(16);
  const height = b.readUInt32BE(20);
  const [bitDepth, colorType, compression, filter, interlace] = [b[24]!, b[25]!, b[26]!, b[27]!, b[28]!];
  if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) throw bad(`size ${width}x${height}`);
  const ct = COLOR_TYPES[colorType];
  if (!ct) throw bad(`colour type ${colorType}`);
  if (!ct.depths.includes(bitDepth)) throw bad(`bit depth ${bitDepth} with colour type ${colorType}`);
  if (compression !== 0 || filter !== 0 || interlace > 1)
    throw bad(`compression ${compression}, filter ${filter}, interlace ${interlace}`);
  return { width, height, bitDepth, colorType, interlaced: interlace === 1 };
}

/** Bytes of the decompressed image data (filter byte + packed samples per row, for each Adam7 pass if interlaced). */
function rawDataBytes(h: PngHeader): number {
  const bits = COLOR_TYPES[h.colorType]!.samples * h.bitDepth;
  const rows = (w: number, n: number) => (w > 0 && n > 0 ? n * (1 + Math.ceil((w * bits) / 8)) : 0);
  if (!h.interlaced) return rows(h.width, h.height);
  // Adam7: [x0, y0, dx, dy] of the seven passes.
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ] as const;
  return passes.reduce(
    (s, [x0, y0, dx, dy]) => s + rows(Math.ceil((h.width - x0) / dx), Math.ceil((h.height - y0) / dy)),
    0,
  );
}

/**
 * Checks a PNG's structure before it is decoded: every chunk within the file with a correct CRC, IHDR first, the
 * image data (IDAT) a complete zlib stream of exactly the size the header implies, IEND present. pngjs accepts
 * image data that stops early and returns uninitialised memory for the missing rows; this refuses it.
 */
function checkPngStructure(b: Buffer, header: PngHeader, name: string): void {
  const bad = (why: string) => new UserError(`${name} is not a valid PNG file (${why})`);
  const idat: Buffer[] = [];
  let off = 8;
  let sawEnd = false;
  while (off < b.length) {
    if (off + 12 > b.length) throw bad(`truncated chunk at byte ${off}`);
    const len = b.readUInt32BE(off);
    const type = b.toString('latin1', off + 4, off + 8);
    if (!/^[A-Za-z]{4}$/.test(type)) throw bad(`bad chunk type at byte ${off}`);
    if (len > 0x7fffffff || off + 12 + len > b.length) throw bad(`chunk ${type} runs past the end of the file`);
    const crc = b.readUInt32BE(off + 8 + len);
    if (crc32(b.subarray(off + 4, off + 8 + len)) !== crc) throw bad(`chunk ${type} has a wrong CRC`);
    if (type === 'IDAT') idat.push(b.subarray(off + 8, off + 8 + len));
    off += 12 + len;
    if (type === 'IEND') {
      sawEnd = true;
      break;
    }
  }
  if (!sawEnd) throw bad('no IEND chunk: the file is truncated');
  if (idat.length === 0) throw bad('no image data (IDAT)');
  const want = rawDataBytes(header);
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: want + 1 });
  } catch (e) {
    const why =
      (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
        ? 'more image data than its size'
        : 'a broken or truncated zlib stream';
    throw bad(`the image data is ${why}`);
  }
  if (raw.length !== want)
    throw bad(`the image data has ${raw.length} bytes, ${header.width}x${header.height} needs ${want}: truncated`);
}

/**
 * Decodes a PNG from a buffer or a file path into 8-bit RGB. Missing, unreadable, special (FIFO, device), corrupt
 * or truncated files throw a `UserError` that names the file; so does an image too large for the memory budget
 * (checked from the header, before anything is decoded).
 */
export function decodePng(source: Uint8Array | string, options: DecodeOptions = {}): RgbImage {
  const name = typeof source === 'string' ? source : (options.name ?? 'image');
  const bytes = typeof source === 'string' ? readInputFile(source, 'image', MAX_PNG_FILE_BYTES) : source;
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = readPngHeader(buf, name);
  checkMemory(
    rawDataBytes(header) + header.width * header.height * (4 + 3 + (options.bytesPerPixel ?? 0)),
    `image ${name} (${header.width}x${header.height})`,
  );
  checkPngStructure(buf, header, name);
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    png = PNG.sync.read(buf);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(`${name} is not a valid PNG file (${why})`, { cause: e });
  }
  const { width, height } = png;
  const rgba = png.data; // always 8-bit RGBA after pngjs normalisation
  if (rgba.length < width * height * 4) throw new UserError(`${name} is not a valid PNG file (truncated pixel data)`);
  const bg = options.background ?? WHITE;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < data.length; i += 4, j += 3) {
    const a = rgba[i + 3]!;
    if (a === 255) {
      data[j] = rgba[i]!;
      data[j + 1] = rgba[i + 1]!;
      data[j + 2] = rgba[i + 2]!;
    } else {
      data[j] = Math.round((rgba[i]! * a + bg[0] * (255 - a)) / 255);
      data[j + 1] = Math.round((rgba[i + 1]! * a + bg[1] * (255 - a)) / 255);
      data[j + 2] = Math.round((rgba[i + 2]! * a + bg[2] * (255 - a)) / 255);
    }
  }
  return { data, width, height };
}

/** `decodePng(path)`. */
export function readPng(path: string, options: DecodeOptions = {}): RgbImage {
  return decodePng(path, options);
}

/**
 * Writes bytes to `path` atomically and durably (write-file-atomic: a temporary file in the same directory, fsync,
 * rename; then the folder is fsynced), so readers never see a partial file and an error or a killed process leaves
 * no half-written file under `path`.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  if (!existsSync(dir)) throw new UserError(`cannot write ${path}: directory ${dir} does not exist`);
  try {
    writeFileAtomicSync(path, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)); // fsyncs the file
    syncFolder(dir); // and the rename
  } catch (e) {
    throw new UserError(`cannot write ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Encodes RGB as PNG and writes it atomically (see `writeFileAtomic`). */
export function writePngAtomic(path: string, rgb: Uint8Array, width: number, height: number): void {
  writeFileAtomic(path, encodePng(rgb, width, height));
}

/** `writePngAtomic` for an `RgbImage`. */
export function writePng(path: string, img: RgbImage): void {
  writePngAtomic(path, img.data, img.width, img.height);
}

/**
 * PNG input/output (pngjs). Everything is 8-bit RGB in memory: grey, palette, 16-bit and alpha PNGs are converted on
 * load (16-bit rounded to 8-bit, alpha composited over a background, white unless told otherwise).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { PNG } from 'pngjs';
import { sync as writeFileAtomicSync } from 'write-file-atomic';
import { UserError } from '../errors.js';
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
}

/**
 * Decodes a PNG from a buffer or a file path into 8-bit RGB. Missing, unreadable or corrupt files throw a `UserError`
 * that names the file.
 */
export function decodePng(source: Uint8Array | string, options: DecodeOptions = {}): RgbImage {
  let buf: Buffer;
  let name: string;
  if (typeof source === 'string') {
    name = source;
    if (!existsSync(source)) throw new UserError(`image ${source} does not exist`);
    if (statSync(source).isDirectory()) throw new UserError(`image ${source} is a directory, not a PNG file`);
    try {
      buf = readFileSync(source);
    } catch (e) {
      throw new UserError(`cannot read image ${source}: ${(e as Error).message}`, { cause: e });
    }
  } else {
    name = options.name ?? 'image';
    buf = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  }
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
 * Writes bytes to `path` atomically (write-file-atomic: a temporary file in the same directory, fsync, rename), so
 * readers never see a partial file and an error or a killed process leaves no half-written file under `path`.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  if (!existsSync(dir)) throw new UserError(`cannot write ${path}: directory ${dir} does not exist`);
  try {
    writeFileAtomicSync(path, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
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

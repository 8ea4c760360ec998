/**
 * The host image type used across the project: 8-bit RGB, interleaved, row-major (`data[(y * width + x) * 3 + c]`),
 * no alpha. PNG input with alpha is composited over a background on load (see `decodePng`).
 */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export type Rgb = readonly [number, number, number];

export const WHITE: Rgb = [255, 255, 255];
export const BLACK: Rgb = [0, 0, 0];

/** A new image filled with one colour (white by default). */
export function createImage(width: number, height: number, fill: Rgb = WHITE): RgbImage {
  checkSize(width, height, 'createImage');
  const data = new Uint8Array(width * height * 3);
  if (fill[0] === fill[1] && fill[1] === fill[2]) data.fill(fill[0]);
  else for (let i = 0; i < data.length; i += 3) ((data[i] = fill[0]), (data[i + 1] = fill[1]), (data[i + 2] = fill[2]));
  return { data, width, height };
}

/** Wraps raw RGB bytes as an image after checking the length. */
export function rgbImage(data: Uint8Array, width: number, height: number): RgbImage {
  checkSize(width, height, 'rgbImage');
  if (data.length !== width * height * 3) {
    throw new Error(`rgbImage: ${data.length} bytes is not ${width}x${height}x3 = ${width * height * 3}`);
  }
  return { data, width, height };
}

export function checkSize(width: number, height: number, what: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`${what}: image size must be positive integers, got ${width}x${height}`);
  }
}

/** Copies `src` into `dst` with its top-left corner at (x, y), clipping at the edges. */
export function blit(dst: RgbImage, src: RgbImage, x: number, y: number): void {
  const x0 = Math.max(0, x),
    y0 = Math.max(0, y);
  const x1 = Math.min(dst.width, x + src.width),
    y1 = Math.min(dst.height, y + src.height);
  if (x1 <= x0) return;
  for (let yy = y0; yy < y1; yy++) {
    const s = ((yy - y) * src.width + (x0 - x)) * 3;
    dst.data.set(src.data.subarray(s, s + (x1 - x0) * 3), (yy * dst.width + x0) * 3);
  }
}

/** Fills the rectangle [x, x + w) x [y, y + h) (clipped) with a colour. */
export function fillRect(img: RgbImage, x: number, y: number, w: number, h: number, colour: Rgb): void {
  const x0 = Math.max(0, x),
    y0 = Math.max(0, y);
  const x1 = Math.min(img.width, x + w),
    y1 = Math.min(img.height, y + h);
  for (let yy = y0; yy < y1; yy++) {
    for (let xx = x0; xx < x1; xx++) {
      const i = (yy * img.width + xx) * 3;
      img.data[i] = colour[0];
      img.data[i + 1] = colour[1];
      img.data[i + 2] = colour[2];
    }
  }
}

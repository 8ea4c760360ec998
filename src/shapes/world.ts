/**
 * The shapes world: a tiny, exactly scorable text-to-image domain. Flat-coloured shapes on a white background,
 * rendered with crisp (non-antialiased) edges at 32x32 by default.
 *
 * Vocabulary: three shapes (circle, square, upward triangle) and six saturated colours. More shapes were left out on
 * purpose: at 32x32 with 8-px objects, and on blurry model samples, anything beyond these three (diamond, cross,
 * star...) starts to be confused with them, and the point of the world is an exact scorer.
 */

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type Shape = (typeof SHAPES)[number];

export const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'] as const;
export type Colour = (typeof COLOURS)[number];

export type Rgb = readonly [number, number, number];

/**
 * The fixed palette (sRGB, 0–255). Chosen to keep the close pairs (blue/purple, red/orange, orange/yellow) at least
 * ~40 apart in the scorer's lightness-discounted CIELAB distance, so that it tolerates drift, blur and noise.
 */
export const PALETTE: Readonly<Record<Colour, Rgb>> = {
  red: [210, 20, 45],
  green: [30, 160, 60],
  blue: [25, 100, 230],
  yellow: [245, 220, 20],
  purple: [155, 40, 175],
  orange: [250, 140, 10],
};

export const BACKGROUND: Rgb = [255, 255, 255];

/** Default image side in pixels. */
export const DEFAULT_SIZE = 32;
/** Default object sizes (bounding-box side) at 32x32; scaled proportionally for other image sizes. */
export const DEFAULT_MIN_OBJECT = 8;
export const DEFAULT_MAX_OBJECT = 14;

export function isShape(s: string): s is Shape {
  return (SHAPES as readonly string[]).includes(s);
}

export function isColour(s: string): s is Colour {
  return (COLOURS as readonly string[]).includes(s);
}

/** One object of a scene: a shape of `colour` inside the `size` x `size` box whose top-left pixel is (x, y). */
export interface SceneObject {
  shape: Shape;
  colour: Colour;
  x: number;
  y: number;
  size: number;
}

export interface Scene {
  width: number;
  height: number;
  /** In caption order. */
  objects: SceneObject[];
}

/**
 * Whether continuous point (u, v) of a w x h box lies inside the shape: square = the box, circle = the inscribed
 * ellipse, triangle = apex at the top centre, base along the bottom edge.
 */
export function shapeContains(shape: Shape, w: number, h: number, u: number, v: number): boolean {
  switch (shape) {
    case 'square':
      return u >= 0 && u <= w && v >= 0 && v <= h;
    case 'circle': {
      const a = (u - w / 2) / (w / 2),
        b = (v - h / 2) / (h / 2);
      return a * a + b * b <= 1;
    }
    case 'triangle':
      return v >= 0 && v <= h && Math.abs(u - w / 2) <= (v / h) * (w / 2);
  }
}

const SUPERSAMPLE = 8;
const maskCache = new Map<string, Uint8Array>();

/**
 * The shape rasterised into a w x h box (row-major, 1 = inside): a pixel is set when at least half of it is covered
 * (8x8 supersampling). Crisp edges, no antialiasing. Cached; do not modify the result.
 */
export function shapeMask(shape: Shape, w: number, h: number = w): Uint8Array {
  const key = `${shape}:${w}:${h}`;
  let m = maskCache.get(key);
  if (m) return m;
  m = new Uint8Array(w * h);
  const n = SUPERSAMPLE;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let hits = 0;
      for (let sy = 0; sy < n; sy++) {
        for (let sx = 0; sx < n; sx++) if (shapeContains(shape, w, h, x + (sx + 0.5) / n, y + (sy + 0.5) / n)) hits++;
      }
      m[y * w + x] = hits * 2 >= n * n ? 1 : 0;
    }
  }
  if (maskCache.size > 4096) maskCache.clear();
  maskCache.set(key, m);
  return m;
}

/** Renders a scene to interleaved 8-bit RGB (white background), into `out` when given. */
export function renderScene(scene: Scene, out?: Uint8Array): Uint8Array {
  const { width, height } = scene;
  const data = out ?? new Uint8Array(width * height * 3);
  if (data.length !== width * height * 3) throw new Error('renderScene: output array has the wrong size');
  data.fill(255);
  for (const o of scene.objects) {
    const m = shapeMask(o.shape, o.size);
    const [r, g, b] = PALETTE[o.colour];
    for (let j = 0; j < o.size; j++) {
      const y = o.y + j;
      if (y < 0 || y >= height) continue;
      for (let i = 0; i < o.size; i++) {
        const x = o.x + i;
        if (x < 0 || x >= width || !m[j * o.size + i]) continue;
        const k = (y * width + x) * 3;
        data[k] = r;
        data[k + 1] = g;
        data[k + 2] = b;
      }
    }
  }
  return data;
}

/**
 * Renders a scene straight into a channel-first float batch ([3, H, W] at `offset`), values in [-1, 1]
 * (background 1.0). Used by `sampleBatch`; equal to `rgb8ToFloat(renderScene(scene))`.
 */
export function renderSceneFloat(scene: Scene, out: Float32Array, offset = 0): void {
  const { width, height } = scene;
  const plane = width * height;
  out.fill(1, offset, offset + 3 * plane);
  for (const o of scene.objects) {
    const m = shapeMask(o.shape, o.size);
    const rgb = PALETTE[o.colour];
    const c0 = (rgb[0] * 2) / 255 - 1,
      c1 = (rgb[1] * 2) / 255 - 1,
      c2 = (rgb[2] * 2) / 255 - 1;
    for (let j = 0; j < o.size; j++) {
      const y = o.y + j;
      if (y < 0 || y >= height) continue;
      for (let i = 0; i < o.size; i++) {
        const x = o.x + i;
        if (x < 0 || x >= width || !m[j * o.size + i]) continue;
        const p = offset + y * width + x;
        out[p] = c0;
        out[p + plane] = c1;
        out[p + 2 * plane] = c2;
      }
    }
  }
}

/**
 * Seeded sampling of shapes-world scenes and their captions, one at a time or as float batches for training.
 * Everything is driven by an explicit `Rng`, so a seed reproduces the same scenes and captions on every platform.
 */
import { UserError } from '../errors.js';
import { Rng } from './rng.js';
import {
  COLOURS,
  type Colour,
  DEFAULT_MAX_OBJECT,
  DEFAULT_MIN_OBJECT,
  DEFAULT_SIZE,
  renderScene,
  renderSceneFloat,
  type Scene,
  type SceneObject,
  type Shape,
  SHAPES,
} from './world.js';

export interface SceneOptions {
  /** Image side in pixels (square images), default 32. */
  size?: number;
  /** Fewest / most objects per image (defaults 1 and 3). */
  minObjects?: number;
  maxObjects?: number;
  /**
   * Relative frequency of each object count from `minObjects` to `maxObjects`. Default 30/40/30 % for 1–3 objects
   * (the prototype's mix), uniform for other ranges.
   */
  countWeights?: readonly number[];
  /** Object bounding-box side range in pixels; default 8–14 at 32x32, scaled with `size`. */
  minObjectSize?: number;
  maxObjectSize?: number;
  /** Allow two objects of the same colour in one image (default false: colours are distinct). */
  allowSameColour?: boolean;
  /**
   * Allow two objects of the same shape in one image (default false: shapes are distinct, so every shape word of a
   * caption names exactly one object and its cross-attention map has one target).
   */
  allowSameShape?: boolean;
  /** Restrict the vocabulary (default: all shapes / all colours). */
  shapes?: readonly Shape[];
  colours?: readonly Colour[];
  /**
   * Minimum gap in pixels between the bounding boxes of two objects (default 0: objects may touch but never
   * overlap). Objects of the same colour always keep at least 2 px (scaled with `size`) so they stay separate blobs.
   */
  minGap?: number;
}

export interface CaptionOptions {
  /** Probability that a caption starts with one of `prefixes` (default 0.3). */
  prefixProbability?: number;
  /** Default "a photo of", "an image of", "a picture of". */
  prefixes?: readonly string[];
}

export type ExampleOptions = SceneOptions & CaptionOptions;

export const DEFAULT_PREFIXES = ['a photo of', 'an image of', 'a picture of'] as const;
/** How often a caption gets one of the prefixes (captionFor with a seeded rng). */
export const DEFAULT_PREFIX_PROBABILITY = 0.3;

const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'];

interface ResolvedSceneOptions {
  size: number;
  minObjects: number;
  maxObjects: number;
  countWeights: number[];
  minObjectSize: number;
  maxObjectSize: number;
  allowSameColour: boolean;
  allowSameShape: boolean;
  shapes: readonly Shape[];
  colours: readonly Colour[];
  minGap: number;
  sameColourGap: number;
}

function intOption(v: unknown, name: string, lo: number, hi = Infinity): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new UserError(
      `${name} must be an integer${hi === Infinity ? ` >= ${lo}` : ` from ${lo} to ${hi}`}, got ${String(v)}`,
    );
  }
  return v;
}

/** Validates options and fills in defaults; throws `UserError` naming the bad option. */
export function resolveSceneOptions(options: SceneOptions = {}): ResolvedSceneOptions {
  const size = intOption(options.size ?? DEFAULT_SIZE, 'size', 8, 4096);
  const minObjects = intOption(options.minObjects ?? 1, 'minObjects', 1);
  const maxObjects = intOption(options.maxObjects ?? Math.max(3, minObjects), 'maxObjects', minObjects);
  const shapes = options.shapes ?? SHAPES;
  const colours = options.colours ?? COLOURS;
  if (shapes.length === 0 || colours.length === 0) throw new UserError('shapes and colours must not be empty');
  const allowSameColour = options.allowSameColour ?? false;
  const allowSameShape = options.allowSameShape ?? false;
  if (!allowSameColour && maxObjects > colours.length) {
    throw new UserError(
      `at most ${colours.length} objects per image with distinct colours (asked for ${maxObjects}); allow same-colour pairs for more`,
    );
  }
  if (!allowSameShape && maxObjects > shapes.length) {
    throw new UserError(
      `at most ${shapes.length} objects per image with distinct shapes (asked for ${maxObjects}); allow same-shape pairs for more`,
    );
  }
  const n = maxObjects - minObjects + 1;
  let countWeights: number[];
  if (options.countWeights) {
    countWeights = [...options.countWeights];
    if (countWeights.length !== n || countWeights.some((w) => !(w >= 0)) || !countWeights.some((w) => w > 0)) {
      throw new UserError(
        `countWeights must hold ${n} non-negative weights (one per object count ${minObjects}–${maxObjects}), not all zero`,
      );
    }
  } else if (minObjects === 1 && maxObjects === 3) countWeights = [0.3, 0.4, 0.3];
  else countWeights = new Array<number>(n).fill(1);
  const scale = size / DEFAULT_SIZE;
  const minObjectSize = intOption(
    options.minObjectSize ?? Math.max(2, Math.round(DEFAULT_MIN_OBJECT * scale)),
    'minObjectSize',
    2,
    size,
  );
  const maxObjectSize = intOption(
    options.maxObjectSize ?? Math.max(minObjectSize, Math.round(DEFAULT_MAX_OBJECT * scale)),
    'maxObjectSize',
    minObjectSize,
    size,
  );
  const minGap = intOption(options.minGap ?? 0, 'minGap', 0, size);
  const resolved: ResolvedSceneOptions = {
    size,
    minObjects,
    maxObjects,
    countWeights,
    minObjectSize,
    maxObjectSize,
    allowSameColour,
    allowSameShape,
    shapes,
    colours,
    minGap,
    sameColourGap: Math.max(minGap, 2, Math.round(2 * scale)),
  };
  return resolved;
}

function separated(a: SceneObject, b: SceneObject, gap: number): boolean {
  return (
    a.x + a.size + gap <= b.x || b.x + b.size + gap <= a.x || a.y + a.size + gap <= b.y || b.y + b.size + gap <= a.y
  );
}

/** Draws `count` items; without replacement when `distinct` (the pool must be large enough). */
function drawItems<T>(rng: Rng, pool: readonly T[], count: number, distinct: boolean): T[] {
  if (!distinct) return Array.from({ length: count }, () => rng.pick(pool));
  return rng.shuffle([...pool]).slice(0, count);
}

/**
 * Samples one scene: an object count from `countWeights`, shapes and colours (distinct unless allowed otherwise),
 * sizes uniform in [minObjectSize, maxObjectSize], and positions uniform inside the image such that no two bounding
 * boxes overlap (they may touch). Objects are returned in random order, which is also the caption order.
 */
export function sampleScene(rng: Rng, options: SceneOptions = {}): Scene {
  const o = resolveSceneOptions(options);
  const count = o.minObjects + rng.weighted(o.countWeights);
  const shapes = drawItems(rng, o.shapes, count, !o.allowSameShape);
  const colours = drawItems(rng, o.colours, count, !o.allowSameColour);
  let maxSize = o.maxObjectSize;
  for (let restart = 0; ; restart++) {
    if (restart > 0 && restart % 20 === 0) {
      if (maxSize > o.minObjectSize) maxSize--;
      else if (restart >= 400) {
        throw new UserError(
          `cannot place ${count} objects of ${o.minObjectSize}+ px in a ${o.size}x${o.size} image; use fewer or smaller objects`,
        );
      }
    }
    const sizes = Array.from({ length: count }, () => rng.int(o.minObjectSize, maxSize));
    // Place the biggest first (easier packing); the caption order is shuffled afterwards.
    const order = sizes.map((_, i) => i).sort((a, b) => sizes[b]! - sizes[a]! || a - b);
    const placed: SceneObject[] = [];
    let ok = true;
    for (const i of order) {
      const s = sizes[i]!;
      let done = false;
      for (let t = 0; t < 100 && !done; t++) {
        const cand: SceneObject = {
          shape: shapes[i]!,
          colour: colours[i]!,
          x: rng.int(0, o.size - s),
          y: rng.int(0, o.size - s),
          size: s,
        };
        done = placed.every((p) => separated(p, cand, p.colour === cand.colour ? o.sameColourGap : o.minGap));
        if (done) placed.push(cand);
      }
      if (!done) {
        ok = false;
        break;
      }
    }
    if (ok) return { width: o.size, height: o.size, objects: rng.shuffle(placed) };
  }
}

/** "a" or "an" for the word that follows. */
export function article(word: string): 'a' | 'an' {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

/** "a red circle" / "an orange square" / "two red circles" / "a circle" (colour omitted when absent). */
export function objectPhrase(shape: Shape, colour: Colour | undefined, count = 1): string {
  const noun = count === 1 ? shape : `${shape}s`;
  const words = colour ? `${colour} ${noun}` : noun;
  if (count === 1) return `${article(words)} ${words}`;
  return `${NUMBER_WORDS[count] ?? String(count)} ${words}`;
}

/** "X", "X and Y", "X, Y and Z". */
export function joinPhrases(phrases: readonly string[]): string {
  if (phrases.length <= 1) return phrases[0] ?? '';
  return `${phrases.slice(0, -1).join(', ')} and ${phrases[phrases.length - 1]!}`;
}

/**
 * A caption for objects in the given order, SD style: "a red circle and a blue square", "a green triangle, a yellow
 * circle and a purple square". Identical objects (same shape and colour; only with both same-pairs allowed) are
 * grouped: "two red circles". With a seeded `rng` a prefix such as "a photo of" is added with `prefixProbability`.
 */
export function captionFor(
  objects: readonly { shape: Shape; colour?: Colour | undefined }[],
  rng?: Rng,
  options: CaptionOptions = {},
): string {
  const groups: { shape: Shape; colour: Colour | undefined; count: number }[] = [];
  for (const o of objects) {
    const g = groups.find((x) => x.shape === o.shape && x.colour === o.colour);
    if (g) g.count++;
    else groups.push({ shape: o.shape, colour: o.colour, count: 1 });
  }
  if (groups.length === 0) throw new Error('captionFor: no objects');
  const body = joinPhrases(groups.map((g) => objectPhrase(g.shape, g.colour, g.count)));
  const prefixes = options.prefixes ?? DEFAULT_PREFIXES;
  if (rng && prefixes.length > 0 && rng.chance(options.prefixProbability ?? DEFAULT_PREFIX_PROBABILITY))
    return `${rng.pick(prefixes)} ${body}`;
  return body;
}

/**
 * Puts identical objects (same shape and colour) next to each other, keeping first-appearance order, so that the
 * object list and a grouped caption ("two red circles") are in the same order.
 */
function groupIdentical(objects: SceneObject[]): SceneObject[] {
  const out: SceneObject[] = [];
  for (const o of objects) {
    if (out.includes(o)) continue;
    for (const p of objects) if (p.shape === o.shape && p.colour === o.colour) out.push(p);
  }
  return out;
}

export interface Example {
  scene: Scene;
  caption: string;
}

/** A scene and its caption. */
export function sampleExample(rng: Rng, options: ExampleOptions = {}): Example {
  const scene = sampleScene(rng, options);
  scene.objects = groupIdentical(scene.objects);
  return { scene, caption: captionFor(scene.objects, rng, options) };
}

export interface Batch {
  /** [B, 3, H, W], channel-first, values in [-1, 1] (white background = 1). */
  images: Float32Array;
  shape: [number, number, number, number];
  captions: string[];
  scenes: Scene[];
}

/** `batchSize` examples rendered straight into one float array, for training. */
export function sampleBatch(rng: Rng, batchSize: number, options: ExampleOptions = {}): Batch {
  intOption(batchSize, 'batchSize', 1);
  const { size } = resolveSceneOptions(options);
  const per = 3 * size * size;
  const images = new Float32Array(batchSize * per);
  const captions: string[] = [];
  const scenes: Scene[] = [];
  for (let b = 0; b < batchSize; b++) {
    const ex = sampleExample(rng, options);
    renderSceneFloat(ex.scene, images, b * per);
    captions.push(ex.caption);
    scenes.push(ex.scene);
  }
  return { images, shape: [batchSize, 3, size, size], captions, scenes };
}

/** Sample and render one example to 8-bit RGB. */
export function sampleImage(rng: Rng, options: ExampleOptions = {}): Example & { image: Uint8Array } {
  const ex = sampleExample(rng, options);
  return { ...ex, image: renderScene(ex.scene) };
}

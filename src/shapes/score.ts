/**
 * An exact scorer for shapes-world images: which objects are in the picture, with which colour and shape, and how
 * that compares with what the prompt asked for. The benchmark's measure of object neglect and attribute binding.
 *
 * Detection (detect.ts) finds the objects in the picture; this file matches them to the prompted objects. Prompted
 * objects are assigned to detections by an optimal (Hungarian) assignment maximising 2 * [same shape] + [same colour]
 * per pair (an unspecified colour counts as the same when the shape is), with a tiny preference for larger,
 * better-shaped blobs. Pairs sharing neither shape nor colour are never matched.
 */
import type { RgbImage } from '../image/image.js';
import { asImage, type Detection, detectObjects, type ScoreOptions } from './detect.js';
import { type ParsedPrompt, parsePrompt, type PromptObject } from './prompt.js';
import type { Colour, Shape } from './world.js';

export { shapeFeatures, type ShapeFeatures } from './blobs.js';
export { rgbToLab } from './colour-classes.js';
export { type Detection, detectObjects, type ScoreOptions } from './detect.js';

export interface ObjectReport {
  /** The prompted object. */
  shape: Shape;
  colour: Colour | null;
  /** A detection was assigned to this object (it shares the shape, the colour, or both). */
  found: boolean;
  /** The assigned detection has the prompted shape: the object is present, whatever its colour. */
  found_shape_match: boolean;
  /**
   * The assigned detection has the prompted colour (for a prompt without a colour: true when found_shape_match).
   */
  colour_correct: boolean;
  /**
   * The object is present (right shape) but painted in the colour of another prompted object instead of its own.
   */
  leaked: boolean;
  detection: number | null;
  detected_shape: Shape | null;
  detected_colour: Colour | null;
}

export interface ScoreReport {
  /** The prompt text when a string was scored. */
  prompt?: string;
  width: number;
  height: number;
  objects: ObjectReport[];
  /**
   * Object recall, the neglect measure: the fraction of prompted objects for which a detection of the prompted
   * shape (any colour) is assigned by the optimal matching; 1 - object_recall is the neglect rate. 1 for no objects.
   */
  object_recall: number;
  /**
   * Binding: the fraction of prompted objects that are present with the prompted shape AND the prompted colour
   * (found_shape_match && colour_correct). Never above object_recall. 1 for no objects.
   */
  binding: number;
  /** Binding among present objects: binding / object_recall, or null when no object is present. */
  binding_given_found: number | null;
  /** Number of detections assigned to no prompted object (stray blobs, surplus copies, unrequested objects). */
  extra_objects: number;
  /**
   * Colour leakage: among prompted objects that name a colour, the fraction that are present (right shape) but carry
   * the colour of a different prompted object rather than their own ("a red circle and a blue square" drawn as a
   * blue circle and a blue square: the circle leaked). 0 when no prompted object names a colour.
   */
  leakage: number;
  /** Every prompted object present with its shape and colour, and no extra objects. */
  full_success: boolean;
  detections: Detection[];
}

// ---------------------------------------------------------------------------------------------------- matching

/**
 * Maximum-weight assignment of rows to distinct columns (rows <= columns), Hungarian algorithm on costs -weight.
 * Returns the column of each row.
 */
export function maxWeightAssignment(weights: readonly (readonly number[])[]): number[] {
  const n = weights.length;
  if (n === 0) return [];
  const m = weights[0]!.length;
  if (m < n) throw new Error('maxWeightAssignment: needs at least as many columns as rows');
  const INF = Number.POSITIVE_INFINITY;
  const u = new Float64Array(n + 1),
    v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1),
    way = new Int32Array(m + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(m + 1).fill(INF);
    const used = new Uint8Array(m + 1);
    do {
      used[j0] = 1;
      const i0 = p[j0]!;
      let delta = INF,
        j1 = 0;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = -weights[i0 - 1]![j - 1]! - u[i0]! - v[j]!;
        if (cur < minv[j]!) ((minv[j] = cur), (way[j] = j0));
        if (minv[j]! < delta) ((delta = minv[j]!), (j1 = j));
      }
      for (let j = 0; j <= m; j++) {
        if (used[j]) ((u[p[j]!]! += delta), (v[j]! -= delta));
        else minv[j]! -= delta;
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const result = new Array<number>(n).fill(-1);
  for (let j = 1; j <= m; j++) if (p[j]! > 0) result[p[j]! - 1] = j - 1;
  return result;
}

function promptObjects(target: string | readonly PromptObject[] | ParsedPrompt): {
  objects: readonly PromptObject[];
  prompt?: string;
} {
  if (typeof target === 'string') return { objects: parsePrompt(target).objects, prompt: target };
  if ('objects' in target) return { objects: target.objects };
  return { objects: target };
}

/**
 * Memory the scorer uses per pixel of the image (its label and class planes, component lists), for the memory
 * budget: measured as peak RSS over pixels on a 4000x4000 image (53 bytes per pixel in all, 7 of them the PNG
 * decode's).
 */
export const SCORE_BYTES_PER_PIXEL = 46;

/**
 * Scores an image against a prompt (parsed with `parsePrompt`) or an explicit object list. `rgb` is interleaved
 * 8-bit RGB of `width` x `height` (or an `RgbImage`, then width/height may be omitted).
 */
export function scoreImage(
  rgb: Uint8Array | RgbImage,
  width: number | undefined,
  height: number | undefined,
  target: string | readonly PromptObject[] | ParsedPrompt,
  options: ScoreOptions = {},
): ScoreReport {
  const { objects, prompt } = promptObjects(target);
  const img = asImage(rgb, width, height);
  const detections = detectObjects(img, undefined, undefined, options);
  return scoreDetections(detections, objects, img.width, img.height, prompt);
}

/** The matching and metrics part of `scoreImage`, for detections already computed. */
export function scoreDetections(
  detections: Detection[],
  objects: readonly PromptObject[],
  width: number,
  height: number,
  prompt?: string,
): ScoreReport {
  const P = objects.length,
    D = detections.length;
  const maxArea = Math.max(1, ...detections.map((d) => d.area));
  const tie = 0.5 / (P + 1); // total tie-break bonus stays below one unit of real weight
  const core = (po: PromptObject, d: Detection): number => {
    const shapeEq = d.shape === po.shape;
    const colourEq = po.colour === undefined ? shapeEq : d.colour === po.colour;
    return (shapeEq ? 2 : 0) + (colourEq ? 1 : 0);
  };
  const cols = Math.max(D, P);
  const weights = objects.map((po) =>
    Array.from({ length: cols }, (_, j) => {
      const d = detections[j];
      if (!d) return 0;
      const c = core(po, d);
      return c === 0 ? 0 : c + tie * (0.5 * d.shape_confidence + 0.5 * (d.area / maxArea));
    }),
  );
  const assignment = maxWeightAssignment(weights);
  for (const d of detections) d.matched_to = null;
  const reports: ObjectReport[] = objects.map((po, i) => {
    const j = assignment[i]!;
    const d = j >= 0 && j < D && core(po, detections[j]!) > 0 ? detections[j]! : undefined;
    if (d) d.matched_to = i;
    const shapeOk = d !== undefined && d.shape === po.shape;
    const colourOk = d !== undefined && (po.colour === undefined ? shapeOk : d.colour === po.colour);
    const leaked =
      shapeOk &&
      po.colour !== undefined &&
      !colourOk &&
      d!.colour !== null &&
      objects.some((q, k) => k !== i && q.colour === d!.colour && q.colour !== po.colour);
    return {
      shape: po.shape,
      colour: po.colour ?? null,
      found: d !== undefined,
      found_shape_match: shapeOk,
      colour_correct: colourOk,
      leaked,
      detection: d ? j : null,
      detected_shape: d?.shape ?? null,
      detected_colour: d?.colour ?? null,
    };
  });
  const present = reports.filter((r) => r.found_shape_match).length;
  const bound = reports.filter((r) => r.found_shape_match && r.colour_correct).length;
  const coloured = reports.filter((r) => r.colour !== null).length;
  const extra = detections.filter((d) => d.matched_to === null).length;
  return {
    ...(prompt !== undefined ? { prompt } : {}),
    width,
    height,
    objects: reports,
    object_recall: P === 0 ? 1 : present / P,
    binding: P === 0 ? 1 : bound / P,
    binding_given_found: present === 0 ? null : bound / present,
    extra_objects: extra,
    leakage: coloured === 0 ? 0 : reports.filter((r) => r.leaked).length / coloured,
    full_success: bound === P && extra === 0,
    detections,
  };
}

/**
 * The cross-attention picture, as prompt-to-prompt's `show_cross_attention`: one tile per prompt token, its
 * aggregated map ([h, w, T] from `GenerateResult.attentionMaps`) divided by its max, coloured as a heat map,
 * resized to the image and blended over the generated image, with the token's text under the tile. Several
 * sampler steps make several rows, each with its step (and timestep) written at its left.
 *
 * Tiles are at least `minTile` (128) pixels on their short side (small images are enlarged with nearest
 * resizing, so pixels stay sharp and the labels fit) and at most `maxTile` (256) on their long side.
 */
import { UserError } from '../errors.js';
import { blendImages, heatmap, type ColormapName, type Normalize } from '../image/colormap.js';
import { composeGrid } from '../image/grid.js';
import { blit, createImage, type RgbImage } from '../image/image.js';
import { drawText, textHeight, textWidth } from '../image/font.js';
import { resizeImage, resizeMap } from '../image/resize.js';
import type { Tensor } from '../tensor.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';

export interface TokenColumn {
  /** Position in the 77 ids (SOT = 0). */
  index: number;
  /** Label under the tile. */
  text: string;
}

export interface AttentionRow {
  /** Lines written at the left of the row (e.g. ['step 10', 't=401']). */
  label: readonly string[];
  /** Aggregated conditional cross-attention [h, w, T]. */
  maps: Tensor;
}

export interface AttentionPictureOptions {
  /** Smallest tile side in pixels (default 128); smaller images are enlarged by an integer factor, nearest. */
  minTile?: number;
  /** Largest tile side (default 256); larger images are reduced (bilinear). */
  maxTile?: number;
  /** Default 'jet' (the notebooks' COLORMAP_JET). */
  colormap?: ColormapName;
  /** Default 'max': map / max(map), prompt-to-prompt's normalisation. */
  normalize?: Normalize;
  /** Heat-map weight over the image (default 0.5). */
  alpha?: number;
}

/** Every real token of a prompt (between SOT and EOS), labelled `index text`. */
export function promptTokenColumns(tokenizer: ClipTokenizer, prompt: string): TokenColumn[] {
  const ids = tokenizer.tokenize(prompt, { maxLength: tokenizer.modelMaxLength }).ids;
  const out: TokenColumn[] = [];
  for (let i = 1; i < ids.length && ids[i] !== tokenizer.eosId; i++)
    out.push({ index: i, text: tokenizer.tokenText(ids[i]!) });
  return out;
}

/** Element-wise mean of equally shaped maps (prompt-to-prompt's average over diffusion steps). */
export function meanMaps(maps: readonly Tensor[]): Tensor {
  if (maps.length === 0) throw new Error('meanMaps: no maps');
  const first = maps[0]!;
  const sum = new Float64Array(first.data.length);
  for (const m of maps) {
    if (m.data.length !== sum.length) throw new Error('meanMaps: maps differ in size');
    for (let i = 0; i < sum.length; i++) sum[i]! += m.data[i]!;
  }
  return { data: Float32Array.from(sum, (v) => v / maps.length), shape: [...first.shape] };
}

/** Column `token` of a [h, w, T] tensor as a row-major h*w map. */
export function tokenMap(maps: Tensor, token: number): Float32Array {
  const [h, w, t] = maps.shape as [number, number, number];
  if (maps.shape.length !== 3 || token < 0 || token >= t)
    throw new Error(`tokenMap: token ${token} outside [h, w, ${t}] maps`);
  const out = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) out[i] = maps.data[i * t + token]!;
  return out;
}

/** The image as a tile: enlarged (nearest, integer factor) to at least minTile, or reduced to at most maxTile. */
export function tileBase(image: RgbImage, minTile = 128, maxTile = 256): RgbImage {
  const short = Math.min(image.width, image.height);
  const long = Math.max(image.width, image.height);
  if (short < minTile) {
    const k = Math.ceil(minTile / short);
    return resizeImage(image, image.width * k, image.height * k, 'nearest');
  }
  if (long > maxTile) {
    const s = maxTile / long;
    return resizeImage(
      image,
      Math.max(1, Math.round(image.width * s)),
      Math.max(1, Math.round(image.height * s)),
      'bilinear',
    );
  }
  return image;
}

function fitLabel(text: string, maxWidth: number, scale: number): string {
  if (textWidth(text, scale) <= maxWidth) return text;
  let s = text;
  while (s.length > 1 && textWidth(`${s}.`, scale) > maxWidth) s = s.slice(0, -1);
  return `${s}.`;
}

/**
 * The picture: rows × token columns of heat maps over `image`. Returns an RGB image (white background, black
 * text). Tiles of different tokens differ whenever their maps do.
 */
export function renderAttentionPicture(
  image: RgbImage,
  rows: readonly AttentionRow[],
  tokens: readonly TokenColumn[],
  options: AttentionPictureOptions = {},
): RgbImage {
  if (rows.length === 0) throw new Error('renderAttentionPicture: no rows');
  if (tokens.length === 0) throw new UserError('no tokens to draw attention maps for (the prompt is empty)');
  const base = tileBase(image, options.minTile ?? 128, options.maxTile ?? 256);
  const scale = Math.min(base.width, base.height) >= 192 ? 3 : Math.min(base.width, base.height) >= 96 ? 2 : 1;
  const labels = tokens.map((t) => fitLabel(`${t.index} ${t.text}`, base.width, scale));
  const pad = 2 * scale;
  const grids = rows.map((row) => {
    const [h, w] = row.maps.shape as [number, number, number];
    const tiles = tokens.map((tok) => {
      const map = resizeMap(tokenMap(row.maps, tok.index), w, h, base.width, base.height, 'bilinear');
      const heat = heatmap(map, base.width, base.height, {
        colormap: options.colormap ?? 'jet',
        normalize: options.normalize ?? 'max',
      });
      return blendImages(base, heat, options.alpha ?? 0.5);
    });
    return composeGrid(tiles, tiles.length, { pad, labels, labelScale: scale });
  });
  const lineH = textHeight(scale) + 2 * scale;
  const labelW = Math.max(...rows.flatMap((r) => r.label.map((l) => textWidth(l, scale)))) + 2 * pad;
  const gridW = grids[0]!.width;
  const height = grids.reduce((s, g) => s + g.height, 0);
  const out = createImage(labelW + gridW, height);
  let y = 0;
  rows.forEach((row, r) => {
    const g = grids[r]!;
    blit(out, g, labelW, y);
    const top = y + pad + Math.max(0, Math.floor((base.height - row.label.length * lineH) / 2));
    row.label.forEach((line, k) => drawText(out, line, pad, top + k * lineH, [0, 0, 0], scale));
    y += g.height;
  });
  return out;
}

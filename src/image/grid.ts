/** Composing tiles into a grid, optionally with a text label under each tile (attention-map sheets). */
import { drawText, textHeight, textWidth } from './font.js';
import { blit, createImage, type Rgb, type RgbImage } from './image.js';

export interface GridOptions {
  /** Pixels between cells and around the border (default 2). */
  pad?: number;
  /** Background colour (default white). */
  background?: Rgb;
  /** One label per tile (shorter arrays leave later tiles unlabelled), drawn centred under its tile. */
  labels?: readonly string[];
  /** Label colour (default black). */
  labelColour?: Rgb;
  /** Font scale: each font pixel becomes scale x scale image pixels (default 1: 5x7 glyphs). */
  labelScale?: number;
}

/**
 * Lays tiles out left to right, top to bottom, `cols` per row. Tiles may differ in size: each cell is as wide as
 * the widest tile or label and as tall as the tallest tile (plus a label strip when labels are given); tiles are
 * centred horizontally and top-aligned in their cells. Labels wider than a tile widen every cell instead of being
 * cut, so keep them short (tokens).
 */
export function composeGrid(tiles: readonly RgbImage[], cols: number, options: GridOptions = {}): RgbImage {
  if (tiles.length === 0) throw new Error('composeGrid: no tiles');
  if (!Number.isInteger(cols) || cols < 1) throw new Error(`composeGrid: cols must be a positive integer, got ${cols}`);
  const pad = options.pad ?? 2;
  const scale = options.labelScale ?? 1;
  const labels = options.labels;
  const hasLabels = labels !== undefined && labels.length > 0;
  let cellW = 0,
    tileH = 0;
  for (const t of tiles) ((cellW = Math.max(cellW, t.width)), (tileH = Math.max(tileH, t.height)));
  if (hasLabels) for (const l of labels) cellW = Math.max(cellW, textWidth(l, scale));
  const gap = hasLabels ? Math.max(2, scale * 2) : 0; // space between tile and its label
  const labelH = hasLabels ? gap + textHeight(scale) : 0;
  const cellH = tileH + labelH;
  const nCols = Math.min(cols, tiles.length);
  const nRows = Math.ceil(tiles.length / cols);
  const width = nCols * cellW + (nCols + 1) * pad;
  const height = nRows * cellH + (nRows + 1) * pad;
  const out = createImage(width, height, options.background ?? [255, 255, 255]);
  tiles.forEach((tile, i) => {
    const cx = pad + (i % cols) * (cellW + pad);
    const cy = pad + Math.floor(i / cols) * (cellH + pad);
    blit(out, tile, cx + Math.floor((cellW - tile.width) / 2), cy);
    const label = labels?.[i];
    if (label) {
      drawText(
        out,
        label,
        cx + Math.floor((cellW - textWidth(label, scale)) / 2),
        cy + tileH + gap,
        options.labelColour ?? [0, 0, 0],
        scale,
      );
    }
  });
  return out;
}

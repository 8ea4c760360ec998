/**
 * How many images run together when the caller does not say: as many as fit a memory budget, at most 16.
 *
 * Budget: `S2I_MAX_MEMORY` (bytes, or a size such as 800M / 16G) when set, else half of this machine's memory.
 * Estimate: the weights (4 bytes a parameter) plus, per image, its share of the passes, as measured on SD-1.5 at
 * 512 px (64x64 latents, first UNet block 320 channels; docs/measurements.md#batch-memory): the plain guided
 * step's per-image share, and a gradient method's, much larger (the backward pass keeps the forward's activations,
 * every self-attention map among them). Other models and sizes scale these by first-block channels × latent cells,
 * and by latent cells once more above SD-1.5's 4096 (self-attention grows with their square). The result is a
 * default, not a guarantee: a larger --batch-size is the caller's choice.
 */
import { physicalMemory } from '../util/memory.js';
import type { StableDiffusion } from './stable-diffusion.js';

export const MAX_DEFAULT_BATCH = 16;

/** SD-1.5's per-image bytes at 64x64 latents with 320 first-block channels (measured; see above). */
const SD15_PLAIN_PER_IMAGE = 0.75 * 1024 ** 3;
const SD15_GRADIENT_PER_IMAGE = 10 * 1024 ** 3;
const SD15_CELLS = 64 * 64;
const SD15_CHANNELS = 320;

/** `16G`, `800M`, `1.5T`, `123456` → bytes; null for anything else. */
function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) return null;
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2]!.toUpperCase()]!;
  const n = Number(m[1]) * scale;
  return Number.isFinite(n) && n > 0 ? n : null;
}

/** The memory budget for choosing a batch size, in bytes, and where it comes from. */
export function batchMemoryBudget(): { bytes: number; source: string } {
  const env = globalThis.process?.env['S2I_MAX_MEMORY'];
  const given = env !== undefined ? parseSize(env) : null;
  if (given !== null) return { bytes: given, source: `S2I_MAX_MEMORY=${env!.trim()}` };
  return { bytes: physicalMemory() / 2, source: "half of this machine's memory" };
}

/** Estimated bytes one more image of a batch needs (see the file's header). */
export function perImageBytes(
  model: StableDiffusion,
  latentHeight: number,
  latentWidth: number,
  gradient: boolean,
): number {
  const r = (latentHeight * latentWidth) / SD15_CELLS;
  const scale = ((model.unetConfig.blockOutChannels[0] ?? SD15_CHANNELS) / SD15_CHANNELS) * r * Math.max(1, r);
  return (SD15_PLAIN_PER_IMAGE + (gradient ? SD15_GRADIENT_PER_IMAGE : 0)) * scale;
}

/**
 * The default batch size for `images` images at `height`x`width` pixels: the most (at most 16) whose estimate fits
 * the budget, and at least 1.
 */
export function defaultBatchSize(
  model: StableDiffusion,
  opts: { images: number; height: number; width: number; gradient: boolean },
  budget: number = batchMemoryBudget().bytes,
): number {
  const f = model.scaleFactor;
  const each = perImageBytes(model, Math.ceil(opts.height / f), Math.ceil(opts.width / f), opts.gradient);
  const free = budget - 4 * model.parameterCount;
  const fit = Math.floor(free / each);
  return Math.max(1, Math.min(opts.images, MAX_DEFAULT_BATCH, Number.isFinite(fit) ? fit : MAX_DEFAULT_BATCH));
}

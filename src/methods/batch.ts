/**
 * Running one method's evaluations for several samples in one batched UNet pass. The samples of a batch have
 * different prompts, so what differs between them (subject tokens, how many subjects, focus regions) is fed at
 * run time — one-hot token selections and masks — and one compiled graph serves every batch of a given size.
 * Samples never interact inside the pass (the UNet's normalisations and attention are per sample, and each
 * sample's loss reads only its own maps), so ∂(Σ_b loss_b)/∂latents is each sample's own gradient.
 */
import type { Tensor } from '../tensor.js';

/**
 * The batch size a pass for `count` samples of a group of `groupSize` runs at: `count` itself. (Padding to a few
 * compiled sizes was tried: on CPU a pass costs about the same per sample at any batch size, so the padding's
 * wasted samples cost more than the graphs it saves compiling.)
 */
export function passBatchSize(count: number, groupSize: number): number {
  if (count < 1 || count > groupSize) throw new Error(`passBatchSize: ${count} samples in a group of ${groupSize}`);
  return count;
}

/** `items` padded to `size` by repeating the last one (the padding's results are dropped). */
export function padTo<T>(items: readonly T[], size: number): T[] {
  if (items.length === 0 || items.length > size) throw new Error(`padTo: ${items.length} items for size ${size}`);
  const out = [...items];
  while (out.length < size) out.push(items[items.length - 1]!);
  return out;
}

/** Equal-sized arrays stacked along a new leading axis: [n, ...shape]. */
export function stack(arrays: readonly ArrayLike<number>[], shape: readonly number[]): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(arrays.length * size);
  arrays.forEach((a, i) => {
    if (a.length !== size) throw new Error(`stack: item ${i} has ${a.length} values, expected [${shape}]`);
    data.set(a, i * size);
  });
  return { data, shape: [arrays.length, ...shape] };
}

/** Row i of a [n, ...] tensor's data, as a copy. */
export function row(data: Float32Array, i: number, n: number): Float32Array {
  const size = data.length / n;
  return data.slice(i * size, (i + 1) * size);
}

/**
 * One-hot selections of text-token columns for a batch: `select` [k, T-2, width] picks, for sample b and slot s,
 * column lists[b][s] of the tokens 1..T-2 (Attend-and-Excite's re-softmaxed text tokens; SOT = 0); unused
 * slots select nothing (an all-zero column) and have `mask` 0. A product with a one-hot column is exact, so the
 * selected map equals the slice of that column bit for bit.
 */
export function tokenSelection(
  lists: readonly (readonly number[])[],
  tokens: number,
  width: number,
): { select: Tensor; mask: Tensor } {
  const k = lists.length;
  const t2 = tokens - 2;
  const select = new Float32Array(k * t2 * width);
  const mask = new Float32Array(k * width);
  lists.forEach((list, b) => {
    if (list.length > width) throw new Error(`tokenSelection: ${list.length} tokens for ${width} slots`);
    list.forEach((token, s) => {
      if (!Number.isInteger(token) || token < 1 || token > tokens - 2)
        throw new Error(`token index ${token} is outside 1..${tokens - 2}`);
      select[(b * t2 + token - 1) * width + s] = 1;
      mask[b * width + s] = 1;
    });
  });
  return { select: { data: select, shape: [k, t2, width] }, mask: { data: mask, shape: [k, width] } };
}

/** A stable text of a method's shared settings (Maps as entry lists), for batch keys. */
export function settingsKey(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (v instanceof Map ? [...(v as Map<unknown, unknown>)] : v));
}

/**
 * Attend-and-Excite's Gaussian smoothing of attention maps, in the graph: reflect-pad by kernel/2, then a
 * single-channel convolution with the official kernel. The official kernel computes exp(-((x-μ)/(2σ))²) —
 * i.e. exp(-(x-μ)²/(4σ²)), not the textbook 2σ² — and we match it, since exactness is the point of a baseline.
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';

/** The official GaussianSmoothing kernel (float32 arithmetic, normalised to sum 1), row-major [size, size]. */
export function gaussianKernel(size: number, sigma: number): Float32Array {
  const f = Math.fround;
  const mean = (size - 1) / 2;
  const norm = f(1 / f(sigma * Math.sqrt(2 * Math.PI)));
  const oneD = Array.from({ length: size }, (_, i) => f(norm * f(Math.exp(-f(f(f(i - mean) / f(2 * sigma)) ** 2)))));
  const k = new Float32Array(size * size);
  let sum = 0;
  // kernel = 1 * g(y) * g(x), accumulated in float32 like torch's in-place products.
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) k[y * size + x] = f(f(1 * oneD[y]!) * oneD[x]!);
  for (let i = 0; i < k.length; i++) sum = f(sum + k[i]!);
  for (let i = 0; i < k.length; i++) k[i] = f(k[i]! / sum);
  return k;
}

/** Smooth maps [n, h, w] independently → [n, h, w]. */
export function smoothMaps(maps: Value, kernelSize: number, sigma: number): Value {
  const [n, h, w] = maps.shape as [number, number, number];
  const r = Math.floor(kernelSize / 2);
  const padded = op.pad(op.reshape(maps, [n, 1, h, w]), [0, 0, r, r, 0, 0, r, r], 'reflect');
  const kernel = maps.graph.constant(
    gaussianKernel(kernelSize, sigma),
    [1, 1, kernelSize, kernelSize],
    'float32',
    'gaussian_kernel',
  );
  return op.reshape(op.conv(padded, kernel, null), [n, h, w]);
}

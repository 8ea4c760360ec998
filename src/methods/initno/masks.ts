/** INITNO's clean masks, computed on the host between passes: OpenCV's Otsu threshold and the peak's component. */

/** OpenCV's Otsu threshold (getThreshVal_Otsu) over integer values 0..max: the bin with the largest between-class variance. */
export function otsuOpenCv(values: ArrayLike<number>): number {
  let N = 0;
  for (let i = 0; i < values.length; i++) N = Math.max(N, values[i]! + 1);
  const hist = new Float64Array(Math.max(N, 1));
  for (let i = 0; i < values.length; i++) hist[values[i]!]!++;
  const scale = 1 / values.length;
  let mu = 0;
  for (let i = 0; i < hist.length; i++) mu += i * hist[i]!;
  mu *= scale;
  let mu1 = 0;
  let q1 = 0;
  let maxSigma = 0;
  let maxVal = 0;
  const FLT_EPSILON = 1.1920928955078125e-7;
  for (let i = 0; i < hist.length; i++) {
    const p = hist[i]! * scale;
    mu1 *= q1;
    q1 += p;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < FLT_EPSILON || Math.max(q1, q2) > 1 - FLT_EPSILON) continue;
    mu1 = (mu1 + i * p) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > maxSigma) {
      maxSigma = sigma;
      maxVal = i;
    }
  }
  return maxVal;
}

/**
 * INITNO's clean mask of one smoothed map [h*w] (fn_get_otsu_mask + fn_clean_mask): Otsu's threshold of the map
 * ×255 truncated to integers, then the 4-connected above-threshold blob that holds the first maximum.
 */
export function initnoComponent(map: Float32Array, h: number, w: number): Uint8Array {
  const levels = Array.from(map, (v) => Math.trunc(Math.fround(v * 255)));
  const threshold = Math.fround(otsuOpenCv(levels) / 255);
  let peak = 0;
  for (let p = 1; p < map.length; p++) if (map[p]! > map[peak]!) peak = p;
  const out = new Uint8Array(h * w);
  const stack = [peak];
  while (stack.length) {
    const p = stack.pop()!;
    if (out[p] || !(map[p]! >= threshold)) continue;
    out[p] = 1;
    const [y, x] = [Math.floor(p / w), p % w];
    if (y > 0) stack.push(p - w);
    if (y < h - 1) stack.push(p + w);
    if (x > 0) stack.push(p - 1);
    if (x < w - 1) stack.push(p + 1);
  }
  return out;
}

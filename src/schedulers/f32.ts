/**
 * Small numeric helpers that reproduce how diffusers' schedulers round: torch float32 tensors (every elementwise
 * op rounded to float32), torch's CPU `linspace` kernel, and numpy's float64 `linspace` / `arange` / `interp` /
 * `round` (half to even). Everything here is scalar and allocation-free unless it returns an array.
 */

export const f = Math.fround;

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** The next float32 after `x` (finite, x is a float32) towards +inf (dir > 0) or -inf (dir < 0). */
function nextFloat32(x: number, dir: number): number {
  if (x === 0) return dir > 0 ? 1.401298464324817e-45 : -1.401298464324817e-45;
  f32buf[0] = x;
  // For positive x moving up (or negative x moving down) the magnitude grows: bits + 1.
  if (x > 0 === dir > 0) u32buf[0] = u32buf[0]! + 1;
  else u32buf[0] = u32buf[0]! - 1;
  return f32buf[0]!;
}

/** Single-rounding float32 fused multiply-add `a*b + c` (a, b, c float32), as C's fmaf. */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b; // exact: 24 + 24 bits fit a double
  const s = p + c;
  // TwoSum: the exact error of s.
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  const r = f(s);
  if (err === 0 || r === s || !Number.isFinite(s)) return r;
  // s is not a float32; rounding s (already rounded once) is wrong only when s sits exactly on a midpoint.
  const other = nextFloat32(r, s > r ? 1 : -1);
  if ((r + other) / 2 !== s) return r;
  // The exact value lies on the side of the midpoint given by err's sign.
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

/** numpy's round(): half to even, on doubles. */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d < 0.5) return fl;
  if (d > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** numpy.linspace(start, stop, num) in float64 (endpoint=True). */
export function npLinspace(start: number, stop: number, num: number): Float64Array {
  const y = new Float64Array(num);
  const div = num - 1;
  const delta = stop - start;
  if (div > 0) {
    const step = delta / div;
    for (let i = 0; i < num; i++) y[i] = step === 0 ? (i / div) * delta + start : i * step + start;
    y[num - 1] = stop;
  } else {
    for (let i = 0; i < num; i++) y[i] = i * delta + start;
  }
  return y;
}

/** numpy.arange(start, stop, step) for float arguments: numpy fills `start + i*((start+step)-start)`. */
export function npArange(start: number, stop: number, step: number): Float64Array {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const y = new Float64Array(len);
  if (len > 0) y[0] = start;
  if (len > 1) y[1] = start + step;
  const delta = start + step - start;
  for (let i = 2; i < len; i++) y[i] = start + i * delta;
  return y;
}

/**
 * numpy.interp(x, arange(0, fp.length), fp) in float64 (fp's values promoted to double). `xp` is 0, 1, 2, …
 * so the bracketing index is floor(x) (numpy's binary search gives the same j).
 */
export function npInterpUniform(x: ArrayLike<number>, fp: ArrayLike<number>): Float64Array {
  const n = fp.length;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const xv = x[i]!;
    if (Number.isNaN(xv)) out[i] = xv;
    else if (xv >= n - 1) out[i] = fp[n - 1]!;
    else if (xv <= 0) out[i] = fp[0]!;
    else {
      const j = Math.floor(xv);
      if (j === xv) out[i] = fp[j]!;
      else {
        const slope = (fp[j + 1]! - fp[j]!) / (j + 1 - j);
        out[i] = slope * (xv - j) + fp[j]!;
      }
    }
  }
  return out;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) as torch's CPU kernel computes it (AVX2 build): blocks of
 * 8 lanes `base + k*step` where `base = fma(step, idx, start)` before the halfway point and
 * `fma(-step, steps-idx-1, end)` after it, and scalar fma for the tail that does not fill two vectors.
 * This reproduces diffusers' `betas` (hence `alphas_cumprod`) bit for bit.
 */
export function torchLinspaceF32(startD: number, endD: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  if (steps === 1) {
    out[0] = f(startD);
    return out;
  }
  const start = f(startD);
  const end = f(endD);
  const step = f(f(end - start) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const W = 8;
  const vecEnd = steps - (steps % (2 * W));
  const scalarAt = (idx: number) => (idx < halfway ? fmaf(step, f(idx), start) : fmaf(-step, f(steps - idx - 1), end));
  for (let b = 0; b < vecEnd; b += W) {
    const base = scalarAt(b);
    for (let k = 0; k < W; k++) out[b + k] = f(base + f(k * step));
  }
  for (let i = vecEnd; i < steps; i++) out[i] = scalarAt(i);
  return out;
}

/** torch's cumprod on float32 (CPU accumulates in double, rounds each output to float32). */
export function cumprodF32(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  let acc = 1;
  for (let i = 0; i < a.length; i++) {
    acc *= a[i]!;
    out[i] = acc;
  }
  return out;
}

/** float32 sqrt. */
export function sqrtf(x: number): number {
  return f(Math.sqrt(x));
}

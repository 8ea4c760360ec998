/**
 * A seeded, portable Gaussian generator: xoshiro128** (32-bit integer arithmetic only, seeded through
 * SplitMix64) for uniforms, Box–Muller for normals.
 *
 * The same seed gives the same numbers on every platform and Node version: integer steps are exact, and the
 * floating-point part uses only `Math.log`, `Math.sqrt`, `Math.cos`, `Math.sin`, which V8 implements with its
 * own fdlibm port (not the platform libm). No `Math.random`.
 *
 * This is NOT torch's generator (Philox/MT19937 + torch's own normal transform): a seed here does not reproduce
 * the image diffusers makes with `torch.manual_seed(seed)`. For exact comparisons with diffusers, pass the
 * initial latents explicitly (`--latents`).
 */

const MASK64 = (1n << 64n) - 1n;

function splitmix64(state: { s: bigint }): bigint {
  state.s = (state.s + 0x9e3779b97f4a7c15n) & MASK64;
  let z = state.s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

const TWO_PI = 2 * Math.PI;
const INV_2_53 = 1 / 2 ** 53;

/**
 * xoshiro128** (Blackman & Vigna): the one uniform generator of the project. Subclasses choose the seeding; the
 * state is four 32-bit words, never all zero.
 */
export class Xoshiro128 {
  protected s0 = 0;
  protected s1 = 0;
  protected s2 = 0;
  protected s3 = 0;

  /** The next 32 random bits as an unsigned integer in [0, 2^32). */
  uint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result >>> 0;
  }
}

export class GaussianRng extends Xoshiro128 {
  /**
   * @param seed an integer: a safe-integer number (negative allowed) or a bigint (taken modulo 2^64).
   */
  constructor(seed: number | bigint = 0) {
    super();
    let s: bigint;
    if (typeof seed === 'bigint') s = seed & MASK64;
    else {
      if (!Number.isSafeInteger(seed)) throw new RangeError(`GaussianRng: seed must be a safe integer (got ${seed})`);
      s = BigInt(seed) & MASK64;
    }
    const st = { s };
    const a = splitmix64(st);
    const b = splitmix64(st);
    this.s0 = Number(a & 0xffffffffn) | 0;
    this.s1 = Number(a >> 32n) | 0;
    this.s2 = Number(b & 0xffffffffn) | 0;
    this.s3 = Number(b >> 32n) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is a fixed point
  }

  /** A copy that continues with the same sequence. */
  clone(): GaussianRng {
    const r = Object.create(GaussianRng.prototype) as GaussianRng;
    r.s0 = this.s0;
    r.s1 = this.s1;
    r.s2 = this.s2;
    r.s3 = this.s3;
    return r;
  }

  /** A uniform double in [0, 1) with 53 random bits (two 32-bit draws). */
  uniform(): number {
    const hi = this.uint32() >>> 5; // 27 bits
    const lo = this.uint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) * INV_2_53;
  }

  /** A uniform integer in [0, maxExclusive), unbiased (rejection sampling); maxExclusive in 1..2^32. */
  int(maxExclusive: number): number {
    if (!Number.isInteger(maxExclusive) || maxExclusive < 1 || maxExclusive > 2 ** 32) {
      throw new RangeError(`GaussianRng.int: maxExclusive must be an integer in 1..2^32 (got ${maxExclusive})`);
    }
    const limit = 2 ** 32 - (2 ** 32 % maxExclusive);
    for (;;) {
      const x = this.uint32();
      if (x < limit) return x % maxExclusive;
    }
  }

  /**
   * `n` standard normal draws as float32. Box–Muller turns two uniforms into two normals; an odd `n` drops the
   * second of the last pair, so the stream depends on how it is split into calls (normal(4) ≠ normal(2)+normal(2)
   * only when a call has odd length).
   */
  normal(n: number): Float32Array {
    return this.normalInto(new Float32Array(n));
  }

  /** Fills `out` with standard normal draws (see {@link normal}) and returns it. */
  normalInto(out: Float32Array): Float32Array {
    const n = out.length;
    for (let i = 0; i < n; i += 2) {
      const u1 = 1 - this.uniform(); // (0, 1]: log is finite
      const u2 = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      const th = TWO_PI * u2;
      out[i] = r * Math.cos(th);
      if (i + 1 < n) out[i + 1] = r * Math.sin(th);
    }
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * mulberry32: a tiny 32-bit generator of uniforms in [0, 1), for resampling and test data where a short, fast,
 * seeded stream is enough (the bootstrap's draws; random test inputs). Not for noise: that is GaussianRng's.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

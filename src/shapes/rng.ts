/**
 * The shapes world's seeded generator: the project's xoshiro128** (util/random.ts) seeded through splitmix32. Pure 32-bit
 * integer arithmetic (`Math.imul`, `>>>`), so the same seed gives the same sequence on every platform and Node
 * version. Not cryptographic. The shapes world uses it everywhere instead of `Math.random`.
 */
import { Xoshiro128 } from '../util/random.js';

export class Rng extends Xoshiro128 {
  private spareNormal: number | null = null;

  /**
   * @param seed any safe integer (negative and > 2^32 values are fine; both 32-bit halves are mixed in) or a string
   *   (hashed with FNV-1a).
   */
  constructor(seed: number | string = 0) {
    super();
    let lo: number, hi: number;
    if (typeof seed === 'string') {
      let h = 0x811c9dc5;
      for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193);
      lo = h >>> 0;
      hi = seed.length;
    } else {
      if (!Number.isSafeInteger(seed)) throw new Error(`Rng: seed must be a safe integer or a string, got ${seed}`);
      lo = seed >>> 0; // two's complement low 32 bits (also for negatives)
      hi = Math.floor(seed / 4294967296) >>> 0;
    }
    let x = (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next() ^ hi;
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s3 = 1;
  }

  /** A generator with an explicit xoshiro128** state (four 32-bit words, not all zero); for tests and resuming. */
  static fromState(state: readonly [number, number, number, number]): Rng {
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = state.map((v) => v >>> 0) as [number, number, number, number];
    if ((r.s0 | r.s1 | r.s2 | r.s3) === 0) throw new Error('Rng.fromState: state must not be all zero');
    return r;
  }

  /** The current state (see `fromState`). */
  getState(): [number, number, number, number] {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  /** Uniform float in [0, 1) with 32 random bits. */
  float(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) throw new Error(`Rng.int: bad range [${lo}, ${hi}]`);
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** A uniformly chosen element. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: empty array');
    return items[Math.floor(this.float() * items.length)]!;
  }

  /** Index drawn with probability proportional to `weights[i]` (non-negative, not all zero). */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) {
      if (!(w >= 0)) throw new Error(`Rng.weighted: weights must be non-negative, got ${w}`);
      total += w;
    }
    if (!(total > 0)) throw new Error('Rng.weighted: weights sum to zero');
    let r = this.float() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i]!;
      if (r < 0) return i;
    }
    let last = weights.length - 1;
    while (weights[last] === 0) last--;
    return last;
  }

  /** Fisher–Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1));
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }

  /** Standard normal deviate (Box–Muller, pairs cached). */
  normal(): number {
    if (this.spareNormal !== null) {
      const v = this.spareNormal;
      this.spareNormal = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.float();
    const v = this.float();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** A new generator seeded from this one's stream (independent sub-stream, e.g. one per worker or per image). */
  fork(): Rng {
    return new Rng(this.uint32() * 2097152 + (this.uint32() >>> 11));
  }
}

import { describe, expect, it } from 'vitest';
import { GaussianRng } from '../../src/util/random.js';

describe('GaussianRng', () => {
  it('is xoshiro128** seeded by SplitMix64 (values pinned: portable across platforms)', () => {
    const r = new GaussianRng(42);
    expect([r.uint32(), r.uint32(), r.uint32(), r.uint32()]).toEqual([1776835114, 4165204688, 17111135, 2317295270]);
    const z = new GaussianRng(42).normal(5);
    expect(Array.from(z)).toEqual(
      [1.033046007156372, 0.02586478367447853, -0.578862726688385, -1.3285483121871948, -0.16271498799324036].map(
        Math.fround,
      ),
    );
  });

  it('same seed → same stream; different seeds differ; bigint and number seeds agree', () => {
    const a = new GaussianRng(7).normal(1000);
    const b = new GaussianRng(7).normal(1000);
    expect(a).toEqual(b);
    expect(new GaussianRng(8).normal(1000)).not.toEqual(a);
    expect(new GaussianRng(7n).normal(1000)).toEqual(a);
    expect(new GaussianRng(-1).uint32()).toBe(new GaussianRng(2n ** 64n - 1n).uint32());
    const c = new GaussianRng(3);
    c.normal(10);
    const d = c.clone();
    expect(c.normal(10)).toEqual(d.normal(10));
    expect(() => new GaussianRng(0.5)).toThrow(RangeError);
  });

  it('normal(): mean ≈ 0, variance ≈ 1, symmetric tails', () => {
    const n = 200_000;
    const z = new GaussianRng(1234).normal(n);
    let s = 0;
    let s2 = 0;
    let s4 = 0;
    let beyond2 = 0;
    for (const x of z) {
      s += x;
      s2 += x * x;
      s4 += x ** 4;
      if (Math.abs(x) > 2) beyond2++;
    }
    const mean = s / n;
    const v = s2 / n - mean * mean;
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(v - 1)).toBeLessThan(0.02);
    expect(Math.abs(s4 / n - 3)).toBeLessThan(0.1); // kurtosis of a Gaussian
    expect(Math.abs(beyond2 / n - 0.0455)).toBeLessThan(0.003);
    expect(z.every(Number.isFinite)).toBe(true);
  });

  it('uniform() in [0, 1) with mean ≈ 1/2; int() unbiased within range', () => {
    const r = new GaussianRng(99);
    let s = 0;
    let inRange = true;
    for (let i = 0; i < 100_000; i++) {
      const u = r.uniform();
      if (!(u >= 0 && u < 1)) inRange = false;
      s += u;
    }
    expect(inRange).toBe(true);
    expect(Math.abs(s / 100_000 - 0.5)).toBeLessThan(0.005);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[r.int(6)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(r.int(1)).toBe(0);
    expect(() => r.int(0)).toThrow(RangeError);
  });

  it('odd lengths work and normalInto fills in place', () => {
    expect(new GaussianRng(5).normal(3).length).toBe(3);
    const out = new Float32Array(4);
    expect(new GaussianRng(5).normalInto(out)).toBe(out);
    expect(out).toEqual(new GaussianRng(5).normal(4));
  });
});

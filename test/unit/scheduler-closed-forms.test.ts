/**
 * Scheduler steps against their closed forms (float64, from the papers and diffusers v0.24.0's code), where the
 * oracle has no golden: v-prediction for every sampler that takes it (the shipped model predicts velocity; the
 * goldens cover epsilon), and DDIM with eta > 0 (its variance). The schedule's own values (ᾱ, σ) are the sampler's;
 * what is checked is the step's algebra, to float32 rounding.
 */
import { describe, expect, it } from 'vitest';
import { createSampler, resolveSchedulerConfig, type SamplerName } from '../../src/schedulers/index.js';

const SD15 = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  steps_offset: 1,
  skip_prk_steps: true,
  clip_sample: false,
  set_alpha_to_one: false,
};
const N = 64;
const x = Float64Array.from({ length: N }, (_, k) => Math.sin(k * 1.7) * 3);
const out = Float64Array.from({ length: N }, (_, k) => Math.cos(k * 0.9));
const z = Float64Array.from({ length: N }, (_, k) => Math.sin(k * 0.37 + 1));

function close(got: ArrayLike<number>, want: ArrayLike<number>, rtol = 2e-6): void {
  const scale = Math.max(...Array.from(want, Math.abs));
  let worst = 0;
  for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(got[k]! - want[k]!));
  expect(worst / scale).toBeLessThan(rtol);
}

function sampler(name: SamplerName, steps: number, extra: Record<string, unknown> = {}, eta = 0) {
  const c = resolveSchedulerConfig(name, { ...SD15, ...extra });
  return createSampler(name, c, steps, { noise: () => Float32Array.from(z), eta });
}

const f32 = (a: Float64Array) => Float32Array.from(a);
const map = (f: (k: number) => number) => Float64Array.from({ length: N }, (_, k) => f(k));

describe('v-prediction steps agree with their closed forms', () => {
  it('euler: x0 = -σ/√(σ²+1)·v + x/(σ²+1); x′ = x + (x − x0)/σ·(σ′ − σ)', () => {
    const s = sampler('euler', 20, { prediction_type: 'v_prediction' });
    const [sg, sn] = [s.sigmas![0]!, s.sigmas![1]!];
    const x0 = map((k) => (-sg / Math.sqrt(sg * sg + 1)) * out[k]! + x[k]! / (sg * sg + 1));
    const r = s.step(f32(out), 0, f32(x));
    close(r.predOriginalSample!, x0);
    close(
      r.prevSample,
      map((k) => x[k]! + ((x[k]! - x0[k]!) / sg) * (sn - sg)),
    );
  });

  it('euler-a: the same x0, then σ_down and σ_up (k-diffusion get_ancestral_step, eta 1)', () => {
    const s = sampler('euler-a', 20, { prediction_type: 'v_prediction' });
    const [sg, sn] = [s.sigmas![0]!, s.sigmas![1]!];
    const up = Math.sqrt((sn * sn * (sg * sg - sn * sn)) / (sg * sg));
    const down = Math.sqrt(sn * sn - up * up);
    const x0 = map((k) => (-sg / Math.sqrt(sg * sg + 1)) * out[k]! + x[k]! / (sg * sg + 1));
    const r = s.step(f32(out), 0, f32(x));
    close(
      r.prevSample,
      map((k) => x[k]! + ((x[k]! - x0[k]!) / sg) * (down - sg) + z[k]! * up),
    );
  });

  it('dpmpp-2m, first (first-order) step: x0 = α·x − σ_t·v; x′ = (σ′_t/σ_t)·x − α′(e^(−h) − 1)·x0', () => {
    const s = sampler('dpmpp-2m', 20, { prediction_type: 'v_prediction' });
    const at = (sg: number) => ({ alpha: 1 / Math.sqrt(sg * sg + 1), sigma: sg / Math.sqrt(sg * sg + 1) });
    const a = at(s.sigmas![0]!),
      b = at(s.sigmas![1]!);
    const h = Math.log(b.alpha / b.sigma) - Math.log(a.alpha / a.sigma);
    const x0 = map((k) => a.alpha * x[k]! - a.sigma * out[k]!);
    const r = s.step(f32(out), 0, f32(x));
    close(
      r.prevSample,
      map((k) => (b.sigma / a.sigma) * x[k]! - b.alpha * (Math.exp(-h) - 1) * x0[k]!),
    );
  });

  it("pndm (PLMS), first step: ε = √ᾱ·v + √(1−ᾱ)·x, then diffusers' _get_prev_sample", () => {
    const steps = 20;
    const s = sampler('pndm', steps, { prediction_type: 'v_prediction' });
    const t = s.timesteps[0]!;
    const prev = t - 1000 / steps;
    const at = s.alphasCumprod[t]!,
      ap = s.alphasCumprod[prev]!;
    const eps = map((k) => Math.sqrt(at) * out[k]! + Math.sqrt(1 - at) * x[k]!);
    const denom = at * Math.sqrt(1 - ap) + Math.sqrt(at * (1 - at) * ap);
    const r = s.step(f32(out), 0, f32(x));
    close(
      r.prevSample,
      map((k) => Math.sqrt(ap / at) * x[k]! - ((ap - at) * eps[k]!) / denom),
    );
  });

  it('ddim: x0 = √ᾱ·x − √(1−ᾱ)·v; x′ = √ᾱ′·x0 + √(1−ᾱ′)·ε', () => {
    const steps = 20;
    const s = sampler('ddim', steps, { prediction_type: 'v_prediction' });
    const t = s.timesteps[0]!;
    const at = s.alphasCumprod[t]!,
      ap = s.alphasCumprod[t - 1000 / steps]!;
    const x0 = map((k) => Math.sqrt(at) * x[k]! - Math.sqrt(1 - at) * out[k]!);
    const eps = map((k) => Math.sqrt(at) * out[k]! + Math.sqrt(1 - at) * x[k]!);
    const r = s.step(f32(out), 0, f32(x));
    close(r.predOriginalSample!, x0);
    close(
      r.prevSample,
      map((k) => Math.sqrt(ap) * x0[k]! + Math.sqrt(1 - ap) * eps[k]!),
    );
  });
});

describe('DDIM with eta > 0', () => {
  it('σ = η·√((1−ᾱ′)/(1−ᾱ))·√(1−ᾱ/ᾱ′); x′ = √ᾱ′·x0 + √(1−ᾱ′−σ²)·ε + σ·z (Song et al. 2021, eq. 12 and 16)', () => {
    const steps = 20;
    for (const eta of [0.3, 1]) {
      const s = sampler('ddim', steps, {}, eta);
      for (const i of [0, 7, 19]) {
        const t = s.timesteps[i]!;
        const at = s.alphasCumprod[t]!;
        const ap = t - 1000 / steps >= 0 ? s.alphasCumprod[t - 1000 / steps]! : s.alphasCumprod[0]!;
        const sigma = eta * Math.sqrt((1 - ap) / (1 - at)) * Math.sqrt(1 - at / ap);
        const x0 = map((k) => (x[k]! - Math.sqrt(1 - at) * out[k]!) / Math.sqrt(at));
        const want = map((k) => Math.sqrt(ap) * x0[k]! + Math.sqrt(1 - ap - sigma * sigma) * out[k]! + sigma * z[k]!);
        close(s.step(f32(out), i, f32(x)).prevSample, want, 5e-6);
      }
    }
  });
});

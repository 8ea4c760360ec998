/**
 * PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"): the pseudo linear
 * multistep method PLMS (Algorithm 2 with the 4th-order Adams–Bashforth weights 55, −59, 37, −9 over the last
 * noise predictions), optionally after Runge–Kutta warm-up steps (PRK, Algorithm 1) — diffusers' PNDMScheduler
 * (step_prk / step_plms, with its first-step quirk: the first PLMS step is taken twice).
 */
import { f, sqrtf } from '../f32.js';
import type { SamplerAlgorithm, SamplerInputs } from './shared.js';
import { pndmTimesteps } from '../schedule.js';
import { COMMON_DEFAULTS, defineSampler } from './spec.js';

export function pndm({
  config: c,
  alphasCumprod: ac,
  schedule,
  numInferenceSteps: n,
}: SamplerInputs): SamplerAlgorithm {
  const ts = schedule.timesteps;
  const stride = Math.floor(c.numTrainTimesteps / n);
  const finalAlpha = c.setAlphaToOne ? 1 : ac[0]!;

  /** The transfer φ(x_t, ε, t, t_prev) of the paper's eq. (11) (diffusers' _get_prev_sample). */
  const transfer = (sample: Float32Array, t: number, tPrev: number, mo: Float32Array): Float32Array => {
    const apt = ac[t]!;
    const aprev = tPrev >= 0 ? ac[tPrev]! : finalAlpha;
    const bpt = f(1 - apt);
    const bprev = f(1 - aprev);
    if (c.predictionType === 'v_prediction') {
      const sa = sqrtf(apt);
      const sb = sqrtf(bpt);
      const v = new Float32Array(mo.length);
      for (let k = 0; k < v.length; k++) v[k] = f(f(sa * mo[k]!) + f(sb * sample[k]!));
      mo = v;
    }
    const sampleCoeff = sqrtf(f(aprev / apt));
    const denom = f(f(apt * sqrtf(bprev)) + sqrtf(f(f(apt * bpt) * aprev)));
    const diff = f(aprev - apt);
    const out = new Float32Array(sample.length);
    for (let k = 0; k < out.length; k++) out[k] = f(f(sampleCoeff * sample[k]!) - f(f(diff * mo[k]!) / denom));
    return out;
  };
  /** acc + a·x in float32 (acc null: a·x). */
  const axpy = (acc: Float32Array | null, a: number, x: Float32Array): Float32Array => {
    const out = new Float32Array(x.length);
    const af = f(a);
    for (let k = 0; k < x.length; k++) out[k] = acc === null ? f(af * x[k]!) : f(acc[k]! + f(af * x[k]!));
    return out;
  };

  let counter = 0;
  const ets: Float32Array[] = [];
  let curSample: Float32Array | null = null;
  let curModelOutput: Float32Array | null = null;

  /** Runge–Kutta warm-up: 4 model calls per step, their outputs weighted 1/6, 1/3, 1/3, 1/6. */
  const prkStep = (mo: Float32Array, i: number, sample: Float32Array): Float32Array => {
    const diffToPrev = counter % 2 ? 0 : Math.floor(stride / 2);
    const tPrev = ts[i]! - diffToPrev;
    const t = ts[Math.floor(counter / 4) * 4]!;
    let m = mo;
    const phase = counter % 4;
    if (phase === 0) {
      curModelOutput = axpy(curModelOutput, 1 / 6, mo);
      ets.push(mo);
      curSample = sample;
    } else if (phase === 1 || phase === 2) {
      curModelOutput = axpy(curModelOutput, 1 / 3, mo);
    } else {
      m = axpy(curModelOutput, 1 / 6, mo);
      curModelOutput = null;
    }
    return transfer(curSample ?? sample, t, tPrev, m);
  };

  /** Linear multistep: the noise prediction extrapolated from the last (up to) four. */
  const plmsStep = (mo: Float32Array, i: number, sample: Float32Array): Float32Array => {
    let t = ts[i]!;
    let tPrev = t - stride;
    if (counter !== 1) {
      ets.push(mo);
      if (ets.length > 4) ets.shift();
    } else {
      tPrev = t;
      t = t + stride;
    }
    let m: Float32Array;
    let x = sample;
    const L = ets.length;
    const e1 = ets[L - 1]!;
    if (L === 1 && counter === 0) {
      m = mo;
      curSample = sample;
    } else if (L === 1 && counter === 1) {
      m = new Float32Array(mo.length);
      for (let k = 0; k < m.length; k++) m[k] = f(f(mo[k]! + e1[k]!) / 2);
      x = curSample!;
      curSample = null;
    } else if (L === 2) {
      const e2 = ets[0]!;
      m = new Float32Array(mo.length);
      for (let k = 0; k < m.length; k++) m[k] = f(f(f(3 * e1[k]!) - e2[k]!) / 2);
    } else if (L === 3) {
      const e2 = ets[1]!;
      const e3 = ets[0]!;
      m = new Float32Array(mo.length);
      for (let k = 0; k < m.length; k++) m[k] = f(f(f(f(23 * e1[k]!) - f(16 * e2[k]!)) + f(5 * e3[k]!)) / 12);
    } else {
      const e2 = ets[2]!;
      const e3 = ets[1]!;
      const e4 = ets[0]!;
      const c24 = f(1 / 24);
      m = new Float32Array(mo.length);
      for (let k = 0; k < m.length; k++) {
        m[k] = f(c24 * f(f(f(f(55 * e1[k]!) - f(59 * e2[k]!)) + f(37 * e3[k]!)) - f(9 * e4[k]!)));
      }
    }
    return transfer(x, t, tPrev, m);
  };

  return {
    step(mo, i, sample) {
      if (i !== counter) throw new Error(`sampler pndm: step ${i} called out of order (expected ${counter})`);
      const prev = counter < schedule.prkCount ? prkStep(mo, i, sample) : plmsStep(mo, i, sample);
      counter++;
      return { prevSample: prev };
    },
  };
}

/** PNDMScheduler (PLMS; PRK warm-up steps unless skip_prk_steps). */
export const pndmSpec = defineSampler({
  name: 'pndm',
  className: 'PNDMScheduler',
  aliases: ['plms'],
  defaults: {
    ...COMMON_DEFAULTS,
    skip_prk_steps: false,
    set_alpha_to_one: false,
    prediction_type: 'epsilon',
    timestep_spacing: 'leading',
    steps_offset: 0,
  },
  predictionTypes: ['epsilon', 'v_prediction'],
  timestepDType: 'int64',
  schedule: (c, _alphas, n) => ({ ...pndmTimesteps(c, n), sigmas: null }),
  build: pndm,
});

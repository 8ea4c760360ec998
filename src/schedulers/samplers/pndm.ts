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

/** The transfer φ(x_t, ε, t, t_prev) of the paper's eq. (11): ε at x_t → x_{t_prev} (diffusers' _get_prev_sample). */
type Transfer = (sample: Float32Array, t: number, tPrev: number, modelOutput: Float32Array) => Float32Array;

/** What one PNDM run carries from step to step (diffusers keeps the same fields on the scheduler). */
interface PndmRun {
  readonly timesteps: readonly number[];
  /** numTrainTimesteps / numInferenceSteps: the distance between two PLMS timesteps. */
  readonly stride: number;
  readonly transfer: Transfer;
  /** Model calls so far (diffusers' counter): picks the PRK phase and the PLMS first-step quirk. */
  counter: number;
  /** The last (up to four) noise predictions the multistep extrapolates from (diffusers' ets). */
  readonly ets: Float32Array[];
  curSample: Float32Array | null;
  /** PRK: the running 1/6, 1/3, 1/3 weighted sum of this step's model outputs. */
  curModelOutput: Float32Array | null;
}

function makeTransfer(c: SamplerInputs['config'], ac: Float32Array): Transfer {
  const finalAlpha = c.setAlphaToOne ? 1 : ac[0]!;
  return (sample, t, tPrev, mo) => {
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
}

/** acc + a·x in float32 (acc null: a·x). */
function axpy(acc: Float32Array | null, a: number, x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const af = f(a);
  for (let k = 0; k < x.length; k++) out[k] = acc === null ? f(af * x[k]!) : f(acc[k]! + f(af * x[k]!));
  return out;
}

/** Runge–Kutta warm-up: 4 model calls per step, their outputs weighted 1/6, 1/3, 1/3, 1/6. */
function prkStep(run: PndmRun, mo: Float32Array, i: number, sample: Float32Array): Float32Array {
  const diffToPrev = run.counter % 2 ? 0 : Math.floor(run.stride / 2);
  const tPrev = run.timesteps[i]! - diffToPrev;
  const t = run.timesteps[Math.floor(run.counter / 4) * 4]!;
  let m = mo;
  const phase = run.counter % 4;
  if (phase === 0) {
    run.curModelOutput = axpy(run.curModelOutput, 1 / 6, mo);
    run.ets.push(mo);
    run.curSample = sample;
  } else if (phase === 1 || phase === 2) {
    run.curModelOutput = axpy(run.curModelOutput, 1 / 3, mo);
  } else {
    m = axpy(run.curModelOutput, 1 / 6, mo);
    run.curModelOutput = null;
  }
  return run.transfer(run.curSample ?? sample, t, tPrev, m);
}

/**
 * Adams–Bashforth extrapolation of the next noise prediction from the last 2, 3 or 4 (ets, oldest first):
 * weights (3, −1)/2, (23, −16, 5)/12, (55, −59, 37, −9)/24, in diffusers' float32 operation order.
 */
function adamsBashforth(ets: readonly Float32Array[]): Float32Array {
  const L = ets.length;
  const e1 = ets[L - 1]!;
  const m = new Float32Array(e1.length);
  if (L === 2) {
    const e2 = ets[0]!;
    for (let k = 0; k < m.length; k++) m[k] = f(f(f(3 * e1[k]!) - e2[k]!) / 2);
  } else if (L === 3) {
    const e2 = ets[1]!;
    const e3 = ets[0]!;
    for (let k = 0; k < m.length; k++) m[k] = f(f(f(f(23 * e1[k]!) - f(16 * e2[k]!)) + f(5 * e3[k]!)) / 12);
  } else {
    const e2 = ets[2]!;
    const e3 = ets[1]!;
    const e4 = ets[0]!;
    const c24 = f(1 / 24);
    for (let k = 0; k < m.length; k++) {
      m[k] = f(c24 * f(f(f(f(55 * e1[k]!) - f(59 * e2[k]!)) + f(37 * e3[k]!)) - f(9 * e4[k]!)));
    }
  }
  return m;
}

/**
 * Linear multistep: the noise prediction extrapolated from the last (up to) four. Without PRK warm-up, diffusers
 * takes the first step twice: call 0 transfers with ε alone and keeps x_t; call 1 redoes that step from the kept
 * x_t with the mean of both predictions (a second-order start), which is why call 1 moves t one stride up.
 */
function plmsStep(run: PndmRun, mo: Float32Array, i: number, sample: Float32Array): Float32Array {
  const { ets, counter } = run;
  let t = run.timesteps[i]!;
  let tPrev = t - run.stride;
  if (counter !== 1) {
    ets.push(mo);
    if (ets.length > 4) ets.shift();
  } else {
    tPrev = t;
    t = t + run.stride;
  }
  let m: Float32Array;
  let x = sample;
  if (ets.length === 1 && counter === 0) {
    m = mo;
    run.curSample = sample;
  } else if (ets.length === 1 && counter === 1) {
    const e1 = ets[0]!;
    m = new Float32Array(mo.length);
    for (let k = 0; k < m.length; k++) m[k] = f(f(mo[k]! + e1[k]!) / 2);
    x = run.curSample!;
    run.curSample = null;
  } else {
    m = adamsBashforth(ets);
  }
  return run.transfer(x, t, tPrev, m);
}

export function pndm({
  config: c,
  alphasCumprod: ac,
  schedule,
  numInferenceSteps: n,
}: SamplerInputs): SamplerAlgorithm {
  const run: PndmRun = {
    timesteps: schedule.timesteps,
    stride: Math.floor(c.numTrainTimesteps / n),
    transfer: makeTransfer(c, ac),
    counter: 0,
    ets: [],
    curSample: null,
    curModelOutput: null,
  };
  return {
    step(mo, i, sample) {
      if (i !== run.counter) throw new Error(`sampler pndm: step ${i} called out of order (expected ${run.counter})`);
      const prev = run.counter < schedule.prkCount ? prkStep(run, mo, i, sample) : plmsStep(run, mo, i, sample);
      run.counter++;
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

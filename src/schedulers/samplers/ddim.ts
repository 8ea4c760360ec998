/**
 * DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12): x0 and ε from the model output,
 * then x_prev = √ᾱ_prev·x0 + √(1 − ᾱ_prev − σ²)·ε + σ·z with σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)
 * — diffusers' DDIMScheduler.step (clip_sample, dynamic thresholding, use_clipped_model_output).
 */
import { f, sqrtf } from '../f32.js';
import { clampInPlace, drawNoise, thresholdInPlace, type SamplerAlgorithm, type SamplerInputs } from './shared.js';
import { ddimTimesteps } from '../schedule.js';
import { COMMON_DEFAULTS, defineSampler } from './spec.js';

export function ddim({
  config: c,
  alphasCumprod: ac,
  schedule,
  numInferenceSteps: n,
  options,
}: SamplerInputs): SamplerAlgorithm {
  const ts = schedule.timesteps;
  const stride = Math.floor(c.numTrainTimesteps / n);
  const finalAlpha = c.setAlphaToOne ? 1 : ac[0]!;
  const eta = options.eta ?? 0;
  const useClipped = options.useClippedModelOutput ?? false;
  const batch = options.batchSize ?? 1;
  return {
    step(mo, i, sample) {
      const t = ts[i]!;
      const tPrev = t - stride;
      const apt = ac[t]!;
      const aprev = tPrev >= 0 ? ac[tPrev]! : finalAlpha;
      const bpt = f(1 - apt);
      const sa = sqrtf(apt);
      const sb = sqrtf(bpt);
      const len = sample.length;
      const x0 = new Float32Array(len);
      let eps: Float32Array;
      if (c.predictionType === 'epsilon') {
        for (let k = 0; k < len; k++) x0[k] = f(f(sample[k]! - f(sb * mo[k]!)) / sa);
        eps = mo;
      } else if (c.predictionType === 'sample') {
        x0.set(mo);
        eps = new Float32Array(len);
        for (let k = 0; k < len; k++) eps[k] = f(f(sample[k]! - f(sa * x0[k]!)) / sb);
      } else {
        eps = new Float32Array(len);
        for (let k = 0; k < len; k++) {
          x0[k] = f(f(sa * sample[k]!) - f(sb * mo[k]!));
          eps[k] = f(f(sa * mo[k]!) + f(sb * sample[k]!));
        }
      }
      if (c.thresholding) thresholdInPlace(x0, batch, c.dynamicThresholdingRatio, c.sampleMaxValue);
      else if (c.clipSample) clampInPlace(x0, f(c.clipSampleRange));
      // _get_variance(t, prev_t)
      const bprev = f(1 - aprev);
      const variance = f(f(bprev / bpt) * f(1 - f(apt / aprev)));
      const std = f(f(eta) * sqrtf(variance));
      if (useClipped) {
        const e = new Float32Array(len);
        for (let k = 0; k < len; k++) e[k] = f(f(sample[k]! - f(sa * x0[k]!)) / sb);
        eps = e;
      }
      const dirCoef = sqrtf(f(f(1 - aprev) - f(std * std)));
      const sap = sqrtf(aprev);
      const prev = new Float32Array(len);
      for (let k = 0; k < len; k++) prev[k] = f(f(sap * x0[k]!) + f(dirCoef * eps[k]!));
      if (eta > 0) {
        const z = drawNoise(options.noise, len, 'sampler ddim with eta > 0');
        for (let k = 0; k < len; k++) prev[k] = f(prev[k]! + f(std * z[k]!));
      }
      return { prevSample: prev, predOriginalSample: x0 };
    },
  };
}

/** DDIMScheduler. */
export const ddimSpec = defineSampler({
  name: 'ddim',
  className: 'DDIMScheduler',
  aliases: [],
  defaults: {
    ...COMMON_DEFAULTS,
    clip_sample: true,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: 'epsilon',
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    clip_sample_range: 1.0,
    sample_max_value: 1.0,
    timestep_spacing: 'leading',
    rescale_betas_zero_snr: false,
  },
  predictionTypes: ['epsilon', 'v_prediction', 'sample'],
  timestepDType: 'int64',
  schedule: (c, _alphas, n) => ({ timesteps: ddimTimesteps(c, n), sigmas: null, prkCount: 0 }),
  build: ddim,
});

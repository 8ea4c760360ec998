/**
 * Euler (Karras et al. 2022, Algorithm 2: a first-order step of the probability-flow ODE, with optional "churn"
 * that first raises σ to σ̂ = σ·(1 + γ) by adding noise) — diffusers' EulerDiscreteScheduler.step.
 */
import { f, sqrtf } from '../f32.js';
import { denoiser, eulerUpdate } from './denoiser.js';
import { drawNoise, type SamplerAlgorithm, type SamplerInputs } from './shared.js';
import { eulerSchedule } from '../schedule.js';
import { COMMON_DEFAULTS, defineSampler } from './spec.js';

export function euler(inputs: SamplerInputs): SamplerAlgorithm {
  const sigmas = inputs.schedule.sigmas!;
  const { noise, sChurn = 0, sTmin = 0, sTmax = Number.POSITIVE_INFINITY, sNoise = 1 } = inputs.options;
  const model = denoiser(inputs);
  return {
    initNoiseSigma: model.initNoiseSigma,
    scaleModelInput: model.scaleModelInput,
    step(mo, i, x) {
      const sigma = sigmas[i]!;
      const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (sigmas.length - 1), 2 ** 0.5 - 1) : 0;
      // diffusers draws the churn noise on every step when a generator is given, used or not.
      const z = noise !== undefined || gamma > 0 ? drawNoise(noise, x.length, 'sampler euler with s_churn > 0') : null;
      const sigmaHat = f(sigma * f(gamma + 1));
      let churned = x;
      if (gamma > 0) {
        const coef = sqrtf(f(f(sigmaHat * sigmaHat) - f(sigma * sigma)));
        const sn = f(sNoise);
        churned = new Float32Array(x.length);
        for (let k = 0; k < x.length; k++) churned[k] = f(x[k]! + f(f(z![k]! * sn) * coef));
      }
      const x0 = model.denoised(mo, churned, sigma, sigmaHat);
      return { prevSample: eulerUpdate(churned, x0, sigmaHat, sigmas[i + 1]!), predOriginalSample: x0 };
    },
  };
}

/** EulerDiscreteScheduler. */
export const eulerSpec = defineSampler({
  name: 'euler',
  className: 'EulerDiscreteScheduler',
  aliases: [],
  defaults: {
    ...COMMON_DEFAULTS,
    prediction_type: 'epsilon',
    interpolation_type: 'linear',
    use_karras_sigmas: false,
    sigma_min: null,
    sigma_max: null,
    timestep_spacing: 'linspace',
    timestep_type: 'discrete',
    steps_offset: 0,
  },
  predictionTypes: ['epsilon', 'v_prediction', 'sample'],
  timestepDType: 'float32',
  schedule: (c, alphas, n) => ({ ...eulerSchedule(c, alphas, n, false), prkCount: 0 }),
  build: euler,
});

/**
 * Euler ancestral (k-diffusion's sample_euler_ancestral: an Euler step down to σ_down, then fresh noise of
 * size σ_up, with σ_up² + σ_down² = σ_next², the ancestral sampling of Ho et al. 2020 in σ form) —
 * diffusers' EulerAncestralDiscreteScheduler.step.
 */
import { f, sqrtf } from '../f32.js';
import { denoiser } from './denoiser.js';
import { drawNoise, type SamplerAlgorithm, type SamplerInputs } from './shared.js';
import { eulerSchedule } from '../schedule.js';
import { COMMON_DEFAULTS, defineSampler } from './spec.js';

/**
 * σ_up = √(σ_next²·(σ² − σ_next²)/σ²) and σ_down = √(σ_next² − σ_up²), in diffusers' float32 ops, with
 * k-diffusion's clamp σ_up ≤ σ_next. The clamp matters when σ ≫ σ_next (a zero-terminal-SNR-like first step,
 * e.g. squaredcos_cap_v2 with trailing spacing): (σ² − σ_next²)/σ² rounds to 1, σ_up rounds above σ_next and
 * σ_down² comes out slightly negative — NaN in diffusers. Clamped, σ_down is 0 there, as it is in exact arithmetic
 * to within float32.
 */
export function ancestralSigmas(sigma: number, sigmaNext: number): { up: number; down: number } {
  const from2 = f(sigma * sigma);
  const to2 = f(sigmaNext * sigmaNext);
  const up = Math.min(sigmaNext, sqrtf(f(f(to2 * f(from2 - to2)) / from2)));
  return { up, down: sqrtf(f(to2 - f(up * up))) };
}

export function eulerAncestral(inputs: SamplerInputs): SamplerAlgorithm {
  const sigmas = inputs.schedule.sigmas!;
  const model = denoiser(inputs);
  return {
    initNoiseSigma: model.initNoiseSigma,
    scaleModelInput: model.scaleModelInput,
    step(mo, i, x) {
      const sigma = sigmas[i]!;
      const x0 = model.denoised(mo, x, sigma, sigma);
      const { up, down } = ancestralSigmas(sigma, sigmas[i + 1]!);
      const dt = f(down - sigma);
      const z = drawNoise(inputs.options.noise, x.length, 'sampler euler-a');
      const prev = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) {
        const p = f(x[k]! + f(f(f(x[k]! - x0[k]!) / sigma) * dt));
        prev[k] = f(p + f(z[k]! * up));
      }
      return { prevSample: prev, predOriginalSample: x0 };
    },
  };
}

/** EulerAncestralDiscreteScheduler. */
export const eulerAncestralSpec = defineSampler({
  name: 'euler-a',
  className: 'EulerAncestralDiscreteScheduler',
  aliases: ['euler-ancestral', 'eulera'],
  defaults: {
    ...COMMON_DEFAULTS,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  predictionTypes: ['epsilon', 'v_prediction'],
  timestepDType: 'float32',
  schedule: (c, alphas, n) => ({ ...eulerSchedule(c, alphas, n, true), prkCount: 0 }),
  build: eulerAncestral,
});

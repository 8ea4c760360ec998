/**
 * The denoiser view of the model (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
 * Models", §3; k-diffusion's CompVisDenoiser) that the σ-parameterised samplers step over: the latents live at
 * noise level σ (x = x0 + σ·ε), the UNet sees c_in·x with c_in = 1/√(σ² + 1), and its output (ε, v or x0) is turned
 * into the denoised estimate D(x; σ). diffusers' EulerDiscreteScheduler / EulerAncestralDiscreteScheduler, in
 * their float32 op order.
 */
import { f, sqrtf } from '../f32.js';
import type { SamplerInputs } from './shared.js';

export interface Denoiser {
  readonly initNoiseSigma: number;
  /** c_in·x for model call `i`. */
  scaleModelInput(x: Float32Array, i: number): Float32Array;
  /** D(x; σ) from the model output at σ; `sigmaHat` is σ raised by churn (σ itself without). */
  denoised(modelOutput: Float32Array, x: Float32Array, sigma: number, sigmaHat: number): Float32Array;
}

export function denoiser({ config: c, schedule }: SamplerInputs): Denoiser {
  const sigmas = schedule.sigmas!;
  let max = 0;
  for (let k = 0; k < sigmas.length; k++) if (sigmas[k]! > max) max = sigmas[k]!;
  return {
    initNoiseSigma:
      c.timestepSpacing === 'linspace' || c.timestepSpacing === 'trailing' ? max : sqrtf(f(f(max * max) + 1)),
    scaleModelInput(x, i) {
      const d = sqrtf(f(f(sigmas[i]! * sigmas[i]!) + 1));
      const out = new Float32Array(x.length);
      for (let k = 0; k < out.length; k++) out[k] = f(x[k]! / d);
      return out;
    },
    denoised(mo, x, sigma, sh) {
      const len = x.length;
      const x0 = new Float32Array(len);
      if (c.predictionType === 'epsilon') {
        for (let k = 0; k < len; k++) x0[k] = f(x[k]! - f(sh * mo[k]!));
      } else if (c.predictionType === 'v_prediction') {
        const s2p1 = f(f(sigma * sigma) + 1);
        const cOut = f(-sigma / sqrtf(s2p1));
        for (let k = 0; k < len; k++) x0[k] = f(f(mo[k]! * cOut) + f(x[k]! / s2p1));
      } else x0.set(mo);
      return x0;
    },
  };
}

/** One Euler step of the probability-flow ODE dx/dσ = (x − D)/σ from σ to σ_next (k-diffusion's to_d + step). */
export function eulerUpdate(x: Float32Array, denoised: Float32Array, sigma: number, sigmaNext: number): Float32Array {
  const dt = f(sigmaNext - sigma);
  const out = new Float32Array(x.length);
  for (let k = 0; k < out.length; k++) out[k] = f(x[k]! + f(f(f(x[k]! - denoised[k]!) / sigma) * dt));
  return out;
}

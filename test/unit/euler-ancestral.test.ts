/**
 * Euler ancestral on a schedule whose first σ dwarfs the next (the shipped shapes model: squaredcos_cap_v2,
 * v-prediction, trailing spacing). In float32, (σ² − σ_next²)/σ² rounds to 1 and diffusers' formulas give
 * σ_down = √(negative) = NaN at step 0 for 3 steps; k-diffusion's clamp σ_up ≤ σ_next keeps it finite.
 */
import { describe, expect, it } from 'vitest';
import { createSampler } from '../../src/schedulers/index.js';
import { ancestralSigmas } from '../../src/schedulers/samplers/euler-ancestral.js';
import { GaussianRng } from '../../src/util/random.js';

// models/shapes/scheduler/scheduler_config.json, inlined so the test needs no model.
const SHAPES_SCHEDULER = {
  _class_name: 'DDIMScheduler',
  num_train_timesteps: 1000,
  beta_schedule: 'squaredcos_cap_v2',
  beta_start: 0.0001,
  beta_end: 0.02,
  prediction_type: 'v_prediction',
  timestep_spacing: 'trailing',
  steps_offset: 0,
  clip_sample: false,
  set_alpha_to_one: true,
  rescale_betas_zero_snr: false,
};

describe('euler-a when σ ≫ σ_next', () => {
  it('σ_up never exceeds σ_next, so σ_up² + σ_down² = σ_next² holds with σ_down ≥ 0', () => {
    for (const [from, to] of [
      [14.6, 13.1],
      [20291.302734375, 1.750723123550415], // the shipped scheduler's first step at 3 steps
      [1e4, 1.7],
      [1e6, 0.5],
      [3, 0],
    ] as const) {
      const { up, down } = ancestralSigmas(from, to);
      expect(Number.isNaN(down)).toBe(false);
      expect(up).toBeLessThanOrEqual(Math.fround(to));
      expect(down).toBeGreaterThanOrEqual(0);
      expect(Math.hypot(up, down)).toBeCloseTo(Math.fround(to), 5);
    }
  });

  it('every step count of the shipped scheduler gives finite latents (3 steps was NaN at step 0)', () => {
    for (const steps of [1, 2, 3, 4, 5, 10, 25, 50]) {
      const rng = new GaussianRng(steps);
      const s = createSampler('euler-a', SHAPES_SCHEDULER, steps, { noise: (n) => rng.normal(n) });
      let x: Float32Array = rng.normal(16).map((v) => Math.fround(v * s.initNoiseSigma));
      for (let i = 0; i < s.timesteps.length; i++) {
        x = s.step(rng.normal(16), i, x).prevSample;
        expect(x.every(Number.isFinite), `${steps} steps, step ${i}`).toBe(true);
      }
    }
  });
});

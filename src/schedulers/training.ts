/**
 * The DDPM forward process for training (diffusers DDPMScheduler.add_noise / get_velocity and
 * training_utils.compute_snr), in float32 like diffusers.
 */
import { isResolvedConfig, resolveSchedulerConfig, type RawSchedulerConfig, type SchedulerConfig } from './config.js';
import { f, sqrtf } from './f32.js';
import { computeAlphasCumprod, computeBetas } from './schedule.js';

export interface NoiseSchedule {
  readonly numTrainTimesteps: number;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /**
   * x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·noise. `timestep` is one integer for all of `x0`, or one per sample (the
   * arrays then split into timestep.length equal samples).
   */
  addNoise(x0: Float32Array, noise: Float32Array, timestep: number | ArrayLike<number>): Float32Array;
  /** The v-prediction target v = sqrt(ᾱ_t)·noise - sqrt(1-ᾱ_t)·x0 (same timestep rules as addNoise). */
  velocity(x0: Float32Array, noise: Float32Array, timestep: number | ArrayLike<number>): Float32Array;
  /** Signal-to-noise ratio ᾱ_t / (1-ᾱ_t), computed as (sqrt(ᾱ_t)/sqrt(1-ᾱ_t))² in float32 like compute_snr. */
  snr(timestep: number): number;
}

/**
 * The training noise schedule of a model's scheduler config (raw configs are read with DDPM/DDIM beta defaults:
 * linear 0.0001 → 0.02 over 1000 steps, rescale_betas_zero_snr honoured).
 */
export function noiseSchedule(config: SchedulerConfig | RawSchedulerConfig = {}): NoiseSchedule {
  const c = isResolvedConfig(config) ? config : resolveSchedulerConfig('ddim', config);
  const betas = computeBetas(c);
  const ac = computeAlphasCumprod(c);
  const N = c.numTrainTimesteps;
  const coeffs = (t: number) => {
    if (!Number.isInteger(t) || t < 0 || t >= N) throw new Error(`timestep ${t} is outside 0..${N - 1}`);
    return [sqrtf(ac[t]!), sqrtf(f(1 - ac[t]!))] as const;
  };
  const combine = (
    x0: Float32Array,
    noise: Float32Array,
    timestep: number | ArrayLike<number>,
    op: (sa: number, sb: number, x: number, e: number) => number,
  ) => {
    if (x0.length !== noise.length) throw new Error(`x0 has ${x0.length} values, noise ${noise.length}`);
    const ts = typeof timestep === 'number' ? [timestep] : Array.from(timestep);
    if (ts.length === 0 || x0.length % ts.length !== 0) {
      throw new Error(`${x0.length} values do not split into ${ts.length} samples`);
    }
    const per = x0.length / ts.length;
    const out = new Float32Array(x0.length);
    for (let b = 0; b < ts.length; b++) {
      const [sa, sb] = coeffs(ts[b]!);
      for (let k = b * per; k < (b + 1) * per; k++) out[k] = op(sa, sb, x0[k]!, noise[k]!);
    }
    return out;
  };
  return {
    numTrainTimesteps: N,
    betas,
    alphasCumprod: ac,
    addNoise: (x0, noise, t) => combine(x0, noise, t, (sa, sb, x, e) => f(f(sa * x) + f(sb * e))),
    velocity: (x0, noise, t) => combine(x0, noise, t, (sa, sb, x, e) => f(f(sa * e) - f(sb * x))),
    snr(t) {
      const [sa, sb] = coeffs(t);
      const r = f(sa / sb);
      return f(r * r);
    },
  };
}

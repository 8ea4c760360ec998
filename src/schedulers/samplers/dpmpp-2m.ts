/**
 * DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
 * Models", Algorithm 2): a second-order multistep solver in λ = log(α/σ) over the data prediction x0, first order
 * on the first step (and on the last for short schedules) — diffusers' DPMSolverMultistepScheduler with
 * algorithm_type dpmsolver++, solver_order 2 (midpoint or heun solver_type).
 */
import { f, sqrtf } from '../f32.js';
import { thresholdInPlace, type SamplerAlgorithm, type SamplerInputs } from './shared.js';
import { UserError } from '../../errors.js';
import { dpmSchedule } from '../schedule.js';
import { COMMON_DEFAULTS, defineSampler } from './spec.js';

/** α_t, σ_t and λ_t = log α_t − log σ_t from the VE sigma s (_sigma_to_alpha_sigma_t), float32. */
function alphaSigma(s: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = f(1 / sqrtf(f(f(s * s) + 1)));
  const sigma = f(s * alpha);
  return { alpha, sigma, lambda: f(f(Math.log(alpha)) - f(Math.log(sigma))) };
}

export function dpmpp2m({ config: c, schedule, options }: SamplerInputs): SamplerAlgorithm {
  const sigmas = schedule.sigmas!;
  const calls = schedule.timesteps.length;
  const batch = options.batchSize ?? 1;
  let counter = 0;
  let lowerOrderNums = 0;
  let prevX0: Float32Array | null = null;

  /** convert_model_output (dpmsolver++): the data prediction x0. */
  const dataPrediction = (mo: Float32Array, x: Float32Array, cur: ReturnType<typeof alphaSigma>) => {
    const x0 = new Float32Array(x.length);
    if (c.predictionType === 'epsilon') {
      for (let k = 0; k < x.length; k++) x0[k] = f(f(x[k]! - f(cur.sigma * mo[k]!)) / cur.alpha);
    } else if (c.predictionType === 'v_prediction') {
      for (let k = 0; k < x.length; k++) x0[k] = f(f(cur.alpha * x[k]!) - f(cur.sigma * mo[k]!));
    } else x0.set(mo);
    if (c.thresholding) thresholdInPlace(x0, batch, c.dynamicThresholdingRatio, c.sampleMaxValue);
    return x0;
  };

  return {
    step(mo, i, x) {
      if (i !== counter) throw new Error(`sampler dpmpp-2m: step ${i} called out of order (expected ${counter})`);
      const len = x.length;
      const lowerOrderFinal = i === calls - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && calls < 15));
      const cur = alphaSigma(sigmas[i]!);
      const x0 = dataPrediction(mo, x, cur);
      const next = alphaSigma(sigmas[i + 1]!);
      const h = f(next.lambda - cur.lambda);
      const em1 = f(f(Math.exp(-h)) - 1);
      const cSample = f(next.sigma / cur.sigma);
      const cD0 = f(next.alpha * em1);
      const prev = new Float32Array(len);
      if (lowerOrderNums < 1 || lowerOrderFinal) {
        // First order (DPM-Solver++ 1 = DDIM in x0 form).
        for (let k = 0; k < len; k++) prev[k] = f(f(cSample * x[k]!) - f(cD0 * x0[k]!));
      } else {
        const m1 = prevX0!;
        const before = alphaSigma(sigmas[i - 1]!);
        const h0 = f(cur.lambda - before.lambda);
        const r0 = f(h0 / h);
        const invR0 = f(1 / r0);
        const d1 = (k: number) => f(invR0 * f(x0[k]! - m1[k]!));
        if (c.solverType === 'midpoint') {
          const cD1 = f(0.5 * cD0);
          for (let k = 0; k < len; k++) prev[k] = f(f(f(cSample * x[k]!) - f(cD0 * x0[k]!)) - f(cD1 * d1(k)));
        } else {
          const cD1 = f(next.alpha * f(f(em1 / h) + 1));
          for (let k = 0; k < len; k++) prev[k] = f(f(f(cSample * x[k]!) - f(cD0 * x0[k]!)) + f(cD1 * d1(k)));
        }
      }
      prevX0 = x0;
      if (lowerOrderNums < 2) lowerOrderNums++;
      counter++;
      return { prevSample: prev, predOriginalSample: x0 };
    },
  };
}

/** DPMSolverMultistepScheduler as 2nd-order multistep DPM-Solver++ (the name fixes solver_order and algorithm_type). */
export const dpmpp2mSpec = defineSampler({
  name: 'dpmpp-2m',
  className: 'DPMSolverMultistepScheduler',
  aliases: ['dpmpp2m', 'dpm++-2m', 'dpm++2m', 'dpm-solver++'],
  defaults: {
    ...COMMON_DEFAULTS,
    solver_order: 2,
    prediction_type: 'epsilon',
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    sample_max_value: 1.0,
    algorithm_type: 'dpmsolver++',
    solver_type: 'midpoint',
    lower_order_final: true,
    euler_at_final: false,
    use_karras_sigmas: false,
    use_lu_lambdas: false,
    lambda_min_clipped: Number.NEGATIVE_INFINITY,
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  unsupported: { variance_type: null },
  predictionTypes: ['epsilon', 'v_prediction', 'sample'],
  timestepDType: 'int64',
  check(value, where) {
    const fmt = (v: unknown) => (typeof v === 'string' ? `"${v}"` : (JSON.stringify(v) ?? String(v)));
    const order = value('solver_order');
    if (order !== 2)
      throw new UserError(`${where}: "solver_order" = ${fmt(order)} is not supported by sampler dpmpp-2m (it is 2)`);
    const alg = value('algorithm_type');
    if (alg !== 'dpmsolver++')
      throw new UserError(
        `${where}: "algorithm_type" = ${fmt(alg)} is not supported by sampler dpmpp-2m (it is "dpmsolver++")`,
      );
  },
  schedule: (c, alphas, n) => ({ ...dpmSchedule(c, alphas, n), prkCount: 0 }),
  build: dpmpp2m,
});

/**
 * Samplers: diffusers v0.24.0 semantics in k-diffusion's shape — the schedule is computed once
 * (schedule.ts), then each sampler is a short step function over flat float32 latents.
 *
 * Arithmetic mirrors diffusers' float32 torch tensors op by op (every `Math.fround` below is one torch op), so
 * step results agree with diffusers to float32 rounding (see test/schedulers.test.ts).
 *
 * A sampler is stateful (PNDM and DPM-Solver++ keep a history of model outputs): create a fresh one for every
 * generation and call `step` once per model call, in order.
 */
import { UserError } from '../errors.js';
import {
  isResolvedConfig,
  resolveSchedulerConfig,
  type RawSchedulerConfig,
  type SamplerName,
  type SchedulerConfig,
} from './config.js';
import { f, sqrtf } from './f32.js';
import { computeAlphasCumprod, inferenceSchedule } from './schedule.js';

export interface StepResult {
  /** x_{t-1}: the latents to feed the next model call (or the final latents). */
  readonly prevSample: Float32Array;
  /** The model's current estimate of x_0 (ddim, euler, euler-a, dpmpp-2m; not pndm, like diffusers). */
  readonly predOriginalSample?: Float32Array;
}

export interface SamplerOptions {
  /**
   * Standard-normal draws (`n` of them, a fresh array each call) for euler-a, ddim with eta > 0, and euler with
   * s_churn > 0. Like diffusers' EulerDiscreteScheduler, euler draws noise on every step when a source is given,
   * even when it does not use it (s_churn 0), so a shared generator advances the same way.
   */
  readonly noise?: (n: number) => Float32Array;
  /** DDIM eta (0 = deterministic DDIM, 1 = DDPM-like); default 0. */
  readonly eta?: number;
  /** DDIM use_clipped_model_output; default false. */
  readonly useClippedModelOutput?: boolean;
  /** Euler churn parameters (diffusers' step() arguments); defaults 0, 0, Infinity, 1. */
  readonly sChurn?: number;
  readonly sTmin?: number;
  readonly sTmax?: number;
  readonly sNoise?: number;
  /** Number of samples in the latents (only used by dynamic thresholding, which is per sample); default 1. */
  readonly batchSize?: number;
}

export interface Sampler {
  readonly name: SamplerName;
  readonly config: SchedulerConfig;
  readonly numInferenceSteps: number;
  /** The timestep fed to the UNet at each model call, in order (PNDM: numInferenceSteps + 1 calls). */
  readonly timesteps: readonly number[];
  /** How diffusers types the timestep: int64 (pndm, ddim, dpmpp-2m) or float32 (euler, euler-a; values exact). */
  readonly timestepDType: 'int64' | 'float32';
  /** float32 sigmas (timesteps.length + 1) for euler, euler-a and dpmpp-2m; null otherwise. */
  readonly sigmas: Float32Array | null;
  /** Multiply the initial N(0, I) latents by this (float32). */
  readonly initNoiseSigma: number;
  /** Training alphas_cumprod (float32). */
  readonly alphasCumprod: Float32Array;
  /** diffusers' scheduler.order (1 for all of these). */
  readonly order: number;
  /** diffusers' num_warmup_steps = timesteps.length - numInferenceSteps * order (PNDM: 1; the legacy callback skips these). */
  readonly numWarmupSteps: number;
  /** The UNet input for model call `callIndex` (euler/euler-a: sample / sqrt(sigma²+1); others: `sample` itself). */
  scaleModelInput(sample: Float32Array, callIndex: number): Float32Array;
  /** One sampler step after model call `callIndex`. `modelOutput` is the (guided) UNet output. */
  step(modelOutput: Float32Array, callIndex: number, sample: Float32Array): StepResult;
}

const alphasCache = new WeakMap<SchedulerConfig, Float32Array>();

function alphasFor(c: SchedulerConfig): Float32Array {
  let a = alphasCache.get(c);
  if (a === undefined) {
    a = computeAlphasCumprod(c);
    alphasCache.set(c, a);
  }
  return a;
}

function need(noise: SamplerOptions['noise'], n: number, who: string): Float32Array {
  if (noise === undefined) throw new Error(`${who} needs a noise source (options.noise)`);
  const z = noise(n);
  if (z.length !== n) throw new Error(`${who}: noise source returned ${z.length} values, expected ${n}`);
  return z;
}

/** Elementwise float32 clamp to [-r, r] (in place). */
function clampInPlace(x: Float32Array, r: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = v < -r ? -r : v > r ? r : v;
  }
}

/** diffusers' _threshold_sample (dynamic thresholding, Imagen), per sample, in place. */
function thresholdInPlace(x: Float32Array, batch: number, ratio: number, maxValue: number): void {
  if (x.length % batch !== 0) throw new Error(`thresholding: ${x.length} values do not split into ${batch} samples`);
  const n = x.length / batch;
  const q = f(ratio);
  const rank = f(q * (n - 1));
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const w = f(rank - lo);
  for (let b = 0; b < batch; b++) {
    const seg = x.subarray(b * n, (b + 1) * n);
    const sorted = Float32Array.from(seg, Math.abs).sort();
    const a = sorted[lo]!;
    const e = sorted[hi]!;
    let s = w < 0.5 ? f(a + f(w * f(e - a))) : f(e - f(f(e - a) * f(1 - w)));
    s = Math.min(Math.max(s, 1), f(maxValue));
    for (let i = 0; i < n; i++) {
      const v = seg[i]!;
      seg[i] = f((v < -s ? -s : v > s ? s : v) / s);
    }
  }
}

/**
 * Creates a sampler for one generation. `config` is a scheduler_config.json dict (resolved here for `name` with
 * from_config semantics) or a config already resolved for `name`.
 */
export function createSampler(
  name: SamplerName,
  config: SchedulerConfig | RawSchedulerConfig,
  numInferenceSteps: number,
  options: SamplerOptions = {},
): Sampler {
  let c: SchedulerConfig;
  if (isResolvedConfig(config)) {
    if (config.sampler !== name) {
      throw new Error(`createSampler: config was resolved for ${config.sampler}, not ${name}; pass the raw config`);
    }
    c = config;
  } else c = resolveSchedulerConfig(name, config);
  const eta = options.eta ?? 0;
  if (!(eta >= 0) || !Number.isFinite(eta)) throw new UserError(`--eta must be a number >= 0 (got ${eta})`);
  if (eta !== 0 && name !== 'ddim') throw new UserError(`--eta applies only to sampler ddim (got sampler ${name})`);
  const batch = options.batchSize ?? 1;
  const ac = alphasFor(c);
  const sched = inferenceSchedule(name, c, ac, numInferenceSteps);
  const ts = sched.timesteps;
  const sigmas = sched.sigmas;
  const N = c.num_train_timesteps;
  const n = numInferenceSteps;
  const finalAlpha = c.set_alpha_to_one ? 1 : ac[0]!;
  const alphaAt = (t: number) => (t >= 0 ? ac[t]! : finalAlpha);
  const checkLen = (a: Float32Array, b: Float32Array, who: string) => {
    if (a.length !== b.length) throw new Error(`${who}: model output has ${a.length} values, sample ${b.length}`);
  };
  const checkIndex = (i: number) => {
    if (!Number.isInteger(i) || i < 0 || i >= ts.length) {
      throw new Error(`sampler ${name}: call index ${i} is outside 0..${ts.length - 1}`);
    }
  };

  let initNoiseSigma = 1;
  let scale: (sample: Float32Array, i: number) => Float32Array = (s) => s;
  let step: (mo: Float32Array, i: number, s: Float32Array) => StepResult;

  switch (name) {
    case 'pndm': {
      // PLMS (skip_prk_steps) or PRK warm-up then PLMS; diffusers' PNDMScheduler.step_prk / step_plms.
      let counter = 0;
      const ets: Float32Array[] = [];
      let curSample: Float32Array | null = null;
      let curModelOutput: Float32Array | null = null;
      const prevSampleOf = (sample: Float32Array, t: number, tPrev: number, mo: Float32Array): Float32Array => {
        const apt = ac[t]!;
        const aprev = alphaAt(tPrev);
        const bpt = f(1 - apt);
        const bprev = f(1 - aprev);
        if (c.prediction_type === 'v_prediction') {
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
      const axpy = (acc: Float32Array | null, a: number, x: Float32Array): Float32Array => {
        const out = new Float32Array(x.length);
        const af = f(a);
        for (let k = 0; k < x.length; k++) out[k] = acc === null ? f(af * x[k]!) : f(acc[k]! + f(af * x[k]!));
        return out;
      };
      const stride = Math.floor(N / n);
      step = (mo, i, sample) => {
        if (i !== counter) throw new Error(`sampler pndm: step ${i} called out of order (expected ${counter})`);
        if (counter < sched.prkCount) {
          // Runge–Kutta warm-up (4 model calls per step).
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
          const prev = prevSampleOf(curSample ?? sample, t, tPrev, m);
          counter++;
          return { prevSample: prev };
        }
        // Linear multistep (PLMS).
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
        const prev = prevSampleOf(x, t, tPrev, m);
        counter++;
        return { prevSample: prev };
      };
      break;
    }

    case 'ddim': {
      const stride = Math.floor(N / n);
      const useClipped = options.useClippedModelOutput ?? false;
      step = (mo, i, sample) => {
        const t = ts[i]!;
        const tPrev = t - stride;
        const apt = ac[t]!;
        const aprev = alphaAt(tPrev);
        const bpt = f(1 - apt);
        const sa = sqrtf(apt);
        const sb = sqrtf(bpt);
        const len = sample.length;
        const x0 = new Float32Array(len);
        let eps: Float32Array;
        if (c.prediction_type === 'epsilon') {
          for (let k = 0; k < len; k++) x0[k] = f(f(sample[k]! - f(sb * mo[k]!)) / sa);
          eps = mo;
        } else if (c.prediction_type === 'sample') {
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
        if (c.thresholding) thresholdInPlace(x0, batch, c.dynamic_thresholding_ratio, c.sample_max_value);
        else if (c.clip_sample) clampInPlace(x0, f(c.clip_sample_range));
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
          const z = need(options.noise, len, 'sampler ddim with eta > 0');
          for (let k = 0; k < len; k++) prev[k] = f(prev[k]! + f(std * z[k]!));
        }
        return { prevSample: prev, predOriginalSample: x0 };
      };
      break;
    }

    case 'euler':
    case 'euler-a': {
      const sg = sigmas!;
      let max = 0;
      for (let k = 0; k < sg.length; k++) if (sg[k]! > max) max = sg[k]!;
      initNoiseSigma =
        c.timestep_spacing === 'linspace' || c.timestep_spacing === 'trailing' ? max : sqrtf(f(f(max * max) + 1));
      scale = (sample, i) => {
        const d = sqrtf(f(f(sg[i]! * sg[i]!) + 1));
        const out = new Float32Array(sample.length);
        for (let k = 0; k < out.length; k++) out[k] = f(sample[k]! / d);
        return out;
      };
      /** x0 for epsilon / v-prediction / sample; `sh` is sigma_hat (= sigma without churn). */
      const predX0 = (mo: Float32Array, sample: Float32Array, sigma: number, sh: number): Float32Array => {
        const len = sample.length;
        const x0 = new Float32Array(len);
        if (c.prediction_type === 'epsilon') {
          for (let k = 0; k < len; k++) x0[k] = f(sample[k]! - f(sh * mo[k]!));
        } else if (c.prediction_type === 'v_prediction') {
          const s2p1 = f(f(sigma * sigma) + 1);
          const cOut = f(-sigma / sqrtf(s2p1));
          for (let k = 0; k < len; k++) x0[k] = f(f(mo[k]! * cOut) + f(sample[k]! / s2p1));
        } else x0.set(mo);
        return x0;
      };
      if (name === 'euler') {
        const sChurn = options.sChurn ?? 0;
        const sTmin = options.sTmin ?? 0;
        const sTmax = options.sTmax ?? Number.POSITIVE_INFINITY;
        const sNoise = options.sNoise ?? 1;
        step = (mo, i, sample) => {
          const len = sample.length;
          const sigma = sg[i]!;
          const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (sg.length - 1), 2 ** 0.5 - 1) : 0;
          const z =
            options.noise !== undefined || gamma > 0
              ? need(options.noise, len, 'sampler euler with s_churn > 0')
              : null;
          const sh = f(sigma * f(gamma + 1));
          let x = sample;
          if (gamma > 0) {
            const coef = sqrtf(f(f(sh * sh) - f(sigma * sigma)));
            const sn = f(sNoise);
            x = new Float32Array(len);
            for (let k = 0; k < len; k++) x[k] = f(sample[k]! + f(f(z![k]! * sn) * coef));
          }
          const x0 = predX0(mo, x, sigma, sh);
          const dt = f(sg[i + 1]! - sh);
          const prev = new Float32Array(len);
          for (let k = 0; k < len; k++) prev[k] = f(x[k]! + f(f(f(x[k]! - x0[k]!) / sh) * dt));
          return { prevSample: prev, predOriginalSample: x0 };
        };
      } else {
        step = (mo, i, sample) => {
          const len = sample.length;
          const sigma = sg[i]!;
          const x0 = predX0(mo, sample, sigma, sigma);
          const from2 = f(sigma * sigma);
          const to = sg[i + 1]!;
          const to2 = f(to * to);
          const up = sqrtf(f(f(to2 * f(from2 - to2)) / from2));
          const down = sqrtf(f(to2 - f(up * up)));
          const dt = f(down - sigma);
          const z = need(options.noise, len, 'sampler euler-a');
          const prev = new Float32Array(len);
          for (let k = 0; k < len; k++) {
            const p = f(sample[k]! + f(f(f(sample[k]! - x0[k]!) / sigma) * dt));
            prev[k] = f(p + f(z[k]! * up));
          }
          return { prevSample: prev, predOriginalSample: x0 };
        };
      }
      break;
    }

    case 'dpmpp-2m': {
      const sg = sigmas!;
      const L = ts.length;
      let counter = 0;
      let lowerOrderNums = 0;
      let prevX0: Float32Array | null = null;
      /** _sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma), float32. */
      const ab = (s: number) => {
        const alpha = f(1 / sqrtf(f(f(s * s) + 1)));
        const sigma = f(s * alpha);
        return { alpha, sigma, lambda: f(f(Math.log(alpha)) - f(Math.log(sigma))) };
      };
      step = (mo, i, sample) => {
        if (i !== counter) throw new Error(`sampler dpmpp-2m: step ${i} called out of order (expected ${counter})`);
        const len = sample.length;
        const lowerOrderFinal = i === L - 1 && (c.euler_at_final || (c.lower_order_final && L < 15));
        // convert_model_output (dpmsolver++): the x0 prediction
        const cur = ab(sg[i]!);
        const x0 = new Float32Array(len);
        if (c.prediction_type === 'epsilon') {
          for (let k = 0; k < len; k++) x0[k] = f(f(sample[k]! - f(cur.sigma * mo[k]!)) / cur.alpha);
        } else if (c.prediction_type === 'v_prediction') {
          for (let k = 0; k < len; k++) x0[k] = f(f(cur.alpha * sample[k]!) - f(cur.sigma * mo[k]!));
        } else x0.set(mo);
        if (c.thresholding) thresholdInPlace(x0, batch, c.dynamic_thresholding_ratio, c.sample_max_value);
        const next = ab(sg[i + 1]!);
        const h = f(next.lambda - cur.lambda);
        const em1 = f(f(Math.exp(-h)) - 1);
        const cSample = f(next.sigma / cur.sigma);
        const cD0 = f(next.alpha * em1);
        const prev = new Float32Array(len);
        if (lowerOrderNums < 1 || lowerOrderFinal) {
          for (let k = 0; k < len; k++) prev[k] = f(f(cSample * sample[k]!) - f(cD0 * x0[k]!));
        } else {
          const m1 = prevX0!;
          const before = ab(sg[i - 1]!);
          const h0 = f(cur.lambda - before.lambda);
          const r0 = f(h0 / h);
          const invR0 = f(1 / r0);
          const d1 = (k: number) => f(invR0 * f(x0[k]! - m1[k]!));
          if (c.solver_type === 'midpoint') {
            const cD1 = f(0.5 * cD0);
            for (let k = 0; k < len; k++) {
              prev[k] = f(f(f(cSample * sample[k]!) - f(cD0 * x0[k]!)) - f(cD1 * d1(k)));
            }
          } else {
            const cD1 = f(next.alpha * f(f(em1 / h) + 1));
            for (let k = 0; k < len; k++) {
              prev[k] = f(f(f(cSample * sample[k]!) - f(cD0 * x0[k]!)) + f(cD1 * d1(k)));
            }
          }
        }
        prevX0 = x0;
        if (lowerOrderNums < 2) lowerOrderNums++;
        counter++;
        return { prevSample: prev, predOriginalSample: x0 };
      };
      break;
    }
  }

  const sampler: Sampler = {
    name,
    config: c,
    numInferenceSteps: n,
    timesteps: Object.freeze([...ts]),
    timestepDType: name === 'euler' || name === 'euler-a' ? 'float32' : 'int64',
    sigmas,
    initNoiseSigma,
    alphasCumprod: ac,
    order: 1,
    numWarmupSteps: ts.length - n,
    scaleModelInput(sample, callIndex) {
      checkIndex(callIndex);
      return scale(sample, callIndex);
    },
    step(modelOutput, callIndex, sample) {
      checkIndex(callIndex);
      checkLen(modelOutput, sample, `sampler ${name}`);
      return step(modelOutput, callIndex, sample);
    },
  };
  return sampler;
}

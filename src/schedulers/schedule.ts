/**
 * The noise schedule (betas → alphas_cumprod) and each sampler's inference schedule (timesteps, sigmas), computed
 * once, exactly as diffusers v0.24.0 computes them (torch float32 / numpy float64, see f32.ts).
 */
import { UserError } from '../errors.js';
import type { SchedulerConfig } from './config.js';
import { cumprodF32, f, npArange, npInterpUniform, npLinspace, roundHalfEven, sqrtf, torchLinspaceF32 } from './f32.js';

/** diffusers' betas_for_alpha_bar (cosine, max_beta 0.999), computed in float64 then cast to float32. */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/** diffusers' rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1), in float32. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = new Float32Array(n);
  for (let i = 0; i < n; i++) alphas[i] = f(1 - betas[i]!);
  const ac = cumprodF32(alphas);
  const sq = new Float32Array(n);
  for (let i = 0; i < n; i++) sq[i] = sqrtf(ac[i]!);
  const s0 = sq[0]!;
  const sT = sq[n - 1]!;
  const scale = f(s0 / f(s0 - sT));
  for (let i = 0; i < n; i++) sq[i] = f(f(sq[i]! - sT) * scale);
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) bar[i] = f(sq[i]! * sq[i]!);
  const out = new Float32Array(n);
  out[0] = f(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f(1 - f(bar[i]! / bar[i - 1]!));
  return out;
}

/** The training betas of a config, float32 like diffusers' `self.betas`. */
export function computeBetas(c: SchedulerConfig): Float32Array {
  let betas: Float32Array;
  if (c.trainedBetas !== null) betas = Float32Array.from(c.trainedBetas);
  else if (c.betaSchedule === 'linear') betas = torchLinspaceF32(c.betaStart, c.betaEnd, c.numTrainTimesteps);
  else if (c.betaSchedule === 'scaled_linear') {
    betas = torchLinspaceF32(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), c.numTrainTimesteps);
    for (let i = 0; i < betas.length; i++) betas[i] = f(betas[i]! * betas[i]!);
  } else betas = betasForAlphaBar(c.numTrainTimesteps);
  if (c.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/** `alphas_cumprod = cumprod(1 - betas)` (float32). */
export function computeAlphasCumprod(c: SchedulerConfig): Float32Array {
  const betas = computeBetas(c);
  const alphas = new Float32Array(betas.length);
  for (let i = 0; i < betas.length; i++) alphas[i] = f(1 - betas[i]!);
  return cumprodF32(alphas);
}

/** sigma(t) = sqrt((1 - ᾱ_t) / ᾱ_t) for every training timestep (float32 torch ops). */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  const s = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < s.length; i++) s[i] = sqrtf(f(f(1 - alphasCumprod[i]!) / alphasCumprod[i]!));
  return s;
}

function reversed(a: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = a.length - 1; i >= 0; i--) out.push(a[i]!);
  return out;
}

function checkSteps(c: SchedulerConfig, n: number, max = c.numTrainTimesteps): void {
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new UserError(`number of inference steps must be an integer from 1 to ${max} (got ${n})`);
  }
}

/** The base (ascending for PNDM) integer timesteps of PNDMScheduler.set_timesteps, before PRK/PLMS expansion. */
function pndmBaseTimesteps(c: SchedulerConfig, n: number): number[] {
  const N = c.numTrainTimesteps;
  if (c.timestepSpacing === 'linspace') return Array.from(npLinspace(0, N - 1, n), roundHalfEven);
  if (c.timestepSpacing === 'leading') {
    const ratio = Math.floor(N / n);
    return Array.from({ length: n }, (_, i) => i * ratio + c.stepsOffset);
  }
  return reversed(npArange(N, 0, -(N / n)).map(roundHalfEven)).map((t) => t - 1);
}

/** PNDMScheduler.timesteps (PRK part first when skip_prk_steps is false) and the PRK count. */
export function pndmTimesteps(c: SchedulerConfig, n: number): { timesteps: number[]; prkCount: number } {
  checkSteps(c, n);
  if (!c.skipPrkSteps && n < 4) {
    throw new UserError(`sampler pndm with skip_prk_steps false needs at least 4 inference steps (got ${n})`);
  }
  const ts = pndmBaseTimesteps(c, n);
  if (c.skipPrkSteps) {
    const plms = [...ts.slice(0, -1), ...ts.slice(-2, -1), ...ts.slice(-1)].reverse();
    return { timesteps: plms, prkCount: 0 };
  }
  const half = Math.floor(Math.floor(c.numTrainTimesteps / n) / 2);
  const last4 = ts.slice(-4);
  const prk0: number[] = [];
  for (const t of last4) prk0.push(t, t + half);
  const rep: number[] = [];
  for (const t of prk0.slice(0, -1)) rep.push(t, t);
  const prk = rep.slice(1, -1).reverse();
  const plms = ts.slice(0, -3).reverse();
  return { timesteps: [...prk, ...plms], prkCount: prk.length };
}

/** DDIMScheduler.timesteps. */
export function ddimTimesteps(c: SchedulerConfig, n: number): number[] {
  checkSteps(c, n);
  const N = c.numTrainTimesteps;
  if (c.timestepSpacing === 'linspace') return reversed(Array.from(npLinspace(0, N - 1, n), roundHalfEven));
  if (c.timestepSpacing === 'leading') {
    const ratio = Math.floor(N / n);
    return reversed(Array.from({ length: n }, (_, i) => i * ratio)).map((t) => t + c.stepsOffset);
  }
  return Array.from(npArange(N, 0, -(N / n)), (t) => roundHalfEven(t) - 1);
}

/** numpy's karras ramp on doubles (diffusers _convert_to_karras, rho 7). */
function karras(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  const rho = 7.0;
  const ramp = npLinspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** diffusers _sigma_to_t: log-sigma interpolation against float32 log training sigmas. */
function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  let w = (lo - logSigma) / f(lo - hi); // numpy: float32 - float32 stays float32
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * low + w * (low + 1);
}

function logF32(a: Float32Array): Float32Array {
  return a.map((x) => f(Math.log(x)));
}

export interface SigmaSchedule {
  /** The timestep fed to the UNet at each step. */
  readonly timesteps: number[];
  /** float32 sigmas, one more than timesteps (the last is the sigma stepped to at the end). */
  readonly sigmas: Float32Array;
}

/** EulerDiscreteScheduler / EulerAncestralDiscreteScheduler timesteps (float32 values) and sigmas. */
export function eulerSchedule(
  c: SchedulerConfig,
  alphasCumprod: Float32Array,
  n: number,
  ancestral: boolean,
): SigmaSchedule {
  checkSteps(c, n);
  const N = c.numTrainTimesteps;
  let ts: number[];
  if (c.timestepSpacing === 'linspace') ts = reversed(npLinspace(0, N - 1, n)).map(f);
  else if (c.timestepSpacing === 'leading') {
    const ratio = Math.floor(N / n);
    ts = reversed(Array.from({ length: n }, (_, i) => i * ratio)).map((t) => f(t + c.stepsOffset));
  } else ts = Array.from(npArange(N, 0, -(N / n)), (t) => f(roundHalfEven(t) - 1));

  const train = trainingSigmas(alphasCumprod);
  const logSigmas = logF32(train);
  if (ancestral) {
    const s = npInterpUniform(ts, train);
    const sigmas = new Float32Array(n + 1);
    sigmas.set(s);
    return { timesteps: ts, sigmas };
  }
  let s64: Float64Array | Float32Array;
  if (c.interpolationType === 'linear') s64 = npInterpUniform(ts, train);
  else {
    // diffusers 0.24: torch.linspace(log(sigmas[-1]), log(sigmas[0]), n + 1).exp() (float32)
    const lin = torchLinspaceF32(logSigmas[logSigmas.length - 1]!, logSigmas[0]!, n + 1);
    s64 = lin.map((x) => f(Math.exp(x)));
  }
  if (c.useKarrasSigmas) {
    const sMin = c.sigmaMin ?? s64[s64.length - 1]!;
    const sMax = c.sigmaMax ?? s64[0]!;
    s64 = karras(sMin, sMax, n);
    ts = Array.from(s64, (s) => f(sigmaToT(s, logSigmas)));
  }
  const s32 = Float32Array.from(s64);
  if (c.timestepType === 'continuous' && c.predictionType === 'v_prediction') {
    ts = Array.from(s32, (s) => f(0.25 * f(Math.log(s))));
  }
  const sigmas = new Float32Array(s32.length + 1);
  sigmas.set(s32);
  return { timesteps: ts, sigmas };
}

/** DPMSolverMultistepScheduler timesteps (integers) and sigmas (diffusers 0.24: last sigma = sigma(t=0)). */
export function dpmSchedule(c: SchedulerConfig, alphasCumprod: Float32Array, n: number): SigmaSchedule {
  checkSteps(c, n);
  const N = c.numTrainTimesteps;
  // lambda_t = log(alpha_t) - log(sigma_t), float32; clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped)
  let clipped = 0;
  if (c.lambdaMinClipped > Number.NEGATIVE_INFINITY) {
    const lambdas: number[] = [];
    for (let i = N - 1; i >= 0; i--) {
      const a = alphasCumprod[i]!;
      lambdas.push(f(f(Math.log(sqrtf(a))) - f(Math.log(sqrtf(f(1 - a))))));
    }
    while (clipped < lambdas.length && lambdas[clipped]! < c.lambdaMinClipped) clipped++;
  }
  const last = N - clipped;
  let ts: number[];
  if (c.timestepSpacing === 'linspace') {
    ts = reversed(Array.from(npLinspace(0, last - 1, n + 1), roundHalfEven)).slice(0, -1);
  } else if (c.timestepSpacing === 'leading') {
    const ratio = Math.floor(last / (n + 1));
    ts = reversed(Array.from({ length: n + 1 }, (_, i) => i * ratio))
      .slice(0, -1)
      .map((t) => t + c.stepsOffset);
  } else ts = Array.from(npArange(last, 0, -(N / n)), (t) => roundHalfEven(t) - 1);

  const train = trainingSigmas(alphasCumprod);
  const logSigmas = logF32(train);
  let sigmas: Float32Array;
  if (c.useKarrasSigmas) {
    const s = karras(train[0]!, train[train.length - 1]!, n);
    ts = Array.from(s, (x) => roundHalfEven(sigmaToT(x, logSigmas)));
    sigmas = new Float32Array(n + 1);
    sigmas.set(s);
    sigmas[n] = sigmas[n - 1]!;
  } else if (c.useLuLambdas) {
    // diffusers 0.24 _convert_to_lu: rho 1 ramp between the extreme log-sigmas (flipped: largest first).
    const lMin = logSigmas[0]!;
    const lMax = logSigmas[logSigmas.length - 1]!;
    const ramp = npLinspace(0, 1, n);
    const s = ramp.map((r) => Math.exp(lMax + r * (lMin - lMax)));
    ts = Array.from(s, (x) => roundHalfEven(sigmaToT(x, logSigmas)));
    sigmas = new Float32Array(n + 1);
    sigmas.set(s);
    sigmas[n] = sigmas[n - 1]!;
  } else {
    const s = npInterpUniform(ts, train);
    sigmas = new Float32Array(ts.length + 1);
    sigmas.set(s);
    sigmas[ts.length] = train[0]!;
  }
  return { timesteps: ts, sigmas };
}

/** The schedule fed to a sampler: everything computed once per (config, steps). */
export interface InferenceSchedule {
  readonly timesteps: number[];
  readonly sigmas: Float32Array | null;
  /** Number of leading PRK calls (pndm with skip_prk_steps false), else 0. */
  readonly prkCount: number;
}

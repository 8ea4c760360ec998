/** INITNO's initial noise optimisation (fn_initno) as host state: μ and log σ², torch's Adam, the KL steps. */
import { INITNO_DEFAULTS } from './settings.js';

/** torch.optim.Adam's update in float32 (betas 0.9, 0.999), for one parameter with its own state. */
export class Adam {
  private m: Float32Array;
  private v: Float32Array;
  private step = 0;
  constructor(
    readonly param: Float32Array,
    readonly lr: number,
    readonly eps: number,
  ) {
    this.m = new Float32Array(param.length);
    this.v = new Float32Array(param.length);
  }

  update(grad: Float32Array): void {
    const f = Math.fround;
    const [b1, b2] = [0.9, 0.999];
    this.step++;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    const stepSize = this.lr / bc1;
    const bc2Sqrt = Math.sqrt(bc2);
    for (let i = 0; i < grad.length; i++) {
      const g = grad[i]!;
      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
      this.m[i] = f(f(this.m[i]! * f(b1)) + f(f(1 - b1) * g));
      this.v[i] = f(f(this.v[i]! * f(b2)) + f(f(f(1 - b2) * g) * g));
      const denom = f(f(f(Math.sqrt(this.v[i]!)) / f(bc2Sqrt)) + f(this.eps));
      this.param[i] = f(this.param[i]! + f(f(-stepSize) * f(this.m[i]! / denom)));
    }
  }
}

/** INITNO's KL term: mean(−½·mean(1 + logσ² − μ² − σ²)) (fn_calc_kld_loss_func), in float32. */
export function initnoKl(logVar: Float32Array, mu: Float32Array): number {
  const f = Math.fround;
  let s = 0;
  for (let i = 0; i < mu.length; i++) s += f(f(f(1 + logVar[i]!) - f(mu[i]! * mu[i]!)) - f(Math.exp(logVar[i]!)));
  return f(-0.5 * f(s / mu.length));
}

/** One noise optimisation (fn_initno) as state the driver steps: μ, logσ² and their Adam states. */
export class NoiseOptimisation {
  readonly logVar: Float32Array;
  readonly mu: Float32Array;
  private readonly optLogVar: Adam;
  private readonly optMu: Adam;
  constructor(
    readonly z: Float32Array,
    lr = INITNO_DEFAULTS.lr,
    eps = INITNO_DEFAULTS.eps,
  ) {
    this.logVar = new Float32Array(z.length);
    this.mu = new Float32Array(z.length);
    this.optLogVar = new Adam(this.logVar, lr, eps);
    this.optMu = new Adam(this.mu, lr, eps);
  }

  /** z·exp(½·logσ²) + μ. */
  latents(): Float32Array {
    const f = Math.fround;
    return this.z.map((z, i) => f(f(z * f(Math.exp(f(0.5 * this.logVar[i]!)))) + this.mu[i]!));
  }

  /** One Adam step for ∂loss/∂latents = `grad`, then KL steps until KL ≤ limit; returns the KL steps taken. */
  step(grad: Float32Array, klLimit = INITNO_DEFAULTS.klLimit): number {
    const f = Math.fround;
    const gLogVar = grad.map((g, i) => f(f(f(g * this.z[i]!) * f(Math.exp(f(0.5 * this.logVar[i]!)))) * 0.5));
    this.optLogVar.update(gLogVar);
    this.optMu.update(grad);
    let kl = initnoKl(this.logVar, this.mu);
    let steps = 0;
    const N = this.mu.length;
    while (kl > klLimit) {
      // ∂KL/∂x = −½/N for x = 1 + logσ² − μ² − σ² (the mean over N elements, then −½), through to each.
      const ge = f(-0.5 / N);
      this.optLogVar.update(this.logVar.map((lv) => f(ge + f(-ge * f(Math.exp(lv))))));
      this.optMu.update(this.mu.map((m) => f(-ge * f(2 * m))));
      kl = initnoKl(this.logVar, this.mu);
      if (++steps > 10000) break;
    }
    return steps;
  }
}

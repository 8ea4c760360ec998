/** AdamW (decoupled weight decay, torch.optim.AdamW semantics) and an exponential moving average of weights. */

export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export class AdamW {
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  step = 0;

  constructor(readonly config: AdamWConfig) {}

  /**
   * One update of every parameter in place. `noDecay` names parameters exempt from weight decay (norms,
   * biases, embeddings are conventionally exempt).
   */
  update(
    params: Map<string, Float32Array>,
    grads: ReadonlyMap<string, Float32Array>,
    lr: number,
    noDecay: (name: string) => boolean,
  ): void {
    this.step++;
    const { beta1, beta2, eps, weightDecay } = this.config;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for '${name}'`);
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (!m || !v) {
        m = new Float32Array(p.length);
        v = new Float32Array(p.length);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      const decay = noDecay(name) ? 1 : 1 - lr * weightDecay;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        const mi = (m[i] = beta1 * m[i]! + (1 - beta1) * gi);
        const vi = (v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi);
        p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
      }
    }
  }
}

/** Global L2 norm of all gradients. */
export function globalNorm(grads: ReadonlyMap<string, Float32Array>): number {
  let s = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/** Scale gradients in place so their global norm is at most `maxNorm` (torch's clip_grad_norm_); returns the norm before. */
export function clipGradients(grads: ReadonlyMap<string, Float32Array>, maxNorm: number): number {
  const norm = globalNorm(grads);
  if (norm > maxNorm) {
    const k = maxNorm / (norm + 1e-6);
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! * k;
  }
  return norm;
}

export class Ema {
  readonly shadow = new Map<string, Float32Array>();

  constructor(params: ReadonlyMap<string, Float32Array>) {
    for (const [k, v] of params) this.shadow.set(k, Float32Array.from(v));
  }

  /** shadow ← d·shadow + (1−d)·params. */
  update(params: ReadonlyMap<string, Float32Array>, decay: number): void {
    for (const [k, p] of params) {
      const s = this.shadow.get(k)!;
      for (let i = 0; i < p.length; i++) s[i] = decay * s[i]! + (1 - decay) * p[i]!;
    }
  }
}

/**
 * Attend-and-Excite's latent-update machinery, shared by every gradient method so they are comparable step for
 * step: at sampler call i, evaluate the loss (with its gradient while i < maxIterToAlter); at a threshold call,
 * refine (evaluate, update, at most maxRefinementSteps times) while loss > 1 − threshold, then evaluate once
 * more; finally latent ← latent − step_size_i · ∂loss/∂latent, with
 * step_size_i = scale_factor · sqrt(linspace(scaleRange[0], scaleRange[1], calls)[i]).
 */

export interface LatentLoopConfig {
  maxIterToAlter: number;
  thresholds: ReadonlyMap<number, number>;
  scaleFactor: number;
  scaleRange: readonly [number, number];
  maxRefinementSteps: number;
}

export interface Evaluation {
  loss: number;
  grad?: Float32Array;
}

export interface LoopEvent {
  kind: 'evaluate' | 'update_latent' | 'refinement_start' | 'refinement_end';
  index: number;
  loss?: number;
  stepSize?: number;
  tries?: number;
}

export function stepSize(cfg: LatentLoopConfig, index: number, totalCalls: number): number {
  const [a, b] = cfg.scaleRange;
  const frac = totalCalls === 1 ? a : a + ((b - a) * index) / (totalCalls - 1);
  return cfg.scaleFactor * Math.sqrt(frac);
}

function subtractScaled(x: Float32Array, step: number, grad: Float32Array): Float32Array {
  // torch: latents - step_size * grad in float32 (the float64 step size is rounded to float32 first).
  const s = Math.fround(step);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! - Math.fround(s * grad[i]!);
  return out;
}

export interface LoopResult<E extends Evaluation> {
  latent: Float32Array;
  /** The evaluation whose loss drove the final update (after refinement, if any). */
  final: E;
  tries: number;
  stepSize: number | null;
}

/**
 * One sampler call's worth of latent updates. `evaluate(latent, withGrad)` runs the method's loss graph;
 * `onEvaluated(e, repeat)` sees every evaluation in the reference's call order (repeat: the reference would
 * have re-run an identical pass here, which we reuse).
 */
export async function alterLatent<E extends Evaluation>(
  cfg: LatentLoopConfig,
  index: number,
  totalCalls: number,
  latent: Float32Array,
  evaluate: (latent: Float32Array, withGrad: boolean) => Promise<E>,
  events: LoopEvent[],
  onEvaluated: (e: E) => void = () => {},
): Promise<LoopResult<E>> {
  const size = stepSize(cfg, index, totalCalls);
  const alter = index < cfg.maxIterToAlter;
  const run = async (x: Float32Array, withGrad: boolean) => {
    const e = await evaluate(x, withGrad);
    events.push({ kind: 'evaluate', index, loss: e.loss });
    onEvaluated(e);
    return e;
  };
  const update = (x: Float32Array, e: E) => {
    if (!e.grad) throw new Error('latent update without a gradient');
    events.push({ kind: 'update_latent', index, loss: e.loss, stepSize: size });
    return subtractScaled(x, size, e.grad);
  };
  let ev = await run(latent, alter);
  let tries = 0;
  const threshold = cfg.thresholds.get(index);
  if (threshold !== undefined && ev.loss > Math.fround(1 - threshold)) {
    events.push({ kind: 'refinement_start', index });
    const target = Math.max(0, 1 - threshold);
    let loss = ev.loss;
    while (loss > target) {
      tries++;
      let tryEval: E;
      if (tries === 1 && ev.grad) {
        // The reference re-runs the pass at the unchanged latent on the first try; holding that pass's gradient
        // already, we reuse it (identical result) and report it as the reference's evaluation.
        tryEval = ev;
        events.push({ kind: 'evaluate', index, loss: ev.loss });
        onEvaluated(ev);
      } else {
        tryEval = await run(latent, true);
      }
      loss = tryEval.loss;
      if (loss !== 0) latent = update(latent, tryEval);
      if (tries >= cfg.maxRefinementSteps) break;
    }
    // One more evaluation at the refined latent: its loss and gradient drive the regular update below.
    ev = await run(latent, alter);
    events.push({ kind: 'refinement_end', index, loss: ev.loss, tries });
  }
  if (alter && ev.loss !== 0) latent = update(latent, ev);
  return { latent, final: ev, tries, stepSize: alter ? size : null };
}

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

export function subtractScaled(x: Float32Array, step: number, grad: Float32Array): Float32Array {
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

/** One evaluation a sample's loop asks for: its loss (and gradient) at `latent`. */
export interface EvalRequest {
  /** Position of the sample in the batch given to alterLatents. */
  sample: number;
  latent: Float32Array;
  withGrad: boolean;
}

/**
 * One sample's sampler call worth of latent updates, as a coroutine: it yields each evaluation it needs and is
 * resumed with the result. `onEvaluated(e)` sees every evaluation in the reference's call order.
 */
function* sampleLoop<E extends Evaluation>(
  cfg: LatentLoopConfig,
  index: number,
  totalCalls: number,
  start: Float32Array,
  events: LoopEvent[],
  onEvaluated: (e: E) => void,
): Generator<{ latent: Float32Array; withGrad: boolean }, LoopResult<E>, E> {
  const size = stepSize(cfg, index, totalCalls);
  const alter = index < cfg.maxIterToAlter;
  let latent = start;
  function* run(x: Float32Array, withGrad: boolean): Generator<{ latent: Float32Array; withGrad: boolean }, E, E> {
    const e = yield { latent: x, withGrad };
    events.push({ kind: 'evaluate', index, loss: e.loss });
    onEvaluated(e);
    return e;
  }
  const update = (x: Float32Array, e: E) => {
    if (!e.grad) throw new Error('latent update without a gradient');
    events.push({ kind: 'update_latent', index, loss: e.loss, stepSize: size });
    return subtractScaled(x, size, e.grad);
  };
  let ev = yield* run(latent, alter);
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
        tryEval = yield* run(latent, true);
      }
      loss = tryEval.loss;
      if (loss !== 0) latent = update(latent, tryEval);
      if (tries >= cfg.maxRefinementSteps) break;
    }
    // One more evaluation at the refined latent: its loss and gradient drive the regular update below.
    ev = yield* run(latent, alter);
    events.push({ kind: 'refinement_end', index, loss: ev.loss, tries });
  }
  if (alter && ev.loss !== 0) latent = update(latent, ev);
  return { latent, final: ev, tries, stepSize: alter ? size : null };
}

/**
 * One sampler call's worth of latent updates for a batch of samples. Each sample runs A&E's loop on its own
 * (its own losses, refinement and step); the evaluations the samples need at the same moment are handed to
 * `evaluate` together, so one batched pass serves them all. A sample whose loop has finished (e.g. its
 * refinement reached the threshold while another's goes on) keeps its latent and evaluation and is no longer
 * evaluated. `evaluate` is given requests that all have the same `withGrad`, in sample order.
 */
export async function alterLatents<E extends Evaluation>(
  cfg: LatentLoopConfig,
  index: number,
  totalCalls: number,
  latents: readonly Float32Array[],
  evaluate: (requests: readonly EvalRequest[]) => Promise<E[]>,
  events: readonly LoopEvent[][],
  onEvaluated: (sample: number, e: E) => void = () => {},
): Promise<LoopResult<E>[]> {
  const loops = latents.map((x, s) => sampleLoop<E>(cfg, index, totalCalls, x, events[s]!, (e) => onEvaluated(s, e)));
  const states = loops.map((l) => l.next());
  for (;;) {
    const pending: EvalRequest[] = [];
    states.forEach((st, s) => {
      if (!st.done) pending.push({ sample: s, ...st.value });
    });
    if (pending.length === 0) break;
    // Passes with and without a gradient are different graphs: each request runs in the kind it asked for.
    for (const withGrad of [true, false]) {
      const requests = pending.filter((r) => r.withGrad === withGrad);
      if (requests.length === 0) continue;
      const results = await evaluate(requests);
      if (results.length !== requests.length)
        throw new Error(`latent loop: ${results.length} evaluations for ${requests.length} requests`);
      requests.forEach((r, i) => (states[r.sample] = loops[r.sample]!.next(results[i]!)));
    }
  }
  return states.map((st) => st.value as LoopResult<E>);
}

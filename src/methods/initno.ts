/**
 * Rival: INITNO (Guo et al., CVPR 2024), as its official code does it (xiefan-guo/initno,
 * `initno/pipelines/pipeline_sd_initno.py`):
 *
 *  1. Initial noise optimisation (`fn_initno`): the start z is replaced by z·exp(½·logσ²) + μ, with μ and logσ²
 *     (one per latent element, from 0) optimised by Adam (lr 1e-2, eps 1e-3) against a loss from one conditional
 *     UNet pass at the first timestep: the cross-attention response loss (1 − the weakest subject's peak of the
 *     ×100-softmaxed, smoothed map) + the self-attention conflict loss (for each pair of subjects, Σmin/Σsum of
 *     the smoothed self-attention rows at their cross-attention peaks, mean over pairs; zero while the response
 *     loss is above 0.5) + the clean loss (terms/clean.ts: the largest attention outside the peak's Otsu
 *     component, when above the smallest inside). After each step, extra Adam steps on KL(N(μ, σ²) ‖ N(0, 1))
 *     until it is at most 1e-3. Success: response < 0.2 and conflict < 0.3. Up to 5 rounds of 10 steps, each
 *     from fresh noise; if none succeeds, the round with the lowest response + conflict is optimised again from
 *     its noise for 50 steps.
 *  2. Its A&E-style loop: each call evaluates the augmented loss (response + 0.1·clean + 0.1·alignment with a
 *     moving average of the maps + conflict); below max_iter_to_alter the latent takes a gradient step on the
 *     response loss alone; at calls 10 and 20 (of 50, scaled), while response > 0.2 or conflict > 0.3, up to 20
 *     refinement steps on the augmented loss.
 *
 * Differences from the official code: our graph runtime cannot compute the Otsu mask inside the pass that needs
 * it, so an evaluation whose gradient includes the clean term (the noise optimisation's and the refinement's)
 * runs one extra forward pass first, to get the maps the mask is computed from (counted in `cost`). The restarts'
 * fresh noise comes from the sample's start seeds (candidateSeed), as Suppress-to-Impress's starts do.
 */
import type { Tensor } from '../tensor.js';
import { ATTEND_EXCITE_DEFAULTS, resolveLoop } from './attend-and-excite.js';
import { settingsKey } from './batch.js';
import { evaluateInitno, type InitnoEvaluation } from './initno/evaluate.js';
import type { InitnoLossKind } from './initno/losses.js';
import { NoiseOptimisation } from './initno/noise.js';
import { INITNO_DEFAULTS, type InitnoConfig } from './initno/settings.js';
import { stepSize, subtractScaled } from './latent-loop.js';
import { REFERENCE_STEPS, scaledCall, type MethodSpec } from './spec.js';
import type { GuidanceMethod, GuidedSample, PassCount, StartSample, StepContext, StepLog } from './types.js';

export { initnoLosses, type InitnoLossInputs, type InitnoLossKind, type InitnoLossValues } from './initno/losses.js';
export { initnoComponent, otsuOpenCv } from './initno/masks.js';
export { Adam, initnoKl, NoiseOptimisation } from './initno/noise.js';
export { INITNO_DEFAULTS, type InitnoConfig } from './initno/settings.js';

// ------------------------------------------------------------------------------------------------ the method

/** What a sample's coroutine asks for: one evaluation of `kind` at `latent`. */
interface InitnoRequest {
  latent: Float32Array;
  kind: InitnoLossKind;
  withGrad: boolean;
}

type InitnoLoop<T> = Generator<InitnoRequest, T, InitnoEvaluation>;

/**
 * Steps every sample's coroutine, batching the evaluations they ask for at the same moment by kind and gradient
 * (one batched pass per group).
 */
async function driveLoops<T>(
  loops: InitnoLoop<T>[],
  evaluate: (
    kind: InitnoLossKind,
    withGrad: boolean,
    requests: { sample: number; latent: Float32Array }[],
  ) => Promise<InitnoEvaluation[]>,
): Promise<T[]> {
  const states = loops.map((l) => l.next());
  for (;;) {
    const groups = new Map<string, { sample: number; req: InitnoRequest }[]>();
    states.forEach((st, s) => {
      if (st.done) return;
      const key = `${st.value.kind}:${st.value.withGrad}`;
      groups.set(key, [...(groups.get(key) ?? []), { sample: s, req: st.value }]);
    });
    if (groups.size === 0) break;
    for (const group of groups.values()) {
      const { kind, withGrad } = group[0]!.req;
      const results = await evaluate(
        kind,
        withGrad,
        group.map((g) => ({ sample: g.sample, latent: g.req.latent })),
      );
      group.forEach((g, i) => (states[g.sample] = loops[g.sample]!.next(results[i]!)));
    }
  }
  return states.map((st) => st.value as T);
}

interface RoundResult {
  latents: Float32Array;
  succeeded: boolean;
  /** response + conflict of the last evaluation (conflict + 1 where it was 0: fn_initno's score). */
  score: number;
  steps: number;
}

/** fn_initno: one optimisation of the noise `z` for at most `maxSteps` steps. */
function* optimiseNoise(z: Float32Array, maxSteps: number): InitnoLoop<RoundResult> {
  const opt = new NoiseOptimisation(z);
  let response = Infinity;
  let conflict = Infinity;
  let succeeded = false;
  let steps = 0;
  for (let it = 0; it < maxSteps; it++) {
    const e = yield { latent: opt.latents(), kind: 'compute', withGrad: true };
    response = e.response;
    conflict = e.response > 0.5 ? 0 : e.conflict;
    steps++;
    if (response < Math.fround(INITNO_DEFAULTS.tauCross) && conflict < Math.fround(INITNO_DEFAULTS.tauSelf)) {
      succeeded = true;
      break;
    }
    opt.step(e.grad!);
  }
  if (conflict <= 1e-6) conflict = Math.fround(conflict + 1);
  return { latents: opt.latents(), succeeded, score: Math.fround(response + conflict), steps };
}

export class Initno implements GuidanceMethod {
  readonly name = 'initno';
  readonly batchKey: string;
  readonly usesGradients = true;
  /** The alignment loss's moving average of the subject maps [n, h, w] (null before the first evaluation). */
  cache: Float32Array | null = null;
  /** What the noise optimisation did: each round's score and success, and whether the best was re-optimised. */
  startLog: { rounds: { score: number; succeeded: boolean; steps: number }[]; reoptimised: boolean } | null = null;
  private readonly perCall = new Map<number, StepLog>();

  constructor(readonly config: InitnoConfig) {
    if (config.subjects.length === 0) throw new Error('initno needs at least one subject');
    const { subjects: _s, ...shared } = config;
    this.batchKey = `initno:${settingsKey(shared)}`;
  }

  private members(samples: readonly { method: GuidanceMethod }[]): Initno[] {
    return samples.map(({ method }) => {
      if (!(method instanceof Initno) || method.batchKey !== this.batchKey)
        throw new Error(`initno: cannot update a batch holding ${method.name} (${method.batchKey})`);
      return method;
    });
  }

  private evaluator(
    ctx: StepContext,
    members: Initno[],
    samples: readonly { cond: Tensor; cost?: PassCount }[],
    updateCache: boolean,
  ) {
    return (kind: InitnoLossKind, withGrad: boolean, requests: { sample: number; latent: Float32Array }[]) =>
      evaluateInitno(
        ctx.unet,
        ctx.timestep,
        this.config,
        requests.map((r) => ({
          method: members[r.sample]!,
          cond: samples[r.sample]!.cond,
          latent: r.latent,
          cost: samples[r.sample]!.cost,
        })),
        kind,
        withGrad,
        updateCache,
      );
  }

  /** INITNO's rounds of noise optimisation, from the sample's noise and fresh noise, before the first call. */
  async optimizeStart(ctx: StepContext, samples: readonly StartSample[]): Promise<Float32Array[]> {
    const members = this.members(samples);
    const cfg = this.config;
    const loops = samples.map((s, b): InitnoLoop<Float32Array> =>
      (function* () {
        const pool: (RoundResult & { round: number; noise: Float32Array })[] = [];
        let noise = s.latents.data;
        for (let round = 0; round < cfg.rounds; round++) {
          const r = yield* optimiseNoise(noise, cfg.roundSteps);
          pool.push({ ...r, round, noise });
          if (r.succeeded) break;
          noise = s.fresh(round + 1);
        }
        const log = {
          rounds: pool.map(({ score, succeeded, steps }) => ({ score, succeeded, steps })),
          reoptimised: false,
        };
        members[b]!.startLog = log;
        // Python's sort of (score, round, ...) tuples: the lowest score, the earliest round among equals.
        const best = [...pool].sort((a, c) => a.score - c.score || a.round - c.round)[0]!;
        if (best.succeeded) return best.latents;
        log.reoptimised = true;
        return (yield* optimiseNoise(best.noise, cfg.finalSteps)).latents;
      })(),
    );
    return driveLoops(loops, this.evaluator(ctx, members, samples, false));
  }

  async updateLatents(ctx: StepContext, samples: readonly GuidedSample[]): Promise<Float32Array[]> {
    const members = this.members(samples);
    const cfg = this.config;
    const size = stepSize(cfg, ctx.index, ctx.totalCalls);
    const alter = ctx.index < cfg.maxIterToAlter;
    const refine = alter && cfg.refineAt.includes(ctx.index);
    const tauCross = Math.fround(1 - INITNO_DEFAULTS.refineThreshold);
    const tauSelf = Math.fround(INITNO_DEFAULTS.tauSelf);
    const loops = samples.map((s, b): InitnoLoop<Float32Array> =>
      (function* () {
        let latent = s.latents.data;
        let ev = yield { latent, kind: 'response', withGrad: alter };
        let tries = 0;
        if (refine && (ev.response > tauCross || ev.conflict > tauSelf)) {
          // _perform_iterative_refinement_step: steps on the augmented loss until both targets are met.
          let [response, conflict] = [ev.response, ev.conflict];
          while (response > tauCross || conflict > tauSelf) {
            tries++;
            const e = yield { latent, kind: 'augmented', withGrad: true };
            if (e.loss !== 0) latent = subtractScaled(latent, size, e.grad!);
            [response, conflict] = [e.response, e.conflict];
            if (tries >= INITNO_DEFAULTS.maxRefinementSteps) break;
          }
          ev = yield { latent, kind: 'response', withGrad: true };
        }
        if (alter && ev.response !== 0) latent = subtractScaled(latent, size, ev.grad!);
        members[b]!.perCall.set(ctx.index, {
          loss: ev.response,
          terms: { response: ev.response, conflict: ev.conflict, clean: ev.clean, alignment: ev.alignment },
          maxAttention: ev.maxAttention,
          refinementTries: tries,
          stepSize: alter ? size : null,
        });
        return latent;
      })(),
    );
    return driveLoops(loops, this.evaluator(ctx, members, samples, true));
  }

  stepLog(index: number): StepLog | undefined {
    return this.perCall.get(index);
  }
}

export const initnoSpec: MethodSpec = {
  name: 'initno',
  group: 'rival',
  description:
    'rival: INITNO (Guo et al. 2024) as its official code: initial noise optimised (Adam on μ, log σ², KL) against response, self-attention conflict and clean losses, up to 5 restarts, then its A&E-style loop',
  capabilities: { needsSubjects: true, findsSubjects: true, takesAttributes: false, choosesStarts: true },
  overrides: {},
  resolve: (steps, o) => {
    const { loop, scaled } = resolveLoop(steps, o);
    const refineAt = INITNO_DEFAULTS.refineAt50.map((c) => scaledCall(c, steps));
    if (steps !== REFERENCE_STEPS) scaled.push('refineAt');
    const own = {
      rounds: INITNO_DEFAULTS.rounds,
      roundSteps: INITNO_DEFAULTS.roundSteps,
      finalSteps: INITNO_DEFAULTS.finalSteps,
      refineAt,
    };
    return { loop, scaled, own, usesGradients: true };
  },
  build: (targets, settings) => {
    const r = initnoSpec.resolve(settings.steps, settings);
    const own = r.own as { rounds: number; roundSteps: number; finalSteps: number; refineAt: number[] };
    return new Initno({
      ...ATTEND_EXCITE_DEFAULTS,
      ...r.loop,
      ...own,
      subjects: targets.subjects,
      attnRes: settings.attnRes,
    });
  },
};

/**
 * Choosing among starts (Suppress-to-Impress, docs/method.md 2.4): every sample's own initial noise runs to sampler
 * call `atCall`; then, round by round, another start of each sample whose best layout score so far is above
 * `accept`, up to `candidates` starts (and within the budget of guided passes); each sample goes on from its
 * best start, which brings its latents, sampler state, method state and logs along.
 */
import { FieldError, UserError } from '../errors.js';
import type { CandidateSelection, PassCount, StartChoice } from '../methods/types.js';
import type { GenerateResult, SampleRequest } from './generate.js';

/**
 * The seed of start `index` of a sample seeded `seed` (start 0 is the seed itself): the first 32 bits of a
 * SplitMix64-style mix of both, so starts of nearby seeds are unrelated.
 */
export function candidateSeed(seed: number, index: number): number {
  if (index === 0) return seed;
  let z = (BigInt.asUintN(64, BigInt(seed)) * 0x9e3779b97f4a7c15n + BigInt(index)) & 0xffffffffffffffffn;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  return Number((z ^ (z >> 31n)) >> 32n);
}

/** What the choice needs of a sample's run through the sampler loop. */
export interface StartRun {
  request: SampleRequest;
  result: GenerateResult;
  cost: PassCount;
}

/** The choice of start a batch makes: how, and its limit in guided passes per image (null: none). */
export type StartPlan = Required<CandidateSelection>;

/**
 * The choice of start the batch's methods ask for (they must agree: a batch holds one method's samples), or null.
 * Samples given initial latents have no other starts: they keep theirs.
 */
export function startPlan(requests: readonly SampleRequest[], totalCalls: number): StartPlan | null {
  let chosen: StartChoice | null = null;
  for (const r of requests) {
    const sel = r.method?.starts ?? null;
    if (!sel || r.initialLatents) continue;
    if (
      chosen &&
      (sel.candidates !== chosen.candidates ||
        sel.atCall !== chosen.atCall ||
        sel.accept !== chosen.accept ||
        (sel.budget ?? null) !== (chosen.budget ?? null))
    )
      throw new UserError('the samples of one batch choose their starts differently; run them in separate batches');
    chosen = sel;
  }
  if (!chosen) return null;
  if (!Number.isInteger(chosen.candidates) || chosen.candidates < 1 || chosen.candidates > 64)
    throw new FieldError('candidates', `must be an integer from 1 to 64, got ${chosen.candidates}`);
  if (!Number.isInteger(chosen.atCall) || chosen.atCall < 1 || chosen.atCall > totalCalls)
    throw new FieldError(
      'selectAt',
      `must be an integer from 1 to the ${totalCalls} sampler calls, got ${chosen.atCall}`,
    );
  const { candidates, atCall, accept } = chosen;
  return { candidates, atCall, accept, budget: chosen.budget ?? null };
}

/**
 * How many starts fit `budget` guided passes: k starts to call atCall and the rest of the calls cost
 * k·atCall + (totalCalls − atCall); at least one.
 */
export function startsWithin(budget: number | null, candidates: number, atCall: number, totalCalls: number): number {
  if (budget === null) return candidates;
  return Math.max(1, Math.min(candidates, Math.floor((budget - (totalCalls - atCall)) / atCall)));
}

/**
 * Runs every sample's own start to call `atCall` (`run`), then the other starts round by round; returns each
 * sample's best start, which the caller continues from `atCall`. The passes of the starts dropped are added to
 * the chosen one's cost: they were spent on its image.
 */
export async function chooseStarts<R extends StartRun>(
  first: R[],
  plan: StartPlan,
  totalCalls: number,
  run: (runs: R[], round: number) => Promise<void>,
  another: (request: SampleRequest, b: number, k: number) => R,
): Promise<R[]> {
  const { atCall, accept } = plan;
  const candidates = startsWithin(plan.budget, plan.candidates, atCall, totalCalls);
  const starts = (s: R) => (s.request.initialLatents ? null : (s.request.method?.starts ?? null));
  await run(first, 0);
  const best = first.map((s) => ({ run: s, score: starts(s)?.layoutScore() ?? 0 }));
  const scores = best.map((b) => [b.score]);
  const spent = first.map((s) => ({ ...s.cost }));
  first.forEach((s, b) => {
    if (starts(s)) s.result.candidate = { index: 0, seed: s.result.seed ?? 0, scores: scores[b]!, atCall };
  });
  const done = (b: number) => !starts(first[b]!) || (accept !== null && best[b]!.score <= accept);
  for (let k = 1; k < candidates; k++) {
    const pending = first.map((_, b) => b).filter((b) => !done(b));
    if (pending.length === 0) break;
    const runs = pending.map((b) => another(first[b]!.request, b, k));
    await run(runs, k);
    runs.forEach((s, j) => {
      const b = pending[j]!;
      const score = starts(s)!.layoutScore();
      scores[b]!.push(score);
      spent[b]!.unetForward += s.cost.unetForward;
      spent[b]!.unetBackward += s.cost.unetBackward;
      s.result.candidate = {
        index: k,
        seed: candidateSeed(first[b]!.request.seed ?? 0, k),
        scores: scores[b]!,
        atCall,
      };
      if (score < best[b]!.score) best[b] = { run: s, score };
    });
  }
  return best.map((b, i) => {
    b.run.cost.unetForward = spent[i]!.unetForward;
    b.run.cost.unetBackward = spent[i]!.unetBackward;
    return b.run;
  });
}

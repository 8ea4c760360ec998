/**
 * The benchmark's metric table (src/bench/metrics.ts): the row fields it measures, in order; the generation's cost
 * when it reports one; the statistics and columns derived from it.
 */
import { describe, expect, it } from 'vitest';
import { columns, measureRow, summarize, type Measured, type StatRow } from '../../src/bench/metrics.js';
import type { GenerateResult } from '../../src/pipeline/generate.js';
import type { ObjectReport, ScoreReport } from '../../src/shapes/score.js';

const object = (over: Partial<ObjectReport> = {}): ObjectReport => ({
  shape: 'circle',
  colour: 'red',
  found: true,
  found_shape_match: true,
  colour_correct: true,
  leaked: false,
  detection: 0,
  detected_shape: 'circle',
  detected_colour: 'red',
  ...over,
});

function measured(objects: ObjectReport[], cost?: { unetForward: number; unetBackward: number; seconds: number }) {
  const score: ScoreReport = {
    width: 32,
    height: 32,
    objects,
    object_recall: 1,
    binding: 1,
    binding_given_found: 1,
    extra_objects: 0,
    leakage: 0,
    full_success: true,
    detections: [],
  };
  const result = {
    timesteps: [1, 2, 3, 4],
    candidate: { index: 0, seed: 1, scores: [0.2, 0.1], atCall: 2 },
    batch: { size: 2, index: 0 },
    steps: [{ method: { refinementTries: 3 } }, {}],
    timings: { encodeMs: 100, denoiseMs: 1000, decodeMs: 300, totalMs: 1400 },
    ...(cost ? { cost } : {}),
  } as unknown as GenerateResult;
  return { score, result, compileMs: 50, scoreMs: 7 } satisfies Measured;
}

describe('bench metric table', () => {
  it('measures the row fields in table order, from the score and from the generation', () => {
    const m = measured([object()]);
    expect(Object.keys(measureRow(m, 'score'))).toEqual([
      'full_success',
      'object_recall',
      'binding',
      'binding_given_found',
      'leakage',
      'extra_objects',
      'recoloured_share',
    ]);
    expect(measureRow(m, 'result')).toEqual({
      seconds: 0.65, // 1400 / 2 − 50 ms
      compile_seconds: 0.05,
      batch_size: 2,
      timings: { encode: 0.05, denoise: 0.5, decode: 0.15, score: 0.007 },
      refinement_tries: 3,
      starts: 2,
      guided_passes: 6, // 4 calls + 2 for the other start
    });
  });

  it('records the cost a generation reports, and passes/image reads it before guided_passes', () => {
    const fields = measureRow(measured([object()], { unetForward: 9, unetBackward: 4, seconds: 1 }), 'result');
    expect(fields).toMatchObject({ guided_passes: 6, unet_forward: 9, unet_backward: 4 });
    const row = (seed: number, extra: Partial<StatRow> & Record<string, unknown>): StatRow => ({
      prompt: 'p',
      seed,
      method: 'm',
      full_success: true,
      objects: [object()],
      seconds: 1,
      ...extra,
    });
    const plain = summarize([row(0, { guided_passes: 6 }), row(1, { guided_passes: 8 })]).methods['m']!;
    expect(plain).toMatchObject({ passes_per_image: 7, backward_per_image: null, seconds_per_image: 1 });
    const costed = summarize([
      row(0, { guided_passes: 6, unet_forward: 9, unet_backward: 4 }),
      row(1, { guided_passes: 8, unet_forward: 11, unet_backward: 2 }),
    ]).methods['m']!;
    expect(costed).toMatchObject({ passes_per_image: 10, backward_per_image: 3 });
    const main = columns('main');
    expect(main.map((c) => c.label)).toEqual(expect.arrayContaining(['passes/image', 'backward/image', 's/image']));
    expect(main.find((c) => c.label === 'backward/image')!.cell(costed)).toBe('3.0');
    expect(main.find((c) => c.label === 'backward/image')!.cell(plain)).toBe('–');
  });

  it('recoloured share: the objects present with their shape that are drawn in a wrong colour', () => {
    const wrong = object({ colour_correct: false, detected_colour: 'blue' });
    const missing = object({ found: false, found_shape_match: false, colour_correct: false });
    expect(measureRow(measured([object(), wrong, missing]), 'score').recoloured_share).toBe(0.5);
    expect(measureRow(measured([missing]), 'score').recoloured_share).toBeNull();
    const row = (seed: number, objects: ObjectReport[]): StatRow => ({
      prompt: `p${seed}`,
      seed,
      method: 'm',
      full_success: false,
      objects,
    });
    // pooled over present objects: 1 wrong of 3 present (the missing one does not count)
    const s = summarize([row(0, [object(), wrong]), row(1, [object(), missing])]).methods['m']!;
    expect(s.recoloured_share.rate).toBeCloseTo(1 / 3, 12);
    expect(
      columns('main')
        .find((c) => c.label === 'recoloured %')!
        .cell(s),
    ).toMatch(/^33\.3 \[/);
  });
});

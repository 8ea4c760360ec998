/**
 * A golden comparison that also reports itself: `[golden] label  measured  tolerance` on stdout, so that
 * `npx vitest run test/pipeline.test.ts test/attend-excite.test.ts | grep '\[golden\]'` prints the README's table.
 */
import { expect } from 'vitest';

export function expectGolden(label: string, measured: number, tolerance: number): void {
  console.log(
    `[golden] ${label.padEnd(66)} ${measured.toExponential(1).padStart(8)}  (tolerance ${tolerance.toExponential(1)})`,
  );
  expect(measured, label).toBeLessThanOrEqual(tolerance);
}

/**
 * The rivals' goldens (official code's loss and gradients): the largest absolute difference from the reference within
 * `relative` × max(1, the largest reference magnitude).
 */
export function expectCloseToReference(
  ours: ArrayLike<number>,
  ref: ArrayLike<number>,
  what?: string,
  relative = 1e-5,
): void {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(ours[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  expect(err, what).toBeLessThanOrEqual(relative * Math.max(1, scale));
}

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

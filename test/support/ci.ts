/**
 * Under continuous integration (`CI=true`, as GitHub Actions and most CI services set it), a test that cannot run
 * here — no Chromium, no redis-server, no WebGPU adapter, no golden oracle — fails instead of skipping: a green CI
 * run then means every test ran. On a developer's machine the same tests are skipped with one loud line.
 */
export const IN_CI = /^(1|true|yes)$/i.test(process.env['CI'] ?? '');

/** Skips with `message` on a developer's machine; under CI throws it, failing the test (or the file, at import). */
export function missingUnderCi(message: string): void {
  if (IN_CI) throw new Error(`${message} (CI=true: a test that cannot run is a failure, not a skip)`);
  console.warn(message);
}

/**
 * The golden oracle is read-only ground truth: every file matches the checksum it was copied with
 * (test/fixtures/oracle/SHA256SUMS). Catches an edited golden and a checkout that changed bytes (line endings).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { oracleDir, repoRoot } from './support/oracle.js';

const sums = readFileSync(join(repoRoot, 'test', 'fixtures', 'oracle', 'SHA256SUMS'), 'utf8')
  .trim()
  .split('\n')
  .map((line) => {
    const [hash, file] = line.split(/\s+\*?/, 2) as [string, string];
    return { hash, file };
  });

describe('the golden oracle fixtures', () => {
  it('lists the model, every golden case and the single-file checkpoint', () => {
    const files = sums.map((s) => s.file);
    expect(files).toContain('goldens/manifest.json');
    expect(files.filter((f) => f.startsWith('goldens/') && f.endsWith('.safetensors'))).toHaveLength(8);
    expect(files).toContain('tiny-sd/unet/diffusion_pytorch_model.safetensors');
    expect(files).toContain('single-file/tiny-sd.safetensors');
  });

  it('every file is byte-identical to its recorded checksum', () => {
    const bad = sums.filter(
      ({ hash, file }) =>
        createHash('sha256')
          .update(readFileSync(join(oracleDir, file)))
          .digest('hex') !== hash,
    );
    expect(bad.map((b) => b.file)).toEqual([]);
  });
});

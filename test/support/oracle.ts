/**
 * Locating the golden oracle: the repository's own copy in test/fixtures/oracle (see its PROVENANCE.md), or
 * $S2I_ORACLE. Files that import this module are golden tests; where the oracle is missing, vitest.config.ts
 * leaves them out with one line naming the folder (so nothing here throws at import).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const oracleDir = resolve(process.env['S2I_ORACLE'] ?? join(repoRoot, 'test', 'fixtures', 'oracle'));

/** Whether the oracle (model and goldens) is present. */
export const oracleFound = existsSync(join(oracleDir, 'goldens', 'manifest.json'));

export const tinySdDir = join(oracleDir, 'tiny-sd');
export const goldenPath = (name: string) => join(oracleDir, 'goldens', `${name}.safetensors`);
/** tiny-sd's weights as one LDM-layout single-file checkpoint, and its config folder (no weights). */
export const singleFileDir = join(oracleDir, 'single-file');

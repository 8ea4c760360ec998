/** Locating the golden oracle (`../shared/oracle` beside the checkout, or $S2I_ORACLE). */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const oracleDir = resolve(process.env['S2I_ORACLE'] ?? join(repoRoot, '..', 'shared', 'oracle'));

if (!existsSync(join(oracleDir, 'goldens', 'manifest.json'))) {
  throw new Error(`golden oracle not found at ${oracleDir} (set S2I_ORACLE to its folder)`);
}

export const tinySdDir = join(oracleDir, 'tiny-sd');
export const goldenPath = (name: string) => join(oracleDir, 'goldens', `${name}.safetensors`);
/** tiny-sd's weights as one LDM-layout single-file checkpoint, and its config folder (no weights). */
export const singleFileDir = join(oracleDir, 'single-file');

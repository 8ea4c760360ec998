/**
 * Defaults the CLI falls back on when an option is left out.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The model shipped with the package (the shapes-world model trained by `s2i train`), at `models/shapes` in
 * the package root; null if it is missing (e.g. a trimmed install).
 */
export function defaultModelDir(): string | null {
  const dir = fileURLToPath(new URL('../../models/shapes', import.meta.url));
  return existsSync(`${dir}/model_index.json`) ? dir : null;
}

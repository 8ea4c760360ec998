/**
 * Defaults the CLI falls back on when an option is left out.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A model folder shipped with the package (`models/NAME` in the package root), or null if it is missing. */
function shippedModel(name: string): string | null {
  const dir = fileURLToPath(new URL(`../../models/${name}`, import.meta.url));
  return existsSync(`${dir}/model_index.json`) ? dir : null;
}

/**
 * The model `s2i generate` and `s2i serve` use without --model: the latent shapes model (`models/shapes-ldm`, built
 * like Stable Diffusion), which makes single objects right more often than the pixel model (97.5% against 92.5% of
 * the held-apart one-object prompts × 20 seeds) and answers `s2i generate` in under 2 s here at its 25 steps
 * (README, "The second model"); the pixel model if it is missing (e.g. a trimmed install); null if both are.
 */
export function defaultModelDir(): string | null {
  return shippedModel('shapes-ldm') ?? shippedModel('shapes');
}

/**
 * The model `s2i bench` and `s2i worker` use without --model: the pixel shapes model (`models/shapes`), on which
 * the methods were tuned (its s2i.json: 25 steps, guidance 5, which the bench runs unless given); null if missing.
 */
export function defaultBenchModelDir(): string | null {
  return shippedModel('shapes');
}

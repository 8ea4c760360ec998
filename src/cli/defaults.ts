/**
 * Defaults the CLI falls back on when an option is left out. One place, so that shipping a default model later
 * changes one function.
 */

/** The model folder used when `--model` is not given; null while no default model is installed. */
export function defaultModelDir(): string | null {
  return null;
}

/**
 * `s2i info --model DIR|FILE [--json]`: what a model folder or a single-file checkpoint holds (components,
 * configs, parameter counts, sizes). This file declares the command; the run is info-run.ts, imported only when
 * the command runs.
 */
import type { Command } from '@commander-js/extra-typings';

/** The flags as commander parsed them: their types come from the declarations in `infoCommand`. */
export type InfoFlags = ReturnType<ReturnType<typeof infoCommand>['opts']>;

/** The command and its options: each flag, its type and help text declared once. */
function infoCommand(program: Command) {
  return program
    .command('info')
    .description(
      'describe a model (diffusers folder or single-file checkpoint): components, configs, parameter counts, sizes',
    )
    .requiredOption(
      '--model <path>',
      'diffusers model folder (model_index.json, unet/, vae/, ...) or single-file SD 1.x/2.x .safetensors',
    )
    .option('--variant <name>', "weights variant, e.g. 'fp16' for diffusion_pytorch_model.fp16.safetensors")
    .option('--config <dir>', "a single file's config folder: a diffusers model folder without weights")
    .option('--json', 'print one JSON object instead of a table');
}

export function register(program: Command): void {
  infoCommand(program).action(async (opts) => (await import('./info-run.js')).run(opts));
}

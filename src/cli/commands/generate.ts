/**
 * `s2i generate "PROMPT"`: text to image with a diffusers model folder, optionally with a guidance method, a
 * picture of the cross-attention maps, and the latents in and out as safetensors. This file declares the command:
 * its flags (each one's type, default and help) and its help text; the run itself is generate-run.ts, imported
 * only when the command runs (see commands/index.ts).
 */
import type { Command, OptionValues } from '@commander-js/extra-typings';
import { UserError } from '../../errors.js';
import { ATTEND_EXCITE_DEFAULTS } from '../../methods/attend-and-excite.js';
import { DEFAULT_METHOD, METHOD_NAMES, REFERENCE_STEPS } from '../../methods/registry.js';
import { DEFAULT_GUIDANCE, DEFAULT_STEPS, GUIDANCE_RANGE } from '../../pipeline/generate.js';
import { quote } from '../../util/quote.js';
import { parseSamplerName, SAMPLER_NAMES } from '../../schedulers/index.js';
import {
  integerOption,
  listItems,
  methodOptions,
  numberOption,
  parseInteger,
  parsePredictionType,
  parseResolutionList,
  typedOption,
} from '../options.js';
import { fmtThresholds } from './generate-report.js';

/** The flags as commander parsed them: their types come from the declarations in `generateCommand`. */
export type GenerateFlags = ReturnType<ReturnType<typeof generateCommand>['opts']>;

// ---------------------------------------------------------------------------------------------------------------
// flag syntax (no model needed)

function parseImageSide(value: string, flag: string): number {
  const v = parseInteger(value, flag, 1, 16384);
  if (v % 8 !== 0) throw new UserError(`${flag} must be a positive multiple of 8, got ${v}`);
  return v;
}

const d = ATTEND_EXCITE_DEFAULTS;

const HELP = `
Description:
  Runs Stable Diffusion as diffusers' StableDiffusionPipeline does: CLIP
  encodes the prompt and the negative prompt, the UNet denoises the initial
  latents (seeded noise, or --latents) with classifier-free guidance over the
  scheduler's steps, and the VAE decodes the result, written as a PNG with
  pixels round(clamp(x/2 + 0.5, 0, 1) * 255), as diffusers converts them.
  Seeds drive s2i's own portable generator, not torch's: to reproduce a
  diffusers image exactly, pass its initial latents with --latents.

Attend-and-Excite (--method attend-and-excite):
  Before each step, strengthens the subjects' cross-attention (Chefer et al.
  2023, exactly as diffusers' StableDiffusionAttendAndExcitePipeline).
  Subjects are words of the prompt (--subjects) or token positions (--tokens,
  SOT = 0: in "a cat and a frog", cat = 2 and frog = 5). A word split into
  several tokens uses its last token (CLIP's text encoder is causal, so only
  that one has read the whole word); a repeated word uses its first
  occurrence unless written word#2. The defaults (max_iter_to_alter ${d.maxIterToAlter},
  thresholds ${fmtThresholds(d.thresholds)}) are meant for ${REFERENCE_STEPS} steps; for another
  --steps, those not given are scaled by steps/${REFERENCE_STEPS} (rounded), and the summary
  says so.

Attention maps (--attention-maps FILE):
  A picture like prompt-to-prompt's show_cross_attention: one tile per token
  (every prompt token, or only the subjects when --subjects/--tokens is
  given) showing its cross-attention map (mean over the layers at --attn-res
  and their heads, conditional pass) divided by its max, coloured and blended
  over the image, the token under it. One row for the mean over all steps,
  or one row per step with --attention-steps. Tiles are at least 128 px.
  A UNet with cross-attention at several sizes (models/shapes-ldm: 16, 8
  and 4) shows them all with a list: --attn-res 16,8 draws the rows at
  16x16 (which the method, if any, reads) and again at 8x8.

Several images (--images N):
  Seeds SEED, SEED+1, ..., SEED+N-1, each image the one --seed would give
  alone (batches change the float32 rounding only: pixels identical or off
  by one level). Every file gets the image's index before its extension
  (--out cat.png: cat-0.png, cat-1.png, ...; --save-latents and
  --attention-maps likewise), plus cat-grid.png with every image labelled
  by its seed. Up to --batch-size images run together: one UNet pass per
  step for the whole batch; the default is as many as a memory budget
  allows (S2I_MAX_MEMORY, e.g. 16G, else half of this machine's memory),
  at most 16. --latents gives one image's starting point and does not go
  with --images.

Output:
  A summary on stdout (settings, subjects, per-step A&E losses, timings,
  files written), or with --json exactly one JSON object. A progress bar goes
  to stderr when it is a terminal. Errors are one line "s2i: error: ..."
  with exit code 1 and leave no output file behind; files are written
  atomically once the run has succeeded.

Examples:
  s2i generate "a cat and a frog" --model models/sd15 --seed 7
  s2i generate "a cat and a frog" --model models/sd15 \\
      --method attend-and-excite --subjects cat,frog \\
      --attention-maps maps.png --out ae.png
  s2i generate "a cat and a frog" --model tiny-sd --steps 10 \\
      --scheduler ddim --latents init.safetensors:initial_latents \\
      --save-latents final.safetensors --json
  s2i generate "a frog and a frog" --model models/sd15 --steps 25 \\
      --method attend-and-excite --subjects frog#2
  s2i generate "a red circle and a blue square" --images 16 --seed 0 \\
      --method suppress --upscale 4 --out shapes.png
`;

/** `--attributes circle:red,square:blue` → (subject, adjective) pairs. */
function parseAttributes(value: string): { subject: string; adjective: string }[] {
  return listItems(
    value,
    /^\s*([^:]+?)\s*:\s*([^:]+?)\s*$/,
    (item) => `--attributes must look like circle:red,square:blue (noun:adjective), got ${quote(item)}`,
  ).map(([, subject, adjective]) => ({ subject: subject!, adjective: adjective! }));
}

/** The attention picture, the enlargement, several images and the threads. */
function outputOptions<A extends unknown[], O extends OptionValues, G extends OptionValues>(command: Command<A, O, G>) {
  return command
    .addOption(
      typedOption(
        '--attn-res <list>',
        'A&E and --attention-maps: query resolution of the maps, e.g. 16 or 16x16 (default: the resolution rule); with --attention-maps a list such as 16,8 draws the first and then each further one',
        parseResolutionList,
      ),
    )
    .option('--attention-maps <file>', 'write a PNG of the cross-attention map of each token over the image')
    .option(
      '--attention-steps <list>',
      'rows of the attention picture: steps such as 0,10,49, or all, or mean (default: mean)',
    )
    .addOption(
      integerOption(
        '--upscale <n>',
        'write the PNG enlarged n times, nearest neighbour (for small models such as the 32x32 default)',
        1,
        16,
      ),
    )
    .addOption(
      integerOption(
        '--images <n>',
        'generate n images with seeds SEED..SEED+n-1, written as --out with an index (cat-0.png, ...) and a grid (cat-grid.png)',
        1,
        10000,
      ),
    )
    .addOption(
      integerOption(
        '--batch-size <n>',
        'images generated together (default: as many as fit the memory budget, S2I_MAX_MEMORY or half the RAM, at most 16)',
        1,
        1024,
      ),
    )
    .addOption(integerOption('--threads <n>', 'ONNX Runtime threads (default: all cores)', 1, 1024));
}

/** The command and its options: each flag, its type, default and help text declared once. */
function generateCommand(program: Command) {
  const command = program
    .command('generate')
    .description('generate an image from a text prompt (optionally with Attend-and-Excite and attention maps)')
    .argument('<prompt>', 'the text prompt (quote it)')
    .option(
      '--model <path>',
      'diffusers model folder (model_index.json, unet/, vae/, ...) or single-file SD 1.x/2.x .safetensors checkpoint (default: the installed latent shapes model, models/shapes-ldm)',
    )
    .option('--config <dir>', "a single file's configs and tokenizer: a diffusers folder without weights")
    .addOption(
      typedOption(
        '--prediction-type <type>',
        'what the UNet predicts: epsilon, v_prediction, sample (default: the scheduler config; SD 2.x files: v_prediction)',
        parsePredictionType,
      ),
    )
    .option('--negative <text>', 'negative prompt (default: the empty prompt, as diffusers)')
    .addOption(
      integerOption('--steps <n>', `inference steps (default: the model's s2i.json, else ${DEFAULT_STEPS})`, 1, 1000),
    )
    .addOption(
      numberOption(
        '--guidance <x>',
        `classifier-free guidance scale (default: the model's s2i.json, else ${DEFAULT_GUIDANCE})`,
        ...GUIDANCE_RANGE,
      ),
    )
    .addOption(
      typedOption(
        '--scheduler <name>',
        `sampler: ${SAMPLER_NAMES.join(', ')} (default: the model's own)`,
        parseSamplerName,
      ),
    )
    .addOption(
      integerOption(
        '--seed <n>',
        'seed of the initial noise (and of euler-a); default: a random seed, printed',
        0,
        Number.MAX_SAFE_INTEGER,
      ),
    )
    .addOption(
      typedOption(
        '--height <px>',
        "image height, a multiple of 8 (default: the model's size, or the --latents size)",
        parseImageSide,
      ),
    )
    .addOption(
      typedOption(
        '--width <px>',
        "image width, a multiple of 8 (default: the model's size, or the --latents size)",
        parseImageSide,
      ),
    )
    .option(
      '--latents <file[:key]>',
      'start from these initial latents (safetensors tensor, key default "latents", shape [1,C,H/f,W/f])',
    )
    .option('--save-latents <file>', 'also write the final latents (before decoding) as tensor "latents"')
    .option('--out <file>', 'output PNG (default: s2i-SEED.png)')
    .option(
      '--json',
      'print one JSON object (settings, timesteps, per-step log, timings, outputs) instead of a summary',
    )
    .option(
      '--method <name>',
      `guidance method: ${METHOD_NAMES.join(', ')} (default: ${DEFAULT_METHOD}; none = plain sampling)`,
    )
    .option('--tokens <list>', 'subject token positions, e.g. 2,5 (0 is the start token)')
    .option(
      '--subjects <list>',
      'subject words, e.g. cat,frog (frog#2: its second occurrence), or auto (suppress: the default)',
    )
    .addOption(
      typedOption(
        '--attributes <list>',
        'suppress: adjectives bound to subjects, e.g. circle:red,square:blue (default: found automatically)',
        parseAttributes,
      ),
    );
  const withMethod = methodOptions(command);
  return outputOptions(withMethod).addHelpText('after', HELP);
}

export function register(program: Command): void {
  generateCommand(program).action(async (prompt, flags) => (await import('./generate-run.js')).run(prompt, flags));
}

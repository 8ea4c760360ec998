/**
 * `s2i generate "PROMPT"`: text to image with a diffusers model folder, optionally with a guidance method, a
 * picture of the cross-attention maps, and the latents in and out as safetensors. Flags become one request
 * (pipeline/request.ts), which the library checks, runs and hands back resolved; this file parses and formats.
 *
 * Every option is checked before any work starts (one-line `s2i: error: ...`, exit 1), and nothing is written
 * until the whole run has succeeded: the output files are planned with the flags (io/outputs.ts), written to
 * temporary files and put in place together; an error or an interrupt leaves none of them.
 */
import { randomInt } from 'node:crypto';
import { extname } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command, OptionValues } from '@commander-js/extra-typings';
import { FieldError, UserError } from '../../errors.js';
import { composeGrid } from '../../image/grid.js';
import { encodePng } from '../../image/png.js';
import { OutputFiles } from '../../io/outputs.js';
import { resizeNearest } from '../../image/resize.js';
import { quoteKey, writeSafetensors } from '../../io/safetensors.js';
import { ATTEND_EXCITE_DEFAULTS } from '../../methods/attend-and-excite.js';
import { canonicalMethodName, DEFAULT_METHOD, METHOD_NAMES, REFERENCE_STEPS } from '../../methods/registry.js';
import { plan } from '../../pipeline/plan.js';
import { checkRequest, type GenerateRequest } from '../../pipeline/request.js';
import { run as runPlan } from '../../pipeline/run.js';
import { StableDiffusion, type LoadOptions } from '../../pipeline/stable-diffusion.js';
import { DEFAULT_GUIDANCE, DEFAULT_STEPS, GUIDANCE_RANGE } from '../../pipeline/generate.js';
import { methodOverridesFromFlags } from '../method-flags.js';
import { quote } from '../../util/quote.js';
import { parseSamplerName, SAMPLER_NAMES } from '../../schedulers/index.js';
import { defaultModelDir } from '../defaults.js';
import {
  flagOf,
  integerOption,
  interactive,
  listItems,
  methodOptions,
  numberOption,
  parseInteger,
  parsePredictionType,
  parseResolutionList,
  readTensorSpec,
  typedOption,
} from '../options.js';
import { fmtThresholds, jsonReport, summary, type GenerateCommandRun } from './generate-report.js';

/** The flags as commander parsed them: their types come from the declarations in `generateCommand`. */
type GenerateFlags = ReturnType<ReturnType<typeof generateCommand>['opts']>;

// ---------------------------------------------------------------------------------------------------------------
// flag syntax (no model needed)

function parseImageSide(value: string, flag: string): number {
  const v = parseInteger(value, flag, 1, 16384);
  if (v % 8 !== 0) throw new UserError(`${flag} must be a positive multiple of 8, got ${v}`);
  return v;
}

/** `0,10,49`, `all` or `mean` (the average over all steps, the default). */
function parseAttentionSteps(value: string | undefined): number[] | 'all' | 'mean' {
  const v = (value ?? 'mean').trim().toLowerCase();
  if (v === 'all' || v === 'mean') return v;
  const steps = v.split(',').map((s) => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : NaN));
  if (!steps.every(Number.isSafeInteger))
    throw new UserError(
      `--attention-steps must be step numbers such as 0,10,49, or all, or mean; got ${quote(value ?? '')}`,
    );
  return [...new Set(steps)];
}

type Parsed = Omit<GenerateCommandRun, 'run'> & { modelDir: string; load: LoadOptions };

/** `cat.png` → `cat-3.png`: the file of one image of several. */
function indexed(path: string, index: number | string): string {
  const ext = extname(path);
  return `${path.slice(0, path.length - ext.length)}-${index}${ext}`;
}

/**
 * Flags → one request, and what only the command handles (model folder, threads, files, enlargement). The output
 * files are planned in `files`.
 */
function parseFlags(prompt: string, flags: GenerateFlags, files: OutputFiles): Parsed {
  const modelDir = flags.model ?? defaultModelDir();
  if (modelDir === null)
    throw new UserError(
      'no --model given and no default model is installed (give --model DIR, a diffusers model folder)',
    );
  const seed = flags.seed ?? randomInt(0, 2 ** 32);
  const name = flags.method;
  if (flags.attentionSteps !== undefined && flags.attentionMaps === undefined)
    throw new UserError('--attention-steps needs --attention-maps FILE');
  const [attnRes, ...alsoAt] = flags.attnRes ?? [];
  if (alsoAt.length && flags.attentionMaps === undefined)
    throw new UserError('--attn-res with several sizes is for --attention-maps FILE (give one size otherwise)');
  const overrides = methodOverridesFromFlags(flags);
  const request: GenerateRequest = {
    prompt,
    negativePrompt: flags.negative,
    steps: flags.steps,
    guidanceScale: flags.guidance,
    sampler: flags.scheduler,
    seed,
    height: flags.height,
    width: flags.width,
    method: name === undefined ? undefined : canonicalMethodName(name),
    methodOverrides: overrides,
    tokens: flags.tokens,
    subjects: flags.subjects,
    attributes: flags.attributes,
    attnRes,
    attentionPicture:
      flags.attentionMaps !== undefined
        ? { steps: parseAttentionSteps(flags.attentionSteps), ...(alsoAt.length ? { alsoAt } : {}) }
        : undefined,
    images: flags.images,
    batchSize: flags.batchSize,
  };
  const load: LoadOptions = {};
  const threads = flags.threads;
  if (threads !== undefined) load.threads = threads;
  if (flags.config !== undefined) load.config = flags.config;
  if (flags.predictionType !== undefined) load.predictionType = flags.predictionType;
  const upscale = flags.upscale ?? 1;
  const given = { image: flags.out ?? `s2i-${seed}.png`, latents: flags.saveLatents, maps: flags.attentionMaps };
  const count = request.images ?? 1;
  // Several images: each file named with the image's index (cat-0.png, ...), and a grid of them all.
  const fileOf = (path: string, i: number) => (count > 1 ? indexed(path, i) : path);
  const perImage = Array.from({ length: count }, (_, i) => ({
    image: files.file(fileOf(given.image, i), '--out'),
    latents: given.latents !== undefined ? files.file(fileOf(given.latents, i), '--save-latents') : null,
    maps: given.maps !== undefined ? files.file(fileOf(given.maps, i), '--attention-maps') : null,
  }));
  const grid = count > 1 ? files.file(indexed(given.image, 'grid'), '--out') : null;
  const latents = flags.latents !== undefined ? readTensorSpec(flags.latents, '--latents', 'latents') : null;
  if (latents) request.initialLatents = latents.tensor;
  return {
    request,
    modelDir,
    load,
    threads,
    latents: latents && { file: latents.file, key: latents.key },
    outputs: { ...perImage[0]!, grid },
    files: perImage,
    upscale,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// the run

async function run(prompt: string, flags: GenerateFlags): Promise<void> {
  // The files are written only once the whole run has succeeded, together; on an error none is left.
  const done = await new OutputFiles().run(async (files) => {
    const p = parseFlags(prompt, flags, files);
    const r = await generateRun(p, flags);
    // Everything is made in memory first.
    const k = p.upscale;
    const enlarged = r.images.map(({ image }) =>
      k > 1 ? resizeNearest(image, image.width * k, image.height * k) : image,
    );
    r.images.forEach((one, i) => {
      const out = p.files[i]!;
      files.write(out.image, encodePng(enlarged[i]!.data, enlarged[i]!.width, enlarged[i]!.height));
      if (out.latents) {
        const meta = { format: 'pt', prompt, seed: String(one.seed), sampler: r.sampler, steps: String(r.steps) };
        files.writeWith(out.latents, (temp) => writeSafetensors(temp, { latents: one.result.finalLatents }, meta));
      }
      if (out.maps && one.picture)
        files.write(out.maps, encodePng(one.picture.data, one.picture.width, one.picture.height));
    });
    if (p.outputs.grid) {
      const labels = r.images.map((x) => `seed ${x.seed}`);
      const grid = composeGrid(enlarged, Math.ceil(Math.sqrt(enlarged.length)), { labels });
      files.write(p.outputs.grid, encodePng(grid.data, grid.width, grid.height));
    }
    return { ...p, run: r } satisfies GenerateCommandRun;
  });
  process.stdout.write(flags.json ? `${JSON.stringify(jsonReport(done))}\n` : summary(done));
}

/** The library's two calls, `plan` and `run`, on the loaded model, with a progress bar. */
async function generateRun(p: Parsed, flags: GenerateFlags): Promise<GenerateCommandRun['run']> {
  const bar = interactive(flags.json)
    ? new SingleBar({
        format: 'generate {bar} {value}/{total} steps | {ms} ms/step | eta {eta_formatted}',
        hideCursor: true,
      })
    : null;
  try {
    checkRequest(p.request); // before the load: a bad request should not wait for the model
    const t0 = performance.now();
    const model = await StableDiffusion.load(p.modelDir, p.load);
    const loadMs = performance.now() - t0;
    try {
      const done = await runPlan(plan(p.request, model), {
        onStart: (total) => bar?.start(total, 0, { ms: '-' }),
        onStep: (s) => bar?.update(s.index + 1, { ms: s.ms.toFixed(0) }),
      });
      return { ...done, modelDir: model.dir, loadMs, graphs: [...model.graphTimings] };
    } finally {
      await model.release();
    }
  } catch (e) {
    // The latents' name in the CLI's words: the flag, the tensor and its file.
    if (e instanceof FieldError && e.field === 'initialLatents' && p.latents)
      throw new UserError(
        e.messageFor((f) =>
          f === 'initialLatents' ? `--latents: tensor ${quoteKey(p.latents!.key)} in ${p.latents!.file}` : flagOf(f),
        ),
      );
    throw e;
  } finally {
    bar?.stop();
  }
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
      'diffusers model folder (model_index.json, unet/, vae/, ...) or single-file SD 1.x/2.x .safetensors checkpoint',
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
  generateCommand(program).action(async (prompt, flags) => run(prompt, flags));
}

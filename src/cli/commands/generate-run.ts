/**
 * `s2i generate` run (the command and its flags are declared in generate.ts): flags become one request
 * (pipeline/request.ts), which the library checks, runs and hands back resolved; this file parses and formats.
 *
 * Every option is checked before any work starts (one-line `s2i: error: ...`, exit 1), and nothing is written
 * until the whole run has succeeded: the output files are planned with the flags (io/outputs.ts), written to
 * temporary files and put in place together; an error or an interrupt leaves none of them.
 */
import { randomInt } from 'node:crypto';
import { extname } from 'node:path';
import { SingleBar } from 'cli-progress';
import { FieldError, UserError } from '../../errors.js';
import { composeGrid } from '../../image/grid.js';
import { encodePng } from '../../image/png.js';
import { OutputFiles } from '../../io/outputs.js';
import { resizeNearest } from '../../image/resize.js';
import { quoteKey, writeSafetensors } from '../../io/safetensors.js';
import { canonicalMethodName } from '../../methods/registry.js';
import { plan } from '../../pipeline/plan.js';
import { checkRequest, type GenerateRequest } from '../../pipeline/request.js';
import { run as runPlan } from '../../pipeline/run.js';
import { StableDiffusion, type LoadOptions } from '../../pipeline/stable-diffusion.js';
import { methodOverridesFromFlags } from '../method-flags.js';
import { quote } from '../../util/quote.js';
import { defaultModelDir } from '../defaults.js';
import { flagOf, interactive, readTensorSpec } from '../options.js';
import type { GenerateFlags } from './generate.js';
import { jsonReport, summary, type GenerateCommandRun } from './generate-report.js';

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

export async function run(prompt: string, flags: GenerateFlags): Promise<void> {
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

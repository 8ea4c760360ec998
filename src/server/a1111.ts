/**
 * Automatic1111's web UI API, the part front-ends use (Open WebUI's image router calls sd-models, options GET and
 * POST, and txt2img): `POST /sdapi/v1/txt2img`, `GET /sdapi/v1/sd-models`, `GET /sdapi/v1/samplers`,
 * `GET|POST /sdapi/v1/options`, `GET /sdapi/v1/progress`, `POST /sdapi/v1/interrupt`.
 *
 * Field names, types and defaults follow AUTOMATIC1111/stable-diffusion-webui's own code:
 * modules/api/models.py (StableDiffusionTxt2ImgProcessingAPI: every parameter of StableDiffusionProcessingTxt2Img
 * plus sampler_index "Euler", script_name, script_args, send_images, save_images, alwayson_scripts, force_task_id,
 * infotext; TextToImageResponse {images, parameters, info}; SDModelItem; SamplerItem; ProgressResponse),
 * modules/processing.py (the defaults: seed -1, steps 50, cfg_scale 7.0, batch_size 1, n_iter 1; seed -1 →
 * random.randrange(4294967294); all_seeds = seed + i; Processed.js(), the `info` JSON string; create_infotext)
 * and modules/api/api.py (routes, `{error, detail, body, errors}` error bodies, 404 "Sampler not found", interrupt →
 * {}, options POST → null). As in FastAPI, a body that fails validation is a 422 `{detail: [{loc, msg, type}]}`.
 *
 * Where we differ, on purpose: width and height default to the model's own size (A1111's 512 is SD-1.5's); an
 * unknown `override_settings.sd_model_checkpoint` is a 404 rather than silently the current model; settings we
 * do not implement (hires fix, face restoration, tiling, subseeds, scripts, styles) are refused when set away
 * from their defaults, so no image silently differs from what was asked, and the rest (saving options, eta,
 * s_churn, ...) are accepted and ignored. `s2i: {method, subjects, attention_maps}` is our extension.
 */
import type { FastifyInstance } from 'fastify';
import type { SamplerName } from '../schedulers/index.js';
import type { ImageOrder, ServerContext, ServedImages } from './app.js';
import type { ServedModel } from './engine.js';
import { ApiError } from './errors.js';
import { BadField, checkFields, show, type FieldSpec } from './fields.js';
import type { Progress } from './queue.js';

/** StableDiffusionTxt2ImgProcessingAPI's fields and defaults (modules/api/models.py over modules/processing.py). */
export const TXT2IMG_DEFAULTS = {
  prompt: '',
  negative_prompt: '',
  styles: null,
  seed: -1,
  subseed: -1,
  subseed_strength: 0,
  seed_resize_from_h: -1,
  seed_resize_from_w: -1,
  sampler_name: null,
  scheduler: null,
  batch_size: 1,
  n_iter: 1,
  steps: 50,
  cfg_scale: 7.0,
  width: 512,
  height: 512,
  restore_faces: null,
  tiling: null,
  do_not_save_samples: false,
  do_not_save_grid: false,
  eta: null,
  denoising_strength: 0.75,
  s_min_uncond: null,
  s_churn: null,
  s_tmax: null,
  s_tmin: null,
  s_noise: null,
  override_settings: null,
  override_settings_restore_afterwards: true,
  refiner_checkpoint: null,
  refiner_switch_at: null,
  disable_extra_networks: false,
  firstpass_image: null,
  comments: null,
  enable_hr: false,
  firstphase_width: 0,
  firstphase_height: 0,
  hr_scale: 2.0,
  hr_upscaler: null,
  hr_second_pass_steps: 0,
  hr_resize_x: 0,
  hr_resize_y: 0,
  hr_checkpoint_name: null,
  hr_sampler_name: null,
  hr_scheduler: null,
  hr_prompt: '',
  hr_negative_prompt: '',
  force_task_id: null,
  sampler_index: 'Euler',
  script_name: null,
  script_args: [],
  send_images: true,
  save_images: false,
  alwayson_scripts: {},
  infotext: null,
} as const;

/** A1111's sampler names (modules/sd_samplers_kdiffusion.py, sd_samplers_timesteps.py) for ours, with aliases. */
export const A1111_SAMPLERS: { name: string; aliases: string[]; s2i: SamplerName }[] = [
  { name: 'DPM++ 2M', aliases: ['k_dpmpp_2m'], s2i: 'dpmpp-2m' },
  { name: 'Euler a', aliases: ['k_euler_a', 'k_euler_ancestral'], s2i: 'euler-a' },
  { name: 'Euler', aliases: ['k_euler'], s2i: 'euler' },
  { name: 'DDIM', aliases: ['ddim'], s2i: 'ddim' },
  { name: 'PLMS', aliases: ['plms'], s2i: 'pndm' },
];

function findSampler(name: string): (typeof A1111_SAMPLERS)[number] | undefined {
  const n = name.trim().toLowerCase();
  return A1111_SAMPLERS.find((s) => s.name.toLowerCase() === n || s.aliases.includes(n) || s.s2i === n);
}

const NAMES: Record<string, string> = {
  prompt: 'prompt',
  negativePrompt: 'negative_prompt',
  guidanceScale: 'cfg_scale',
  images: 'batch_size',
  sampler: 'sampler_name',
  attentionPicture: 's2i.attention_maps',
};
const a1111Name = (field: string): string => NAMES[field] ?? field;

function specs(ctx: ServerContext): Record<string, FieldSpec> {
  const { limits } = ctx;
  const unsupported = (value: unknown, why: string): FieldSpec => ({ type: 'only', value, why });
  const table: Record<string, FieldSpec> = {};
  // Everything A1111 takes is accepted (pydantic ignores the rest too); what we do not implement is ignored.
  for (const k of Object.keys(TXT2IMG_DEFAULTS)) table[k] = { type: 'ignored' };
  return {
    ...table,
    prompt: { type: 'string', maxLength: limits.promptChars, nullable: true },
    negative_prompt: { type: 'string', maxLength: limits.promptChars, nullable: true },
    seed: { type: 'integer', min: -1, max: Number.MAX_SAFE_INTEGER, nullable: true },
    steps: { type: 'integer', min: 1, max: limits.steps, nullable: true },
    cfg_scale: { type: 'number', min: 0, max: 100, nullable: true },
    width: { type: 'integer', min: 8, max: 65536, nullable: true },
    height: { type: 'integer', min: 8, max: 65536, nullable: true },
    batch_size: { type: 'integer', min: 1, max: limits.images, nullable: true },
    n_iter: { type: 'integer', min: 1, max: limits.images, nullable: true },
    sampler_name: { type: 'string', maxLength: 64, nullable: true },
    sampler_index: { type: 'string', maxLength: 64, nullable: true },
    scheduler: { type: 'string', maxLength: 32, enum: ['Automatic', 'automatic'], nullable: true },
    send_images: { type: 'boolean', nullable: true },
    override_settings: { type: 'map', maxKeys: 64, nullable: true },
    styles: unsupported([], 'this server has no saved prompt styles'),
    subseed_strength: unsupported(0, 'variation seeds are not implemented'),
    restore_faces: unsupported(false, 'face restoration is not implemented'),
    tiling: unsupported(false, 'tiling is not implemented'),
    enable_hr: unsupported(false, 'the hires fix is not implemented'),
    refiner_checkpoint: unsupported(null, 'refiners are not implemented'),
    firstpass_image: unsupported(null, 'a first-pass image is not implemented'),
    script_name: unsupported(null, 'scripts are not implemented'),
    script_args: unsupported([], 'scripts are not implemented'),
    alwayson_scripts: unsupported({}, 'scripts are not implemented (s2i: {...} carries our settings)'),
    s2i: {
      type: 'object',
      nullable: true,
      fields: {
        method: { type: 'string', maxLength: 64, nullable: true },
        subjects: { type: 'string', maxLength: 500, nullable: true },
        attention_maps: { type: 'boolean', nullable: true },
      },
    },
  };
}

/**
 * A1111's error answers: a request that fails validation is FastAPI's 422 `{detail: [{loc, msg, type}]}` (A1111
 * leaves FastAPI's RequestValidationError handler in place); anything else is api.py's handle_exception body
 * `{error, detail, body, errors}` with its status.
 */
export function a1111Error(e: ApiError): { status: number; body: unknown } {
  if (e.options.validation || (e.status === 400 && e.options.kind !== 'RuntimeError')) {
    const loc = e.options.field ? ['body', ...e.options.field.split('.')] : ['body'];
    return { status: 422, body: { detail: [{ loc, msg: e.message, type: 'value_error' }] } };
  }
  return {
    status: e.status,
    body: { error: e.options.kind ?? 'HTTPException', detail: e.message, body: '', errors: e.message },
  };
}

/** Python's str() of a float, as A1111's infotext writes CFG scale (7 → "7.0"). */
const pyFloat = (x: number) => (Number.isInteger(x) ? x.toFixed(1) : String(x));

/** The version A1111's `info` and infotext report. */
const VERSION = 's2i 0.1.0';

export function registerA1111(app: FastifyInstance, ctx: ServerContext): void {
  registerModelRoutes(app, ctx);
  registerProgressRoutes(app, ctx);
  registerTxt2Img(app, ctx);
}

/** Runs `check`, answering a field it refuses as FastAPI's 422 (through a1111Error); other errors pass through. */
function fieldsChecked<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof BadField) throw new ApiError(400, e.message, { field: e.field, validation: true });
    throw e;
  }
}

/** `sd-models`, `samplers` and `options` (GET, and POST to change the default model). */
function registerModelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/sdapi/v1/sd-models', async () =>
    ctx.models.map((m) => ({
      title: m.title,
      model_name: m.name,
      hash: m.hash,
      sha256: null,
      filename: m.name,
      config: null,
    })),
  );

  app.get('/sdapi/v1/samplers', async () =>
    A1111_SAMPLERS.map((s) => ({ name: s.name, aliases: s.aliases, options: { s2i_scheduler: s.s2i } })),
  );

  app.get('/sdapi/v1/options', async () => ({
    sd_model_checkpoint: ctx.defaultModel.title,
    sd_checkpoint_hash: null,
    samples_format: 'png',
  }));

  app.post('/sdapi/v1/options', async (request) => {
    const body = fieldsChecked(() =>
      checkFields(request.body, { sd_model_checkpoint: { type: 'string', maxLength: 300, nullable: true } }, 'ignore'),
    );
    const name = body['sd_model_checkpoint'] as string | undefined;
    if (name !== undefined) {
      const m = ctx.findModel(name);
      if (!m)
        throw new ApiError(
          400,
          `model ${show(name)} not found; this server has ${ctx.models.map((x) => x.title).join(', ')}`,
          {
            kind: 'RuntimeError',
          },
        );
      ctx.defaultModel = m;
    }
    return null;
  });
}

/** ProgressResponse for the first running batch (A1111 runs one job at a time); all zeros when idle. */
function progressAnswer(p: Progress) {
  const run = p.running[0];
  const state = {
    skipped: false,
    interrupted: false,
    stopping_generation: false,
    job: run ? 'txt2img' : '',
    job_count: p.waiting + p.running.reduce((n, r) => n + r.jobs, 0),
    job_timestamp: run ? timestamp(new Date(run.startedAt)) : '0',
    job_no: 0,
    sampling_step: run?.step ?? 0,
    sampling_steps: run?.total ?? 0,
  };
  if (!run || run.total === 0) return { progress: 0, eta_relative: 0, state, current_image: null, textinfo: null };
  const progress = Math.min(1, Math.max(0.01, run.step / run.total));
  const elapsed = (Date.now() - run.startedAt) / 1000;
  return { progress, eta_relative: elapsed / progress - elapsed, state, current_image: null, textinfo: null };
}

/** `progress` and `interrupt`. */
function registerProgressRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/sdapi/v1/progress', async () => progressAnswer(ctx.queue.progress()));

  app.post('/sdapi/v1/interrupt', async () => {
    ctx.queue.interrupt();
    return {};
  });
}

/** The model a txt2img body asks for: override_settings.sd_model_checkpoint, else the current default. */
function requestedModel(given: Record<string, unknown>, ctx: ServerContext): ServedModel {
  const checkpoint = (given['override_settings'] as Record<string, unknown> | undefined)?.['sd_model_checkpoint'];
  if (checkpoint !== undefined && typeof checkpoint !== 'string')
    throw new BadField(
      'override_settings.sd_model_checkpoint',
      `override_settings.sd_model_checkpoint must be a string, got ${show(checkpoint)}`,
    );
  const served = checkpoint !== undefined ? ctx.findModel(checkpoint) : ctx.defaultModel;
  if (!served) throw new ApiError(404, 'Model not found', { kind: 'HTTPException' });
  return served;
}

/** A checked txt2img body as the library request, and the A1111 sampler name the answer reports. */
function txt2imgOrder(given: Record<string, unknown>, ctx: ServerContext): { order: ImageOrder; samplerName: string } {
  const served = requestedModel(given, ctx);
  const sampler = findSampler(
    (given['sampler_name'] ?? given['sampler_index'] ?? TXT2IMG_DEFAULTS.sampler_index) as string,
  );
  if (!sampler)
    throw new ApiError(
      404,
      `Sampler not found: ${show(given['sampler_name'] ?? given['sampler_index'])}; this server has ${A1111_SAMPLERS.map((s) => s.name).join(', ')}`,
      {
        kind: 'HTTPException',
      },
    );
  const width = (given['width'] as number | undefined) ?? served.nativeSide;
  const height = (given['height'] as number | undefined) ?? served.nativeSide;
  for (const [k, v] of [
    ['width', width],
    ['height', height],
  ] as const)
    if (v > served.maxSide || v % 8 !== 0)
      throw new BadField(
        k,
        `${k} must be a multiple of 8 from 8 to ${served.maxSide} for this model (its own size is ${served.nativeSide}), got ${v}`,
      );
  const images = ((given['batch_size'] as number | undefined) ?? 1) * ((given['n_iter'] as number | undefined) ?? 1);
  if (images > ctx.limits.images)
    throw new BadField('batch_size', `batch_size × n_iter must be at most ${ctx.limits.images} images, got ${images}`);
  const prompt = (given['prompt'] as string | undefined) ?? '';
  const seed = (given['seed'] as number | undefined) ?? -1;
  const s2i = (given['s2i'] as Record<string, unknown> | undefined) ?? {};
  const order: ImageOrder = {
    served,
    request: {
      prompt,
      negativePrompt: (given['negative_prompt'] as string | undefined) ?? '',
      steps: (given['steps'] as number | undefined) ?? TXT2IMG_DEFAULTS.steps,
      guidanceScale: (given['cfg_scale'] as number | undefined) ?? TXT2IMG_DEFAULTS.cfg_scale,
      sampler: sampler.s2i,
      seed: seed === -1 ? ctx.randomSeed() : seed,
      width,
      height,
      images,
      ...(s2i['method'] != null ? { method: ctx.methodName(s2i['method'] as string) } : {}),
      ...(s2i['subjects'] != null ? { subjects: s2i['subjects'] as string } : {}),
      ...(s2i['attention_maps'] === true ? { attentionPicture: { steps: 'mean' as const } } : {}),
    },
  };
  return { order, samplerName: sampler.name };
}

/** TextToImageResponse {images, parameters, info} plus our `s2i` block. */
function txt2imgAnswer(
  body: Record<string, unknown>,
  given: Record<string, unknown>,
  order: ImageOrder,
  samplerName: string,
  run: ServedImages,
) {
  // A1111 echoes its request model (vars(txt2imgreq)): its fields, defaults filled in, nothing else.
  const known = Object.entries(body).filter(([k]) => Object.hasOwn(TXT2IMG_DEFAULTS, k) || k === 's2i');
  const parameters = {
    ...TXT2IMG_DEFAULTS,
    ...Object.fromEntries(known),
    width: run.width,
    height: run.height,
  };
  return {
    images: given['send_images'] === false ? [] : run.images.map((i) => i.png),
    parameters,
    info: JSON.stringify(
      info(order.request, run, order.served, samplerName, VERSION, (given['batch_size'] as number | undefined) ?? 1),
    ),
    s2i: {
      method: run.method,
      seeds: run.images.map((i) => i.seed),
      ...(run.images.some((i) => i.maps !== null) ? { attention_maps: run.images.map((i) => i.maps) } : {}),
    },
  };
}

function registerTxt2Img(app: FastifyInstance, ctx: ServerContext): void {
  const table = specs(ctx);
  app.post('/sdapi/v1/txt2img', async (request, reply) => {
    const { given, order, samplerName } = fieldsChecked(() => {
      const given = checkFields(request.body, table, 'ignore');
      return { given, ...txt2imgOrder(given, ctx) };
    });
    const run = await ctx.generate(order, request, reply, a1111Name);
    return txt2imgAnswer(request.body as Record<string, unknown>, given, order, samplerName, run);
  });
}

/** A1111's job_timestamp: %Y%m%d%H%M%S. */
function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Processed.js(): the `info` object, with create_infotext's line per image. */
function info(
  r: ImageOrder['request'],
  run: ServedImages,
  served: ImageOrder['served'],
  sampler: string,
  version: string,
  batchSize: number,
): Record<string, unknown> {
  const seeds = run.images.map((i) => i.seed);
  const negative = r.negativePrompt ?? '';
  const infotext = (seed: number) =>
    `${r.prompt}${negative ? `\nNegative prompt: ${negative}` : ''}\n` +
    [
      `Steps: ${run.steps}`,
      `Sampler: ${sampler}`,
      `CFG scale: ${pyFloat(run.guidance)}`,
      `Seed: ${seed}`,
      `Size: ${run.width}x${run.height}`,
      `Model hash: ${served.hash}`,
      `Model: ${served.name}`,
      `S2I method: ${run.method}`,
      `Version: ${version}`,
    ].join(', ');
  return {
    prompt: r.prompt,
    all_prompts: seeds.map(() => r.prompt),
    negative_prompt: negative,
    all_negative_prompts: seeds.map(() => negative),
    seed: seeds[0],
    all_seeds: seeds,
    subseed: -1,
    all_subseeds: seeds.map(() => -1),
    subseed_strength: 0,
    width: run.width,
    height: run.height,
    sampler_name: sampler,
    cfg_scale: run.guidance,
    steps: run.steps,
    batch_size: batchSize,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: served.name,
    sd_model_hash: served.hash,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: null,
    extra_generation_params: { 'S2I method': run.method },
    index_of_first_image: 0,
    infotexts: seeds.map(infotext),
    styles: [],
    job_timestamp: timestamp(new Date()),
    clip_skip: 1,
    is_using_inpainting_conditioning: false,
    version,
  };
}

/**
 * The OpenAI Images API, the part an image server can give: `POST /v1/images/generations` and `GET /v1/models`,
 * errors in OpenAI's `{error: {message, type, param, code}}` shape. Fields as OpenAI's API reference defines them
 * (`model`, `prompt`, `n`, `size` "WxH", `response_format`, `user`; `quality` and `style` are accepted and have no
 * effect); s2i's own settings are accepted as extra fields (`seed`, `steps`, `guidance`, `scheduler`, `method`,
 * `subjects`, `negative_prompt`, and `s2i: {method, subjects, attention_maps}`), which the official `openai`
 * client sends as extra body fields.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SAMPLER_NAMES } from '../schedulers/index.js';
import type { ServerContext, ImageOrder } from './app.js';
import { ApiError } from './errors.js';
import { BadField, checkFields, show, type FieldSpec } from './fields.js';

/** What library field names are called in this API (for the library's FieldError messages). */
const NAMES: Record<string, string> = {
  prompt: 'prompt',
  negativePrompt: 'negative_prompt',
  guidanceScale: 'guidance',
  images: 'n',
  height: 'size',
  width: 'size',
  sampler: 'scheduler',
  attentionPicture: 's2i.attention_maps',
};
export const openaiName = (field: string): string => NAMES[field] ?? field;

function specs(ctx: ServerContext): Record<string, FieldSpec> {
  const { limits } = ctx;
  const s2i: Record<string, FieldSpec> = {
    method: { type: 'string', maxLength: 64, nullable: true },
    subjects: { type: 'string', maxLength: 500, nullable: true },
    attention_maps: { type: 'boolean', nullable: true },
  };
  return {
    prompt: { type: 'string', maxLength: limits.promptChars },
    model: { type: 'string', maxLength: 200, nullable: true },
    n: { type: 'integer', min: 1, max: limits.images, nullable: true },
    size: { type: 'string', maxLength: 32, nullable: true },
    response_format: { type: 'string', maxLength: 16, enum: ['b64_json', 'url'], nullable: true },
    user: { type: 'string', maxLength: 256, nullable: true },
    quality: { type: 'string', maxLength: 16, nullable: true },
    style: { type: 'string', maxLength: 16, nullable: true },
    output_format: { type: 'only', value: 'png', why: 'images are PNG' },
    stream: { type: 'only', value: false, why: 'images come whole, not streamed' },
    // s2i's settings, as extra fields
    seed: { type: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER, nullable: true },
    steps: { type: 'integer', min: 1, max: limits.steps, nullable: true },
    guidance: { type: 'number', min: 0, max: 100, nullable: true },
    scheduler: { type: 'string', maxLength: 16, enum: SAMPLER_NAMES, nullable: true },
    negative_prompt: { type: 'string', maxLength: limits.promptChars, nullable: true },
    method: { type: 'string', maxLength: 64, nullable: true },
    subjects: { type: 'string', maxLength: 500, nullable: true },
    s2i: { type: 'object', fields: s2i, nullable: true },
  };
}

/** OpenAI's error body. */
export function openaiError(e: ApiError): {
  error: { message: string; type: string; param: string | null; code: string | null };
} {
  const type = e.status === 429 ? 'requests' : e.status >= 500 ? 'server_error' : 'invalid_request_error';
  return { error: { message: e.message, type, param: e.options.field ?? null, code: e.options.code ?? null } };
}

/** "512x512" → [width, height]; "auto" or nothing → the model's own size. */
function parseSize(size: unknown, native: number, max: number): { width: number; height: number } {
  if (size === undefined || size === 'auto') return { width: native, height: native };
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(size as string);
  if (!m)
    throw new BadField('size', `size must be "WIDTHxHEIGHT" (e.g. "${native}x${native}") or "auto", got ${show(size)}`);
  const [width, height] = [Number(m[1]), Number(m[2])];
  if (width < 8 || height < 8 || width > max || height > max || width % 8 || height % 8)
    throw new BadField(
      'size',
      `size ${width}x${height} is not served: each side a multiple of 8 from 8 to ${max} for this model (its own size is ${native}x${native})`,
    );
  return { width, height };
}

export function registerOpenAI(app: FastifyInstance, ctx: ServerContext): void {
  const table = specs(ctx);

  app.get('/v1/models', async () => ({
    object: 'list',
    data: ctx.models.map((m) => ({ id: m.name, object: 'model', created: ctx.startedAt, owned_by: 's2i' })),
  }));

  app.post('/v1/images/generations', async (request: FastifyRequest, reply: FastifyReply) => {
    let order: ImageOrder;
    try {
      const b = checkFields(request.body, table, 'refuse');
      if (b['prompt'] === undefined) throw new BadField('prompt', 'prompt is required');
      if ((b['prompt'] as string).trim() === '') throw new BadField('prompt', 'prompt must not be empty');
      if (b['response_format'] === 'url')
        throw new BadField(
          'response_format',
          'response_format "url" is not served: this server keeps no images; ask for "b64_json"',
        );
      const name = b['model'] as string | undefined;
      const served = ctx.findModel(name);
      if (!served)
        throw new ApiError(
          404,
          `The model ${show(name)} does not exist; this server has ${ctx.models.map((m) => m.name).join(', ')}`,
          {
            field: 'model',
            code: 'model_not_found',
          },
        );
      const s2i = (b['s2i'] as Record<string, unknown> | undefined) ?? {};
      const { width, height } = parseSize(b['size'], served.nativeSide, served.maxSide);
      const method = (s2i['method'] ?? b['method']) as string | undefined;
      const subjects = (s2i['subjects'] ?? b['subjects']) as string | undefined;
      order = {
        served,
        request: {
          prompt: b['prompt'] as string,
          ...(b['negative_prompt'] !== undefined ? { negativePrompt: b['negative_prompt'] as string } : {}),
          ...(b['steps'] !== undefined ? { steps: b['steps'] as number } : {}),
          ...(b['guidance'] !== undefined ? { guidanceScale: b['guidance'] as number } : {}),
          ...(b['scheduler'] !== undefined ? { sampler: b['scheduler'] as (typeof SAMPLER_NAMES)[number] } : {}),
          seed: (b['seed'] as number | undefined) ?? ctx.randomSeed(),
          width,
          height,
          ...(method !== undefined ? { method: ctx.methodName(method) } : {}),
          ...(subjects !== undefined ? { subjects } : {}),
          ...(s2i['attention_maps'] === true ? { attentionPicture: { steps: 'mean' as const } } : {}),
          images: (b['n'] as number | undefined) ?? 1,
        },
      };
    } catch (e) {
      if (e instanceof BadField) throw new ApiError(400, e.message, { field: e.field });
      throw e;
    }
    const run = await ctx.generate(order, request, reply, openaiName);
    return {
      created: Math.floor(Date.now() / 1000),
      data: run.images.map((img) => ({
        b64_json: img.png,
        s2i: {
          seed: img.seed,
          method: run.method,
          ...(img.maps !== null ? { attention_maps: img.maps } : {}),
        },
      })),
    };
  });
}

/**
 * `s2i serve`: an image server speaking the OpenAI Images API and Automatic1111's API over one generation queue
 * with dynamic batching (src/server). Binds 127.0.0.1 by default; any other address needs an API key. This file
 * declares the command; the run is serve-run.ts, imported only when the command runs.
 */
import type { Command } from '@commander-js/extra-typings';

/** The flags as commander gives them (strings: run checks them). */
export interface ServeFlags {
  model?: string[];
  host: string;
  port: string;
  apiKey?: string;
  queue?: string;
  maxQueue: string;
  maxBatch: string;
  timeout: string;
  maxImages: string;
  maxSteps: string;
  maxSideFactor: string;
  threads?: string;
  logPrompts?: boolean;
  quiet?: boolean;
}

export const API_KEY_ENV = 'S2I_API_KEY';

export function register(program: Command): void {
  program
    .command('serve')
    .description('an image server: the OpenAI Images API and Automatic1111’s API, one queue with dynamic batching')
    .option(
      '--model <path>',
      'a model folder or single-file .safetensors to serve (repeat for several; default: the latent shapes model, models/shapes-ldm)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--host <address>', 'address to bind (anything but loopback needs an API key)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', '7860')
    .option(
      '--api-key <key>',
      `require this key (Authorization: Bearer KEY); default: $${API_KEY_ENV}, which keeps it out of ps`,
    )
    .option('--queue <url>', 'generate on s2i workers through this job queue: redis://[:PASSWORD@]HOST[:PORT][/DB]')
    .option('--max-queue <n>', 'requests that may wait; more are answered 429 with Retry-After', '64')
    .option('--max-batch <n>', 'images generated together in one batch', '16')
    .option('--timeout <s>', 'time limit of each request, waiting included', '600')
    .option('--max-images <n>', 'images per request (n; batch_size × n_iter)', '8')
    .option('--max-steps <n>', 'sampler steps per request', '150')
    .option('--max-side-factor <x>', 'largest image side, as a multiple of the model’s own size', '2')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .option('--log-prompts', 'log each request’s prompt (not logged by default)')
    .option('--quiet', 'no log lines')
    .addHelpText(
      'after',
      `
Description:
  Serves the models given with --model to clients of the OpenAI Images API
  (POST /v1/images/generations, GET /v1/models) and of Automatic1111's API
  (POST /sdapi/v1/txt2img, GET /sdapi/v1/sd-models, samplers, options,
  progress; POST /sdapi/v1/options, interrupt), plus GET /healthz and
  GET /metrics (Prometheus). Requests wait in one bounded queue; those that
  arrive together with the same settings are generated as one batch. A
  client that disconnects has its waiting work dropped. Ctrl-C (or SIGTERM)
  answers every accepted request, refuses new ones and exits; a second one
  exits at once.

Examples:
  s2i serve
  S2I_API_KEY=$(openssl rand -hex 24) s2i serve --host 0.0.0.0 --port 7860
  s2i serve --model ~/models/stable-diffusion-v1-5 --max-images 4
  s2i serve --queue redis://10.0.0.5:6379/0     # generation on s2i workers
`,
    )
    .action(async (flags: ServeFlags) => (await import('./serve-run.js')).run(flags));
}

/**
 * The engine in the browser: the library's own loader, pipeline and methods, on onnxruntime-web, with the model's
 * files fetched into memory. A request (prompt, method, seed, steps) is turned into a generation the way the CLI
 * and the benchmark do it: the model's recommended guidance (s2i.json), subjects found automatically (nouns and
 * their adjectives), the method built by the registry, the cross-attention maps recorded at the library's default
 * resolution.
 */
import type * as OrtWeb from 'onnxruntime-web';
import { autoSubjects } from '../../src/attention/auto-subjects.js';
import { isUserError, UserError } from '../../src/errors.js';
import { webRuntime } from '../../src/graph/runtime-web.js';
import { floatToRgb8 } from '../../src/image/convert.js';
import { MemoryFileSystem, setDefaultFileSystem } from '../../src/io/files.js';
import { readSamplingDefaults } from '../../src/io/model-folder.js';
import { buildMethod, methodPreset, methodTargets } from '../../src/methods/registry.js';
import { LOSS_TERMS } from '../../src/methods/suppress.js';
import { generate, type StepInfo } from '../../src/pipeline/generate.js';
import { StableDiffusion } from '../../src/pipeline/stable-diffusion.js';
import { scoreImage } from '../../src/shapes/score.js';
import type { Tensor } from '../../src/tensor.js';
import type { EngineMessage, RunRequest, Score, StepRow } from './protocol.js';

type Post = (m: EngineMessage, transfer?: Transferable[]) => void;

const MODEL_ROOT = '/model';

interface Manifest {
  files: { path: string; size: number }[];
}

/** Fetch every file the manifest lists into memory, reporting bytes as they arrive. */
async function fetchModel(base: string, post: Post): Promise<MemoryFileSystem> {
  const url = (p: string) => new URL(p, base.endsWith('/') ? base : `${base}/`).href;
  const res = await fetch(url('manifest.json')).catch((e: unknown) => {
    throw new UserError(`${url('manifest.json')}: cannot fetch the model's file list (${String(e)})`);
  });
  if (!res.ok) throw new UserError(`${url('manifest.json')}: cannot fetch the model's file list (HTTP ${res.status})`);
  const manifest = (await res.json().catch(() => null)) as Manifest | null;
  if (!Array.isArray(manifest?.files)) throw new UserError(`${url('manifest.json')}: not a model's file list`);
  const total = manifest!.files.reduce((s, f) => s + f.size, 0);
  let received = 0;
  const fs = new MemoryFileSystem();
  await Promise.all(
    manifest!.files.map(async (f) => {
      const r = await fetch(url(f.path)).catch((e: unknown) => {
        throw new UserError(`model file ${f.path}: cannot fetch it (${String(e)})`);
      });
      if (!r.ok) throw new UserError(`model file ${f.path}: cannot fetch it (HTTP ${r.status})`);
      const bytes = new Uint8Array(await r.arrayBuffer());
      received += bytes.length;
      post({
        type: 'phase',
        text: `loading the model: ${(received / 2 ** 20).toFixed(1)} MiB`,
        fraction: received / total,
      });
      fs.add(`${MODEL_ROOT}/${f.path}`, bytes);
    }),
  );
  return fs;
}

/**
 * onnxruntime-web: the WebGPU build where the browser has a WebGPU adapter, else the (smaller) WebAssembly-only
 * one. Each bundle finds its .wasm binary beside itself (the build copies it there).
 */
async function loadOrt(wasmOnly: boolean): Promise<{ ort: typeof OrtWeb; webgpu: boolean }> {
  const gpu = wasmOnly ? undefined : (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
  if (adapter) return { ort: (await import('onnxruntime-web/webgpu')) as typeof OrtWeb, webgpu: true };
  return { ort: (await import('onnxruntime-web/wasm')) as typeof OrtWeb, webgpu: false };
}

let loaded: { base: string; model: StableDiffusion; guidance: number; loadMs: number; runtime: string } | null = null;

async function model(req: RunRequest, post: Post): Promise<NonNullable<typeof loaded>> {
  const { model: base, threads } = req;
  if (loaded?.base === base) return loaded;
  const t0 = performance.now();
  post({ type: 'phase', text: 'loading the model', fraction: 0 });
  const [fs, { ort, webgpu }] = await Promise.all([fetchModel(base, post), loadOrt(req.backend === 'wasm')]);
  const backend = webRuntime(ort, { webgpu, ...(threads ? { threads } : {}) });
  // The worker reads only this model: its fetched files are the file system the loader sees.
  setDefaultFileSystem(fs);
  const m = await StableDiffusion.load(MODEL_ROOT, { backend });
  const guidance = readSamplingDefaults(MODEL_ROOT).guidance ?? 7.5;
  loaded = { base, model: m, guidance, loadMs: performance.now() - t0, runtime: backend.name };
  return loaded;
}

function rgba(t: Tensor): { data: Uint8ClampedArray; width: number; height: number } {
  const img = floatToRgb8(t, { range: 'signed' });
  const out = new Uint8ClampedArray(img.width * img.height * 4);
  for (let i = 0, j = 0; i < img.data.length; i += 3, j += 4) {
    out[j] = img.data[i]!;
    out[j + 1] = img.data[i + 1]!;
    out[j + 2] = img.data[i + 2]!;
    out[j + 3] = 255;
  }
  return { data: out, width: img.width, height: img.height };
}

function stepRow(info: StepInfo, log: Record<string, unknown> | undefined, subjects: number): StepRow {
  const m = (log ?? {}) as {
    loss?: number | null;
    max_attention?: (number | null)[] | null;
    terms?: Record<string, number>;
    refinement_tries?: number;
    step_size?: number | null;
    edited?: boolean;
  };
  return {
    index: info.index,
    timestep: info.timestep,
    ms: info.ms,
    loss: m.loss ?? null,
    maxAttention: m.max_attention ?? new Array<null>(subjects).fill(null),
    terms: m.terms ?? {},
    tries: m.refinement_tries ?? 0,
    updated: m.step_size !== null && m.step_size !== undefined,
    edited: m.edited ?? false,
  };
}

export async function run(req: RunRequest, post: Post): Promise<void> {
  const t0 = performance.now();
  try {
    if (req.prompt.trim() === '') throw new UserError('the prompt is empty: type what the image should show');
    if (!Number.isSafeInteger(req.seed) || req.seed < 0)
      throw new UserError(`seed must be a whole number from 0, got ${req.seed}`);
    if (!Number.isInteger(req.steps) || req.steps < 1 || req.steps > 1000)
      throw new UserError(`steps must be a whole number from 1 to 1000, got ${req.steps}`);
    const preset = methodPreset(req.method, 'method');
    const { model: sd, guidance, loadMs, runtime } = await model(req, post);
    const auto = autoSubjects(sd.tokenizer, req.prompt);
    if (preset.kind !== 'none' && auto.subjects.length === 0)
      throw new UserError(`${req.method} needs a noun to strengthen; the prompt names none`);
    const method = buildMethod(req.method, methodTargets(auto.subjects, auto.attributes), { steps: req.steps });
    const subjects = auto.subjects.map((s) => ({ word: s.word, token: s.tokenIndex }));
    post({
      type: 'started',
      subjects,
      kind: preset.kind,
      terms: preset.mode === 'edit' ? [] : LOSS_TERMS.filter((t) => (preset.weights?.[t] ?? 0) !== 0),
      totalSteps: req.steps,
      runtime,
      width: sd.defaultImageSize,
      height: sd.defaultImageSize,
    });
    const tGen = performance.now();
    const result = await generate(sd, {
      prompt: req.prompt,
      steps: req.steps,
      guidanceScale: guidance,
      seed: req.seed,
      ...(method ? { method } : {}),
      recordAttention: {},
      onStep: (info) => {
        const preview = sd.vaeConfig ? null : rgba(info.latents).data;
        const maps = info.attentionMaps
          ? { data: info.attentionMaps.data.slice(), shape: [...info.attentionMaps.shape] }
          : null;
        post(
          {
            type: 'step',
            index: info.index,
            timestep: info.timestep,
            ms: info.ms,
            preview,
            maps,
            row: stepRow(info, method?.stepLog?.(info.index), subjects.length),
          },
          [...(preview ? [preview.buffer] : []), ...(maps ? [maps.data.buffer] : [])],
        );
      },
    });
    const image = rgba(result.image);
    const rgb = floatToRgb8(result.image, { range: 'signed' });
    let score: Score | null = null;
    try {
      const r = scoreImage(rgb, undefined, undefined, req.prompt);
      score = {
        fullSuccess: r.full_success,
        objectRecall: r.object_recall,
        binding: r.binding,
        extraObjects: r.extra_objects,
        objects: r.objects.map((o) => ({
          object: `${o.colour ?? ''} ${o.shape}`.trim(),
          present: o.found_shape_match,
          colourRight: o.colour_correct,
          leaked: o.leaked,
          seen: o.detection === null ? 'nothing' : `${o.detected_colour ?? ''} ${o.detected_shape ?? ''}`.trim(),
        })),
      };
    } catch (e) {
      // Not a shapes-world prompt (the scorer names what it cannot parse): no score, the image stands.
      if (!isUserError(e)) throw e;
    }
    const now = performance.now();
    post(
      {
        type: 'done',
        image: image.data,
        width: image.width,
        height: image.height,
        score,
        timings: { loadMs, generateMs: now - tGen, totalMs: now - t0 },
      },
      [image.data.buffer],
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    post({ type: 'error', message: isUserError(e) ? message : `internal error: ${message}` });
  }
}

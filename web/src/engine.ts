/**
 * The engine in the browser: the library's own loader, request and pipeline, on onnxruntime-web, with the model's
 * files fetched into memory. A page request (prompt, method, seed, steps) runs as one `GenerateRequest` through
 * `plan` and `run`, the calls `s2i generate` makes: the model's recommended guidance (s2i.json), subjects found
 * automatically (nouns and their adjectives), the method's defaults scaled to the steps, the choice among starts
 * where the method makes one, and the cross-attention maps recorded at the method's resolution on every call.
 */
import nlp from 'compromise';
import type * as OrtWeb from 'onnxruntime-web';
import { isUserError, UserError } from '../../src/errors.js';
import { webRuntime } from '../../src/graph/runtime-web.js';
import { floatToRgb8 } from '../../src/image/convert.js';
import type { RgbImage } from '../../src/image/image.js';
import { MemoryFileSystem, setDefaultFileSystem } from '../../src/io/files.js';
import { checkMethodOverrides } from '../../src/methods/registry.js';
import { LOSS_TERMS } from '../../src/methods/suppress.js';
import type { StepLog } from '../../src/methods/types.js';
import type { StepInfo } from '../../src/pipeline/generate.js';
import { plan } from '../../src/pipeline/plan.js';
import { run as runPlan } from '../../src/pipeline/run.js';
import { StableDiffusion } from '../../src/pipeline/stable-diffusion.js';
import { setTaggerLoader } from '../../src/prompt/tagger.js';
import { scoreImage } from '../../src/shapes/score.js';
import type { EngineMessage, RunRequest, Score, StepRow } from './protocol.js';

type Post = (m: EngineMessage, transfer?: Transferable[]) => void;

// The subject finder's tagger: compromise's ES modules, which the page's bundle holds (Node's entry installs its own).
setTaggerLoader(() => nlp);

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

let loaded: { base: string; model: StableDiffusion; loadMs: number; runtime: string } | null = null;

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
  loaded = { base, model: m, loadMs: performance.now() - t0, runtime: backend.name };
  return loaded;
}

function rgba(img: RgbImage): { data: Uint8ClampedArray; width: number; height: number } {
  const out = new Uint8ClampedArray(img.width * img.height * 4);
  for (let i = 0, j = 0; i < img.data.length; i += 3, j += 4) {
    out[j] = img.data[i]!;
    out[j + 1] = img.data[i + 1]!;
    out[j + 2] = img.data[i + 2]!;
    out[j + 3] = 255;
  }
  return { data: out, width: img.width, height: img.height };
}

function stepRow(info: StepInfo, log: StepLog | null, subjects: number): StepRow {
  return {
    index: info.index,
    timestep: info.timestep,
    ms: info.ms,
    loss: log?.loss ?? null,
    max_attention: log?.maxAttention ?? new Array<null>(subjects).fill(null),
    terms: { ...log?.terms },
    tries: log?.refinementTries ?? 0,
    updated: log !== null && log.stepSize !== null,
    edited: log?.edited ?? false,
    layout_score: log?.layoutScore ?? null,
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
    const caps = checkMethodOverrides(req.method, {}).capabilities;
    const { model: sd, loadMs, runtime } = await model(req, post);
    const planned = plan(
      {
        prompt: req.prompt,
        steps: req.steps,
        seed: req.seed,
        method: req.method,
        // The subjects whose maps the page shows, found automatically (a prompt without a noun is an error).
        subjects: 'auto',
        // Records every call's maps (a one-row picture: their mean, which the page does not show).
        attentionPicture: { steps: 'mean' },
        batchSize: 1,
      },
      sd,
    );
    const subjects = planned.subjects!.subjects.map((s) => ({ word: s.word, token: s.tokenIndex }));
    const settings = planned.method?.suppress ?? null;
    const chosen = settings && settings.selection.candidates > 1 ? settings.selection : null;
    const selection = chosen && { candidates: chosen.candidates, at_call: chosen.atCall, accept: chosen.accept };
    const tGen = performance.now();
    const run = await runPlan(planned, {
      onStart: (totalCalls) =>
        post({
          type: 'started',
          subjects,
          guided: caps.needsSubjects,
          mode: settings?.mode ?? null,
          terms: settings && settings.mode !== 'edit' ? LOSS_TERMS.filter((t) => settings.weights[t] !== 0) : [],
          selection,
          total_steps: totalCalls,
          runtime,
          width: sd.defaultImageSize,
          height: sd.defaultImageSize,
        }),
      onStep: (info) => {
        const preview = sd.vaeConfig ? null : rgba(floatToRgb8(info.latents[0]!, { range: 'signed' })).data;
        const m = info.attentionMaps?.[0];
        const maps = m ? { data: m.data.slice(), shape: [...m.shape] } : null;
        post(
          {
            type: 'step',
            index: info.index,
            timestep: info.timestep,
            round: info.candidateRound,
            ms: info.ms,
            preview,
            maps,
            row: stepRow(info, info.methodLogs[0] ?? null, subjects.length),
          },
          [...(preview ? [preview.buffer] : []), ...(maps ? [maps.data.buffer] : [])],
        );
      },
    });
    const result = run.result;
    const image = rgba(run.image);
    const score = shapesScore(run.image, req.prompt);
    const now = performance.now();
    post(
      {
        type: 'done',
        image: image.data,
        width: image.width,
        height: image.height,
        score,
        candidate: result.candidate && {
          index: result.candidate.index,
          seed: result.candidate.seed,
          scores: result.candidate.scores,
          at_call: result.candidate.atCall,
        },
        timings: { load_ms: loadMs, generate_ms: now - tGen, total_ms: now - t0 },
      },
      [image.data.buffer],
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    post({ type: 'error', message: isUserError(e) ? message : `internal error: ${message}` });
  }
}

/** The shapes-world score of the image, as the page shows it; null for a prompt that is not a shapes-world one. */
function shapesScore(image: RgbImage, prompt: string): Score | null {
  try {
    const r = scoreImage(image, undefined, undefined, prompt);
    return {
      full_success: r.full_success,
      object_recall: r.object_recall,
      binding: r.binding,
      extra_objects: r.extra_objects,
      objects: r.objects.map((o) => ({
        object: `${o.colour ?? ''} ${o.shape}`.trim(),
        present: o.found_shape_match,
        colour_right: o.colour_correct,
        leaked: o.leaked,
        seen: o.detection === null ? 'nothing' : `${o.detected_colour ?? ''} ${o.detected_shape ?? ''}`.trim(),
      })),
    };
  } catch (e) {
    // Not a shapes-world prompt (the scorer names what it cannot parse): no score, the image stands.
    if (!isUserError(e)) throw e;
    return null;
  }
}

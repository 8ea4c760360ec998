/**
 * One guided UNet pass of a batch — [uncond × B, cond × B] as diffusers concatenates them — with the conditional
 * half's cross-attention recorded and edited as the samples' methods ask, and the guidance that combines its rows.
 * Which maps a batch records is decided here too (attentionRecording): one resolution per batch.
 */
import { chooseAttentionResolution } from '../attention/resolution.js';
import { AttentionStore, composeHooks } from '../attention/store.js';
import { multiplicativeEditor, parseEditInputName } from '../attention/editors.js';
import { UserError } from '../errors.js';
import * as op from '../graph/ops.js';
import type { AttentionEdit } from '../methods/types.js';
import type { Sampler } from '../schedulers/index.js';
import { numel, type Tensor } from '../tensor.js';
import type { BatchOptions, GenerateResult, SampleRequest } from './generate-types.js';
import type { StableDiffusion } from './stable-diffusion.js';

/**
 * Which cross-attention maps the guided passes record: at the methods' resolution on every call (they read
 * them), else at the picture's on its calls; one resolution per batch.
 */
export function attentionRecording(
  requests: readonly SampleRequest[],
  options: BatchOptions,
  h: number,
  w: number,
): {
  resolution: readonly [number, number] | null;
  everyCall: boolean;
  steps: Set<number> | null;
  alsoAt: readonly (readonly [number, number])[];
} {
  let methodRes: readonly [number, number] | null = null;
  for (const r of requests) {
    const res = r.method?.attentionResolution?.(h, w) ?? null;
    if (res && methodRes && res.join('x') !== methodRes.join('x'))
      throw new UserError(`the methods of one batch record attention at ${methodRes.join('x')} and ${res.join('x')}`);
    methodRes ??= res;
  }
  const userRes = options.recordAttention
    ? (options.recordAttention.resolution ?? chooseAttentionResolution(null, h, w))
    : null;
  if (methodRes && userRes && methodRes.join('x') !== userRes.join('x')) {
    throw new UserError(
      `the method records attention at ${methodRes.join('x')}; pictures at ${userRes.join('x')} are not supported in the same run`,
    );
  }
  const steps = options.recordAttention?.steps ? new Set(options.recordAttention.steps) : null;
  const resolution = methodRes ?? userRes;
  const alsoAt = (options.recordAttention?.alsoAt ?? []).filter((r) => r.join('x') !== resolution?.join('x'));
  return { resolution, everyCall: methodRes !== null, steps, alsoAt };
}

/** Sample b's uncond + g·(cond − uncond) from the pass's [uncond × B, cond × B] rows, in float32 as torch. */
export function guidedPrediction(
  pred: Float32Array,
  b: number,
  B: number,
  perSample: number,
  guidance: number,
): Float32Array {
  const g32 = Math.fround(guidance);
  const guided = new Float32Array(perSample);
  const u0 = b * perSample;
  const c0 = (B + b) * perSample;
  for (let j = 0; j < perSample; j++) {
    const u = pred[u0 + j]!;
    guided[j] = u + Math.fround(g32 * Math.fround(pred[c0 + j]! - u));
  }
  return guided;
}

export interface GuidedOutputs {
  /** [2B, C, h, w]: the unconditional rows, then the conditional ones. */
  noisePred: Float32Array;
  /** Per sample, the conditional maps [h, w, T] before any edit (null without recording). */
  rawMaps: Tensor[] | null;
  /** Per sample, the maps the pass used (after the edit), when edited. */
  usedMaps: Tensor[] | null;
  /** Per sample, the maps the pass used at each of `alsoAt`'s resolutions ('8x8'). */
  mapsAt: Map<string, Tensor[]>;
}

/** One UNet pass over [uncond × B, cond × B], recording and editing the conditional half's cross-attention. */
export async function guidedPass(
  unet: ReturnType<StableDiffusion['unetAccess']>,
  runs: readonly { sampler: Sampler; latents: Tensor }[],
  context: Tensor,
  timestep: number,
  index: number,
  recordRes: readonly [number, number] | null,
  edits: readonly (AttentionEdit | null)[],
  editGraph = false,
  alsoAt: readonly (readonly [number, number])[] = [],
): Promise<GuidedOutputs> {
  const B = runs.length;
  const [c, h, w] = unet.latentShape;
  const [tokens, dim] = unet.contextShape;
  const edited = editGraph || edits.some((e) => e !== null);
  const at = alsoAt.map((r) => r.join('x'));
  const key = `guided:b${B}:rec=${recordRes ? recordRes.join('x') : '-'}${at.map((r) => `+${r}`).join('')}:edit=${edited ? 1 : 0}`;
  const session = await unet.compile(key, (g, build) => {
    const sample = g.input('sample', [2 * B, c, h, w]);
    const ts = g.input('timestep', [2 * B]);
    const ctxIn = g.input('context', [2 * B, tokens, dim]);
    // Two views when editing: the model's own maps (before the edit; they define the method's regions) and the
    // maps the pass actually used (after it; what pictures show). Without an edit they are the same.
    const raw = recordRes ? new AttentionStore({ kind: 'cross', resolution: recordRes }) : null;
    const editor = edited ? multiplicativeEditor(g, 2 * B) : null;
    const used = raw && editor ? new AttentionStore({ kind: 'cross', resolution: recordRes! }) : null;
    const more = alsoAt.map((resolution) => new AttentionStore({ kind: 'cross', resolution }));
    const { noisePred } = build(
      { sample, timestep: ts, encoderHiddenStates: ctxIn },
      { attentionHook: composeHooks(raw?.hook, editor?.hook, used?.hook, ...more.map((s) => s.hook)) },
    );
    g.output('noise_pred', noisePred);
    const conditional = (store: AttentionStore, resolution = recordRes!) =>
      op.identity(store.aggregate({ resolution, batches: [B, 2 * B] }));
    if (raw) g.output('attention_maps_raw', conditional(raw));
    if (used) g.output('attention_maps', conditional(used));
    more.forEach((store, k) => g.output(`attention_maps_at_${at[k]}`, conditional(store, alsoAt[k])));
  });
  const perSample = c * h * w;
  const batch = new Float32Array(2 * B * perSample);
  runs.forEach((s, b) => {
    const scaled = s.sampler.scaleModelInput(s.latents.data, index);
    batch.set(scaled, b * perSample);
    batch.set(scaled, (B + b) * perSample);
  });
  const feeds: Record<string, Tensor> = {
    sample: { data: batch, shape: [2 * B, c, h, w] },
    timestep: { data: new Float32Array(2 * B).fill(timestep), shape: [2 * B] },
    context,
  };
  if (edited) {
    for (const input of session.graph.inputs) {
      const at = parseEditInputName(input.name);
      if (!at) continue;
      const q = at.height * at.width;
      const factor = new Float32Array(numel(input.shape)).fill(1);
      edits.forEach((edit, b) => {
        if (!edit) return;
        const f = edit(at.height, at.width, tokens);
        if (f.length !== q * tokens)
          throw new Error(`attention edit for ${input.name} has ${f.length} values, expected ${q}x${tokens}`);
        factor.set(f, (B + b) * q * tokens); // only the conditional half is edited
      });
      feeds[input.name] = { data: factor, shape: [...input.shape] };
    }
  }
  const out = await session.run(feeds);
  const split = (t: Tensor | undefined): Tensor[] | null => {
    if (!t) return null;
    const size = t.data.length / B;
    return runs.map((_, b) => ({ data: t.data.slice(b * size, (b + 1) * size), shape: t.shape.slice(1) }));
  };
  return {
    noisePred: out['noise_pred']!.data,
    rawMaps: split(out['attention_maps_raw']),
    usedMaps: split(out['attention_maps']),
    mapsAt: new Map(at.map((r) => [r, split(out[`attention_maps_at_${r}`])!])),
  };
}

/** Sample b's maps at further resolutions (GuidedOutputs.mapsAt) kept in its result under call `index`. */
export function keepMapsAt(result: GenerateResult, mapsAt: GuidedOutputs['mapsAt'], b: number, index: number): void {
  for (const [res, maps] of mapsAt) {
    const byCall = (result.attentionMapsAt ??= new Map()).get(res) ?? new Map<number, Tensor>();
    result.attentionMapsAt.set(res, byCall.set(index, maps[b]!));
  }
}

/**
 * What SDXL adds to the Stable Diffusion pipeline (diffusers' StableDiffusionXLPipeline), besides the model code:
 *
 * - a second tokenizer and text encoder (OpenCLIP ViT-bigG in transformers' CLIPTextModelWithProjection): the
 *   prompt embedding is both encoders' penultimate hidden states side by side, and the second encoder's projected
 *   EOS state is the pooled embedding that conditions the UNet through `add_embedding`;
 * - six time ids (original size, crop top-left, target size) per image, also through `add_embedding`;
 * - `force_zeros_for_empty_prompt`: without a negative prompt, the unconditional embeddings are zeros.
 *
 * The pooled embedding belongs to a prompt embedding, so it travels with it: every UNet graph of an SDXL model
 * takes it as an input `text_embeds`, and a graph's caller that feeds only `context` (every guidance method, which
 * knows nothing of SDXL) gets each row's pooled embedding filled in from the prompt embedding that row holds
 * (`PooledEmbeddings`). A row that no prompt encoded by this model produced is an error, not a guess.
 */
import type { CompiledGraph } from '../graph/runtime.js';
import type { Tensor } from '../tensor.js';

/** Refiner checkpoints: what they are and why they are refused, in one line. */
export const REFINER_REFUSAL =
  'is an SDXL refiner (image-to-image on the base model’s latents, conditioned on an aesthetic score); s2i runs text-to-image models such as SDXL base';

/** diffusers' `_get_add_time_ids` with the pipeline's defaults: original = target = the image size, no crop. */
export function defaultTimeIds(height: number, width: number): Float32Array {
  return Float32Array.from([height, width, 0, 0, height, width]);
}

/**
 * One-hot rows [B, 1, T] at each prompt's EOS token, where transformers 4.30 pools CLIP's output:
 * `input_ids.argmax(-1)` (the first largest id; EOS is the vocabulary's largest).
 */
export function eosOneHot(ids: readonly (readonly number[])[]): Float32Array {
  const t = ids[0]!.length;
  const out = new Float32Array(ids.length * t);
  ids.forEach((row, b) => {
    let at = 0;
    for (let i = 1; i < row.length; i++) if (row[i]! > row[at]!) at = i;
    out[b * t + at] = 1;
  });
  return out;
}

/** FNV-1a over a row's float32 bits: the lookup key of a prompt embedding. */
function rowHash(data: Float32Array, from: number, length: number): number {
  const bits = new Uint32Array(data.buffer, data.byteOffset + from * 4, length);
  let h = 0x811c9dc5;
  for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i]!, 0x01000193) >>> 0;
  return h;
}

/** The pooled embedding of every prompt embedding a model has produced, looked up by the embedding's values. */
export class PooledEmbeddings {
  private readonly byHash = new Map<number, { row: Float32Array; pooled: Float32Array }[]>();
  private count = 0;

  constructor(
    /** Values per prompt embedding (tokens × width). */
    readonly rowSize: number,
    readonly pooledSize: number,
    /** Bound on what is kept (the oldest entries go first). */
    private readonly capacity = 4096,
  ) {}

  add(row: Float32Array, pooled: Float32Array): void {
    if (row.length !== this.rowSize || pooled.length !== this.pooledSize)
      throw new Error(
        `PooledEmbeddings: sizes ${row.length}/${pooled.length}, expected ${this.rowSize}/${this.pooledSize}`,
      );
    if (this.find(row, 0)) return;
    if (this.count >= this.capacity) {
      this.byHash.clear();
      this.count = 0;
    }
    const h = rowHash(row, 0, row.length);
    const list = this.byHash.get(h) ?? [];
    list.push({ row: row.slice(), pooled: pooled.slice() });
    this.byHash.set(h, list);
    this.count++;
  }

  private find(data: Float32Array, from: number): Float32Array | null {
    const list = this.byHash.get(rowHash(data, from, this.rowSize));
    if (!list) return null;
    outer: for (const e of list) {
      for (let i = 0; i < this.rowSize; i++) if (e.row[i] !== data[from + i]) continue outer;
      return e.pooled;
    }
    return null;
  }

  /** [B, pooled] for a context [B, T, D] whose rows are prompt embeddings this model made. */
  lookup(context: Tensor): Tensor {
    const b = context.data.length / this.rowSize;
    const out = new Float32Array(b * this.pooledSize);
    for (let i = 0; i < b; i++) {
      const pooled = this.find(context.data, i * this.rowSize);
      if (!pooled)
        throw new Error(
          `SDXL: row ${i} of the UNet's context is not a prompt embedding this model produced, so its pooled embedding is unknown; feed 'text_embeds' explicitly`,
        );
      out.set(pooled, i * this.pooledSize);
    }
    return { data: out, shape: [b, this.pooledSize] };
  }

  /**
   * A view of `compiled` whose `run` fills the `text_embeds` input from the `context` input when it is not fed
   * (the rest of the CompiledGraph is the same object's).
   */
  feeding(compiled: CompiledGraph): CompiledGraph {
    const view = Object.create(compiled) as CompiledGraph;
    view.run = async (feeds, outputs) => {
      const context = feeds['context'];
      if (feeds['text_embeds'] || !context || !compiled.inputNames.includes('text_embeds'))
        return compiled.run(feeds, outputs);
      return compiled.run({ ...feeds, text_embeds: this.lookup(context as Tensor) }, outputs);
    };
    return view;
  }
}

/**
 * transformers' CLIPTextModel (the text tower SD 1.x and 2.x use): token + position embeddings, a stack of
 * pre-LayerNorm transformer layers with a causal mask, and a final LayerNorm. Weight names follow the
 * checkpoint (`text_model.encoder.layers.0.self_attn.q_proj.weight`, ...).
 */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import { attention } from './attention.js';
import { activation, layerNorm, linear } from './layers.js';
import { child, type ParamFn } from './params.js';

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: string;
  layerNormEps: number;
  /** Width of `text_projection` (CLIPTextModelWithProjection only). */
  projectionDim: number;
}

export interface ClipTextOutputs {
  lastHiddenState: Value;
  /** Embedding output, then each layer's output (before the final LayerNorm), as transformers' hidden_states. */
  hiddenStates: Value[];
}

/** The causal mask transformers adds to the scores: finfo(float32).min above the diagonal. */
function causalMask(x: Value, length: number): Value {
  const data = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) data[i * length + j] = -3.4028234663852886e38;
  return x.graph.constant(data, [1, 1, length, length], 'float32', 'causal_mask');
}

/** input_ids: int64 [B, T]. */
export function clipTextModel(cfg: ClipTextConfig, params: ParamFn, inputIds: Value): ClipTextOutputs {
  const t = inputIds.shape[1]!;
  if (t > cfg.maxPositionEmbeddings)
    throw new Error(`CLIP: ${t} tokens exceed max_position_embeddings ${cfg.maxPositionEmbeddings}`);
  const p = child(params, 'text_model');
  const d = cfg.hiddenSize;
  const g = inputIds.graph;
  return g.scope('text_model', () => {
    const tokens = op.gather(p('embeddings.token_embedding.weight', [cfg.vocabSize, d]), inputIds, 0);
    let positions = p('embeddings.position_embedding.weight', [cfg.maxPositionEmbeddings, d]);
    if (t < cfg.maxPositionEmbeddings) positions = op.slice(positions, [0], [t], [0]);
    let h = op.add(tokens, op.reshape(positions, [1, t, d]));
    const hiddenStates = [h];
    const mask = causalMask(inputIds, t);
    for (let i = 0; i < cfg.numHiddenLayers; i++) {
      const lp = child(p, `encoder.layers.${i}`);
      h = g.scope(`layers.${i}`, () => {
        const x = layerNorm(child(lp, 'layer_norm1'), h, cfg.layerNormEps);
        const ap = child(lp, 'self_attn');
        const q = linear(child(ap, 'q_proj'), x, d, d);
        const k = linear(child(ap, 'k_proj'), x, d, d);
        const v = linear(child(ap, 'v_proj'), x, d, d);
        const attn = attention(q, k, v, cfg.numAttentionHeads, { mask, scaleQuery: true });
        const h1 = op.add(h, linear(child(ap, 'out_proj'), attn, d, d));
        const y = layerNorm(child(lp, 'layer_norm2'), h1, cfg.layerNormEps);
        const mlp = linear(
          child(lp, 'mlp.fc2'),
          activation(cfg.hiddenAct, linear(child(lp, 'mlp.fc1'), y, d, cfg.intermediateSize)),
          cfg.intermediateSize,
          d,
        );
        return op.add(h1, mlp);
      });
      hiddenStates.push(h);
    }
    const lastHiddenState = layerNorm(child(p, 'final_layer_norm'), h, cfg.layerNormEps);
    return { lastHiddenState, hiddenStates };
  });
}

/**
 * CLIPTextModelWithProjection's `text_embeds` (SDXL's pooled prompt embedding): the final-LayerNormed state at each
 * prompt's EOS token through `text_projection` (no bias). transformers 4.30 takes the EOS position as the argmax of
 * the ids (the EOS id is the vocabulary's largest); `eosOneHot` [B, 1, T] selects it, exactly (x·1 + 0·others).
 */
export function clipTextProjection(
  cfg: ClipTextConfig,
  params: ParamFn,
  out: ClipTextOutputs,
  eosOneHot: Value,
): Value {
  const b = eosOneHot.shape[0]!;
  const pooled = op.reshape(op.matmul(eosOneHot, out.lastHiddenState), [b, cfg.hiddenSize]);
  return linear(child(params, 'text_projection'), pooled, cfg.hiddenSize, cfg.projectionDim, false);
}

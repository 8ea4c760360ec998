/**
 * Fresh weights for training from scratch, with PyTorch's default initialisations (what diffusers' modules get
 * when built from a config): Linear/Conv weights and biases U(-1/√fan_in, 1/√fan_in) (kaiming_uniform with
 * a=√5), norm scales 1 and shifts 0, embeddings N(0, 0.02²) as transformers initialises CLIP's.
 */
import { GaussianRng } from '../util/random.js';

export type ParamShapes = ReadonlyMap<string, readonly number[]>;

function fanIn(shape: readonly number[]): number {
  let n = 1;
  for (let i = 1; i < shape.length; i++) n *= shape[i]!;
  return n;
}

export function initParams(shapes: ParamShapes, seed: number): Map<string, Float32Array> {
  const rng = new GaussianRng(seed);
  const out = new Map<string, Float32Array>();
  // Deterministic order regardless of how the shapes were collected.
  for (const name of [...shapes.keys()].sort()) {
    const shape = shapes.get(name)!;
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    const isNorm = /(^|\.)(norm\d*|layer_norm\d*|final_layer_norm|group_norm|conv_norm_out)\.(weight|bias)$/.test(name);
    if (isNorm) {
      if (name.endsWith('.weight')) data.fill(1);
    } else if (/embedding\.weight$/.test(name)) {
      const z = rng.normal(size);
      for (let i = 0; i < size; i++) data[i] = 0.02 * z[i]!;
    } else if (name.endsWith('.weight')) {
      const bound = 1 / Math.sqrt(fanIn(shape));
      for (let i = 0; i < size; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    } else if (name.endsWith('.bias')) {
      const weight = shapes.get(name.slice(0, -'bias'.length) + 'weight');
      const bound = weight ? 1 / Math.sqrt(fanIn(weight)) : 0;
      for (let i = 0; i < size; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    } else {
      throw new Error(`initParams: no initialisation rule for '${name}'`);
    }
    out.set(name, data);
  }
  return out;
}

/** torch.nn layers over the graph API, with checkpoint-shaped parameters. */
import type { Value } from '../graph/graph.js';
import * as op from '../graph/ops.js';
import type { ParamFn } from './params.js';

export function linear(p: ParamFn, x: Value, inFeatures: number, outFeatures: number, bias = true): Value {
  return op.linear(x, p('weight', [outFeatures, inFeatures]), bias ? p('bias', [outFeatures]) : null);
}

export function conv2d(
  p: ParamFn,
  x: Value,
  inChannels: number,
  outChannels: number,
  kernel: number,
  opts: { stride?: number; padding?: number } = {},
): Value {
  const s = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  return op.conv(x, p('weight', [outChannels, inChannels, kernel, kernel]), p('bias', [outChannels]), {
    strides: [s, s],
    pads: [pad, pad, pad, pad],
  });
}

export function groupNorm(p: ParamFn, x: Value, groups: number, eps: number): Value {
  const c = x.shape[1]!;
  return op.groupNorm(x, groups, p('weight', [c]), p('bias', [c]), eps);
}

export function layerNorm(p: ParamFn, x: Value, eps: number): Value {
  const c = x.shape[x.rank - 1]!;
  return op.layerNorm(x, p('weight', [c]), p('bias', [c]), eps);
}

export type Activation = 'silu' | 'gelu' | 'quick_gelu' | 'relu';

export function activation(name: string, x: Value): Value {
  switch (name) {
    case 'silu':
    case 'swish':
      return op.silu(x);
    case 'gelu':
      return op.gelu(x);
    case 'quick_gelu':
      return op.quickGelu(x);
    case 'relu':
      return op.relu(x);
    default:
      throw new Error(`unsupported activation '${name}'`);
  }
}

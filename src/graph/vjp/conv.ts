/** VJP rules of the 2-D convolutions (Conv, ConvTranspose; group = 1). */
import { type Node, type Value } from '../graph.js';
import * as op from '../ops.js';
import { attrInt, attrInts, type VjpRule } from './common.js';

interface Conv2dGeometry {
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
}

function convGeometry(node: Node): Conv2dGeometry {
  const autoPad = node.attrs['auto_pad'];
  if (autoPad && autoPad.kind === 'string' && autoPad.value !== 'NOTSET') {
    throw new Error(`gradients: ${node.opType} with auto_pad=${autoPad.value} is not supported`);
  }
  const s = attrInts(node, 'strides') ?? [1, 1];
  const p = attrInts(node, 'pads') ?? [0, 0, 0, 0];
  const d = attrInts(node, 'dilations') ?? [1, 1];
  const group = attrInt(node, 'group', 1);
  if (s.length !== 2 || p.length !== 4 || d.length !== 2)
    throw new Error(`gradients: only 2-D ${node.opType} is supported`);
  if (group !== 1) throw new Error(`gradients: ${node.opType} with group=${group} is not supported (group=1 only)`);
  return { strides: [s[0]!, s[1]!], pads: [p[0]!, p[1]!, p[2]!, p[3]!], dilations: [d[0]!, d[1]!], group };
}

/**
 * The weight gradient of a 2-D convolution as im2col:
 *   gw[o, c, a, b] = Σ_{n, i, j} gy[n, o, i, j] · x[n, c, i·s0 − pads0 + a·d0, j·s1 − pads1 + b·d1]
 * (zero outside x). Returns [O, C, kh, kw].
 */
function convWeightGrad(
  x: Value,
  gy: Value,
  kh: number,
  kw: number,
  strides: readonly [number, number],
  padsBegin: readonly [number, number],
  dil: readonly [number, number],
): Value {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [, o, oh, ow] = gy.shape as [number, number, number, number];
  // Extent of x (padded) that the patches read; pad or crop the end to exactly that.
  const needH = (kh - 1) * dil[0] + (oh - 1) * strides[0] + 1;
  const needW = (kw - 1) * dil[1] + (ow - 1) * strides[1] + 1;
  const xp = op.pad(x, [0, 0, padsBegin[0], padsBegin[1], 0, 0, needH - h - padsBegin[0], needW - w - padsBegin[1]]);
  let cols: Value;
  if (kh === 1 && kw === 1 && strides[0] === 1 && strides[1] === 1) {
    cols = xp;
  } else {
    const patches: Value[] = [];
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) {
        const s0 = a * dil[0];
        const s1 = b * dil[1];
        patches.push(
          op.slice(xp, [s0, s1], [s0 + (oh - 1) * strides[0] + 1, s1 + (ow - 1) * strides[1] + 1], [2, 3], strides),
        );
      }
    }
    // [N, C, kh*kw*OH, OW] → [N, C*kh*kw, OH*OW]: rows ordered (c, a, b) like the weight's flattening.
    cols = op.concat(patches, 2);
  }
  cols = op.reshape(cols, [n, c * kh * kw, oh * ow]);
  const gy2 = op.reshape(gy, [n, o, oh * ow]);
  const prod = op.matmul(gy2, op.transpose(cols, [0, 2, 1])); // [N, O, C*kh*kw]
  const gw = n > 1 ? op.reduceSum(prod, [0], false) : prod;
  return op.reshape(gw, [o, c, kh, kw]);
}

/** Crop (negative entries of `pads`) before a Conv whose pads must be non-negative; returns the rest. */
function splitNegativePads(
  x: Value,
  pads: readonly [number, number, number, number],
): { x: Value; pads: [number, number, number, number] } {
  const crop = pads.map((p) => Math.min(p, 0));
  const cropped = op.pad(x, [0, 0, crop[0]!, crop[1]!, 0, 0, crop[2]!, crop[3]!]);
  return { x: cropped, pads: pads.map((p) => Math.max(p, 0)) as [number, number, number, number] };
}

export const convVjp: VjpRule = ({ graph: g, node, inputs, gy, needs }) => {
  const geo = convGeometry(node);
  const x = inputs[0]!;
  const w = inputs[1]!;
  const [, c, h, wd] = x.shape as [number, number, number, number];
  const [o, , kh, kw] = w.shape as [number, number, number, number];
  const [, , oh, ow] = gy.shape as [number, number, number, number];
  const { strides: s, pads: p, dilations: d } = geo;
  let gx: Value | null = null;
  if (needs[0]) {
    if (s[0] === 1 && s[1] === 1) {
      // Full correlation of gy with the spatially flipped, channel-transposed kernel. Flipping both spatial
      // axes is reversing the flattened kh*kw block.
      let wf = w;
      if (kh * kw > 1) {
        const rev = g.ints(Array.from({ length: kh * kw }, (_, i) => kh * kw - 1 - i));
        wf = op.reshape(op.gather(op.reshape(w, [o, c, kh * kw]), rev, 2), [o, c, kh, kw]);
      }
      wf = op.transpose(wf, [1, 0, 2, 3]);
      const full = splitNegativePads(gy, [
        d[0] * (kh - 1) - p[0],
        d[1] * (kw - 1) - p[1],
        d[0] * (kh - 1) - p[2],
        d[1] * (kw - 1) - p[3],
      ]);
      gx = op.conv(full.x, wf, null, { pads: full.pads, dilations: d });
    } else {
      const outputPadding: [number, number] = [
        h - (s[0] * (oh - 1) + (kh - 1) * d[0] + 1 - p[0] - p[2]),
        wd - (s[1] * (ow - 1) + (kw - 1) * d[1] + 1 - p[1] - p[3]),
      ];
      gx = op.convTranspose(gy, w, { strides: s, pads: p, outputPadding, dilations: d });
    }
  }
  const gw = needs[1] ? convWeightGrad(x, gy, kh, kw, s, [p[0], p[1]], d) : null;
  const gb = needs[2] ? op.reduceSum(gy, [0, 2, 3], false) : null;
  return [gx, gw, gb];
};

export const convTransposeVjp: VjpRule = ({ node, inputs, gy, needs }) => {
  const geo = convGeometry(node);
  const x = inputs[0]!;
  const w = inputs[1]!; // [C, O, kh, kw]
  const [, , h, wd] = x.shape as [number, number, number, number];
  const [, , kh, kw] = w.shape as [number, number, number, number];
  const { strides: s, pads: p, dilations: d } = geo;
  let gx: Value | null = null;
  if (needs[0]) {
    // ConvTranspose is the adjoint of Conv with the same weight, strides, pads and dilations; the end pads are
    // chosen so that the Conv's output is exactly x's size (they can exceed p when output_padding is used).
    const [, , hy, wy] = gy.shape as [number, number, number, number];
    const endH = (h - 1) * s[0] + (kh - 1) * d[0] + 1 - hy - p[0];
    const endW = (wd - 1) * s[1] + (kw - 1) * d[1] + 1 - wy - p[1];
    const full = splitNegativePads(gy, [p[0], p[1], endH, endW]);
    gx = op.conv(full.x, w, null, { strides: s, pads: full.pads, dilations: d });
  }
  // gw[c, o, a, b] = Σ x[n, c, i, j] · gy[n, o, i·s − p + a·d, ...]: the Conv weight gradient with roles swapped.
  const gw = needs[1] ? convWeightGrad(gy, x, kh, kw, s, [p[0], p[1]], d) : null;
  const gb = needs[2] ? op.reduceSum(gy, [0, 2, 3], false) : null;
  return [gx, gw, gb];
};

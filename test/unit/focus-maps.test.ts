/**
 * The per-subject maps exist twice: in the loss graph (attend-and-excite.ts `subjectMaps`, ONNX Runtime, with
 * gradients) and on the host for the focus regions (focus.ts `subjectMapsHost`, after every guided pass). Both
 * must be A&E's preprocessing — tokens 1..T-2 ×100, softmax over tokens, the subject's column, optional smoothing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Graph } from '../../src/graph/graph.js';
import { compile, type CompiledGraph } from '../../src/graph/runtime.js';
import { subjectMaps } from '../../src/methods/attend-and-excite.js';
import { subjectMapsHost } from '../../src/methods/focus.js';
import { GaussianRng } from '../../src/util/random.js';

const [H, W, T] = [8, 6, 12];
const TOKENS = [2, 5, 10];
const SMOOTH = { smoothAttentions: true, kernelSize: 3, sigma: 0.5 };

/** Attention-like maps [H, W, T]: each pixel's row a softmax of random logits (as attention probabilities are). */
function attentionMaps(seed: number): Float32Array {
  const z = new GaussianRng(seed).normal(H * W * T);
  const out = new Float32Array(H * W * T);
  for (let p = 0; p < H * W; p++) {
    let sum = 0;
    for (let t = 0; t < T; t++) sum += out[p * T + t] = Math.exp(2 * z[p * T + t]!);
    for (let t = 0; t < T; t++) out[p * T + t] = out[p * T + t]! / sum;
  }
  return out;
}

const sessions: CompiledGraph[] = [];
afterAll(async () => Promise.all(sessions.map((s) => s.release())));

async function inGraph(maps: Float32Array, smooth: boolean): Promise<Float32Array> {
  const g = new Graph();
  const input = g.input('maps', [H, W, T]);
  g.output('subjects', subjectMaps(input, TOKENS, { ...SMOOTH, smoothAttentions: smooth }));
  const session = await compile(g, { threads: 1 });
  sessions.push(session);
  return (await session.run({ maps: { data: maps, shape: [H, W, T] } }))['subjects']!.data as Float32Array;
}

describe('subject maps: host (focus regions) = graph (losses)', () => {
  for (const smooth of [false, true]) {
    it(`${smooth ? 'smoothed' : 'unsmoothed'}: the same maps to float32 rounding`, async () => {
      for (const seed of [1, 2, 3]) {
        const maps = attentionMaps(seed);
        const graph = await inGraph(maps, smooth);
        const host = subjectMapsHost({ data: maps, shape: [H, W, T] }, TOKENS, smooth ? SMOOTH : null);
        expect([host.height, host.width, host.maps.length]).toEqual([H, W, TOKENS.length]);
        let worst = 0;
        host.maps.forEach((m, s) => {
          for (let p = 0; p < H * W; p++) worst = Math.max(worst, Math.abs(m[p]! - graph[s * H * W + p]!));
        });
        expect(worst).toBeLessThan(1e-6);
        // Not trivially equal: the maps differ between subjects and are far from uniform.
        expect(Math.max(...host.maps[0]!) - Math.min(...host.maps[0]!)).toBeGreaterThan(0.05);
      }
    });
  }
});

/**
 * The speed changes behind `npm run bench`: fused attention where nothing reads the probabilities (and the plain
 * path wherever something does: recording, editing, reverse mode), weights read by ONNX Runtime straight from
 * the safetensors file, and the optimized-model cache. Results must not change beyond float rounding.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gradients } from '../src/graph/autodiff.js';
import { Graph, type Value } from '../src/graph/graph.js';
import * as ort from 'onnxruntime-node';
import { liveNodes, serializeGraph } from '../src/graph/onnx.js';
import * as op from '../src/graph/ops.js';
import { compile, type CompileOptions } from '../src/graph/runtime.js';
import { WeightStore } from '../src/io/weight-store.js';
import { attention, type AttentionHook } from '../src/models/attention.js';
import { graphParams } from '../src/models/params.js';
import { GaussianRng } from '../src/util/random.js';
import { tinySdDir } from './support/oracle.js';

const B = 2;
const N = 64;
const M = 7;
const C = 16;
const HEADS = 4;
const layer = {
  name: 'attn',
  kind: 'cross' as const,
  place: 'down' as const,
  height: 8,
  width: 8,
  heads: HEADS,
  keyLength: M,
  index: 0,
};

function attentionGraph(hook?: AttentionHook, extra?: (g: Graph, out: Value, q: Value) => void): Graph {
  const g = new Graph();
  const q = g.input('q', [B, N, C]);
  const k = g.input('k', [B, M, C]);
  const v = g.input('v', [B, M, C]);
  const out = attention(q, k, v, HEADS, { layer, hook });
  g.output('out', out);
  extra?.(g, out, q);
  return g;
}

const rng = new GaussianRng(3);
const feeds = {
  q: { data: rng.normal(B * N * C), shape: [B, N, C] },
  k: { data: rng.normal(B * M * C), shape: [B, M, C] },
  v: { data: rng.normal(B * M * C), shape: [B, M, C] },
};
const ops = (g: Graph) => new Set(liveNodes(g).map((n) => n.opType));
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
const noCache: CompileOptions = { cache: false };

describe('fused attention (com.microsoft.MultiHeadAttention) only where nothing reads the probabilities', () => {
  it('replaces a plain, unhooked attention and matches it', async () => {
    const g = attentionGraph();
    expect(ops(g).has('MultiHeadAttention')).toBe(true);
    expect(ops(g).has('Softmax')).toBe(false);
    const fused = await compile(g, noCache);
    const a = (await fused.run(feeds))['out']!.data;
    // The same graph serialised without substitutions: the plain nodes.
    const s = await ort.InferenceSession.create(serializeGraph(g, { substitutions: false }));
    const b = (
      await s.run(
        Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor('float32', t.data, t.shape)])),
      )
    )['out']!.data as Float32Array;
    expect(maxDiff(a, b)).toBeLessThan(1e-5);
    await fused.release();
    await s.release();
  });

  it('keeps the plain path when a hook records the probabilities', () => {
    const g = attentionGraph((_, probs) => {
      probs.graph.output('probs', probs);
    });
    expect(ops(g).has('Softmax')).toBe(true);
    expect(ops(g).has('MultiHeadAttention')).toBe(false);
  });

  it('keeps the plain path when a hook edits the probabilities', () => {
    const g = attentionGraph((_, probs) => op.mul(probs, 0.5));
    expect(ops(g).has('Softmax')).toBe(true);
    expect(ops(g).has('MultiHeadAttention')).toBe(false);
  });

  it('keeps the plain path under reverse mode (the backward pass reads the forward probabilities)', async () => {
    const g = attentionGraph(undefined, (gr, out, q) => {
      const loss = op.reduceSum(op.mul(out, out), [0, 1, 2], false);
      gr.output('grad', gradients(loss, [q])[0]!);
    });
    expect(ops(g).has('Softmax')).toBe(true);
    expect(ops(g).has('MultiHeadAttention')).toBe(false);
    const c = await compile(g, noCache);
    const out = await c.run(feeds);
    expect(out['grad']!.data.every(Number.isFinite)).toBe(true);
    await c.release();
  });
});

describe('weights from safetensors and the optimized-model cache', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const store = WeightStore.open(join(tinySdDir, 'unet', 'diffusion_pytorch_model.safetensors'));
  const convGraph = () => {
    const g = new Graph('initializer');
    const p = graphParams(g, store);
    const x = g.input('x', [1, 4, 8, 8]);
    const h = op.conv(x, p('conv_in.weight', [32, 4, 3, 3]), p('conv_in.bias', [32]), { pads: [1, 1, 1, 1] });
    g.output('y', op.silu(h));
    return g;
  };
  const x = { x: { data: new GaussianRng(5).normal(4 * 64), shape: [1, 4, 8, 8] } };

  it('reads F32 weights from the safetensors file (hard link) with the same results as embedded weights', async () => {
    const linked = await compile(convGraph(), { ...noCache, externalData: true });
    const embedded = await compile(convGraph(), { ...noCache, externalData: false });
    const a = (await linked.run(x))['y']!.data;
    const b = (await embedded.run(x))['y']!.data;
    expect(maxDiff(a, b)).toBe(0);
    await linked.release();
    await embedded.release();
  });

  it('stores the optimized model, then loads it with identical results', async () => {
    const cache = mkdtempSync(join(tmpdir(), 's2i-ort-cache-test-'));
    dirs.push(cache);
    const first = await compile(convGraph(), { cache });
    const second = await compile(convGraph(), { cache });
    expect(first.timings.cache).toBe('stored');
    expect(second.timings.cache).toBe('hit');
    expect(maxDiff((await first.run(x))['y']!.data, (await second.run(x))['y']!.data)).toBe(0);
    // A different graph is a different entry.
    const g = convGraph();
    g.output('y2', op.mul(g.outputs[0]!.value, 2));
    const third = await compile(g, { cache });
    expect(third.timings.cache).toBe('stored');
    for (const c of [first, second, third]) await c.release();
  });

  it('does not write out a model whose weights are larger than an entry may be (half the cache)', async () => {
    const parent = mkdtempSync(join(tmpdir(), 's2i-ort-cache-test-'));
    dirs.push(parent);
    const cache = join(parent, 'cache');
    const before = process.env['S2I_ORT_CACHE_MAX_GB'];
    process.env['S2I_ORT_CACHE_MAX_GB'] = String(64 / 1024 ** 3); // 64 bytes: smaller than the conv's weights
    try {
      const c = await compile(convGraph(), { cache });
      expect(c.timings.cache).toBe('off');
      expect(existsSync(cache)).toBe(false); // nothing written, not even the cache's folder
      await c.release();
    } finally {
      if (before === undefined) delete process.env['S2I_ORT_CACHE_MAX_GB'];
      else process.env['S2I_ORT_CACHE_MAX_GB'] = before;
    }
  });
});

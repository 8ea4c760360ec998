/**
 * s2i's ONNX encoder (src/graph/protobuf.ts) writes the bytes protobufjs's generated ONNX code (onnx-proto) writes
 * for the same model: every field kind and edge value by hand, then real graphs — the shipped latent model's text
 * encoder and UNet, with weights inside the model and as external data — and a gradient graph.
 */
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { gradients } from '../../src/graph/autodiff.js';
import { Graph } from '../../src/graph/graph.js';
import { modelProto } from '../../src/graph/onnx.js';
import * as op from '../../src/graph/ops.js';
import { encodeModel, type ModelProto } from '../../src/graph/protobuf.js';
import { readJsonObject } from '../../src/io/json-config.js';
import { WeightStore } from '../../src/io/weight-store.js';
import { clipTextModel } from '../../src/models/clip.js';
import { parseClipTextConfig, parseUNetConfig } from '../../src/models/config.js';
import { graphParams } from '../../src/models/params.js';
import { unet2dCondition } from '../../src/models/unet.js';

const { onnx } = onnxProto;
const LDM = 'models/shapes-ldm';

function reference(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(model as onnxProto.onnx.IModelProto)).finish();
}

function expectSameBytes(model: ModelProto): void {
  const ours = encodeModel(model);
  const theirs = reference(model);
  expect(ours.length).toBe(theirs.length);
  expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
}

describe('the ONNX encoder writes what onnx-proto writes', () => {
  it('every field s2i writes, with edge values', () => {
    const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 255);
    expectSameBytes({
      irVersion: 8,
      producerName: 'suppress-to-impress',
      opsetImport: [
        { domain: '', version: 17 },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: {
        name: 's2i',
        node: [
          {
            name: 'n/0',
            opType: 'Slice',
            domain: '',
            input: ['x', '', 'ß→∑ 😀'],
            output: ['y'],
            attribute: [
              { name: 'axes', type: 7, ints: [-1, 0, 1, 127, 128, 2 ** 31, -(2 ** 31), 2 ** 53 - 1, -(2 ** 53 - 1)] },
              { name: 'empty', type: 7, ints: [] },
              { name: 'alpha', type: 1, f: -0.1 },
              { name: 'zero', type: 1, f: 0 },
              { name: 'inf', type: 1, f: Infinity },
              { name: 'scales', type: 6, floats: [1.5, -2, 3.4028234663852886e38, 1e-45, NaN] },
              { name: 'i', type: 2, i: -9 },
              { name: 'z', type: 2, i: 0 },
              { name: 'huge', type: 2, i: 2 ** 63 },
              { name: 'mode', type: 3, s: new TextEncoder().encode('nearest') },
              { name: 'nothing', type: 3, s: new Uint8Array(0) },
            ],
          },
          { name: 'output/y', opType: 'Identity', input: ['y'], output: ['out'], attribute: [] },
        ],
        initializer: [
          { name: 'small', dims: [2, 3], dataType: 1, rawData: new Uint8Array(24).fill(9) },
          { name: 'scalar', dims: [], dataType: 7, rawData: new Uint8Array(8) },
          { name: 'big', dims: [25_000], dataType: 1, rawData: big },
          {
            name: 'w::float16',
            dims: [4, 4],
            dataType: 10,
            dataLocation: 1,
            externalData: [
              { key: 'location', value: 'w0.safetensors' },
              { key: 'offset', value: '1024' },
              { key: 'length', value: '32' },
            ],
          },
        ],
        input: [
          { name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }, { dimValue: 77 }] } } } },
          { name: 't', type: { tensorType: { elemType: 7, shape: { dim: [] } } } },
        ],
        output: [{ name: 'out', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 0 }] } } } }],
      },
    });
  });

  it("the shipped latent model's text encoder and UNet, weights inside the model and as external data", () => {
    const text = new Graph('initializer');
    const textConfig = parseClipTextConfig(readJsonObject(`${LDM}/text_encoder/config.json`), 'text_encoder');
    const textWeights = WeightStore.open(`${LDM}/text_encoder/model.safetensors`);
    const { lastHiddenState } = clipTextModel(
      textConfig,
      graphParams(text, textWeights),
      text.input('input_ids', [2, 77], 'int64'),
    );
    text.output('hidden', lastHiddenState);

    const unet = new Graph('initializer');
    const unetConfig = parseUNetConfig(readJsonObject(`${LDM}/unet/config.json`), 'unet');
    const unetWeights = WeightStore.open(`${LDM}/unet/diffusion_pytorch_model.safetensors`);
    const { noisePred } = unet2dCondition(unetConfig, graphParams(unet, unetWeights), {
      sample: unet.input('sample', [2, unetConfig.inChannels, 16, 16]),
      timestep: unet.input('timestep', [2]),
      encoderHiddenStates: unet.input('context', [2, 77, unetConfig.crossAttentionDim[0]!]),
    });
    unet.output('noise_pred', noisePred);

    for (const g of [text, unet]) {
      expectSameBytes(modelProto(g));
      let offset = 0;
      const external = { fileName: 'weights.bin', write: (b: Uint8Array) => void (offset += b.length) };
      expectSameBytes(modelProto(g, { externalData: external }));
      expectSameBytes(modelProto(g, { externalData: external, linkExternal: () => 'w0.safetensors' }));
    }
    textWeights.close();
    unetWeights.close();
  });

  it('a gradient graph, with the parameters as inputs (training)', () => {
    const g = new Graph('input');
    const x = g.input('x', [2, 3]);
    const w = g.param('w', { shape: [3, 4], read: () => new Float32Array(12).fill(0.5) });
    const y = op.reduceMean(op.mul(op.tanh(op.matmul(x, w)), 2), [0, 1], false);
    g.output('loss', y);
    g.output('grad/w', gradients(y, [w])[0]!);
    expectSameBytes(modelProto(g));
  });

  it('half-precision weights kept half: a FLOAT16 initializer and a Cast', () => {
    const g = new Graph('initializer');
    const half = { dtype: 'float16' as const, read: () => new Uint16Array(12).fill(0x3c00) };
    const w = g.param('w', { shape: [3, 4], read: () => new Float32Array(12).fill(1), half });
    g.output('y', op.matmul(g.input('x', [2, 3]), w));
    expectSameBytes(modelProto(g, { keepHalf: true }));
  });
});

/**
 * The validation layer for model folders and safetensors files (issue 13, items 1, 2, 4, 5 and 6): each case
 * here was accepted, or failed with an internal error, before it. Only public entry points are used
 * (SafetensorsFile.open, StableDiffusion.load, the CLI), so the file runs unchanged against older code.
 */
import {
  cpSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { resolveSchedulerConfig } from '../src/schedulers/config.js';
import { ensureBuilt, expectOneLineError, s2i } from './support/cli.js';
import { tinySdDir } from './support/oracle.js';

const tmp = mkdtempSync(join(tmpdir(), 's2i-io-validation-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

/** A raw safetensors file: 8-byte length (default: the header's), header text, data bytes. */
function raw(header: string, data: Uint8Array = new Uint8Array(0), lengthDelta = 0): string {
  const h = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length + lengthDelta));
  const p = join(tmp, `${counter++}.safetensors`);
  writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

/** A one-line UserError naming the file and every part. */
async function expectRefused(fn: () => unknown, ...parts: string[]): Promise<string> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a UserError').toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  for (const p of parts) expect(msg).toContain(p);
  return msg;
}

const F32x2 = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';

describe('safetensors: the data section must match the header, as the reference reads it', () => {
  it('accepts a well-formed file, __metadata__ null included', () => {
    SafetensorsFile.open(raw(F32x2, new Uint8Array(8))).close();
    SafetensorsFile.open(
      raw('{"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8)),
    ).close();
  });

  it('a header length one less than real (shifts every tensor) is refused', async () => {
    // The header's last byte (padding) is then read as data: one byte more than the tensors cover.
    const p = raw(`${F32x2} `, new Uint8Array(8), -1);
    await expectRefused(() => SafetensorsFile.open(p), p, '1 bytes after the last tensor');
  });

  it('trailing bytes, a hole between tensors, a truncated data section', async () => {
    const trailing = raw(F32x2, new Uint8Array(12));
    await expectRefused(() => SafetensorsFile.open(trailing), trailing, '4 bytes after the last tensor');
    const hole = raw(
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
      new Uint8Array(12),
    );
    await expectRefused(() => SafetensorsFile.open(hole), hole, 'data bytes 4..8 belong to no tensor', "'b'");
    const short = raw(F32x2, new Uint8Array(6));
    await expectRefused(() => SafetensorsFile.open(short), short, 'truncated');
  });

  it('overlapping tensors, and a zero-size tensor inside another one', async () => {
    const overlap = raw(
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
      new Uint8Array(8),
    );
    await expectRefused(() => SafetensorsFile.open(overlap), overlap, 'overlap');
    const inside = raw(
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}',
      new Uint8Array(8),
    );
    await expectRefused(() => SafetensorsFile.open(inside), inside, "'z'");
  });

  it('a byte-order mark before the header', async () => {
    const p = raw(`\uFEFF${F32x2}`, new Uint8Array(8));
    await expectRefused(() => SafetensorsFile.open(p), p, 'byte-order mark');
  });

  it('duplicate keys, at the top and inside an entry', async () => {
    const top = raw(
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
      new Uint8Array(8),
    );
    await expectRefused(() => SafetensorsFile.open(top), top, "'a' twice");
    const field = raw('{"a":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8));
    await expectRefused(() => SafetensorsFile.open(field), field, "'shape' twice");
  });

  it('shape dims that are not JSON integers (2.0, 2e0, 1.5, -1) and offsets that are not', async () => {
    for (const dim of ['2.0', '2e0', '1.5', '-1']) {
      const p = raw(`{"a":{"dtype":"F32","shape":[${dim}],"data_offsets":[0,8]}}`, new Uint8Array(8));
      await expectRefused(() => SafetensorsFile.open(p), p, "'a'", 'shape must be a list of non-negative integers');
    }
    const p = raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', new Uint8Array(8));
    await expectRefused(() => SafetensorsFile.open(p), p, 'data_offsets');
  });

  it('dtype x shape must equal the byte length', async () => {
    const p = raw('{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8));
    await expectRefused(() => SafetensorsFile.open(p), p, 'F16 [2] needs 4 bytes');
  });

  it('a deeply nested header gives one line, not a stack overflow', async () => {
    const deep = `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const p = raw(deep);
    await expectRefused(() => SafetensorsFile.open(p), p, 'nests deeper');
    const deepMeta = raw(`{"__metadata__":{"x":${'{"y":'.repeat(50_000)}1${'}'.repeat(50_000)}}}`);
    await expectRefused(() => SafetensorsFile.open(deepMeta), deepMeta);
  });

  it('through the CLI: one line, exit 1', () => {
    ensureBuilt();
    const p = raw(`${F32x2} `, new Uint8Array(8), -1);
    const dir = join(tmp, 'shifted-model');
    cpSync(tinySdDir, dir, { recursive: true });
    cpSync(p, join(dir, 'vae', 'diffusion_pytorch_model.safetensors'));
    expectOneLineError(s2i(['info', '--model', dir]), 'diffusion_pytorch_model.safetensors', 'after the last tensor');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// model folders

/** Hard-link (or copy) a file: a regular file either way, and no 19 MB copy when the filesystem allows. */
function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    cpSync(from, to);
  }
}

/** A copy of tiny-sd (files hard-linked to the original) with edited JSON files and the files in `replace`. */
function variant(
  edit: Record<string, (json: Record<string, unknown>) => void> = {},
  replace: Record<string, string> = {},
): string {
  const dir = join(tmp, `model-${counter++}`);
  const walk = (rel: string) => {
    mkdirSync(join(dir, rel), { recursive: true });
    for (const e of readdirSync(join(tinySdDir, rel), { withFileTypes: true })) {
      const r = join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (edit[r]) {
        const json = JSON.parse(readFileSync(join(tinySdDir, r), 'utf8')) as Record<string, unknown>;
        edit[r]!(json);
        writeFileSync(join(dir, r), JSON.stringify(json));
      } else if (replace[r]) cpSync(replace[r]!, join(dir, r));
      else linkOrCopy(join(tinySdDir, r), join(dir, r));
    }
  };
  walk('');
  return dir;
}

describe('weights that do not match the config are refused, naming the keys (item 1)', () => {
  it('a text encoder config with fewer layers than its weights', async () => {
    const dir = variant({ 'text_encoder/config.json': (c) => (c['num_hidden_layers'] = 2) });
    await expectRefused(() => StableDiffusion.load(dir), 'model.safetensors', 'text_model.encoder.layers.2.');
  });

  it('a UNet config without a mid block (mid_block_type null)', async () => {
    const dir = variant({ 'unet/config.json': (c) => (c['mid_block_type'] = null) });
    await expectRefused(() => StableDiffusion.load(dir), 'unet', "'mid_block.");
  });

  it('an extra tensor in a component file', async () => {
    // tiny-sd's VAE plus one tensor, written in the reference layout
    const src = SafetensorsFile.open(join(tinySdDir, 'vae', 'diffusion_pytorch_model.safetensors'));
    const { writeSafetensors } = await import('../src/io/safetensors.js');
    const tensors = Object.fromEntries(src.names().map((n) => [n, src.read(n)]));
    src.close();
    const p = join(tmp, 'vae-extra.safetensors');
    writeSafetensors(p, { ...tensors, 'decoder.extra.weight': { data: new Float32Array(3), shape: [3] } });
    const dir = variant({}, { 'vae/diffusion_pytorch_model.safetensors': p });
    await expectRefused(() => StableDiffusion.load(dir), "'decoder.extra.weight'", 'not used by the model');
  });
});

describe('symbolic links to weight files, as in the Hugging Face cache (item 4)', () => {
  it('snapshots/REV/... linking into blobs/ loads and runs', async () => {
    const cache = join(tmp, 'models--tiny--sd');
    const snapshot = join(cache, 'snapshots', '0123abcd');
    mkdirSync(join(cache, 'blobs'), { recursive: true });
    let blob = 0;
    const walk = (rel: string) => {
      mkdirSync(join(snapshot, rel), { recursive: true });
      for (const e of readdirSync(join(tinySdDir, rel), { withFileTypes: true })) {
        const r = join(rel, e.name);
        if (e.isDirectory()) {
          walk(r);
          continue;
        }
        const b = join(cache, 'blobs', `blob${blob++}`);
        cpSync(join(tinySdDir, r), b);
        // relative, as huggingface_hub makes them
        symlinkSync(relative(join(snapshot, rel), b), join(snapshot, r));
      }
    };
    walk('');
    expect(statSync(join(snapshot, 'unet', 'diffusion_pytorch_model.safetensors')).isFile()).toBe(true);
    const model = await StableDiffusion.load(snapshot);
    try {
      const e = await model.encodePrompt('a cat and a frog');
      expect(e.shape).toEqual([1, 77, 32]);
    } finally {
      await model.release();
    }
  });
});

describe('configs a model cannot be built from give one line naming the file and key (items 5 and 6)', () => {
  const cases: [string, string, (c: Record<string, unknown>) => void, string][] = [
    [
      'norm_num_groups not dividing the channels',
      'unet/config.json',
      (c) => (c['norm_num_groups'] = 24),
      "'norm_num_groups'",
    ],
    ['the VAE too', 'vae/config.json', (c) => (c['norm_num_groups'] = 24), "'norm_num_groups'"],
    ['an unknown act_fn', 'unet/config.json', (c) => (c['act_fn'] = 'mish2'), "'act_fn'"],
    ['a negative layer_norm_eps', 'text_encoder/config.json', (c) => (c['layer_norm_eps'] = -1e-5), "'layer_norm_eps'"],
    ['an absurd layer_norm_eps', 'text_encoder/config.json', (c) => (c['layer_norm_eps'] = 1e30), "'layer_norm_eps'"],
    ['an absurd hidden_size', 'text_encoder/config.json', (c) => (c['hidden_size'] = 1e9), "'hidden_size'"],
    [
      'an absurd max_position_embeddings',
      'text_encoder/config.json',
      (c) => (c['max_position_embeddings'] = 2 ** 31),
      "'max_position_embeddings'",
    ],
    ['sample_size 4096', 'unet/config.json', (c) => (c['sample_size'] = 4096), "'sample_size'"],
    ['scaling_factor 0', 'vae/config.json', (c) => (c['scaling_factor'] = 0), "'scaling_factor'"],
  ];
  for (const [what, file, edit, key] of cases) {
    it(what, async () => {
      const dir = variant({ [file]: edit });
      await expectRefused(() => StableDiffusion.load(dir), join(dir, file), key);
    });
  }

  it('a token id outside the text encoder vocabulary', async () => {
    const dir = variant({ 'tokenizer/vocab.json': (v) => (v['zzzz</w>'] = 60000) });
    await expectRefused(() => StableDiffusion.load(dir), 'tokenizer', '60000', 'vocab_size is 49408');
  });

  it('num_train_timesteps 1e9', () => {
    expect(() => resolveSchedulerConfig('pndm', { num_train_timesteps: 1e9 }, {}, 'scheduler_config.json')).toThrow(
      UserError,
    );
    expect(() => resolveSchedulerConfig('pndm', { num_train_timesteps: 1e9 })).toThrow(/num_train_timesteps/);
  });

  it('through the CLI: one line and exit 1, not exit 70', () => {
    ensureBuilt();
    const dir = variant({ 'unet/config.json': (c) => (c['norm_num_groups'] = 24) });
    expectOneLineError(s2i(['generate', 'a cat', '--model', dir, '--steps', '1']), 'norm_num_groups');
    const tokens = variant({ 'tokenizer/vocab.json': (v) => (v['zzzz</w>'] = 60000) });
    expectOneLineError(s2i(['generate', 'a cat', '--model', tokens, '--steps', '1']), 'vocab_size');
    const sched = variant({ 'scheduler/scheduler_config.json': (c) => (c['num_train_timesteps'] = 1e9) });
    expectOneLineError(s2i(['generate', 'a cat', '--model', sched, '--steps', '1']), 'num_train_timesteps');
  });
});

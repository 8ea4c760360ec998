/**
 * Writing single-file checkpoints for tests: diffusers keys → the original LDM layout (the inverse of
 * src/io/single-file/convert.ts, written independently from diffusers' convert_diffusers_to_original_stable_diffusion.py
 * rules), and a raw safetensors writer for any dtype whose data may be left out (a sparse file of zeros: a
 * full-size SD-1.5 header costs no disk).
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export type RawDType = 'F32' | 'F16' | 'BF16' | 'I64';
const SIZE: Record<RawDType, number> = { F32: 4, F16: 2, BF16: 2, I64: 8 };

export interface RawTensor {
  name: string;
  dtype: RawDType;
  shape: readonly number[];
  /** Little-endian bytes; absent: zeros (left as a hole in the file). */
  bytes?: Uint8Array;
}

/** Write tensors back to back in the given order; returns the file's size. */
export function writeRawSafetensors(path: string, tensors: readonly RawTensor[]): number {
  let offset = 0;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const placed = tensors.map((t) => {
    const n = t.shape.reduce((a, b) => a * b, 1) * SIZE[t.dtype];
    if (t.bytes && t.bytes.length !== n) throw new Error(`${t.name}: ${t.bytes.length} bytes for ${n}`);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + n] };
    offset += n;
    return { t, at: offset - n };
  });
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const h = Buffer.from(json);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, len, 0, 8, 0);
    writeSync(fd, h, 0, h.length, 8);
    const start = 8 + h.length;
    for (const { t, at } of placed) if (t.bytes) writeSync(fd, t.bytes, 0, t.bytes.length, start + at);
    ftruncateSync(fd, start + offset);
    return start + offset;
  } finally {
    closeSync(fd);
  }
}

/** float32 → IEEE half bits (round to nearest even), for F16 test files. */
export function toHalf(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    e = h; // may carry into the exponent, which is the right rounding
    out[i] = sign | e;
  }
  return out;
}

const RESNET: readonly [string, string][] = [
  ['norm1.', 'in_layers.0.'],
  ['conv1.', 'in_layers.2.'],
  ['norm2.', 'out_layers.0.'],
  ['conv2.', 'out_layers.3.'],
  ['time_emb_proj.', 'emb_layers.1.'],
  ['conv_shortcut.', 'skip_connection.'],
];
const resnet = (rest: string) => {
  for (const [a, b] of RESNET) if (rest.startsWith(a)) return b + rest.slice(a.length);
  throw new Error(`resnet key ${rest}`);
};

/**
 * A diffusers UNet key → its LDM key (`model.diffusion_model.` + ...). `layers` per block; `attentionUp`: which
 * up blocks have attention (the upsampler's index in its output block depends on it).
 */
export function unetToLdm(key: string, layers: number, attentionUp: readonly boolean[]): string {
  const p = 'model.diffusion_model.';
  let m: RegExpExecArray | null;
  if ((m = /^time_embedding\.linear_([12])\.(.+)$/.exec(key))) return `${p}time_embed.${m[1] === '1' ? 0 : 2}.${m[2]}`;
  if ((m = /^add_embedding\.linear_([12])\.(.+)$/.exec(key))) return `${p}label_emb.0.${m[1] === '1' ? 0 : 2}.${m[2]}`;
  if ((m = /^conv_in\.(.+)$/.exec(key))) return `${p}input_blocks.0.0.${m[1]}`;
  if ((m = /^conv_norm_out\.(.+)$/.exec(key))) return `${p}out.0.${m[1]}`;
  if ((m = /^conv_out\.(.+)$/.exec(key))) return `${p}out.2.${m[1]}`;
  if ((m = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(key)))
    return `${p}input_blocks.${1 + Number(m[1]) * (layers + 1) + Number(m[2])}.0.${resnet(m[3]!)}`;
  if ((m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(key)))
    return `${p}input_blocks.${1 + Number(m[1]) * (layers + 1) + Number(m[2])}.1.${m[3]}`;
  if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(key)))
    return `${p}input_blocks.${(Number(m[1]) + 1) * (layers + 1)}.0.op.${m[2]}`;
  if ((m = /^mid_block\.resnets\.([01])\.(.+)$/.exec(key)))
    return `${p}middle_block.${m[1] === '0' ? 0 : 2}.${resnet(m[2]!)}`;
  if ((m = /^mid_block\.attentions\.0\.(.+)$/.exec(key))) return `${p}middle_block.1.${m[1]}`;
  if ((m = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(key)))
    return `${p}output_blocks.${Number(m[1]) * (layers + 1) + Number(m[2])}.0.${resnet(m[3]!)}`;
  if ((m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(key)))
    return `${p}output_blocks.${Number(m[1]) * (layers + 1) + Number(m[2])}.1.${m[3]}`;
  if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(key))) {
    const b = Number(m[1]);
    return `${p}output_blocks.${b * (layers + 1) + layers}.${attentionUp[b] ? 2 : 1}.conv.${m[2]}`;
  }
  throw new Error(`unet key ${key}`);
}

/** A diffusers VAE key → LDM (`first_stage_model.` + ...), attention projections in LDM's names. */
export function vaeToLdm(key: string, levels: number): string {
  const p = 'first_stage_model.';
  const res = (r: string) => r.replace(/^conv_shortcut\./, 'nin_shortcut.');
  let m: RegExpExecArray | null;
  if ((m = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(key))) return `${p}${m[1]}.norm_out.${m[2]}`;
  if ((m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(key)))
    return `${p}encoder.down.${m[1]}.block.${m[2]}.${res(m[3]!)}`;
  if ((m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(key)))
    return `${p}encoder.down.${m[1]}.downsample.conv.${m[2]}`;
  if ((m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(key)))
    return `${p}decoder.up.${levels - 1 - Number(m[1])}.block.${m[2]}.${res(m[3]!)}`;
  if ((m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(key)))
    return `${p}decoder.up.${levels - 1 - Number(m[1])}.upsample.conv.${m[2]}`;
  if ((m = /^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$/.exec(key)))
    return `${p}${m[1]}.mid.block_${Number(m[2]) + 1}.${res(m[3]!)}`;
  if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)$/.exec(key))) {
    const ldm = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' }[m[2]!];
    return `${p}${m[1]}.mid.attn_1.${ldm}.${m[3]}`;
  }
  return p + key; // conv_in, conv_out, quant_conv, post_quant_conv keep their names
}

/** OpenCLIP's name for a diffusers CLIP text key, or null for q/k/v (stacked into in_proj by the caller). */
export function clipToOpenClip(key: string): string | null {
  const p = 'cond_stage_model.model.';
  const fixed: Record<string, string> = {
    'text_model.embeddings.position_embedding.weight': 'positional_embedding',
    'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
    'text_model.final_layer_norm.weight': 'ln_final.weight',
    'text_model.final_layer_norm.bias': 'ln_final.bias',
  };
  if (fixed[key]) return p + fixed[key];
  const m = /^text_model\.encoder\.layers\.(\d+)\.(.+)$/.exec(key);
  if (!m) throw new Error(`clip key ${key}`);
  const rest = m[2]!;
  if (/^self_attn\.[qkv]_proj\./.test(rest)) return null;
  const renamed = rest
    .replace(/^layer_norm1\./, 'ln_1.')
    .replace(/^layer_norm2\./, 'ln_2.')
    .replace(/^mlp\.fc1\./, 'mlp.c_fc.')
    .replace(/^mlp\.fc2\./, 'mlp.c_proj.')
    .replace(/^self_attn\.out_proj\./, 'attn.out_proj.');
  return `${p}transformer.resblocks.${m[1]}.${renamed}`;
}

/** float32 → bfloat16 bits (round to nearest even; NaN stays NaN). */
export function toBfloat16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

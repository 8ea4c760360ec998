/**
 * `npm run bench:half`: what half-precision weights cost. SD-1.5's UNet with the benchmark's random weights
 * (weights.ts), stored F32 and F16 (the same values rounded), one guided step (batch 2, 64x64 latents, 77
 * tokens) in three ways, each in its own child process so its peak RSS is its own:
 *
 *   f32          the F32 file (ONNX Runtime reads the weights straight from it)
 *   f16-keep     the F16 file, weights kept half: FLOAT16 initializers read from the file, a Cast in the graph
 *   f16-float32  the F16 file, converted to float32 in memory before ONNX Runtime sees it
 *
 * Reported per mode: first step (graph build + serialisation + session creation + one run), a second step, and
 * peak RSS. The optimized-model cache is off, so every first step pays the full session creation.
 *
 *   npm run bench:half -- [--cache DIR] [--threads N] [--latent N] [--width N] [--modes f32,f16-keep,f16-float32]
 */
import '../../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { BenchUNet, guidedStep } from './cases.js';
import { defaultBenchCache, ensureRandomUNetFolder, SD15_UNET_CONFIG_JSON } from './weights.js';

const MODES = ['f32', 'f16-keep', 'f16-float32'] as const;
type Mode = (typeof MODES)[number];

/** float32 → IEEE half bits, round to nearest even (the weights are small and finite: no NaN or overflow here). */
function toHalf(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    const sign = (x >>> 16) & 0x8000;
    const e = ((x >>> 23) & 0xff) - 127 + 15;
    const m = x & 0x7fffff;
    if (e >= 0x1f) out[i] = sign | 0x7c00;
    else if (e <= 0) {
      if (e < -10) out[i] = sign;
      else {
        const full = m | 0x800000;
        const shift = 14 - e;
        let h = full >>> shift;
        const rem = full & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && h & 1)) h++;
        out[i] = sign | h;
      }
    } else {
      let h = (e << 10) | (m >>> 13);
      const rem = m & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
      out[i] = sign | h;
    }
  }
  return out;
}

/** The F32 UNet folder's weights as F16, written once beside it (streamed tensor by tensor). */
function ensureHalfFolder(f32Dir: string, dir: string): string {
  const file = join(dir, 'diffusion_pytorch_model.safetensors');
  if (existsSync(file)) return dir;
  mkdirSync(dir, { recursive: true });
  const src = SafetensorsFile.open(join(f32Dir, 'diffusion_pytorch_model.safetensors'));
  const names = src.names().sort();
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const n of names) {
    const t = src.info(n);
    const bytes = t.byteLength / 2;
    header[n] = { dtype: 'F16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json, 'utf8'));
    for (const n of names) {
      const h = toHalf(src.readFloat32(n));
      writeSync(fd, new Uint8Array(h.buffer, h.byteOffset, h.byteLength));
    }
  } finally {
    closeSync(fd);
    src.close();
  }
  renameSync(tmp, file);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(SD15_UNET_CONFIG_JSON, null, 2) + '\n');
  return dir;
}

interface ModeResult {
  mode: Mode;
  firstStepMs: number;
  buildMs: number;
  serializeMs: number;
  sessionMs: number;
  secondStepMs: number;
  peakRssMb: number;
}

async function child(mode: Mode, dir: string, latent: number, threads: number | undefined): Promise<ModeResult> {
  const t0 = performance.now();
  const unet = BenchUNet.open(dir, latent, {
    cache: false,
    halfWeights: mode === 'f16-float32' ? 'float32' : 'keep',
    ...(threads !== undefined ? { threads } : {}),
  });
  const step = await guidedStep(unet);
  await step.run();
  const firstStepMs = performance.now() - t0;
  const t1 = performance.now();
  await step.run();
  const secondStepMs = performance.now() - t1;
  const timing = unet.timings[0]!;
  await unet.release();
  return {
    mode,
    firstStepMs,
    buildMs: timing.buildMs,
    serializeMs: timing.serializeMs,
    sessionMs: timing.sessionMs,
    secondStepMs,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

const { values } = parseArgs({
  options: {
    cache: { type: 'string' },
    threads: { type: 'string' },
    latent: { type: 'string', default: '64' },
    modes: { type: 'string', default: MODES.join(',') },
    child: { type: 'string' },
    dir: { type: 'string' },
  },
});
const latent = Number(values.latent);
const threads = values.threads !== undefined ? Number(values.threads) : undefined;

if (values.child) {
  const r = await child(values.child as Mode, values.dir!, latent, threads);
  process.stdout.write(`${JSON.stringify(r)}\n`);
} else {
  const cache = values.cache ?? defaultBenchCache();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const f32Dir = join(cache, 'sd15-random-unet');
  log(`SD-1.5 random F32 weights: ${f32Dir} (written once, 3.4 GB)`);
  ensureRandomUNetFolder(f32Dir, SD15_UNET_CONFIG_JSON, 0, log);
  const f16Dir = join(cache, 'sd15-random-unet-f16');
  log(`the same rounded to F16: ${f16Dir} (written once, 1.7 GB)`);
  ensureHalfFolder(f32Dir, f16Dir);
  const modes = values.modes!.split(',') as Mode[];
  const results: ModeResult[] = [];
  for (const mode of modes) {
    if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode} (${MODES.join(', ')})`);
    log(`${mode}: first and second step in a fresh process`);
    const args = [
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--child',
      mode,
      '--dir',
      mode === 'f32' ? f32Dir : f16Dir,
      '--latent',
      String(latent),
      ...(threads !== undefined ? ['--threads', String(threads)] : []),
    ];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`${mode}: child exited with ${r.status}`);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as ModeResult;
    log(`  ${JSON.stringify(res)}`);
    results.push(res);
  }
  const f = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  console.log(`| weights | first step | of which session creation | second step | peak RSS |`);
  console.log(`|---|---:|---:|---:|---:|`);
  for (const r of results) {
    console.log(
      `| ${r.mode} | ${f(r.firstStepMs)} | ${f(r.sessionMs)} | ${f(r.secondStepMs)} | ${(r.peakRssMb / 1024).toFixed(2)} GB |`,
    );
  }
}

/**
 * Issue 13's reliability items, each through the built CLI as a user meets it (and the modules under it):
 * NaN/Inf in outputs (3), the memory budget (5), write errors (6), special files as inputs (7) and outputs (8),
 * all-or-nothing outputs (10), truncated PNGs (9), resumed training (11), interrupts (12).
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { appendLine } from '../src/bench/results.js';
import { UserError } from '../src/errors.js';
import { decodePng, encodePng, readPngHeader } from '../src/image/png.js';
import { OutputFiles } from '../src/io/outputs.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { trimLog } from '../src/shapes/train.js';
import { checkMemory, formatBytes, parseByteSize, resetMemoryBudget, setMemoryBudget } from '../src/util/memory.js';
import { ensureBuilt } from './support/cli.js';
import { repoRoot, tinySdDir } from './support/oracle.js';
import { expectOneLineError, runCli, startCli, waitFor } from './support/spawn.js';

const shapesModel = join(repoRoot, 'models', 'shapes');
const tmp = mkdtempSync(join(tmpdir(), 's2i-reliability-'));
let n = 0;
/** A fresh empty folder for one test. */
const fresh = () => {
  const d = join(tmp, `t${++n}`);
  mkdirSync(d);
  return d;
};

beforeAll(ensureBuilt, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A writable copy of a model folder. */
function copyModel(src: string): string {
  const dst = join(fresh(), 'model');
  cpSync(src, dst, { recursive: true });
  const chmodAll = (d: string) => {
    chmodSync(d, 0o755);
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) chmodAll(join(d, e.name));
      else chmodSync(join(d, e.name), 0o644);
    }
  };
  chmodAll(dst);
  return dst;
}

/** Overwrites the float32 at `index` of tensor `key` in a safetensors file. */
function poke(file: string, key: string, value: number, index = 0): void {
  const st = SafetensorsFile.open(file);
  const offset = st.info(key).byteOffset + 4 * index;
  st.close();
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  writeSync(fd, b, 0, 4, offset);
  closeSync(fd);
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}
/** A PNG from its IHDR fields and raw (filtered) image data. */
function pngOf(width: number, height: number, bitDepth: number, colorType: number, raw: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colorType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const mkfifo = (path: string) => execFileSync('mkfifo', [path]);
const isRoot = process.getuid?.() === 0;

// ---------------------------------------------------------------------------------------------- item 3: NaN/Inf

describe('NaN or Inf in what becomes an output is an error naming its cause (item 3)', () => {
  it('scaling_factor 0: one line naming it, no PNG (was a black PNG, exit 0)', () => {
    const model = copyModel(tinySdDir);
    const cfgPath = join(model, 'vae', 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, scaling_factor: 0 }));
    const dir = fresh();
    const r = runCli(['generate', 'a cat', '--model', model, '--steps', '2', '--seed', '1', '--out', 'x.png'], {
      cwd: dir,
    });
    // Refused where the config is read (io validation), or at the latest when the decoded image holds NaN.
    expectOneLineError(r, /vae\/config\.json.*scaling_factor.* 0\b/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('NaN in a VAE decoder weight: one line naming the weight and its file, no PNG', () => {
    const model = copyModel(tinySdDir);
    const file = join(model, 'vae', 'diffusion_pytorch_model.safetensors');
    poke(file, 'decoder.conv_out.bias', NaN);
    const dir = fresh();
    const r = runCli(['generate', 'a cat', '--model', model, '--steps', '2', '--seed', '1', '--out', 'x.png'], {
      cwd: dir,
    });
    expectOneLineError(r, /VAE decoder's output holds NaN/, /'decoder\.conv_out\.bias'/, /diffusion_pytorch_model/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('NaN in a UNet weight is named instead of blaming --guidance', () => {
    const model = copyModel(shapesModel);
    poke(join(model, 'unet', 'diffusion_pytorch_model.safetensors'), 'conv_out.bias', NaN);
    const dir = fresh();
    const r = runCli(['generate', 'a red circle', '--model', model, '--steps', '2', '--out', 'x.png'], { cwd: dir });
    expectOneLineError(r, /UNet's output holds NaN or Inf at step 0/, /'conv_out\.bias'/);
    expect(r.stderr).not.toMatch(/--guidance/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('Inf in a text encoder weight is named', () => {
    const model = copyModel(shapesModel);
    poke(join(model, 'text_encoder', 'model.safetensors'), 'text_model.final_layer_norm.weight', Infinity);
    const r = runCli(['generate', 'a red circle', '--model', model, '--steps', '2', '--out', 'x.png'], {
      cwd: fresh(),
    });
    expectOneLineError(r, /text encoder's output holds NaN or Inf/, /final_layer_norm\.weight' .* holds Infinity/);
  });
});

// ------------------------------------------------------------------------------------------ item 5: memory budget

describe('the memory budget (item 5)', () => {
  afterEach(resetMemoryBudget);

  it('parses sizes and refuses estimates over the budget with the way to raise it', () => {
    expect(parseByteSize('16G')).toBe(16 * 1024 ** 3);
    expect(parseByteSize('800MiB')).toBe(800 * 1024 ** 2);
    expect(parseByteSize('1.5T')).toBe(1.5 * 1024 ** 4);
    expect(parseByteSize('123')).toBe(123);
    expect(parseByteSize('off')).toBe(Infinity);
    for (const bad of ['', '-1G', '1X', 'lots', '0']) expect(parseByteSize(bad)).toBeNull();
    expect(formatBytes(1536 * 1024 ** 2)).toBe('1.5 GB');
    setMemoryBudget('1G');
    expect(() => checkMemory(2 * 1024 ** 3, 'a thing')).toThrow(
      /^a thing needs an estimated 2\.0 GB, more than the memory budget of 1\.0 GB \(--max-memory 1G\); raise it with --max-memory SIZE or S2I_MAX_MEMORY=SIZE/,
    );
    expect(() => checkMemory(1024 ** 3, 'a thing')).not.toThrow();
    expect(() => checkMemory(NaN, 'a broken estimate')).toThrow(UserError);
    setMemoryBudget('off');
    expect(() => checkMemory(1e15, 'a thing')).not.toThrow();
    expect(() => setMemoryBudget('big')).toThrow(/--max-memory must be a size/);
  });

  it('--height 4096 --width 4096 is refused before anything is allocated', () => {
    const dir = fresh();
    const r = runCli(['generate', 'a red circle', '--height', '4096', '--width', '4096', '--out', 'x.png'], {
      cwd: dir,
      timeout: 60_000,
    });
    expectOneLineError(r, /a 4096x4096 image \(UNet self-attention at 1024x1024\) needs an estimated [\d.]+ TB/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a [1,3,2048,2048] --latents tensor is refused; the budget is read from S2I_MAX_MEMORY and --max-memory', () => {
    const dir = fresh();
    const big = join(dir, 'big.safetensors');
    writeSafetensors(big, { latents: { data: new Float32Array(3 * 2048 * 2048), shape: [1, 3, 2048, 2048] } });
    // The pixel model's latents are [1, 3, h, w] (the default model's are [1, 4, h/4, w/4]).
    const r = runCli(['generate', 'a red circle', '--model', shapesModel, '--latents', big, '--out', 'x.png'], {
      cwd: dir,
      timeout: 60_000,
    });
    expectOneLineError(r, /a 2048x2048 image .* needs an estimated/, /physical memory|memory limit/);
    rmSync(big);
    // A run that fits by default, refused under a small budget given either way.
    const args = ['generate', 'a red circle', '--steps', '1', '--height', '64', '--width', '64', '--out', 'x.png'];
    expectOneLineError(runCli(args, { cwd: dir, env: { S2I_MAX_MEMORY: '8M' } }), /\(S2I_MAX_MEMORY=8M\)/);
    expectOneLineError(runCli([...args, '--max-memory', '8M'], { cwd: dir }), /\(--max-memory 8M\)/);
    expect(readdirSync(dir)).toEqual([]);
    expect(runCli([...args, '--max-memory', '2G'], { cwd: dir }).code).toBe(0);
  });

  it('a 30000x30000 PNG given to shapes score is refused from its header, before decoding', () => {
    const dir = fresh();
    // A valid 1-bit greyscale PNG: 112 MB of image data, 3.6 GB once pngjs expands it to RGBA.
    const side = 30000;
    const path = join(dir, 'huge.png');
    writeFileSync(path, pngOf(side, side, 1, 0, Buffer.alloc(side * (1 + side / 8))));
    expect(readPngHeader(readFileSync(path))).toMatchObject({ width: side, height: side });
    const r = runCli(['shapes', 'score', path, '--prompt', 'a red circle'], { timeout: 60_000 });
    expectOneLineError(r, /image .*huge\.png \(30000x30000\) needs an estimated \d+ GB/);
  });
});

// -------------------------------------------------------------------------------------------- item 6: write errors

describe('write errors are one line (item 6)', () => {
  it('appendLine: ENOSPC (/dev/full) is a UserError naming the file', () => {
    if (!existsSync('/dev/full')) return;
    const fd = openSync('/dev/full', 'w');
    try {
      expect(() => appendLine(fd, 'out/results.jsonl', Buffer.from('{"a":1}\n'))).toThrow(
        /^cannot append to out\/results\.jsonl: no space left on the device \(ENOSPC\); the rows before it are kept/,
      );
    } finally {
      closeSync(fd);
    }
  });

  it('bench: a results.jsonl that cannot grow is one line, cut back to whole rows, the lock released', () => {
    const dir = fresh();
    const out = join(dir, 'bench');
    mkdirSync(out);
    // 304 bytes short of the 4 MiB file-size limit below: (ignored) 100-byte lines; the next row is longer.
    writeFileSync(join(out, 'results.jsonl'), `{"junk":"${'x'.repeat(88)}"}\n`.repeat(41940));
    const before = statSync(join(out, 'results.jsonl')).size;
    const r = runCli(
      [
        'bench',
        '--suite',
        'shapes-1',
        '--limit',
        '1',
        '--seeds',
        '0',
        '--methods',
        'none',
        '--steps',
        '2',
        '--out',
        out,
      ],
      { cwd: dir, fileSizeBlocks: 8192, env: { S2I_ORT_CACHE: '0' } },
    );
    // Progress lines first (stderr is not a terminal), then the error as the one last line.
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).not.toMatch(/internal error|\bat .*:\d+:\d+/);
    expect(r.stderr.trimEnd().split('\n').at(-1)).toMatch(
      /^s2i: error: cannot append to .*results\.jsonl: the file is too large \(EFBIG\); the rows before it are kept/,
    );
    expect(statSync(join(out, 'results.jsonl')).size).toBe(before);
    expect(existsSync(join(out, '.bench.lock'))).toBe(false);
  });
});

// ------------------------------------------------------------------------------------ item 7: special files as input

describe('a FIFO given as an input never blocks (item 7)', () => {
  it('--latents, a PNG to score and a --suite prompt file: one line each, at once', () => {
    const dir = fresh();
    const fifo = join(dir, 'pipe');
    mkfifo(fifo);
    const t0 = Date.now();
    expectOneLineError(
      runCli(['generate', 'a red circle', '--latents', fifo], { cwd: dir, timeout: 30_000 }),
      /--latents .*pipe is a FIFO \(named pipe\), not a regular file/,
    );
    expectOneLineError(
      runCli(['shapes', 'score', fifo, '--prompt', 'a red circle'], { timeout: 30_000 }),
      /image .*pipe is a FIFO \(named pipe\), not a regular file/,
    );
    expectOneLineError(
      runCli(['bench', '--suite', fifo, '--out', join(dir, 'b')], { cwd: dir, timeout: 30_000 }),
      /pipe is a FIFO \(named pipe\), not a regular file/,
    );
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(readdirSync(dir)).toEqual(['pipe']);
  });
});

// -------------------------------------------------------------------------------- items 8 + 10: outputs, all or none

describe('outputs are regular files or new paths, and all or nothing (items 8 and 10)', () => {
  it('--out or --attention-maps naming a FIFO or a device is refused, the node untouched', () => {
    const dir = fresh();
    mkfifo(join(dir, 'pipe.png'));
    const nodes = ['pipe.png'];
    if (isRoot) {
      execFileSync('mknod', [join(dir, 'null.png'), 'c', '1', '3']); // a private /dev/null
      nodes.push('null.png');
    }
    for (const node of nodes) {
      expectOneLineError(
        runCli(['generate', 'a red circle', '--steps', '1', '--out', node], { cwd: dir }),
        /--out .* is a (FIFO \(named pipe\)|character device); an output must be a regular file or a new path/,
      );
      expectOneLineError(
        runCli(['generate', 'a red circle', '--steps', '1', '--out', 'ok.png', '--attention-maps', node], {
          cwd: dir,
        }),
        /--attention-maps .* is a (FIFO|character device)/,
      );
    }
    expect(statSync(join(dir, 'pipe.png')).isFIFO()).toBe(true);
    if (isRoot) expect(statSync(join(dir, 'null.png')).isCharacterDevice()).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(nodes.sort());
  });

  it('--out does not remain when --save-latents fails while writing', () => {
    if (!existsSync('/proc/self')) return; // a folder where no file can be made (Linux)
    const dir = fresh();
    const r = runCli(
      ['generate', 'a red circle', '--steps', '1', '--out', 'x.png', '--save-latents', '/proc/latents.safetensors'],
      { cwd: dir },
    );
    expectOneLineError(r, /--save-latents \/proc\/latents\.safetensors: cannot write/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('shapes sample writes no file when one of its outputs is refused', () => {
    const dir = fresh();
    mkdirSync(join(dir, 's'));
    mkfifo(join(dir, 's', '00002.png'));
    expectOneLineError(
      runCli(['shapes', 'sample', '--count', '4', '--out', 's'], { cwd: dir }),
      /--out .*00002\.png is a FIFO/,
    );
    expect(readdirSync(join(dir, 's'))).toEqual(['00002.png']);
    expect(runCli(['shapes', 'sample', '--count', '2', '--out', 'new/deeper'], { cwd: dir }).code).toBe(0);
    expect(readdirSync(join(dir, 'new', 'deeper')).sort()).toEqual(['00000.png', '00001.png', 'captions.jsonl']);
  });

  it('export-model never replaces a folder of other files or a special file', () => {
    const dir = fresh();
    mkdirSync(join(dir, 'mine'));
    writeFileSync(join(dir, 'mine', 'thesis.tex'), 'precious');
    mkfifo(join(dir, 'pipe'));
    for (const out of ['mine', 'pipe']) {
      const r = runCli(['export-model', '--run', 'no-run', '--out', out], { cwd: dir });
      expectOneLineError(r, /--out .*(holds other files|is not a directory)/);
    }
    expect(readFileSync(join(dir, 'mine', 'thesis.tex'), 'utf8')).toBe('precious');
    expect(statSync(join(dir, 'pipe')).isFIFO()).toBe(true);
  });

  it('bench: a --report naming a FIFO is refused before the model is loaded', () => {
    const dir = fresh();
    mkfifo(join(dir, 'r.html'));
    expectOneLineError(
      runCli(['bench', '--suite', 'shapes-1', '--out', 'b', '--report', 'r.html'], { cwd: dir }),
      /--report r\.html is a FIFO/,
    );
    expect(readdirSync(dir)).toEqual(['r.html']);
  });

  it('OutputFiles: commit puts every file in place, abort removes every trace, symlinks keep pointing', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'target.txt'), 'old');
    symlinkSync('target.txt', join(dir, 'link.txt'));
    const ok = new OutputFiles();
    ok.folder(join(dir, 'made', 'here'), '--out');
    const a = ok.file(join(dir, 'made', 'here', 'a.txt'), '--out');
    const l = ok.file(join(dir, 'link.txt'), '--link');
    expect(l).toBe(join(dir, 'target.txt'));
    expect(() => ok.file(join(dir, 'target.txt'), '--again')).toThrow(/--link and --again name the same file/);
    await ok.run((o) => {
      o.write(a, 'A');
      o.write(l, 'new');
      expect(existsSync(a)).toBe(false); // nothing in place before the commit
    });
    expect(readFileSync(a, 'utf8')).toBe('A');
    expect(readFileSync(join(dir, 'link.txt'), 'utf8')).toBe('new');

    const bad = new OutputFiles();
    bad.folder(join(dir, 'never'), '--out');
    const b = bad.file(join(dir, 'never', 'b.txt'), '--out');
    const c = bad.file(join(dir, 'c.txt'), '--c');
    await expect(
      bad.run((o) => {
        o.write(b, 'B');
        o.write(c, 'C');
        throw new UserError('later step failed');
      }),
    ).rejects.toThrow('later step failed');
    expect(readdirSync(dir).sort()).toEqual(['link.txt', 'made', 'target.txt']);
  });
});

// ---------------------------------------------------------------------------------------- item 9: truncated PNG

describe('a truncated PNG is an error, not scored (item 9)', () => {
  const side = 16;
  const rgb = new Uint8Array(side * side * 3).fill(255);
  const good = encodePng(rgb, side, side);
  const raw = Buffer.alloc(side * (1 + side * 3), 255);
  for (let y = 0; y < side; y++) raw[y * (1 + side * 3)] = 0; // filter byte: none

  it('image data shorter than the image (a complete zlib stream of half the rows)', () => {
    const short = pngOf(side, side, 8, 2, raw.subarray(0, raw.length / 2));
    expect(() => decodePng(short)).toThrow(/the image data has 392 bytes, 16x16 needs 784: truncated/);
    const dir = fresh();
    writeFileSync(join(dir, 'short.png'), short);
    expectOneLineError(
      runCli(['shapes', 'score', join(dir, 'short.png'), '--prompt', 'a red circle']),
      /short\.png is not a valid PNG file .*truncated/,
    );
  });

  it('a file cut short, a cut zlib stream, a wrong CRC, trailing image data', () => {
    expect(() => decodePng(good.subarray(0, good.length - 12))).toThrow(/no IEND chunk: the file is truncated/);
    expect(() => decodePng(good.subarray(0, 40))).toThrow(/truncated chunk at byte 33/);
    expect(() => decodePng(good.subarray(0, 60))).toThrow(/chunk IDAT runs past the end of the file/);
    const full = deflateSync(raw);
    const cut = Buffer.concat([
      good.subarray(0, 33),
      chunk('IDAT', full.subarray(0, full.length - 6)),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    expect(() => decodePng(cut)).toThrow(/broken or truncated zlib stream/);
    const flipped = Buffer.from(good);
    flipped[40] = flipped[40]! ^ 1;
    expect(() => decodePng(flipped)).toThrow(/wrong CRC/);
    expect(() => decodePng(pngOf(side, side, 8, 2, Buffer.concat([raw, raw])))).toThrow(
      /more image data than its size/,
    );
    expect(decodePng(good).data).toEqual(rgb);
  });
});

// ------------------------------------------------------------------------------------------ item 11: train --resume

describe('s2i train --resume (item 11)', () => {
  it('keeps the run settings, refuses changed ones unless asked, trims the log, removes stale temporaries', () => {
    const dir = fresh();
    const base = [
      'train',
      '--run',
      'r',
      '--batch',
      '2',
      '--seed',
      '3',
      '--sample-every',
      '0',
      '--checkpoint-every',
      '1',
    ];
    expect(runCli([...base, '--steps', '1'], { cwd: dir }).code).toBe(0);
    for (const [flag, value] of [
      ['--batch', '4'],
      ['--seed', '4'],
      ['--lr', '0.001'],
    ] as const) {
      const r = runCli(['train', '--run', 'r', '--steps', '2', '--resume', flag, value], { cwd: dir });
      expectOneLineError(r, new RegExp(`--resume: ${flag} ${value} \\(was [\\d.e-]+\\) differs from the run`));
    }
    // A killed run: rows logged past the checkpoint, a partial line, a temporary checkpoint and export of a dead pid.
    const log = join(dir, 'r', 'log.jsonl');
    writeFileSync(log, '{"step":1,"loss":1}\n{"step":25,"loss":0.5}\n{"step":5');
    writeFileSync(join(dir, 'r', '.checkpoint.safetensors.999999999.abc.tmp'), 'partial');
    mkdirSync(join(dir, 'r', 'model.tmp-999999999'));
    // Omitted settings are the run's (batch 2, seed 3), not the defaults.
    const r = runCli(['train', '--run', 'r', '--steps', '1', '--resume'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(log, 'utf8')).toBe('{"step":1,"loss":1}\n');
    expect(readdirSync(join(dir, 'r')).sort()).toEqual(['checkpoint.safetensors', 'log.jsonl']);
  });

  it('refuses --resume where no run folder exists, creating nothing', () => {
    const dir = fresh();
    const r = runCli(['train', '--run', 'typo', '--steps', '1', '--resume'], { cwd: dir });
    expectOneLineError(r, /--resume: --run typo does not exist: no run to continue/);
    expect(existsSync(join(dir, 'typo'))).toBe(false);
  });

  it('trimLog keeps whole rows up to the step', () => {
    const dir = fresh();
    const p = join(dir, 'log.jsonl');
    writeFileSync(p, '{"step":25}\n{"step":50}\nnot json\n{"step":75}\n{"st');
    trimLog(p, 50);
    expect(readFileSync(p, 'utf8')).toBe('{"step":25}\n{"step":50}\n');
  });
});

// ----------------------------------------------------------------------------------------- item 12: interrupts

describe('SIGINT and SIGTERM release the bench lock and temporary graph folders (item 12)', () => {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal}: exit ${code}, one line, no lock, no s2i-graph-* folder`, async () => {
      const dir = fresh();
      const temp = join(dir, 'tmp');
      mkdirSync(temp);
      const out = join(dir, 'bench');
      const child = startCli(
        [
          'bench',
          '--suite',
          'shapes-2',
          '--limit',
          '4',
          '--seeds',
          '0',
          '--methods',
          'none,suppress',
          '--steps',
          '3',
          '--out',
          out,
        ],
        { cwd: dir, env: { TMPDIR: temp } },
      );
      const graphFolder = () => readdirSync(temp).some((f) => f.startsWith('s2i-graph-'));
      // Interrupt while ONNX Runtime's model files are on disk (they exist while a session is created).
      const locked = await waitFor(() => existsSync(join(out, '.bench.lock')), 60_000);
      expect(locked).toBe(true);
      await waitFor(graphFolder, 30_000);
      child.kill(signal);
      const r = await child.done;
      expect(r.code, r.stderr).toBe(code);
      // Progress lines (stderr is not a terminal), then one line for the interrupt, no stack trace.
      expect(r.stderr).toMatch(new RegExp(`(^|\n)s2i: interrupted \\(${signal}\\)\n$`));
      expect(r.stderr).not.toMatch(/\bat .*:\d+:\d+|internal error/);
      expect(existsSync(join(out, '.bench.lock'))).toBe(false);
      expect(readdirSync(temp).filter((f) => f.startsWith('s2i-graph-'))).toEqual([]);
    });
  }
});

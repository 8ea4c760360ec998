/**
 * Fuzzing the inputs a user hands s2i — PNGs, safetensors files, model configs, command-line arguments — with
 * fast-check. Each case is either accepted (exit 0, its outputs written) or refused the way every error must be:
 * exit 1, exactly one line `s2i: error: ...` on stderr, no stack trace, no output file left, within a time limit
 * and a peak memory limit. In-process properties check the parsers directly (many cases, fast); CLI properties run
 * the built binary as a child process, as a user does.
 *
 * Every CLI case runs with `CI` unset (onnxruntime-node's telemetry only runs without it: it crashed on long command
 * lines and left files in the temporary folder) and TMPDIR a fresh folder that must be empty afterwards; an error
 * line must hold no control character and stay short whatever the input's length.
 *
 * `npm test` runs a bounded number of cases with a fixed seed (3 CLI cases and 300 in-process cases per property,
 * about 45 s); `npm run fuzz` runs 40 and 4000 with a new seed, which fast-check prints with any failure so it can
 * be replayed: `S2I_FUZZ_SEED=<seed> S2I_FUZZ_RUNS=<n> npx vitest run test/fuzz.test.ts`.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import { decodePng, encodePng } from '../src/image/png.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { checkRequest } from '../src/pipeline/request.js';
import { ensureBuilt } from './support/cli.js';
import { repoRoot, tinySdDir } from './support/oracle.js';
import { freePort, hasRedis, startRedis, type TestRedis } from './support/redis.js';
import { binPath } from './support/spawn.js';

/** `npm run fuzz` sets S2I_FUZZ=deep: many more cases, a new seed each run. */
const DEEP = process.env['S2I_FUZZ'] === 'deep';
const CLI_RUNS = Number(process.env['S2I_FUZZ_RUNS'] ?? (DEEP ? 40 : 3));
const LIB_RUNS = CLI_RUNS * 100;
/** The prompt, seed and Redis URL properties run several commands a case: 2 cases each in `npm test`. */
const INPUT_RUNS = DEEP || process.env['S2I_FUZZ_RUNS'] !== undefined ? CLI_RUNS : 2;
const SEED =
  process.env['S2I_FUZZ_SEED'] !== undefined ? Number(process.env['S2I_FUZZ_SEED']) : DEEP ? undefined : 20261129;
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns,
  ...(SEED !== undefined ? { seed: SEED } : {}),
  endOnFailure: true,
});

/** Peak memory a refused or accepted case may reach (the budget given to the children is below it). */
const MAX_RSS_KB = 1.5 * 1024 * 1024;
const TIME_LIMIT_MS = 90_000;
/** An error line quotes at most ~300 characters of input, so it stays under this whatever the input's length. */
const MAX_ERROR_LINE = 700;
/** What must never reach the terminal raw: control characters but the line feed. */
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const tmp = mkdtempSync(join(tmpdir(), 's2i-fuzz-'));
const preload = pathToFileURL(join(repoRoot, 'test', 'support', 'maxrss.mjs')).href;
let caseNo = 0;

beforeAll(ensureBuilt, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Outcome {
  code: number | null;
  /** What the run left in its TMPDIR (must be nothing). */
  tmpLeft: string[];
  stdout: string;
  stderr: string;
  ms: number;
  maxRssKb: number;
  /** Files in the case's folder after the run, besides its inputs. */
  left: string[];
}

/** Runs the CLI in a fresh folder holding `inputs` (name → bytes), with a 1 GB memory budget. */
function runCase(args: (dir: string) => string[], inputs: Record<string, Uint8Array | string> = {}): Outcome {
  const dir = join(tmp, `case-${++caseNo}`);
  mkdirSync(dir);
  for (const [name, bytes] of Object.entries(inputs)) writeFileSync(join(dir, name), bytes);
  const rss = join(tmp, `rss-${caseNo}`);
  const tmpDir = join(tmp, `tmpdir-${caseNo}`);
  mkdirSync(tmpDir);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    S2I_ORT_CACHE: '0',
    S2I_MAX_MEMORY: '1G',
    S2I_MAXRSS_FILE: rss,
    S2I_THREADS: '1',
    TMPDIR: tmpDir,
  };
  delete env['CI'];
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', preload, binPath, ...args(dir)], {
    cwd: dir,
    encoding: 'utf8',
    timeout: TIME_LIMIT_MS,
    killSignal: 'SIGKILL',
    env,
  });
  const ms = Date.now() - t0;
  const maxRssKb = existsSync(rss) ? Number(readFileSync(rss, 'utf8')) : NaN;
  const left = readdirSync(dir).filter((f) => !(f in inputs));
  const tmpLeft = readdirSync(tmpDir);
  rmSync(dir, { recursive: true, force: true });
  rmSync(tmpDir, { recursive: true, force: true });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms, maxRssKb, left, tmpLeft };
}

/** The contract: success with the expected outputs, or one clean line and nothing left behind. */
function expectContract(o: Outcome, outputs: string[]): void {
  const where = `exit ${o.code}, stderr: ${o.stderr.slice(0, 2000)}`;
  expect(o.ms, `ran past ${TIME_LIMIT_MS} ms; ${where}`).toBeLessThan(TIME_LIMIT_MS);
  expect(o.maxRssKb, `peak RSS ${o.maxRssKb} kB; ${where}`).toBeLessThan(MAX_RSS_KB);
  expect(o.stderr, where).not.toMatch(/\bat .*:\d+:\d+|internal error/);
  expect(o.tmpLeft, `left in TMPDIR; ${where}`).toEqual([]);
  expect(o.stderr, `a control character reached the terminal; ${where}`).not.toMatch(CONTROL_CHARACTER);
  if (o.code === 0) {
    expect(o.left.sort(), where).toEqual([...outputs].sort());
  } else {
    expect(o.code, where).toBe(1);
    expect(o.stderr, where).toMatch(/^s2i: error: [^\n]+\n$/);
    expect(o.stderr.length, `a long error line; ${where}`).toBeLessThan(MAX_ERROR_LINE);
    expect(o.left, where).toEqual([]);
  }
}

// --------------------------------------------------------------------------------------------- mutations

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array };

/** Byte-level mutations, positions as fractions of the length so they fit any file. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), bit: fc.nat(7) }),
  fc.record({
    kind: fc.constant('set' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    byte: fc.constantFrom(0, 0xff, 0x7f, 0x80, 0x30, 0x7b),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
);

function mutate(src: Uint8Array, ms: readonly Mutation[], focus?: [number, number]): Buffer {
  let b = Buffer.from(src);
  for (const m of ms) {
    const [lo, hi] = focus ?? [0, b.length];
    const at = Math.min(b.length - 1, lo + Math.floor(m.at * Math.max(0, Math.min(hi, b.length) - lo)));
    if (b.length === 0) break;
    if (m.kind === 'flip') b[at] = b[at]! ^ (1 << m.bit);
    else if (m.kind === 'set') b[at] = m.byte;
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
  }
  return b;
}

/** JSON values that break configs and headers: wrong types, huge, negative, fractional, nested. */
const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, -1, 1, 3, 7, 1e9, 4096, 2 ** 53, -0.5, 0.5, 1e308, null, true, '', 'silu', 'relu6', [], {}),
  fc.integer({ min: -1000, max: 100000 }),
  fc.double(),
  fc.string({ maxLength: 8 }),
  fc.array(fc.oneof(fc.integer({ min: -2, max: 300 }), fc.constant(null)), { maxLength: 5 }),
  fc.constant(JSON.parse(`${'['.repeat(40)}1${']'.repeat(40)}`) as unknown),
);

// ------------------------------------------------------------------------------------------------- PNG

const side = 16;
const pngRgb = new Uint8Array(side * side * 3).fill(255);
for (let y = 3; y < 12; y++) for (let x = 3; x < 12; x++) pngRgb.set([220, 30, 30], (y * side + x) * 3);
const goodPng = encodePng(pngRgb, side, side);

describe('fuzz: PNG files', () => {
  it('decodePng returns an image or throws a UserError, never anything else', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        const b = mutate(goodPng, ms);
        try {
          const img = decodePng(b);
          expect(img.data.length).toBe(img.width * img.height * 3);
        } catch (e) {
          if (!(e instanceof UserError)) throw e;
          expect(e.message).not.toMatch(/\n/);
        }
      }),
      params(LIB_RUNS),
    );
  });

  it('s2i shapes score on a mutated PNG', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        const o = runCase(() => ['shapes', 'score', 'x.png', '--prompt', 'a red square'], {
          'x.png': mutate(goodPng, ms),
        });
        expectContract(o, []);
      }),
      params(CLI_RUNS),
    );
  });
});

// ----------------------------------------------------------------------------------------------- safetensors

const latentsPath = join(tmp, 'latents.safetensors');
let goodLatents: Buffer;
beforeAll(() => {
  const data = new Float32Array(3 * 32 * 32).map((_, i) => Math.sin(i));
  writeSafetensors(latentsPath, { latents: { data, shape: [1, 3, 32, 32] } });
  goodLatents = readFileSync(latentsPath);
});

/** The header JSON of a safetensors file, one field of one entry replaced, written back with a right length. */
function mutateHeader(file: Buffer, entry: number, field: string, value: unknown): Buffer {
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.toString('utf8', 8, 8 + n)) as Record<string, Record<string, unknown>>;
  const keys = Object.keys(header);
  const key = keys[entry % keys.length]!;
  header[key] = { ...header[key], [field]: value };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, file.subarray(8 + n)]);
}

const headerEdit = fc.record({
  entry: fc.nat(10),
  field: fc.constantFrom('dtype', 'shape', 'data_offsets', 'format', '__proto__'),
  value: fc.oneof(hostileJson, fc.constantFrom('F16', 'BF16', 'I64', 'F64', 'U8', 'BOOL', 'F8_E4M3')),
});

describe('fuzz: safetensors files', () => {
  it('SafetensorsFile.open + read returns tensors or throws a UserError', () => {
    const path = join(tmp, 'lib.safetensors');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => mutate(goodLatents, ms, [0, 200])),
          headerEdit.map((e) => mutateHeader(goodLatents, e.entry, e.field, e.value)),
        ),
        (bytes) => {
          writeFileSync(path, bytes);
          try {
            const f = SafetensorsFile.open(path);
            try {
              for (const name of f.names()) f.read(name);
            } finally {
              f.close();
            }
          } catch (e) {
            if (!(e instanceof UserError)) throw e;
          }
        },
      ),
      params(LIB_RUNS),
    );
  });

  it('s2i generate --latents with a mutated file', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(mutation, { minLength: 1, maxLength: 2 }).map((ms) => mutate(goodLatents, ms, [0, 160])),
          headerEdit.map((e) => mutateHeader(goodLatents, e.entry, e.field, e.value)),
        ),
        (bytes) => {
          const o = runCase(
            () => ['generate', 'a red circle', '--latents', 'l.safetensors', '--steps', '1', '--out', 'x.png'],
            { 'l.safetensors': bytes },
          );
          expectContract(o, ['x.png']);
        },
      ),
      params(CLI_RUNS),
    );
  });
});

// ----------------------------------------------------------------------------------------------- model configs

/** A writable copy of tiny-sd made once; each case rewrites one config file and restores it afterwards. */
let model: string;
beforeAll(() => {
  model = join(tmp, 'tiny-sd');
  cpSync(tinySdDir, model, { recursive: true });
  const chmodAll = (d: string) => {
    chmodSync(d, 0o755);
    for (const e of readdirSync(d, { withFileTypes: true }))
      e.isDirectory() ? chmodAll(join(d, e.name)) : chmodSync(join(d, e.name), 0o644);
  };
  chmodAll(model);
});

const configEdit = fc.record({
  file: fc.constantFrom(
    'unet/config.json',
    'vae/config.json',
    'text_encoder/config.json',
    'scheduler/scheduler_config.json',
  ),
  key: fc.nat(100),
  value: hostileJson,
});

describe('fuzz: model configs', () => {
  it('s2i generate on tiny-sd with one config value replaced', () => {
    fc.assert(
      fc.property(configEdit, ({ file, key, value }) => {
        const cfg = JSON.parse(readFileSync(join(model, file), 'utf8')) as Record<string, unknown>;
        const keys = Object.keys(cfg).filter((k) => !k.startsWith('_'));
        expectContract(runWithConfig(file, keys[key % keys.length]!, value), ['x.png']);
      }),
      params(CLI_RUNS),
    );
  });
});

/**
 * Config values an earlier fuzz run found ending in exit 70 (ONNX Runtime's multi-line log, "internal error") or
 * running away: issue 13's config-level items, fixed by the io work (validated configs, config limits). Kept as
 * regression cases.
 */
const FOUND_CONFIG_CASES: [item: string, file: string, key: string, value: unknown][] = [
  ['issue 13 item 6: norm_num_groups not dividing the channels', 'unet/config.json', 'norm_num_groups', 7],
  ['issue 13 item 6: an unknown act_fn', 'unet/config.json', 'act_fn', 'relu6'],
  ['issue 13 item 6: a negative layer_norm_eps', 'text_encoder/config.json', 'layer_norm_eps', -0.5],
  ['issue 13 item 5: num_train_timesteps 1e9', 'scheduler/scheduler_config.json', 'num_train_timesteps', 1e9],
];

function runWithConfig(file: string, key: string, value: unknown): Outcome {
  const path = join(model, file);
  const original = readFileSync(path, 'utf8');
  writeFileSync(path, JSON.stringify({ ...(JSON.parse(original) as object), [key]: value }));
  try {
    return runCase(() => ['generate', 'a cat', '--model', model, '--steps', '1', '--out', 'x.png']);
  } finally {
    writeFileSync(path, original);
  }
}

describe('fuzz: config cases found earlier', () => {
  for (const [item, file, key, value] of FOUND_CONFIG_CASES) {
    it(`${item}: ${file} ${key} ${JSON.stringify(value)}`, () => {
      const o = runWithConfig(file, key, value);
      expectContract(o, []);
      expect(o.code).toBe(1);
    });
  }
});

// ------------------------------------------------------------------------------------------------- arguments

const optionValue = fc.oneof(
  fc.constantFrom('0', '1', '-1', '8', '9', '64', '4096', '1e9', 'NaN', 'Infinity', '', ' ', 'x', '1.5', '--json'),
  fc.integer({ min: -100, max: 100000 }).map(String),
  fc.string({ maxLength: 6 }),
);

const generateArgs = fc
  .array(
    fc.tuple(
      fc.constantFrom(
        '--steps',
        '--guidance',
        '--scheduler',
        '--seed',
        '--height',
        '--width',
        '--method',
        '--subjects',
        '--tokens',
        '--upscale',
        '--attn-res',
        '--thresholds',
        '--max-iter-to-alter',
        '--attention-steps',
        '--weights',
        '--gamma',
        '--threads',
        '--max-memory',
      ),
      optionValue,
    ),
    { maxLength: 3 },
  )
  .map((pairs) => pairs.flat());

describe('fuzz: arguments', () => {
  it('s2i generate with random option values', () => {
    fc.assert(
      fc.property(generateArgs, (args) => {
        const withSteps = args.includes('--steps') ? args : [...args, '--steps', '1'];
        const o = runCase(() => ['generate', 'a red circle and a blue square', ...withSteps, '--out', 'x.png']);
        expectContract(o, ['x.png']);
      }),
      params(CLI_RUNS),
    );
  });

  it('s2i shapes sample and score with random option values', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('--count', '--seed', '--size', '--objects', '--prefix-prob'),
        optionValue,
        fc.string({ maxLength: 30 }),
        (flag, value, prompt) => {
          // Large valid counts are slow, not wrong: --count gets small or invalid values only.
          const count = /^\s*\d+\s*$/.test(value) ? String(Number(value) % 20) : value;
          const args = flag === '--count' ? ['--count', count] : ['--count', '2', flag, value];
          const sample = runCase(() => ['shapes', 'sample', ...args, '--out', 's']);
          expectContract(sample, sample.code === 0 ? ['s'] : []);
          const score = runCase(() => ['shapes', 'score', 'x.png', '--prompt', prompt], { 'x.png': goodPng });
          expectContract(score, []);
        },
      ),
      params(CLI_RUNS),
    );
  });
});

// ------------------------------------------------------------------------------- long and hostile prompts

const phrase = (n: number) => 'a red circle and a blue square '.repeat(Math.ceil(n / 31)).slice(0, n);

/** Prompts as a careless or hostile user writes them: up to 120,000 characters, control and bidi characters. */
const hostilePrompt = fc.oneof(
  fc.integer({ min: 1000, max: 120_000 }).map(phrase),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom(
    'a red \u0000\u001b[2J circle',
    'a red circle\u202e and a blue square',
    'a blue square\r\n\u0007\u009b2J',
    '<|endoftext|>'.repeat(200),
    '&amp;'.repeat(2000),
    '',
    ' \n\t ',
  ),
  fc
    .tuple(fc.integer({ min: 1, max: 60_000 }), fc.constantFrom('a,', 'x', '\u{1F600}', ' ', 'é\u0301', '\ud800'))
    .map(([k, unit]) => unit.repeat(k)),
);

/**
 * One macrotask turn between CLI cases, so that vitest's RPC replies are read while a long property runs (else
 * "Timeout calling onTaskUpdate", as test/support/setup.ts explains).
 */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A command line cannot hold NUL; everything else goes through as given. */
const argv = (text: string) => text.split('\u0000').join('');

describe('fuzz: long and hostile prompts', () => {
  it('s2i generate (default method or none, with a --negative) and shapes score', async () => {
    await fc.assert(
      fc.asyncProperty(hostilePrompt, fc.boolean(), fc.boolean(), async (prompt, plain, negative) => {
        await turn();
        const args = ['generate', argv(prompt), '--steps', '1', '--out', 'x.png'];
        if (plain) args.push('--method', 'none');
        if (negative) args.push('--negative', argv(prompt));
        expectContract(
          runCase(() => args),
          ['x.png'],
        );
        expectContract(
          runCase(() => ['shapes', 'score', 'x.png', '--prompt', argv(prompt)], { 'x.png': goodPng }),
          [],
        );
      }),
      params(INPUT_RUNS),
    );
  });

  it('s2i bench with the prompt in a --suite file (NUL and all)', async () => {
    await fc.assert(
      fc.asyncProperty(hostilePrompt, async (prompt) => {
        await turn();
        const o = runCase(
          () => ['bench', '--suite', 'p.jsonl', '--methods', 'none', '--seeds', '0', '--steps', '1', '--out', 'b'],
          { 'p.jsonl': `${JSON.stringify({ prompt })}\n` },
        );
        expectContract(o, ['b']);
      }),
      params(INPUT_RUNS),
    );
  });
});

// ---------------------------------------------------------------------------------------- seeds at the edges

const edgeSeed = fc.oneof(
  fc.constantFrom('0', '1', '4294967295', '4294967296', '9007199254740991', '-1', '-0', ' 7 ', '1e3', '0x10'),
  fc.bigInt({ min: 2n ** 53n - 4n, max: 2n ** 53n + 2n }).map(String),
  fc.bigInt({ min: 0n, max: 2n ** 70n }).map(String),
);

describe('fuzz: seeds at the edges', () => {
  it('checkRequest: every seed an image would use is a safe integer, or the request is a FieldError', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.constantFrom(2 ** 53 - 1, 2 ** 53, -(2 ** 53), 0.5, NaN)),
        fc.integer({ min: 1, max: 10_000 }),
        (seed, images) => {
          try {
            checkRequest({ prompt: 'a red circle', seed, images });
          } catch (e) {
            expect(e).toBeInstanceOf(UserError);
            return;
          }
          expect(Number.isSafeInteger(seed) && Number.isSafeInteger(seed + images - 1)).toBe(true);
        },
      ),
      params(LIB_RUNS),
    );
  });

  it('s2i generate --seed S --images N', async () => {
    await fc.assert(
      fc.asyncProperty(edgeSeed, fc.integer({ min: 1, max: 3 }), async (seed, images) => {
        await turn();
        const o = runCase(() => [
          'generate',
          'a red circle',
          '--seed',
          seed,
          '--images',
          String(images),
          '--method',
          'none',
          '--steps',
          '1',
          '--out',
          'x.png',
        ]);
        const outputs =
          images === 1 ? ['x.png'] : [...Array.from({ length: images }, (_, i) => `x-${i}.png`), 'x-grid.png'];
        expectContract(o, outputs);
      }),
      params(INPUT_RUNS),
    );
  });
});

// ------------------------------------------------------------------------------------------------ Redis URLs

if (!hasRedis)
  console.warn('\n** SKIPPED fuzz: Redis URLs: redis-server is not installed (apt-get install redis-server) **\n');

describe.skipIf(!hasRedis)('fuzz: Redis URLs (a live server and a closed port, both on 127.0.0.1)', () => {
  let redis: TestRedis;
  let port = 0;
  let closedPort = 0;
  beforeAll(async () => {
    const dir = join(tmp, 'redis');
    mkdirSync(dir);
    redis = await startRedis(dir);
    port = redis.port;
    closedPort = await freePort();
  });
  afterAll(() => redis?.stop());

  /**
   * URLs that must be refused at once: a database past the server's 16, a password the server does not have, a
   * closed port, a malformed URL or database. (A valid one would queue and wait for workers.) Hosts are loopback
   * only; a malformed value never has the redis scheme, so nothing is ever looked up.
   */
  const refusedUrl = () =>
    fc.oneof(
      fc.integer({ min: 16, max: 99_999 }).map((db) => `redis://127.0.0.1:${port}/${db}`),
      fc
        .tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.option(fc.string({ maxLength: 6 })), fc.nat(99_999))
        .map(
          ([pw, user, db]) =>
            `redis://${user === null ? '' : encodeURIComponent(user)}:${encodeURIComponent(pw)}@127.0.0.1:${port}/${db}`,
        ),
      fc.nat(99_999).map((db) => `redis://127.0.0.1:${closedPort}/${db}`),
      fc.constantFrom(`redis://[::1]:${closedPort}/0`, `rediss://127.0.0.1:${closedPort}`),
      fc
        .constantFrom('-1', '1.5', 'abc', '9'.repeat(6), '9'.repeat(300), '0/1', '%00', '\u001b[2J')
        .map((db) => `redis://127.0.0.1:${port}/${db}`),
      fc.string({ unit: 'binary', maxLength: 60 }).filter((v) => !/redis/i.test(v)),
    );

  it('bench --queue and worker --queue: one line, nothing queued', async () => {
    await fc.assert(
      fc.asyncProperty(refusedUrl(), fc.boolean(), async (url, asWorker) => {
        await turn();
        const args = asWorker
          ? ['worker', '--queue', argv(url)]
          : ['bench', '--queue', argv(url), '--suite', 'p.jsonl', '--methods', 'none', '--seeds', '0', '--out', 'b'];
        const o = runCase(() => args, { 'p.jsonl': '{"prompt": "a red circle"}\n' });
        expect(o.code, o.stderr).toBe(1);
        expectContract(o, []);
      }),
      params(INPUT_RUNS),
    );
    expect(await redis.keyCount(), 'a refused URL queued something').toBe(0);
  });
});

/**
 * Issue 25's sweep, each case through the built CLI as a user meets it, with `CI` unset (the test runner may set
 * it, and onnxruntime-node's telemetry only runs without it) and TMPDIR a fresh folder that must stay empty:
 * the crash on long prompts (1), files left in TMPDIR (2), seeds past 2^53 (3, 7), a Redis database that does not
 * exist (4), error lines that echo input (5), the subject finder on long prompts (6), the smaller faults (7) and
 * fsync (8).
 */
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORT_ENVIRONMENT } from '../src/graph/ort-env.js';
import { autoSubjects } from '../src/prompt/auto-subjects.js';
import { ClipTokenizer } from '../src/tokenizer/clip.js';
import { boundLine, escapeControls, quote } from '../src/util/quote.js';
import { ensureBuilt } from './support/cli.js';
import { repoRoot } from './support/oracle.js';
import { freePort, hasRedis, startRedis, type TestRedis } from './support/redis.js';
import { binPath, expectOneLineError, runCli, type Run } from './support/spawn.js';

const shapesModel = join(repoRoot, 'models', 'shapes');
const tmp = mkdtempSync(join(tmpdir(), 's2i-reliability2-'));
let n = 0;
const fresh = () => {
  const d = join(tmp, `t${++n}`);
  mkdirSync(d);
  return d;
};

beforeAll(ensureBuilt, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * `s2i ...args` in `cwd` with CI unset and TMPDIR a fresh empty folder, which must still be empty afterwards:
 * nothing of a run, success or failure, is left in the temporary folder.
 */
function s2i(args: readonly string[], cwd = fresh(), env: Record<string, string> = {}): Run {
  const tmpDir = fresh();
  const r = runCli(args, { cwd, env: { TMPDIR: tmpDir, ...env }, unset: ['CI'] });
  expect(r.signal, `killed by ${r.signal}; stderr: ${r.stderr.slice(0, 500)}`).toBeNull();
  expect(readdirSync(tmpDir), `left in TMPDIR; stderr: ${r.stderr.slice(0, 500)}`).toEqual([]);
  expect(r.stderr).not.toMatch(/\bat .*:\d+:\d+|internal error/);
  return r;
}

/** One macrotask turn between CLI runs: vitest's RPC replies are read while a long test runs (test/support/setup.ts). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** No control character but the line ends reaches the terminal. */
function expectEscaped(text: string): void {
  // eslint-disable-next-line no-control-regex
  expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
}

const words = (chars: number) => 'a red circle and a blue square '.repeat(Math.ceil(chars / 31)).slice(0, chars);

describe('ONNX Runtime: no crash on long command lines, nothing in TMPDIR (items 1 and 2)', () => {
  it('the environment is set before onnxruntime-node loads (telemetry off)', () => {
    expect(ORT_ENVIRONMENT).toEqual({ ORT_DISABLE_TELEMETRY: '1' });
    expect(process.env['ORT_DISABLE_TELEMETRY']).toBe('1'); // the test setup imports src/node.js
  });

  it('a 31,000-character prompt and --negative: exit 0 (was SIGSEGV), no mat-debug/.ses/s2i-graph in TMPDIR', () => {
    const dir = fresh();
    const long = words(31_000);
    const r = s2i(['generate', long, '--negative', long, '--method', 'none', '--steps', '3', '--seed', '1'], dir, {});
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dir)).toEqual(['s2i-1.png']);
    // The summary shows a bounded, escaped prompt, not 31,000 characters.
    expect(r.stdout).toMatch(/^prompt +"a red circle.*\.\.\." \(31000 characters\)$/m);
  });

  it('a failing run leaves nothing in TMPDIR either', () => {
    expectOneLineError(s2i(['generate', 'a red circle', '--steps', '0']), /--steps/);
  });
});

describe('seeds at the edge of 2^53 (items 3 and 7)', () => {
  it('--seed 2^53-1 with --images 2 is one line naming both (was exit 70 from the generator)', () => {
    const r = s2i(['generate', 'a red circle', '--seed', '9007199254740991', '--images', '2', '--steps', '3']);
    expectOneLineError(r, /--seed 9007199254740991 with --images 2/, /9007199254740990 or less/);
  });

  it('--seed 2^53-2 with --images 2 draws both images', () => {
    const dir = fresh();
    const r = s2i(['generate', 'a red circle', '--seed', '9007199254740990', '--images', '2', '--steps', '2'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(
      ['s2i-9007199254740990-0.png', 's2i-9007199254740990-1.png', 's2i-9007199254740990-grid.png'].sort(),
    );
  });

  it('--seed past 2^53 names the upper bound', () => {
    for (const seed of ['9007199254740992'])
      expectOneLineError(
        s2i(['generate', 'a red circle', '--seed', seed]),
        /--seed must be an integer from 0 to 9007199254740991/,
      );
  });
});

describe('error lines quote input bounded and escaped (item 5)', () => {
  it('quote and boundLine', () => {
    expect(quote('a "red" circle')).toBe('"a \\"red\\" circle"');
    expect(quote('a\u0000\u001b[2J\n\u202e')).toBe('"a\\u0000\\u001b[2J\\n\\u202e"');
    expect(quote('x'.repeat(100_000))).toBe(`"${'x'.repeat(80)}..." (100000 characters)`);
    expect(quote('😀'.repeat(50))).not.toMatch(/\ud83d"/); // no half surrogate pair at the cut
    expect(escapeControls('\u009b2J')).toBe('\\u009b2J');
    const line = boundLine(`--x got ${'y'.repeat(10_000)}: it is wrong`);
    expect(line.length).toBeLessThan(400);
    expect(line).toMatch(/^--x got y+ \.\.\.\[\d+ characters left out\]\.\.\. y+: it is wrong$/);
  });

  it('a 1 MB suite prompt: one short line (was 1,000,246 bytes)', () => {
    const dir = fresh();
    writeFileSync(
      join(dir, 'big.jsonl'),
      `${JSON.stringify({ prompt: `a red circle and ${'x'.repeat(1_000_000)}` })}\n`,
    );
    const r = s2i(['bench', '--suite', 'big.jsonl', '--methods', 'none', '--seeds', '0', '--out', 'b'], dir);
    expectOneLineError(r, /big\.jsonl:1: cannot parse prompt "a red circle and x+\.\.\." \(1000017 characters\)/);
    expect(r.stderr.length).toBeLessThan(600);
    expect(existsSync(join(dir, 'b'))).toBe(false);
  });

  it('a suite prompt holding \\u0000\\u001b[2J reaches the terminal escaped', () => {
    const dir = fresh();
    writeFileSync(join(dir, 'esc.jsonl'), `${JSON.stringify({ prompt: 'a red \u0000\u001b[2J circle' })}\n`);
    const r = s2i(['bench', '--suite', 'esc.jsonl', '--methods', 'none', '--seeds', '0', '--out', 'b'], dir);
    expectOneLineError(r, /"a red \\u0000\\u001b\[2J circle"/);
    expectEscaped(r.stderr);
  });

  it('shapes score --prompt of 100,000 characters: the prompt is shown once, cut', () => {
    const r = s2i(['shapes', 'score', 'x.png', '--prompt', `a red ${'q'.repeat(100_000)}`]);
    expectOneLineError(r, /\(100006 characters\)/);
    expect(r.stderr.length).toBeLessThan(600);
  });

  const hostile = `\u001b[2J${'9'.repeat(100_000)}\u0007`;

  it('option values and a prompt of 100,000 characters, with control characters', async () => {
    for (const args of [
      ['generate', 'a red circle', '--seed', hostile],
      ['generate', 'a red circle', '--subjects', hostile],
      ['generate', hostile, '--subjects', 'dog'],
    ]) {
      await turn();
      const r = s2i(args);
      expectOneLineError(r);
      expectEscaped(r.stderr);
      expect(r.stderr.length, r.stderr).toBeLessThan(700);
    }
  }, 300_000); // three CLI runs: a loaded machine's minutes, not a hang

  it("an unknown option of 100,000 characters: commander's line escaped and cut", () => {
    const r = s2i(['generate', 'a red circle', `--x${hostile}`]);
    expect(r.code).toBe(1);
    expectEscaped(r.stderr);
    expect(r.stderr.length).toBeLessThan(400);
  });
});

describe('the subject finder reads only the text the encoder sees (item 6)', () => {
  const tokenizer = ClipTokenizer.fromFolder(join(shapesModel, 'tokenizer'));
  const keep = tokenizer.modelMaxLength - 2;

  it('visibleText: the shortest prefix, cut between words, holding every token tokenize() keeps', () => {
    const prompt = words(120_000);
    const visible = tokenizer.visibleText(prompt);
    expect(visible.length).toBeLessThan(300);
    expect(prompt.startsWith(visible)).toBe(true);
    expect(tokenizer.tokenize(visible).ids).toEqual(tokenizer.tokenize(prompt).ids);
    expect(tokenizer.encode(visible).length).toBeGreaterThanOrEqual(keep);
    expect(tokenizer.encode(visible.replace(/\s*\S+$/, '')).length).toBeLessThan(keep); // one word less is short
    // No whitespace: cut between punctuation and a letter; a prompt within the limit is returned whole.
    const commas = 'a,'.repeat(60_000);
    expect(tokenizer.visibleText(commas).length).toBeLessThan(100);
    expect(tokenizer.tokenize(tokenizer.visibleText(commas)).ids).toEqual(tokenizer.tokenize(commas).ids);
    expect(tokenizer.visibleText('a red circle')).toBe('a red circle');
  });

  it('finds the same subjects in a 120,000-character prompt as in its visible start, past which it reads nothing', () => {
    const prompt = words(120_000);
    const visible = tokenizer.visibleText(prompt);
    const strip = (a: ReturnType<typeof autoSubjects>) => JSON.parse(JSON.stringify(a)) as unknown;
    expect(strip(autoSubjects(tokenizer, prompt))).toEqual(strip(autoSubjects(tokenizer, visible)));
    // Text past the visible start cannot change what is found: a different tail, the same subjects.
    const other = `${visible} ${'purple triangles and green dogs '.repeat(3000)}`;
    expect(strip(autoSubjects(tokenizer, other))).toEqual(strip(autoSubjects(tokenizer, visible)));
  });
});

describe('smaller faults (item 7)', () => {
  const canUnshare = spawnSync('unshare', ['-rm', 'true']).status === 0;
  if (!canUnshare) console.warn('\n** SKIPPED the read-only mount case: `unshare -rm` is not permitted here **\n');

  /** `s2i ...args(ro)` in a user and mount namespace where `ro` is an empty read-only tmpfs. */
  const inReadOnlyMount = (args: (ro: string) => string[]): Run => {
    const dir = fresh();
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    writeFileSync(join(dir, 'p.jsonl'), '{"prompt": "a red circle"}\n');
    const script = 'mount -t tmpfs -o ro,size=64k tmpfs "$0" && exec "$@"';
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', script, ro, process.execPath, binPath, ...args(ro)], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, S2I_ORT_CACHE: '0' },
      timeout: 120_000,
    });
    return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  };

  it.skipIf(!canUnshare)(
    'bench --out and train --run on a read-only mount name EROFS (were ENOENT, and exit 70)',
    () => {
      expectOneLineError(
        inReadOnlyMount((ro) => [
          'bench',
          '--suite',
          'p.jsonl',
          '--methods',
          'none',
          '--seeds',
          '0',
          '--out',
          join(ro, 'b'),
        ]),
        /--out .*cannot create the folder: EROFS: read-only file system, mkdir '.*\/ro\/b'/,
      );
      expectOneLineError(
        inReadOnlyMount((ro) => ['train', '--run', join(ro, 'run', 'x'), '--steps', '1']),
        /--run .*cannot create the folder: EROFS: read-only file system, mkdir '.*\/ro\/run'/,
      );
    },
  );

  it('a FIFO or a dangling symbolic link named model.safetensors is named as such, by generate and info', async () => {
    for (const kind of ['fifo', 'link'] as const) {
      await turn();
      const model = join(fresh(), 'model');
      cpSync(shapesModel, model, { recursive: true });
      const weights = join(model, 'text_encoder', 'model.safetensors');
      rmSync(weights);
      if (kind === 'fifo') spawnSync('mkfifo', [weights]);
      else symlinkSync(join(model, 'missing.safetensors'), weights);
      const why =
        kind === 'fifo'
          ? /model\.safetensors is a FIFO \(named pipe\)/
          : /is a symbolic link to .*, which does not exist/;
      expectOneLineError(s2i(['generate', 'a red circle', '--model', model, '--steps', '1']), why);
      expectOneLineError(s2i(['info', '--model', model]), why);
    }
  });

  it('info judges a model as generate does: unused weights refused by both, do_lower_case "yes" accepted by both', () => {
    const extra = join(fresh(), 'model');
    cpSync(shapesModel, extra, { recursive: true });
    const file = join(extra, 'text_encoder', 'model.safetensors');
    const bytes = readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
      string,
      { data_offsets: [number, number] }
    >;
    const end = Math.max(...Object.entries(header).map(([k, v]) => (k === '__metadata__' ? 0 : v.data_offsets[1])));
    const newHeader = Buffer.from(
      JSON.stringify({ ...header, 'extra.weight': { dtype: 'F32', shape: [2], data_offsets: [end, end + 8] } }),
    );
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(newHeader.length));
    writeFileSync(file, Buffer.concat([size, newHeader, bytes.subarray(8 + headerLength), Buffer.alloc(8)]));
    const unused = /1 unexpected weight not used by the model \('extra\.weight'\)/;
    expectOneLineError(s2i(['info', '--model', extra]), unused);
    expectOneLineError(s2i(['generate', 'a red circle', '--model', extra, '--steps', '1']), unused);

    const lower = join(fresh(), 'model');
    cpSync(shapesModel, lower, { recursive: true });
    const configPath = join(lower, 'tokenizer', 'tokenizer_config.json');
    writeFileSync(
      configPath,
      JSON.stringify({ ...(JSON.parse(readFileSync(configPath, 'utf8')) as object), do_lower_case: 'yes' }),
    );
    const info = s2i(['info', '--model', lower, '--json']);
    expect(info.code, info.stderr).toBe(0);
    expect(
      (JSON.parse(info.stdout) as { components: { tokenizer: { config: object } } }).components.tokenizer.config,
    ).toMatchObject({ do_lower_case: 'yes' });
    expect(s2i(['generate', 'a red circle', '--model', lower, '--steps', '1']).code).toBe(0);
  });

  it('--guidance 1e30 is refused before anything runs (was a two-colour image, exit 0)', () => {
    const dir = fresh();
    expectOneLineError(
      s2i(['generate', 'a red circle', '--guidance', '1e30'], dir),
      /--guidance must be a number from 0 to 100/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe.skipIf(!hasRedis)('an out-of-range Redis database (item 4)', () => {
  let redis: TestRedis;
  let closedPort = 0;
  beforeAll(async () => {
    redis = await startRedis(fresh());
    closedPort = await freePort();
  });
  afterAll(() => redis?.stop());

  it('bench and worker on db 99999 of a 16-database server: one line at once, nothing queued', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'p.jsonl'), '{"prompt": "a red circle"}\n');
    const url = `redis://127.0.0.1:${redis.port}/99999`;
    const t0 = Date.now();
    const bench = s2i(
      ['bench', '--queue', url, '--suite', 'p.jsonl', '--methods', 'none', '--seeds', '0', '--out', 'b'],
      dir,
    );
    const seconds = (Date.now() - t0) / 1000;
    expectOneLineError(
      bench,
      /Redis at redis:\/\/127\.0\.0\.1:\d+\/99999 has no database 99999 \(it has databases 0 to 15\)/,
    );
    expect(seconds, 'the probe gives up at once (node startup included)').toBeLessThan(60);
    expect(existsSync(join(dir, 'b'))).toBe(false);
    expectOneLineError(s2i(['worker', '--queue', url], dir), /has no database 99999/);
    expect(await redis.keyCount()).toBe(0);
  });

  it('a closed port on 127.0.0.1: one line', () => {
    const dir = fresh();
    writeFileSync(join(dir, 'p.jsonl'), '{"prompt": "a red circle"}\n');
    const url = `redis://127.0.0.1:${closedPort}/0`;
    expectOneLineError(
      s2i(['bench', '--queue', url, '--suite', 'p.jsonl', '--methods', 'none', '--seeds', '0', '--out', 'b'], dir),
      /cannot reach Redis at .*ECONNREFUSED/,
    );
  });
});

describe.skipIf(spawnSync('sh', ['-c', 'command -v strace']).status !== 0)('outputs are fsynced (item 8)', () => {
  /** The fsync and rename calls of `s2i ...args`, in order. */
  const trace = (args: string[], cwd: string) => {
    const log = join(fresh(), 'trace');
    const r = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-e',
        'trace=fsync,fdatasync,rename,renameat,renameat2',
        '-o',
        log,
        process.execPath,
        binPath,
        ...args,
      ],
      { cwd, encoding: 'utf8', env: { ...process.env, S2I_ORT_CACHE: '0' }, timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    return readFileSync(log, 'utf8')
      .split('\n')
      .map((l) => l.replace(/^\d+\s+/, ''))
      .filter((l) => /^(fsync|fdatasync|rename)/.test(l) && !/unfinished|resumed/.test(l));
  };

  it('generate: the file is fsynced before its rename and the folder after', () => {
    const dir = fresh();
    const calls = trace(['generate', 'a red circle', '--steps', '1', '--out', 'g.png'], dir);
    const rename = calls.findIndex((l) => /rename.*g\.png/.test(l));
    expect(rename, calls.join('\n')).toBeGreaterThan(0);
    expect(
      calls.slice(0, rename).some((l) => /^f(data)?sync/.test(l)),
      calls.join('\n'),
    ).toBe(true);
    expect(
      calls.slice(rename + 1).some((l) => /^f(data)?sync/.test(l)),
      calls.join('\n'),
    ).toBe(true);
  });

  it('bench: each results.jsonl row is fsynced as it is appended', () => {
    const dir = fresh();
    writeFileSync(join(dir, 'p.jsonl'), '{"prompt": "a red circle"}\n{"prompt": "a blue square"}\n');
    const calls = trace(
      ['bench', '--suite', 'p.jsonl', '--methods', 'none', '--seeds', '0', '--steps', '1', '--out', 'b'],
      dir,
    );
    const rows = readFileSync(join(dir, 'b', 'results.jsonl'), 'utf8')
      .trim()
      .split('\n').length;
    expect(rows).toBe(2);
    // Per row: the image (file and folder) and the row itself; then the summaries.
    expect(calls.filter((l) => /^f(data)?sync/.test(l)).length, calls.join('\n')).toBeGreaterThanOrEqual(3 * rows);
  });
});

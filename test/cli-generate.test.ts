/**
 * `s2i generate` through the built CLI (dist/), as a user runs it, on tiny-sd: the golden PNDM run from given
 * latents, byte-identical PNGs for one seed, Attend-and-Excite with an attention picture, and the one-line
 * errors (with no output file left behind). Also subject resolution and the A&E step scaling, which need only
 * the tokenizer.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promptTokenColumns } from '../src/attention/render.js';
import { resolveSubjects, resolveTokenSubjects, resolveWordSubjects } from '../src/prompt/subjects.js';
import { DEFAULT_METHOD, scaledLoopDefaults as scaledAttendExciteDefaults } from '../src/methods/registry.js';
import { UserError } from '../src/errors.js';
import { decodePng } from '../src/image/png.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { maxAbsDiff } from '../src/tensor.js';
import { ClipTokenizer } from '../src/tokenizer/clip.js';
import { ensureBuilt } from './support/cli.js';
import { goldenPath, oracleDir, repoRoot, tinySdDir } from './support/oracle.js';

const tmp = mkdtempSync(join(tmpdir(), 's2i-cli-generate-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const PROMPT = 'a cat and a frog';

beforeAll(ensureBuilt);

function s2i(...args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 's2i.js'), 'generate', ...args], {
    cwd: tmp,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const f = readSafetensors(goldenPath('f_txt2img'));
const initial = f['initial_latents']!.data as Float32Array;

describe('s2i generate', () => {
  it('reproduces case f (PNDM, 10 steps) from --latents FILE:KEY and saves the final latents', () => {
    const init = join(tmp, 'init.safetensors');
    writeSafetensors(init, { initial_latents: { data: initial, shape: [1, 4, 32, 32] } });
    const out = join(tmp, 'f.png');
    const saved = join(tmp, 'final.safetensors');
    const r = s2i(
      PROMPT,
      '--model',
      tinySdDir,
      '--steps',
      '10',
      '--guidance',
      '7.5',
      '--scheduler',
      'pndm',
      '--latents',
      `${init}:initial_latents`,
      '--save-latents',
      saved,
      '--method',
      'none', // diffusers' plain pipeline is the golden
      '--out',
      out,
      '--json',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.sampler).toBe('pndm');
    expect(report.timesteps).toEqual(Array.from(f['pndm.timesteps']!.data as BigInt64Array, Number));
    expect(report.settings).toMatchObject({
      steps: 10,
      guidance: 7.5,
      scheduler: 'pndm',
      height: 64,
      width: 64,
      method: 'none',
      latents: { key: 'initial_latents' },
    });
    expect(report.steps).toHaveLength(11);
    expect(report.steps[0]).toMatchObject({ index: 0, timestep: 901 });
    // the prompt and the empty negative prompt in one text-encoder pass
    expect(report.graphs.map((g: { key: string }) => g.key)).toContain('text:77:b2');
    expect(report.graphs.every((g: { session_ms: number }) => g.session_ms > 0)).toBe(true);
    expect(report.outputs).toEqual({ image: out, latents: saved, attention_maps: null });

    const tol = (
      JSON.parse(readFileSync(join(oracleDir, 'goldens', 'manifest.json'), 'utf8')) as {
        cases: { id: string; tolerance: { pndm: { final_latents: { atol: number } } } }[];
      }
    ).cases.find((c) => c.id === 'f_txt2img')!.tolerance.pndm.final_latents.atol;
    const latents = readSafetensors(saved)['latents']!;
    expect(latents.shape).toEqual([1, 4, 32, 32]);
    expect(maxAbsDiff(latents.data as Float32Array, f['pndm.final_latents']!.data as Float32Array)).toBeLessThanOrEqual(
      tol,
    );

    // The PNG is diffusers' uint8 image: round(image * 255), up to float noise at exact halves.
    const png = decodePng(out);
    expect([png.width, png.height]).toEqual([64, 64]);
    const gold = f['pndm.image']!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < gold.length; i++) worst = Math.max(worst, Math.abs(png.data[i]! - Math.round(gold[i]! * 255)));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('runs Attend-and-Excite on --subjects: the same seed gives byte-identical files, with or without --json', () => {
    const a = join(tmp, 'ae-a.png');
    const b = join(tmp, 'ae-b.png');
    const args = [
      'a frog and a frog at artstation',
      '--model',
      tinySdDir,
      '--steps',
      '2',
      '--seed',
      '1234',
      '--method',
      'ae',
      '--subjects',
      'frog,artstation',
      '--thresholds',
      '0:0.05',
    ];
    const ra = s2i(...args, '--out', a, '--attention-maps', `${a}.maps.png`);
    expect(ra.stderr).toBe('');
    expect(ra.code).toBe(0);
    const rb = s2i(...args, '--out', b, '--attention-maps', `${b}.maps.png`, '--json');
    expect(rb.stderr).toBe('');
    expect(rb.code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(`${a}.maps.png`).equals(readFileSync(`${b}.maps.png`))).toBe(true);

    // The human summary.
    const out = ra.stdout;
    expect(out).toMatch(/^prompt {5}"a frog and a frog at artstation"$/m);
    expect(out).toMatch(/^sampler {4}pndm, 2 steps \(3 UNet calls\), guidance 7\.5$/m);
    expect(out).toMatch(/^image {6}64x64, latents \[1, 4, 32, 32\], seed 1234$/m);
    expect(out).toMatch(
      /^subjects {3}frog#1 \(token 2\), artstation \(tokens 7 'art', 8 'station'; single-token methods use 8\)$/m,
    );
    expect(out).toMatch(
      /^method {5}attend-and-excite: .*\n {11}tokens 2, 8, attn_res 16x16\n {11}max_iter_to_alter 1, thresholds 0:0\.05, scale_factor 20$/m,
    );
    expect(out).toContain('(max_iter_to_alter scaled from the 50-step defaults 25 / 0:0.05,10:0.5,20:0.8 to 2 steps)');
    expect(out).toMatch(
      /^note {7}'frog' appears 2 times in the prompt; using the first \(token 2\); write frog#2 for the second$/m,
    );
    expect(out).toMatch(
      /^note {7}'artstation' is 2 tokens \(7 'art', 8 'station'\); single-token methods use the last, 8 'station'$/m,
    );
    expect(out).toMatch(/^step +t +loss +frog#1 +artstation +tries +ms$/m);
    expect(out.match(/^ +[0-2] +\d+ +[0-9.]+\*? +[0-9.]+ +[0-9.]+ +(-|\d+) +\d+$/gm)).toHaveLength(3);
    const esc = (p: string) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // Paths inside the working directory are shown relative to it.
    expect(out).toMatch(new RegExp(`^wrote {6}${esc(basename(a))} \\(64x64 PNG\\)$`, 'm'));
    expect(out).toMatch(
      new RegExp(`^ {11}${esc(basename(a))}\\.maps\\.png \\(cross-attention 16x16, \\d+x\\d+ PNG\\)$`, 'm'),
    );

    // The JSON report: exactly one object on stdout.
    const report = JSON.parse(rb.stdout);
    expect(
      report.subjects.map((s: { word: string; token_indices: number[]; token_index: number }) => [
        s.word,
        s.token_indices,
        s.token_index,
      ]),
    ).toEqual([
      ['frog', [2], 2],
      ['artstation', [7, 8], 8],
    ]);
    expect(report.method).toMatchObject({
      name: 'attend-and-excite',
      token_indices: [2, 8],
      max_iter_to_alter: 1,
      thresholds: { 0: 0.05 },
      scale_factor: 20,
      attn_res: [16, 16],
      scaled_from_50_steps: ['max_iter_to_alter'],
    });
    expect(report.notes).toHaveLength(2);
    expect(report.timesteps).toEqual([501, 1, 1]);
    expect(report.steps).toHaveLength(3);
    for (const s of report.steps) {
      expect(s.max_attention).toHaveLength(2);
      expect(s.loss).toBeCloseTo(1 - Math.min(...s.max_attention), 5);
      expect(s.ms).toBeGreaterThan(0);
    }
    expect(report.steps.map((s: { step_size: number | null }) => s.step_size !== null)).toEqual([true, false, false]);
    expect(report.outputs).toEqual({ image: b, latents: null, attention_maps: `${b}.maps.png` });

    // The picture: one row (the mean over the 3 calls) of 128-px tiles (the 64-px image enlarged 2x), one per
    // subject token (frog, art, station), labels under them.
    const pic = decodePng(`${a}.maps.png`);
    const pad = 4;
    const labelColumn = (7 * 6 - 1) * 2 + 2 * pad; // 'mean of' / '3 steps' at font scale 2, padded
    expect(pic.height).toBe(pad + 128 + 4 + 14 + pad);
    expect(pic.width).toBe(labelColumn + pad + 3 * (128 + pad));
    const tile = (k: number) => {
      const x0 = labelColumn + pad + k * (128 + pad);
      const px: number[] = [];
      for (let y = pad; y < pad + 128; y++)
        px.push(...pic.data.subarray((y * pic.width + x0) * 3, (y * pic.width + x0 + 128) * 3));
      return Uint8Array.from(px);
    };
    const tiles = [0, 1, 2].map(tile);
    for (const t of tiles) expect(new Set(t).size).toBeGreaterThan(16); // a heat map, not a blank cell
    for (const [i, j] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const) {
      let differing = 0;
      for (let k = 0; k < tiles[i]!.length; k++) if (tiles[i]![k] !== tiles[j]![k]) differing++;
      expect(differing / tiles[i]!.length, `tiles ${i} and ${j}`).toBeGreaterThan(0.2);
    }
  });

  it('without --model uses the shipped latent shapes model with its recommended steps and guidance (s2i.json)', () => {
    const out = join(tmp, 'default-model.png');
    const r = spawnSync(
      process.execPath,
      [
        join(repoRoot, 'bin', 's2i.js'),
        'generate',
        'a red circle and a blue square',
        '--seed',
        '3',
        '--out',
        out,
        '--json',
      ],
      { cwd: tmp, encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    const recommended = JSON.parse(readFileSync(join(repoRoot, 'models', 'shapes-ldm', 's2i.json'), 'utf8'));
    expect(report.model).toBe(join(repoRoot, 'models', 'shapes-ldm'));
    expect(report.settings).toMatchObject({
      steps: recommended.steps,
      guidance: recommended.guidance,
      height: 64,
      width: 64,
      method: DEFAULT_METHOD, // Suppress-to-Impress, the default since the held-apart benchmark
    });
    expect(decodePng(out).width).toBe(64);
    // An explicit option still wins.
    const r2 = spawnSync(
      process.execPath,
      [
        join(repoRoot, 'bin', 's2i.js'),
        'generate',
        'a red circle',
        '--seed',
        '3',
        '--steps',
        '4',
        '--upscale',
        '2',
        '--out',
        out,
        '--json',
      ],
      { cwd: tmp, encoding: 'utf8', timeout: 120_000 },
    );
    expect(JSON.parse(r2.stdout).settings).toMatchObject({ steps: 4, guidance: recommended.guidance });
    expect(decodePng(out).width).toBe(128);
  });

  it('without --method, a prompt that names no noun gets plain sampling and a note; --method suppress still refuses it', () => {
    const shapes = join(repoRoot, 'models', 'shapes');
    const out = join(tmp, 'no-noun.png');
    const r = s2i('red and blue', '--model', shapes, '--steps', '2', '--seed', '1', '--out', out, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.settings.method).toBe('none');
    expect(report.notes.join('\n')).toMatch(/names no noun, so plain sampling .* --subjects or --tokens/);
    const plain = join(tmp, 'no-noun-plain.png');
    expect(
      s2i('red and blue', '--model', shapes, '--steps', '2', '--seed', '1', '--method', 'none', '--out', plain).code,
    ).toBe(0);
    expect(readFileSync(out).equals(readFileSync(plain))).toBe(true);

    const explicit = join(tmp, 'no-noun-suppress.png');
    const e = s2i('red and blue', '--model', shapes, '--steps', '2', '--method', 'suppress', '--out', explicit);
    expect(e.code).toBe(1);
    expect(e.stderr.trim().split('\n')).toHaveLength(1);
    expect(e.stderr).toMatch(
      /found no nouns in the prompt "red and blue"; name the subjects with --subjects or --tokens/,
    );
    expect(existsSync(explicit)).toBe(false);
  });

  describe('errors: exit code 1, one line on stderr, no output file', () => {
    const bad = join(tmp, 'bad.safetensors');
    writeSafetensors(bad, {
      foo: { data: new Float32Array(3 * 32 * 32), shape: [1, 3, 32, 32] },
      latents: { data: new Float32Array(4 * 16 * 16), shape: [1, 4, 16, 16] },
    });
    const cases: [string, string[], string[]][] = [
      ['unknown scheduler', ['--scheduler', 'heun'], ['--scheduler', 'heun', 'pndm, ddim, euler, euler-a, dpmpp-2m']],
      ['height not a multiple of 8', ['--height', '60'], ['--height', 'multiple of 8', '60']],
      ['missing latents key', ['--latents', `${bad}:nope`], ['--latents', bad, "'nope'", "'foo'", "'latents'"]],
      ['wrongly shaped latents', ['--latents', `${bad}:foo`], ['--latents', '[1, 3, 32, 32]', '[1, 4, h, w]']],
      [
        'latents of another size than --height',
        ['--latents', bad, '--height', '64'],
        ['[1, 4, 16, 16]', '[1, 4, 32, 32]'],
      ],
      ['unknown method', ['--method', 'magic'], ['--method', 'magic', 'attend-and-excite']],
      ['bad --tokens', ['--method', 'attend-and-excite', '--tokens', '2,x'], ['--tokens', '2,x']],
      ['--tokens out of range', ['--method', 'attend-and-excite', '--tokens', '2,6'], ['--tokens', 'token 6', '1..5']],
      [
        'bad --thresholds',
        ['--method', 'attend-and-excite', '--subjects', 'cat', '--thresholds', '0:0.05,10'],
        ['--thresholds', '"10"'],
      ],
      [
        'subject not in the prompt',
        ['--method', 'attend-and-excite', '--subjects', 'cat,zebra'],
        ['subject \'zebra\' is not in the prompt "a cat and a frog" (its words: a, cat, and, a, frog)'],
      ],
      ['A&E without subjects', ['--method', 'attend-and-excite'], ['--subjects', '--tokens']],
      ['missing model folder', ['--model', join(tmp, 'no-such-model')], [join(tmp, 'no-such-model')]],
      ['--images with --latents', ['--images', '2', '--latents', bad], ['--images 2', '--latents']],
      ['--images 0', ['--images', '0'], ['--images', '"0"']],
      ['--batch-size 0', ['--images', '2', '--batch-size', '0'], ['--batch-size', '"0"']],
    ];
    for (const [name, args, parts] of cases) {
      it(name, () => {
        const out = join(tmp, `err-${name.replace(/\W+/g, '-')}.png`);
        const withModel = args.includes('--model') ? [] : ['--model', tinySdDir];
        const r = s2i(
          PROMPT,
          ...withModel,
          ...args,
          '--steps',
          '2',
          '--out',
          out,
          '--save-latents',
          `${out}.safetensors`,
          '--attention-maps',
          `${out}.maps.png`,
        );
        expect(r.code).toBe(1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(/^s2i: error: [^\n]+\n$/);
        for (const p of parts) expect(r.stderr).toContain(p);
        expect(existsSync(out)).toBe(false);
        expect(existsSync(`${out}.safetensors`)).toBe(false);
        expect(existsSync(`${out}.maps.png`)).toBe(false);
        expect(readdirSync(tmp).filter((n) => n.includes('.tmp'))).toEqual([]);
      });
    }
  });

  it('--images N: one file per image (indexed) and a grid, --json lists them; each is the image its seed gives alone', () => {
    const run = (...args: string[]) =>
      spawnSync(
        process.execPath,
        [
          join(repoRoot, 'bin', 's2i.js'),
          'generate',
          'a red circle and a blue square',
          '--model',
          join(repoRoot, 'models', 'shapes'),
          '--steps',
          '6',
          ...args,
        ],
        { cwd: tmp, encoding: 'utf8', timeout: 120_000 },
      );
    const many = run(
      '--images',
      '3',
      '--batch-size',
      '2',
      '--seed',
      '5',
      '--method',
      'suppress',
      '--out',
      'many.png',
      '--json',
    );
    expect(many.stderr).toBe('');
    expect(many.status).toBe(0);
    const report = JSON.parse(many.stdout);
    expect(report.batch_size).toBe(2);
    expect(report.images.map((x: { seed: number; image: string }) => [x.seed, basename(x.image)])).toEqual([
      [5, 'many-0.png'],
      [6, 'many-1.png'],
      [7, 'many-2.png'],
    ]);
    expect(report.images[1].steps).toHaveLength(6);
    expect(basename(report.grid)).toBe('many-grid.png');
    const grid = decodePng(join(tmp, 'many-grid.png'));
    expect(grid.width).toBeGreaterThan(2 * 32);
    const one = run('--seed', '6', '--method', 'suppress', '--out', 'one.png');
    expect(one.status).toBe(0);
    const [a, b] = [decodePng(join(tmp, 'many-1.png')).data, decodePng(join(tmp, 'one.png')).data];
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst).toBeLessThanOrEqual(1);
    const text = run('--images', '2', '--seed', '5', '--out', 'two.png');
    expect(text.stdout).toContain('seeds 5..6 (2 images, 2 per batch)');
    expect(text.stdout).toContain('two-0.png, two-1.png (2 images, 32x32 PNG)');
  });

  it('--help reads like a manual page', () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 's2i.js'), 'generate', '--help'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    for (const s of [
      'Usage: s2i generate [options] <prompt>',
      '--attention-maps <file>',
      '--images <n>',
      '--batch-size <n>',
      'Several images (--images N):',
      'Attend-and-Excite (--method attend-and-excite):',
      'Examples:',
    ])
      expect(r.stdout).toContain(s);
    expect(r.stdout.split('\n').every((l) => l.length <= 80)).toBe(true);
  });
});

describe('subjects (tokenizer only)', () => {
  const tok = ClipTokenizer.fromFolder(join(tinySdDir, 'tokenizer'));

  it('words and token positions resolve to the same subjects', () => {
    const w = resolveWordSubjects(tok, PROMPT, 'cat,Frog');
    expect(w.subjects.map((s) => [s.word, s.tokenIndices, s.tokenTexts, s.tokenIndex])).toEqual([
      ['cat', [2], ['cat'], 2],
      ['Frog', [5], ['frog'], 5],
    ]);
    expect(w.notes).toEqual([]);
    const t = resolveTokenSubjects(tok, PROMPT, '2, 5');
    expect(t.subjects.map((s) => [s.word, s.tokenIndex, s.tokenText])).toEqual([
      ['cat', 2, 'cat'],
      ['frog', 5, 'frog'],
    ]);
  });

  it('multi-token words keep every token and single-token methods use the last', () => {
    const r = resolveWordSubjects(tok, 'an astronaut on artstation, 4k', 'artstation,4k');
    expect(r.subjects.map((s) => [s.tokenIndices, s.tokenTexts, s.tokenIndex])).toEqual([
      [[4, 5], ['art', 'station'], 5],
      [[7, 8], ['4', 'k'], 8],
    ]);
    expect(r.notes).toHaveLength(2);
  });

  it('repeated words: first occurrence by default, word#2 for the second', () => {
    const first = resolveWordSubjects(tok, 'a frog and a frog', 'frog');
    expect(first.subjects[0]!.tokenIndex).toBe(2);
    expect(first.notes[0]).toContain('frog#2');
    const second = resolveWordSubjects(tok, 'a frog and a frog', 'frog#2');
    expect(second.subjects[0]).toMatchObject({ tokenIndex: 5, occurrence: 2, occurrences: 2 });
    expect(second.notes).toEqual([]);
  });

  it('rejects what cannot be a subject', () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err(() => resolveWordSubjects(tok, PROMPT, 'zebra'))).toBe(
      `subject 'zebra' is not in the prompt "a cat and a frog" (its words: a, cat, and, a, frog)`,
    );
    expect(err(() => resolveWordSubjects(tok, PROMPT, 'frog#2'))).toContain('only one');
    expect(err(() => resolveWordSubjects(tok, PROMPT, 'cat,,frog'))).toMatch(
      /^subjects must be a comma-separated list/,
    );
    expect(err(() => resolveWordSubjects(tok, PROMPT, 'cat,cat'))).toContain('listed twice');
    expect(err(() => resolveTokenSubjects(tok, PROMPT, '0'))).toContain('outside 1..5');
    expect(err(() => resolveTokenSubjects(tok, PROMPT, '6'))).toContain('outside 1..5');
    expect(err(() => resolveTokenSubjects(tok, '', '1'))).toContain('no tokens');
    expect(err(() => resolveSubjects(tok, PROMPT, { tokens: '2', subjects: 'cat' }))).toContain('not both');
    // Cut off by the 77-token limit.
    const long = `${'very '.repeat(80)}frog`;
    expect(err(() => resolveWordSubjects(tok, long, 'frog'))).toContain('77-token limit');
  });

  it('the picture shows every real token by default', () => {
    expect(promptTokenColumns(tok, PROMPT)).toEqual([
      { index: 1, text: 'a' },
      { index: 2, text: 'cat' },
      { index: 3, text: 'and' },
      { index: 4, text: 'a' },
      { index: 5, text: 'frog' },
    ]);
  });

  it('A&E defaults scale with the step count as the oracle did', () => {
    const s10 = scaledAttendExciteDefaults(10);
    expect(s10.maxIterToAlter).toBe(5);
    expect([...s10.thresholds]).toEqual([
      [0, 0.05],
      [2, 0.5],
      [4, 0.8],
    ]);
    const s50 = scaledAttendExciteDefaults(50);
    expect(s50.maxIterToAlter).toBe(25);
    expect([...s50.thresholds]).toEqual([
      [0, 0.05],
      [10, 0.5],
      [20, 0.8],
    ]);
  });
});

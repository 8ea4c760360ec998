/** The `s2i shapes` commands through the built binary (`tsc -p .` then `node bin/s2i.js`). */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../src/image/png.js';
import { ensureBuilt, s2i as runS2i, type CliResult } from './support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 's2i-shapes-cli-'));

const s2i = (...args: string[]) => runS2i(args, { cwd: dir });

function expectUserError(r: CliResult, pattern: RegExp): void {
  expect(r.code).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^s2i: error: /);
  expect(lines[0]).toMatch(pattern);
}

beforeAll(ensureBuilt, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Line {
  file: string;
  caption: string;
  objects: { shape: string; colour: string; x: number; y: number; size: number }[];
}
const readCaptions = (out: string): Line[] =>
  readFileSync(join(out, 'captions.jsonl'), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);

describe('s2i shapes sample', () => {
  it('writes PNGs and captions.jsonl, reproducibly from the seed', () => {
    const r = s2i('shapes', 'sample', '--count', '6', '--seed', '7', '--out', 'a');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote 6 images \(32x32, seed 7\)/);
    const files = readdirSync(join(dir, 'a')).sort();
    expect(files).toEqual([
      '00000.png',
      '00001.png',
      '00002.png',
      '00003.png',
      '00004.png',
      '00005.png',
      'captions.jsonl',
    ]);
    const lines = readCaptions(join(dir, 'a'));
    expect(lines).toHaveLength(6);
    for (const line of lines) {
      const img = decodePng(join(dir, 'a', line.file));
      expect([img.width, img.height]).toEqual([32, 32]);
      expect(line.objects.length).toBeGreaterThanOrEqual(1);
      expect(line.objects.length).toBeLessThanOrEqual(3);
      for (const o of line.objects) expect(line.caption).toContain(`${o.colour} ${o.shape}`);
    }
    expect(s2i('shapes', 'sample', '--count', '6', '--seed', '7', '--out', 'b').code).toBe(0);
    expect(s2i('shapes', 'sample', '--count', '6', '--seed', '8', '--out', 'c').code).toBe(0);
    const bytes = (d: string) => readFileSync(join(dir, d, '00003.png'));
    expect(bytes('a').equals(bytes('b'))).toBe(true);
    expect(readFileSync(join(dir, 'a', 'captions.jsonl'), 'utf8')).toBe(
      readFileSync(join(dir, 'b', 'captions.jsonl'), 'utf8'),
    );
    expect(readFileSync(join(dir, 'a', 'captions.jsonl'), 'utf8')).not.toBe(
      readFileSync(join(dir, 'c', 'captions.jsonl'), 'utf8'),
    );
  });

  it('honours --size and --objects and prints JSON with --json', () => {
    const r = s2i('shapes', 'sample', '--count', '4', '--size', '48', '--objects', '2', '--out', 'd', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    const j = JSON.parse(r.stdout) as { count: number; size: number; examples: Line[]; captions: string };
    expect(j).toMatchObject({ count: 4, size: 48, seed: 0 });
    expect(j.examples).toHaveLength(4);
    for (const e of j.examples) {
      expect(e.objects).toHaveLength(2);
      expect(decodePng(join(dir, 'd', e.file)).width).toBe(48);
    }
    expect(readCaptions(join(dir, 'd'))).toEqual(j.examples);
  });

  it('rejects bad options with one-line errors naming the option', () => {
    expectUserError(s2i('shapes', 'sample', '--count', 'many'), /--count/);
    expectUserError(s2i('shapes', 'sample', '--count', '0'), /--count/);
    expectUserError(s2i('shapes', 'sample', '--count', '2', '--objects', '3-1'), /--objects/);
    expectUserError(s2i('shapes', 'sample', '--count', '2', '--objects', '4'), /--objects.*--same-shape/);
    expectUserError(s2i('shapes', 'sample', '--count', '2', '--size', '8'), /--size/);
    expectUserError(s2i('shapes', 'sample', '--count', '2', '--seed', '1.5'), /--seed/);
    writeFileSync(join(dir, 'plainfile'), 'x');
    expectUserError(s2i('shapes', 'sample', '--count', '2', '--out', 'plainfile'), /--out plainfile/);
  });
});

describe('s2i shapes score', () => {
  it('scores a sample against its caption (readable and JSON)', () => {
    expect(s2i('shapes', 'sample', '--count', '2', '--seed', '11', '--objects', '2-3', '--out', 's').code).toBe(0);
    for (const line of readCaptions(join(dir, 's'))) {
      const image = join('s', line.file);
      const text = s2i('shapes', 'score', image, '--prompt', line.caption);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toContain('full success: yes');
      expect(text.stdout).toContain(`prompt: "${line.caption}"`);
      const json = s2i('shapes', 'score', image, '--prompt', line.caption, '--json');
      expect(json.code).toBe(0);
      expect(json.stdout.trimEnd().split('\n')).toHaveLength(1);
      const report = JSON.parse(json.stdout);
      expect(report).toMatchObject({
        image,
        prompt: line.caption,
        object_recall: 1,
        binding: 1,
        leakage: 0,
        extra_objects: 0,
        full_success: true,
      });
      expect(report.objects).toHaveLength(line.objects.length);
      expect(report.detections).toHaveLength(line.objects.length);
      for (const key of ['found', 'found_shape_match', 'colour_correct', 'detected_colour', 'detected_shape'])
        expect(report.objects[0]).toHaveProperty(key);
    }
  });

  it('--min-blob-area ignores blobs below it: the objects vanish above their area, and the default equals 12 at 32x32', () => {
    const line = readCaptions(join(dir, 's'))[0]!;
    const image = join('s', line.file);
    const score = (...extra: string[]) => {
      const r = s2i('shapes', 'score', image, '--prompt', line.caption, '--json', ...extra);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { object_recall: number; detections: { area: number }[] };
    };
    const plain = score();
    expect(plain.object_recall).toBe(1);
    expect(score('--min-blob-area', '12')).toEqual(plain);
    const largest = Math.max(...plain.detections.map((d) => d.area));
    const smallest = Math.min(...plain.detections.map((d) => d.area));
    const above = score('--min-blob-area', String(largest + 1));
    expect(above.detections).toEqual([]);
    expect(above.object_recall).toBe(0);
    // Between the smallest and the largest object (seed 11's first image: 81 and 80 px): only the largest stays.
    expect(smallest).toBeLessThan(largest);
    const between = score('--min-blob-area', String(smallest + 1));
    expect(between.detections.map((d) => d.area)).toEqual([largest]);
    expectUserError(s2i('shapes', 'score', image, '--prompt', line.caption, '--min-blob-area', '0'), /--min-blob-area/);
  });

  it('reports failures in the numbers, not the exit code', () => {
    const line = readCaptions(join(dir, 's'))[0]!;
    const other =
      line.objects.map((o) => `a ${o.colour === 'red' ? 'green' : 'red'} ${o.shape}`).join(' and ') +
      ' and a blue triangle';
    const r = s2i('shapes', 'score', join('s', line.file), '--prompt', other, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.full_success).toBe(false);
    expect(report.binding).toBeLessThan(1);
    const text = s2i('shapes', 'score', join('s', line.file), '--prompt', other);
    expect(text.stdout).toMatch(/full success: no/);
  });

  it('fails with one line on stderr and exit code 1 for missing or corrupt images and bad prompts', () => {
    expectUserError(s2i('shapes', 'score', 'nope.png', '--prompt', 'a red circle'), /image nope\.png does not exist/);
    writeFileSync(join(dir, 'bad.png'), 'not a png at all');
    expectUserError(s2i('shapes', 'score', 'bad.png', '--prompt', 'a red circle'), /bad\.png is not a valid PNG/);
    expectUserError(
      s2i('shapes', 'score', join('s', '00000.png'), '--prompt', 'a hexagon and a dog'),
      /cannot parse prompt "a hexagon and a dog": unknown word "hexagon"/,
    );
    expectUserError(s2i('shapes', 'score', 'nope.png', '--prompt', 'a red cirle'), /cannot parse prompt/); // prompt checked first
    const noPrompt = s2i('shapes', 'score', join('s', '00000.png'));
    expect(noPrompt.code).toBe(1);
    expect(noPrompt.stderr).toMatch(/--prompt/);
  });
});

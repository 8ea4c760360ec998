/**
 * The part-of-speech tagger on its own thread (src/tagger-thread.ts), which `s2i generate` starts before the rest of
 * the CLI loads (src/cli/early.ts): it tags exactly as compromise does on this thread, its errors surface here, and
 * a thread that does not answer in time gives way to the tagger on this thread.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILTIN_SUITES, builtinSuitePrompts } from '../../src/bench/suites.js';
import { generateFindsSubjects } from '../../src/cli/early.js';
import type { Tagger } from '../../src/prompt/tagger.js';
import { TAGGER_MODULE, threadTagger } from '../../src/tagger-thread.js';

const require = createRequire(import.meta.url);
/** Each term's text and tags (compromise also gives every term a random id). */
const tags = (doc: unknown) =>
  (doc as { terms: { text: string; tags: string[] }[] }[]).flatMap((s) => s.terms.map((t) => `${t.text}:${t.tags}`));

const dir = mkdtempSync(join(tmpdir(), 's2i-tagger-thread-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tagger thread', () => {
  it('tags like compromise on this thread, on every built-in prompt and a few more', () => {
    const here = require(TAGGER_MODULE) as Tagger;
    const onThread = threadTagger(require.resolve(TAGGER_MODULE), () => {
      throw new Error('the thread should answer');
    });
    const prompts = [
      ...new Set(BUILTIN_SUITES.flatMap((s) => builtinSuitePrompts(s).map((p) => p.prompt))),
      'a photo of a teddy bear sitting on a wooden bench',
      'two cats and a frog, oil painting, highly detailed',
      'A Red Circle and a BLUE square!',
      '',
    ];
    for (const p of prompts) {
      expect(tags(onThread(p).json()), p).toEqual(tags(here(p).json()));
    }
  });

  it("throws the thread's error when its module cannot load", () => {
    const t = threadTagger(join(dir, 'missing.cjs'), () => {
      throw new Error('not this one');
    });
    expect(() => t('a cat').json()).toThrow(/^part-of-speech tagger: .*missing\.cjs/);
  });

  it('uses the tagger on this thread when the thread does not answer in time', () => {
    const slow = join(dir, 'slow.cjs');
    // A module that keeps its thread busy for 20 s at load.
    writeFileSync(slow, 'const end = Date.now() + 20000; while (Date.now() < end); module.exports = () => null;');
    const here: Tagger = (text) => ({ json: () => [{ terms: [{ text, tags: ['Here'] }] }] });
    const t = threadTagger(slow, () => here, 300);
    const t0 = performance.now();
    expect(tags(t('a cat').json())).toEqual(['a cat:Here']);
    expect(tags(t('a dog').json())).toEqual(['a dog:Here']); // no second wait
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});

describe('which command lines start the tagger thread early', () => {
  it.each([
    [['generate', 'a cat'], true],
    [['generate', 'a cat', '--method', 'suppress'], true],
    [['--max-memory', '8G', 'generate', 'a cat'], true],
    [['generate', 'a cat', '--method', 'none'], false],
    [['generate', '--method=none', 'a cat'], false],
    [['generate', '--', '--method', 'none'], true], // after --, a prompt
    [['bench', '--methods', 'suppress'], false],
    [['serve'], false],
    [[], false],
  ])('%j: %s', (argv, expected) => {
    expect(generateFindsSubjects(argv)).toBe(expected);
  });
});

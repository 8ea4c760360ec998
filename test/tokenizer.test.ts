import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import {
  ClipTokenizer,
  basicTokenize,
  fixText,
  parseMerges,
  parseTokenizerConfig,
  pyHtmlUnescape,
  type ClipTokenizerVariant,
} from '../src/tokenizer/index.js';
import { goldenPath, oracleDir, tinySdDir } from './support/oracle.js';

const TOKENIZER_DIR = join(tinySdDir, 'tokenizer');
const MAIN_PROMPT = 'a cat and a frog';
const BOS = 49406;
const EOS = 49407;

/** Minimal safetensors reader for the I64 tensors of a_tokens (8-byte LE header length, JSON header, LE data). */
function readI64Tensors(path: string): Map<string, { shape: number[]; data: number[] }> {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, { shape: number[]; data: number[] }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'I64') continue;
    const [begin, end] = t.data_offsets;
    const data: number[] = [];
    for (let o = 8 + headerLen + begin; o < 8 + headerLen + end; o += 8) data.push(Number(buf.readBigInt64LE(o)));
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

interface ATokensCase {
  id: string;
  params: { prompts: string[]; tokens_hf_noftfy: string[][] };
}
const manifest = JSON.parse(readFileSync(join(oracleDir, 'goldens', 'manifest.json'), 'utf8')) as {
  cases: ATokensCase[];
};
const aTokens = manifest.cases.find((c) => c.id === 'a_tokens')!;
const prompts = aTokens.params.prompts;
const golden = readI64Tensors(goldenPath('a_tokens'));

const tokenizers = new Map<ClipTokenizerVariant, ClipTokenizer>();
const tok = (v: ClipTokenizerVariant = 'hf-noftfy') => tokenizers.get(v)!;

beforeAll(() => {
  for (const v of ['hf-noftfy', 'hf-ftfy', 'openai'] as const)
    tokenizers.set(v, ClipTokenizer.fromFolder(TOKENIZER_DIR, { variant: v }));
});

describe('golden a_tokens (transformers 4.30 / openai CLIP)', () => {
  const variants = [
    ['hf-noftfy', 'hf_noftfy'],
    ['hf-ftfy', 'hf_ftfy'],
    ['openai', 'openai'],
  ] as const;
  for (const [variant, suffix] of variants) {
    it(`${variant}: every row of input_ids_${suffix} and untruncated_len_${suffix}`, () => {
      const ids = golden.get(`input_ids_${suffix}`)!;
      const lens = golden.get(`untruncated_len_${suffix}`)!;
      expect(ids.shape).toEqual([prompts.length, 77]);
      prompts.forEach((p, i) => {
        const r = tok(variant).tokenize(p);
        expect(r.ids, `row ${i}: ${JSON.stringify(p)}`).toEqual(ids.data.slice(i * 77, (i + 1) * 77));
        expect(r.untruncatedLength, `row ${i}`).toBe(lens.data[i]);
        expect(r.truncated).toBe(lens.data[i]! > 77);
      });
    });
  }

  it('token strings match the manifest tokens_hf_noftfy (untruncated)', () => {
    prompts.forEach((p, i) => {
      const ids = [BOS, ...tok().encode(p), EOS];
      expect(ids.map((id) => tok().idToToken(id))).toEqual(aTokens.params.tokens_hf_noftfy[i]);
    });
  });

  it('MAIN_PROMPT', () => {
    const r = tok().tokenize(MAIN_PROMPT);
    expect(r.ids.slice(0, 8)).toEqual([BOS, 320, 2368, 537, 320, 11438, EOS, EOS]);
    expect(r.ids).toHaveLength(77);
    expect(r.ids.slice(6).every((id) => id === EOS)).toBe(true);
    expect(r).toMatchObject({ untruncatedLength: 7, truncated: false });
    expect(tok().encode(MAIN_PROMPT)).toEqual([320, 2368, 537, 320, 11438]);
    expect(tok('openai').tokenize(MAIN_PROMPT).ids.slice(0, 8)).toEqual([BOS, 320, 2368, 537, 320, 11438, EOS, 0]);
  });
});

describe('ClipTokenizer basics', () => {
  it('exposes config and special ids', () => {
    const t = tok();
    expect(t.variant).toBe('hf-noftfy');
    expect(t.modelMaxLength).toBe(77);
    expect([t.bosId, t.eosId, t.padId, t.unkId]).toEqual([BOS, EOS, EOS, EOS]);
    expect(t.vocabSize).toBe(49408);
    expect(tok('openai').padId).toBe(0);
  });

  it('truncation keeps BOS + first maxLength-2 ids + EOS', () => {
    const long = prompts[9]!;
    const body = tok().encode(long);
    expect(body).toHaveLength(93);
    const r = tok().tokenize(long);
    expect(r.ids).toEqual([BOS, ...body.slice(0, 75), EOS]);
    expect(r).toMatchObject({ untruncatedLength: 95, truncated: true });
    const short = tok().tokenize(MAIN_PROMPT, { maxLength: 4 });
    expect(short).toEqual({ ids: [BOS, 320, 2368, EOS], untruncatedLength: 7, truncated: true });
    expect(tok().tokenize('', { maxLength: 2 }).ids).toEqual([BOS, EOS]);
    expect(() => tok().tokenize('x', { maxLength: 1 })).toThrow(RangeError);
  });

  it('keeps literal special tokens like transformers (and like the regex for openai)', () => {
    expect(tok().encode('a <|endoftext|> b')).toEqual([320, EOS, 321]);
    expect(tok().encode('a<|startoftext|>b')).toEqual([320, BOS, 321]);
    // Only the ftfy paths lower-case before the regex sees the special-token pattern.
    expect(tok().encode('<|ENDOFTEXT|>')).toEqual([283, 347, 40786, 4160, 347, 285]);
    expect(tok('hf-ftfy').encode('<|ENDOFTEXT|>')).toEqual([EOS]);
    expect(tok('openai').encode('a <|endoftext|> b')).toEqual([320, EOS, 321]);
  });

  // Expected ids from a Python 3.11 transcription of the reference code (scratch/clip_ref.py; see scratch/tok_fuzz.mts).
  it('handles Unicode like Python 3.11 (Unicode 14)', () => {
    expect(tok().encode('\u{1FAE8} shaking face')).toEqual([19101, 1710]); // emoji newer than Unicode 14: dropped
    expect(tok('hf-ftfy').encode('\u{1FAE8} shaking face')).toEqual([558, 104, 357, 19101, 1710]);
    expect(tok().encode('\u{1171E}')).toEqual([]); // Mn in Unicode 14 (Mc in newer ICU): accent-stripped
    expect(tok().encode('x\u0345y')).toEqual([11443]);
    expect(tok('hf-ftfy').encode('x\u0345y')).toEqual([343, 344]); // the regex module matches nothing for U+0345
    expect(tok().encode('i\u0307stanbul \u0130stanbul')).toEqual([12258, 12258]);
    expect(tok().encode('\u4e2d\u6587\u5b57')).toEqual([19759, 511, 29032, 485, 35751, 501]); // CJK split per char
    expect(tok().encode('\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3')).toEqual([
      139, 225, 138, 117, 139, 225, 139, 227, 139, 228, 138, 123, 139, 480,
    ]);
    expect(tok('hf-ftfy').encode('\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3')).toEqual([
      139, 225, 138, 107, 139, 225, 139, 227, 139, 228, 138, 123, 139, 480,
    ]);
    expect(tok().encode('a\u2028b')).toEqual([320, 321]);
  });

  it('ftfy subset and html.unescape', () => {
    const s = '\ufb01re &amp; &NTILDE; \u201cquoted\u201d';
    expect(tok('hf-ftfy').encode(s)).toEqual([1769, 261, 127, 365, 257, 27706, 257]);
    expect(tok().encode(s)).toEqual([
      171, 105, 223, 810, 261, 6259, 282, 261, 77, 6124, 654, 282, 728, 506, 27706, 728, 507,
    ]);
    expect(tok('hf-ftfy').encode('\uff28\uff45\uff4c\uff4c\uff4f\u3000world')).toEqual([3306, 1002]);
    expect(fixText('&lt;3 &amp;amp; it&#x2019;s')).toBe("<3 & it's");
    expect(fixText('<b>&amp;</b>\n&amp;')).toBe('<b>&amp;</b>\n&amp;'); // after a line with '<', entities stay
    expect(fixText('&amp;\n<b>&amp;')).toBe('&\n<b>&amp;');
    expect(fixText('I\x92m \x1b[31mred\x1b[0m\r\nok\u00a0')).toBe("I'm red\nok\u00a0");
    expect(pyHtmlUnescape('&amp &ampfoo; &#65;&#x42;&#0; &notit; &#1234567890;')).toBe(
      '& &foo; AB\ufffd \u00acit; \ufffd',
    );
    expect(basicTokenize("Héllo, WORLD!! it's\tcafe\u0301 \u4e2d\u6587")).toEqual([
      'hello',
      ',',
      'world',
      '!',
      '!',
      'it',
      "'",
      's',
      'cafe',
      '\u4e2d',
      '\u6587',
    ]);
  });
});

describe('words() and findWord()', () => {
  it('lists every pre-tokenised word with its positions in the padded ids', () => {
    expect(tok().words(MAIN_PROMPT)).toEqual([
      { word: 'a', tokenIndices: [1] },
      { word: 'cat', tokenIndices: [2] },
      { word: 'and', tokenIndices: [3] },
      { word: 'a', tokenIndices: [4] },
      { word: 'frog', tokenIndices: [5] },
    ]);
    const w = tok().words('Trending on ArtStation, café');
    expect(w).toEqual([
      { word: 'trending', tokenIndices: [1] },
      { word: 'on', tokenIndices: [2] },
      { word: 'artstation', tokenIndices: [3, 4] },
      { word: ',', tokenIndices: [5] },
      { word: 'cafe', tokenIndices: [6] },
    ]);
    const ids = tok().tokenize('Trending on ArtStation, café').ids;
    expect([ids[3], ids[4]].map((id) => tok().tokenText(id!))).toEqual(['art', 'station']);
  });

  it('findWord: multi-token word, repeated word, missing word, normalisation', () => {
    const t = tok();
    expect(t.findWord(MAIN_PROMPT, 'frog')).toEqual([[5]]);
    expect(t.findWord(MAIN_PROMPT, 'cat')).toEqual([[2]]);
    expect(t.findWord(MAIN_PROMPT, 'a')).toEqual([[1], [4]]);
    expect(t.findWord('a frog and another frog', 'frog')).toEqual([[2], [5]]);
    expect(t.findWord(MAIN_PROMPT, 'zebra')).toEqual([]);
    expect(t.findWord('a frogs pond', 'frog')).toEqual([]); // whole words only
    expect(t.findWord('trending on artstation', 'ArtStation')).toEqual([[3, 4]]);
    expect(t.findWord('a Café in Paris', 'CAFÉ')).toEqual([[2]]);
    expect(t.findWord('a red fox and a red hen', 'red fox')).toEqual([[2, 3]]);
    expect(t.findWord('4k photo, 4 k', '4k')).toEqual([
      [1, 2],
      [5, 6],
    ]);
    expect(() => t.findWord(MAIN_PROMPT, '   ')).toThrow(UserError);
  });

  it('omits positions cut off by truncation', () => {
    const long = prompts[9]!; // 93 tokens; 'smoke' is past position 75
    expect(tok().findWord(long, 'smoke')).toEqual([]);
    expect(tok().findWord(long, 'smoke', { maxLength: Infinity })).toEqual([[79]]);
    expect(aTokens.params.tokens_hf_noftfy[9]![79]).toBe('smoke</w>');
    const words = tok().words(long);
    expect(words.at(-1)!.tokenIndices.at(-1)).toBe(75);
    expect(words.flatMap((w) => w.tokenIndices)).toEqual(Array.from({ length: 75 }, (_, i) => i + 1));
    expect(
      tok()
        .words(long, { maxLength: Infinity })
        .flatMap((w) => w.tokenIndices),
    ).toHaveLength(93);
  });
});

describe('decode() and tokenText()', () => {
  it('round-trips prompts (normalised like the tokenizer)', () => {
    const t = tok();
    expect(t.decode(t.tokenize(MAIN_PROMPT).ids)).toBe(MAIN_PROMPT);
    expect(t.decode(t.encode(prompts[1]!))).toBe('a photo of a cat sitting on a red chair.');
    expect(t.decode(t.encode(prompts[3]!))).toBe("hello, world! it's a beautiful day... isn't it?");
    expect(t.decode(t.encode(prompts[7]!))).toBe('cafe creme brulee & naive facade');
    expect(t.decode(t.encode("don't stop \u{1F642}"))).toBe("don't stop \u{1F642}");
    expect(t.decode(t.tokenize(MAIN_PROMPT).ids.slice(0, 8), { skipSpecialTokens: false })).toBe(
      '<|startoftext|>a cat and a frog <|endoftext|><|endoftext|>',
    );
    expect(t.decode(t.encode(prompts[3]!), { cleanUpTokenizationSpaces: false })).toBe(
      "hello , world ! it ' s a beautiful day . . . isn ' t it ?",
    );
    for (const p of prompts) expect(t.encode(t.decode(t.encode(p)))).toEqual(t.encode(p));
  });

  it('tokenText gives readable labels', () => {
    const t = tok();
    expect(t.tokenText(11438)).toBe('frog');
    expect(t.tokenText(BOS)).toBe('<|startoftext|>');
    expect(t.tokenText(EOS)).toBe('<|endoftext|>');
    expect(
      t
        .tokenize(prompts[4]!)
        .ids.slice(1, 20)
        .map((id) => t.tokenText(id))
        .join('|'),
    ).toBe('an|astronaut|riding|a|horse|on|mars|,|4|k|,|trending|on|art|station|,|highly|detailed|<|endoftext|>');
    expect(() => t.tokenText(49408)).toThrow(RangeError);
  });
});

describe('loading errors', () => {
  let dir: string;
  const vocab: Record<string, number> = {
    a: 0,
    b: 1,
    'a</w>': 2,
    'b</w>': 3,
    'ab</w>': 4,
    '<|startoftext|>': 5,
    '<|endoftext|>': 6,
  };
  const write = (files: Record<string, string>) => {
    rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'tok-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  };
  const good = { 'vocab.json': JSON.stringify(vocab), 'merges.txt': '#version: 0.2\na b</w>\n' };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tok-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const fails = (files: Record<string, string>, message: RegExp) => {
    const d = write(files);
    let err: unknown;
    try {
      ClipTokenizer.fromFolder(d);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  };

  it('loads a minimal folder', () => {
    const t = ClipTokenizer.fromFolder(write(good));
    expect(t.encode('ab a')).toEqual([4, 2]);
    expect(t.tokenize('ab', { maxLength: 5 }).ids).toEqual([5, 4, 6, 6, 6]);
  });

  it('names the missing or malformed file', () => {
    fails({ 'merges.txt': good['merges.txt'] }, /vocab\.json not found/);
    fails({ 'vocab.json': good['vocab.json'] }, /merges\.txt not found/);
    fails({ ...good, 'vocab.json': '{"a": 0,' }, /vocab\.json: not valid JSON/);
    fails({ ...good, 'vocab.json': '["a"]' }, /vocab\.json: expected a JSON object/);
    fails({ ...good, 'vocab.json': '{"a": -1}' }, /vocab\.json: the id of "a"/);
    fails({ ...good, 'vocab.json': '{"a": 0, "b": 0}' }, /vocab\.json: id 0 is used by both "a" and "b"/);
    fails({ ...good, 'merges.txt': 'a b\n' }, /merges\.txt: the first line should be the '#version' header/);
    fails({ ...good, 'merges.txt': '#version: 0.2\na b c\n' }, /merges\.txt:2: expected two space-separated symbols/);
    fails({ ...good, 'merges.txt': '#version: 0.2\n' }, /merges\.txt: contains no merges/);
    fails(
      { ...good, 'tokenizer_config.json': '{"model_max_length": 1e30}' },
      /tokenizer_config\.json: model_max_length/,
    );
    fails(
      { ...good, 'tokenizer_config.json': '{"pad_token": 3}' },
      /tokenizer_config\.json: pad_token must be a string/,
    );
    fails(
      { ...good, 'special_tokens_map.json': '{"pad_token": "<pad>"}' },
      /pad_token "<pad>" is not in the vocabulary/,
    );
    fails({ ...good, 'added_tokens.json': '{}' }, /added_tokens\.json: added tokens/);
  });

  it('reads special tokens given as strings or AddedToken objects; special_tokens_map.json wins', () => {
    const t = ClipTokenizer.fromFolder(
      write({
        ...good,
        'tokenizer_config.json': JSON.stringify({
          model_max_length: 6,
          pad_token: { __type: 'AddedToken', content: '<|startoftext|>' },
        }),
        'special_tokens_map.json': JSON.stringify({ pad_token: { content: 'a' } }),
      }),
    );
    expect(t.modelMaxLength).toBe(6);
    expect(t.padId).toBe(0);
    expect(t.tokenize('b').ids).toEqual([5, 3, 6, 0, 0, 0]);
    expect(parseTokenizerConfig('{"pad_token": "!", "bos_token": {"content": "<s>"}}')).toEqual({
      padToken: '!',
      bosToken: '<s>',
    });
    expect(parseMerges('#version: 0.2\r\na b\r\nab c\n\n', 'm')).toEqual([
      ['a', 'b'],
      ['ab', 'c'],
    ]);
  });
});

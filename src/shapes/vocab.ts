/**
 * A small CLIP-format vocabulary for the shapes world. The tokenizer is CLIP's own byte-level BPE (the same
 * code, files in the same format as SD's `tokenizer/` folder); only the merges differ: the 512 byte symbols,
 * then just enough merges to make every world word a single token. Any other word still tokenises, byte by byte.
 */
import { bytesToUnicode, BytePairEncoder, END_OF_WORD } from '../tokenizer/bpe.js';
import { COLOURS, SHAPES } from './world.js';

/** Words that become single tokens: captions' words, plus a few a user is likely to type. */
export const SHAPES_WORDS: readonly string[] = [
  'a',
  'an',
  'the',
  'of',
  'and',
  'with',
  'on',
  'photo',
  'image',
  'picture',
  'one',
  'two',
  'three',
  'four',
  'five',
  'six',
  ...COLOURS,
  ...SHAPES,
  ...SHAPES.map((s) => `${s}s`),
  'white',
  'background',
  'black',
  'pink',
  'brown',
  'grey',
  'gray',
  'cat',
  'dog',
  'frog',
  'ball',
  'box',
  'star',
  'heart',
  'object',
  'objects',
  'shape',
  'shapes',
];

export interface TokenizerFiles {
  vocab: Record<string, number>;
  merges: [string, string][];
}

export function buildShapesVocabulary(words: readonly string[] = SHAPES_WORDS): TokenizerFiles {
  const byteSymbols = bytesToUnicode();
  const tokens: string[] = [...byteSymbols, ...byteSymbols.map((s) => s + END_OF_WORD)];
  const known = new Set(tokens);
  const merges: [string, string][] = [];
  for (const word of words) {
    if (!/^[a-z]+$/.test(word)) throw new Error(`shapes vocabulary: '${word}' is not a lower-case ASCII word`);
    // Segment with the merges so far, then merge left to right. New merges rank after all earlier ones, so
    // words already in the vocabulary keep tokenising to one token.
    let seg = new BytePairEncoder(merges).encode(word);
    while (seg.length > 1) {
      const pair: [string, string] = [seg[0]!, seg[1]!];
      merges.push(pair);
      const merged = pair[0] + pair[1];
      if (!known.has(merged)) {
        known.add(merged);
        tokens.push(merged);
      }
      seg = [merged, ...seg.slice(2)];
    }
  }
  tokens.push('<|startoftext|>', '<|endoftext|>');
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return { vocab, merges };
}

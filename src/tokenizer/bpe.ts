/**
 * CLIP's byte-level BPE (openai/CLIP simple_tokenizer.py, transformers CLIPTokenizer.bpe): every UTF-8 byte of a
 * pre-tokenised word is mapped to a printable character, the last one gets the end-of-word suffix '</w>', and the
 * ranked merges are applied lowest rank first until none applies.
 */

/**
 * `bytes_to_unicode()`: byte -> character. Printable Latin-1 bytes map to themselves; the other 68 (control
 * characters, space, 0x7F-0xA0, 0xAD) map to U+0100.. in byte order.
 */
export function bytesToUnicode(): string[] {
  const map = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return map;
}

export const END_OF_WORD = '</w>';

/** Above this many cached words the cache is cleared (keeps memory bounded for long-running processes). */
const MAX_CACHE = 200_000;

export class BytePairEncoder {
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();
  private readonly seeds: [string, string[]][];

  /**
   * @param merges ranked merges (rank = index); symbols never contain spaces.
   * @param seeds words whose result is fixed (CLIP pre-seeds its cache with '<|startoftext|>' and '<|endoftext|>',
   *   which therefore come out as themselves, without '</w>').
   */
  constructor(merges: readonly (readonly [string, string])[], seeds: readonly string[] = []) {
    this.ranks = new Map();
    // Like Python's dict(zip(merges, range(...))), a repeated merge keeps its last rank.
    merges.forEach(([a, b], rank) => this.ranks.set(a + ' ' + b, rank));
    this.seeds = seeds.map((s) => [s, [s]]);
    this.resetCache();
  }

  get numMerges(): number {
    return this.ranks.size;
  }

  private resetCache(): void {
    this.cache.clear();
    for (const [k, v] of this.seeds) this.cache.set(k, v);
  }

  /** BPE symbols of one byte-encoded word (non-empty). */
  encode(word: string): string[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const result = this.compute(word);
    if (this.cache.size >= MAX_CACHE) this.resetCache();
    this.cache.set(word, result);
    return result;
  }

  private compute(word: string): string[] {
    // Byte-encoded words only contain BMP characters, so UTF-16 indexing is per character.
    let symbols: string[] = word.split('');
    symbols[symbols.length - 1] += END_OF_WORD;
    if (symbols.length === 1) return symbols;
    const ranks = this.ranks;
    for (;;) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = ranks.get(symbols[i] + ' ' + symbols[i + 1]!);
        if (r !== undefined && r < best) {
          best = r;
          first = symbols[i]!;
          second = symbols[i + 1]!;
        }
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length;) {
        if (i + 1 < symbols.length && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(symbols[i]!);
          i += 1;
        }
      }
      symbols = merged;
      if (symbols.length === 1) break;
    }
    return symbols;
  }
}

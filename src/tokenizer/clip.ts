/**
 * The CLIP tokenizer of Stable Diffusion 1.x, reproducing transformers 4.30's slow `CLIPTokenizer` exactly.
 *
 * Default variant 'hf-noftfy' is what `pip install diffusers transformers` gives: neither package depends on `ftfy`,
 * and without it CLIPTokenizer pre-tokenises with BERT's BasicTokenizer (lower-case, strip accents, split off every
 * punctuation character: "it's" -> it ' s, "café" -> cafe, "..." -> . . .). Then each word matched by CLIP's regex is
 * byte-level BPE encoded with the '</w>' end-of-word suffix. `tokenize()` frames the ids like
 * `tokenizer(p, padding="max_length", max_length=77, truncation=True)`:
 * [BOS, first 75 ids, EOS, pad...]. Literal '<|startoftext|>' / '<|endoftext|>' in a prompt are kept as special tokens
 * (transformers' no-split tokens).
 *
 * Other variants (same vocabulary and BPE, different text normalisation):
 * - 'hf-ftfy': CLIPTokenizer when ftfy is importable: `whitespace_clean(ftfy.fix_text(t)).lower()` + CLIP regex.
 * - 'openai': openai/CLIP `SimpleTokenizer` + `clip.tokenize` framing: ftfy, `html.unescape` twice, whitespace_clean,
 *   lower; padded with 0; special-token strings in the text are matched by the regex instead of split off first.
 * Both use our ftfy subset (src/tokenizer/ftfy.ts), which does not repair mojibake.
 */
import { UserError } from '../errors.js';
import { errorCode, exists, files, paths, readTextFile } from '../io/files.js';
import { basicTokenize } from './basic.js';
import { BytePairEncoder, END_OF_WORD, bytesToUnicode } from './bpe.js';
import { fixText, whitespaceClean } from './ftfy.js';
import { pyHtmlUnescape } from './html.js';
import { REGEX_WHITESPACE_CLASS, pyLower, pySplit, pyStrip } from './unicode.js';
import { quote } from '../util/quote.js';

export type ClipTokenizerVariant = 'hf-noftfy' | 'hf-ftfy' | 'openai';
export const CLIP_TOKENIZER_VARIANTS: readonly ClipTokenizerVariant[] = ['hf-noftfy', 'hf-ftfy', 'openai'];

export interface ClipTokenizerConfig {
  /** Default `maxLength` of `tokenize()` (tokenizer_config.json `model_max_length`; 77 for SD). */
  modelMaxLength: number;
  bosToken: string;
  eosToken: string;
  /** Padding token of the transformers framing ('<|endoftext|>' for SD 1.x; the 'openai' variant pads with id 0). */
  padToken: string;
  /** Token for BPE symbols missing from the vocabulary (never happens with a consistent vocab/merges pair). */
  unkToken: string;
  /** `decode()` applies transformers' `clean_up_tokenization` (" ," -> ",", " ' " -> "'", ...). */
  cleanUpTokenizationSpaces: boolean;
}

export const DEFAULT_CLIP_TOKENIZER_CONFIG: Readonly<ClipTokenizerConfig> = {
  modelMaxLength: 77,
  bosToken: '<|startoftext|>',
  eosToken: '<|endoftext|>',
  padToken: '<|endoftext|>',
  unkToken: '<|endoftext|>',
  cleanUpTokenizationSpaces: true,
};

export interface ClipTokenizerInit {
  /** vocab.json: token string -> id. */
  vocab: ReadonlyMap<string, number> | Readonly<Record<string, number>>;
  /** Ranked merges (rank = index), e.g. from `parseMerges`. */
  merges: readonly (readonly [string, string])[];
  config?: Partial<ClipTokenizerConfig>;
  variant?: ClipTokenizerVariant;
  /** Names the source in error messages (e.g. the tokenizer folder). */
  source?: string;
}

export interface TokenizeOptions {
  /** Length of `ids` (default `modelMaxLength`); at least 2. */
  maxLength?: number;
}

export interface WordOptions {
  /** Token positions at or past `maxLength - 1` are cut off as by `tokenize()` (default `modelMaxLength`; may be Infinity). */
  maxLength?: number;
}

export interface TokenizedPrompt {
  /** [BOS, ids..., EOS, pad...], exactly `maxLength` long; when truncated, the first maxLength-2 ids then EOS. */
  ids: number[];
  /** Length including BOS and EOS before truncation. */
  untruncatedLength: number;
  truncated: boolean;
}

export interface PromptWord {
  /** The pre-tokenised word as the BPE sees it (normalised: lower-case; accents stripped in 'hf-noftfy'). */
  word: string;
  /** Its positions in `tokenize(text).ids` (BOS is position 0); several when BPE splits the word. */
  tokenIndices: number[];
}

export interface DecodeOptions {
  /** Drop BOS/EOS/PAD/UNK ids (default true; transformers' default is false). */
  skipSpecialTokens?: boolean;
  /** Default: the config's `cleanUpTokenizationSpaces`. */
  cleanUpTokenizationSpaces?: boolean;
}

/** One pre-tokenised word and its BPE ids. */
interface Piece {
  text: string;
  ids: number[];
}

// CLIP's word regex, compiled with `regex` and re.IGNORECASE in Python:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// The text is already lower-cased, so case-insensitivity only matters through case folding: 'ſ' matches 's', and
// the `regex` module's negated class also rejects U+0345 (it folds to the letter ι), which therefore matches nothing
// and is dropped. `\s` is the regex module's (Unicode White_Space), not JavaScript's.
const CLIP_WORD_RE = new RegExp(
  "<\\|[sſ]tartoftext\\|>|<\\|endoftext\\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|" +
    `[^${REGEX_WHITESPACE_CLASS}\\p{L}\\p{N}\\u0345]+`,
  'gu',
);

/** Where `visibleText` may cut: before a whitespace, or between punctuation and a letter or digit. */
const CUT_SOURCE = '\\s|(?<=[^\\s\\p{L}\\p{N}\\p{M}])(?=[\\p{L}\\p{N}])';
const CUT_RE = new RegExp(CUT_SOURCE, 'u');
const CUT_RE_ALL = new RegExp(CUT_SOURCE, 'gu');

/** CLIP pre-seeds its BPE cache with these, so they map to their own ids wherever the regex finds them. */
const CLIP_CACHE_SEEDS = ['<|startoftext|>', '<|endoftext|>'];

/** transformers reads `merges.txt` as `read().strip().split("\n")[1 : 49152 - 256 - 2 + 1]`. */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;

const BYTE_ENCODER = bytesToUnicode();
const BYTE_DECODER = new Map<string, number>(BYTE_ENCODER.map((c, b) => [c, b]));
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Token string -> bytes via the byte decoder (characters outside it, e.g. in unusual special tokens, as UTF-8). */
function tokenBytes(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const b = BYTE_DECODER.get(ch);
    if (b !== undefined) out.push(b);
    else for (const x of utf8Encoder.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}

/** transformers `clean_up_tokenization`. */
function cleanUpTokenization(s: string): string {
  return s
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

export class ClipTokenizer {
  readonly variant: ClipTokenizerVariant;
  readonly config: Readonly<ClipTokenizerConfig>;
  readonly bosId: number;
  readonly eosId: number;
  /** Id used for padding by `tokenize()`: the config's pad token, or 0 for the 'openai' variant. */
  readonly padId: number;
  readonly unkId: number;
  private readonly encoder: Map<string, number>;
  private readonly decoder: Map<number, string>;
  private readonly bpe: BytePairEncoder;
  private readonly specialIds: Set<number>;
  /** Splits off literal special tokens (hf variants); undefined for 'openai'. */
  private readonly specialSplitRe: RegExp | undefined;
  private readonly specialTokens: Set<string>;

  /**
   * Loads vocab.json and merges.txt (required) and tokenizer_config.json / special_tokens_map.json (optional; the
   * latter overrides the former, as in transformers) from a transformers tokenizer folder such as SD's `tokenizer/`.
   */
  static fromFolder(dir: string, options: { variant?: ClipTokenizerVariant } = {}): ClipTokenizer {
    const { join } = paths;
    const vocabPath = join(dir, 'vocab.json');
    const mergesPath = join(dir, 'merges.txt');
    const vocab = parseVocab(readRequired(vocabPath), vocabPath);
    const merges = parseMerges(readRequired(mergesPath), mergesPath);
    const addedPath = join(dir, 'added_tokens.json');
    if (exists(addedPath)) {
      throw new UserError(`${addedPath}: added tokens (e.g. textual inversion) are not supported by this tokenizer`);
    }
    const config: Partial<ClipTokenizerConfig> = {};
    for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
      const path = join(dir, name);
      if (exists(path)) Object.assign(config, parseTokenizerConfig(readRequired(path), path));
    }
    return new ClipTokenizer({ vocab, merges, config, variant: options.variant, source: dir });
  }

  constructor(init: ClipTokenizerInit) {
    const source = init.source ?? 'tokenizer';
    const variant = init.variant ?? 'hf-noftfy';
    if (!CLIP_TOKENIZER_VARIANTS.includes(variant)) {
      throw new UserError(
        `tokenizer variant '${String(variant)}' is unknown (use ${CLIP_TOKENIZER_VARIANTS.join(', ')})`,
      );
    }
    this.variant = variant;
    const config: ClipTokenizerConfig = { ...DEFAULT_CLIP_TOKENIZER_CONFIG };
    for (const [k, v] of Object.entries(init.config ?? {})) {
      if (v !== undefined) (config as unknown as Record<string, unknown>)[k] = v;
    }
    const mml = config.modelMaxLength;
    if (!Number.isInteger(mml) || mml < 2 || mml > 1_000_000) {
      throw new UserError(`${source}: model_max_length must be an integer from 2 to 1000000, got ${String(mml)}`);
    }
    this.config = Object.freeze(config);

    this.encoder = init.vocab instanceof Map ? new Map(init.vocab) : new Map(Object.entries(init.vocab));
    this.decoder = new Map();
    for (const [token, id] of this.encoder) {
      if (!Number.isInteger(id) || id < 0) {
        throw new UserError(`${source}: vocabulary id of ${JSON.stringify(token)} is not a non-negative integer`);
      }
      const other = this.decoder.get(id);
      if (other !== undefined) {
        throw new UserError(
          `${source}: vocabulary id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`,
        );
      }
      this.decoder.set(id, token);
    }
    const idOf = (key: string, token: string): number => {
      const id = this.encoder.get(token);
      if (id === undefined) throw new UserError(`${source}: ${key} ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    };
    this.bosId = idOf('bos_token', config.bosToken);
    this.eosId = idOf('eos_token', config.eosToken);
    this.unkId = idOf('unk_token', config.unkToken);
    const hfPadId = idOf('pad_token', config.padToken);
    this.padId = variant === 'openai' ? 0 : hfPadId;
    this.specialIds = new Set([this.bosId, this.eosId, this.unkId, hfPadId]);
    this.specialTokens = new Set([config.bosToken, config.eosToken, config.unkToken, config.padToken]);
    if (variant === 'openai') {
      this.specialSplitRe = undefined;
    } else {
      // transformers' Trie.split takes the longest special token at the earliest position.
      const alternatives = [...this.specialTokens].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.specialSplitRe = new RegExp(`(${alternatives.join('|')})`);
    }
    this.bpe = new BytePairEncoder(init.merges, CLIP_CACHE_SEEDS);
  }

  get modelMaxLength(): number {
    return this.config.modelMaxLength;
  }

  /** Number of vocabulary entries (transformers' `vocab_size`). */
  get vocabSize(): number {
    return this.encoder.size;
  }

  /** The largest token id the vocabulary holds (a text encoder needs an embedding row for each id up to it). */
  get maxId(): number {
    let max = 0;
    for (const id of this.decoder.keys()) if (id > max) max = id;
    return max;
  }

  /** BPE ids of the prompt, without BOS/EOS and untruncated. */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const p of this.pieces(text)) for (const id of p.ids) out.push(id);
    return out;
  }

  /** The model input: `maxLength` ids framed and padded like `tokenizer(text, padding="max_length", truncation=True)`. */
  tokenize(text: string, options: TokenizeOptions = {}): TokenizedPrompt {
    const maxLength = this.checkMaxLength(options.maxLength, false);
    const body = this.encode(text);
    const untruncatedLength = body.length + 2;
    const truncated = untruncatedLength > maxLength;
    const ids = [this.bosId];
    const n = Math.min(body.length, maxLength - 2);
    for (let i = 0; i < n; i++) ids.push(body[i]!);
    ids.push(this.eosId);
    while (ids.length < maxLength) ids.push(this.padId);
    return { ids, untruncatedLength, truncated };
  }

  /**
   * Text of token ids, as transformers' `decode(ids, skip_special_tokens=True)` (by default): bytes decoded as UTF-8
   * (invalid sequences become U+FFFD), '</w>' -> ' ', stripped, then `clean_up_tokenization`.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.config.cleanUpTokenizationSpaces;
    let joined = '';
    for (const id of ids) {
      if (skip && this.specialIds.has(id)) continue;
      joined += this.idToToken(id);
    }
    const text = pyStrip(utf8Decoder.decode(tokenBytes(joined)).replaceAll(END_OF_WORD, ' '));
    return cleanUp ? cleanUpTokenization(text) : text;
  }

  /** The vocabulary string of an id (byte-level characters, with '</w>'), e.g. 'frog</w>'. */
  idToToken(id: number): string {
    const token = this.decoder.get(id);
    if (token === undefined) throw new RangeError(`token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
    return token;
  }

  /** Readable text of one token, for labels: 'frog</w>' -> 'frog', 'art' -> 'art', specials as themselves. */
  tokenText(id: number): string {
    const token = this.idToToken(id);
    if (this.specialTokens.has(token)) return token;
    return utf8Decoder.decode(tokenBytes(token)).replaceAll(END_OF_WORD, '');
  }

  /**
   * The pre-tokenised words of the prompt in order (the units BPE encodes: runs of letters, single digits, runs of
   * other symbols, literal special tokens) with their positions in `tokenize(text).ids`. Positions cut off by
   * truncation are left out, and so are words left without any.
   */
  words(text: string, options: WordOptions = {}): PromptWord[] {
    const lastKept = this.checkMaxLength(options.maxLength, true) - 2; // last position before EOS
    const out: PromptWord[] = [];
    let pos = 1;
    for (const p of this.pieces(text)) {
      const tokenIndices: number[] = [];
      for (let k = 0; k < p.ids.length; k++, pos++) if (pos <= lastKept) tokenIndices.push(pos);
      if (tokenIndices.length > 0) out.push({ word: p.text, tokenIndices });
    }
    return out;
  }

  /**
   * The start of `text` that holds every token `tokenize()` keeps (the first `maxLength - 2`), cut at a whitespace
   * or between punctuation and a letter or digit, so that no word is split: the text the encoder sees, for analyses
   * slower than tokenizing (the subject finder's tagger). The whole text when it is not truncated or has nowhere to
   * cut. Pre-tokenising works word by word, so the prefix's tokens are the text's first tokens.
   */
  visibleText(text: string, options: TokenizeOptions = {}): string {
    const keep = this.checkMaxLength(options.maxLength, false) - 2;
    const enough = (end: number) => this.encode(text.slice(0, end)).length >= keep;
    // Grow a prefix until it holds enough tokens, then narrow down to the shortest.
    const cutAfter = (from: number) => {
      const m = CUT_RE.exec(text.slice(from));
      return m ? from + m.index : text.length;
    };
    let lo = 0;
    let hi = cutAfter(Math.min(text.length, 4 * keep));
    while (hi < text.length && !enough(hi)) {
      lo = hi;
      hi = cutAfter(Math.min(text.length, 2 * hi + 1));
    }
    if (hi >= text.length) return text;
    // The shortest whitespace-cut prefix in (lo, hi] with enough tokens.
    const cuts: number[] = [];
    for (const m of text.slice(lo + 1, hi).matchAll(CUT_RE_ALL)) cuts.push(lo + 1 + m.index);
    cuts.push(hi);
    let a = 0,
      b = cuts.length - 1;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (enough(cuts[mid]!)) b = mid;
      else a = mid + 1;
    }
    return text.slice(0, cuts[a]);
  }

  /**
   * Every occurrence of `word` in the prompt: for each, its token positions in `tokenize(text).ids`. The word is
   * normalised and pre-tokenised exactly like the prompt ('Café' finds 'cafe'); if that gives several words ('4k',
   * "it's", 'red fox'), they must occur consecutively. Whole words only: 'frog' does not match 'frogs'. Occurrences
   * do not overlap; those entirely cut off by truncation are omitted. An empty result means "not in the prompt".
   * Throws UserError if `word` normalises to nothing (e.g. only spaces).
   */
  findWord(text: string, word: string, options: WordOptions = {}): number[][] {
    const lastKept = this.checkMaxLength(options.maxLength, true) - 2;
    const query = this.pieces(word).map((p) => p.text);
    if (query.length === 0) {
      throw new UserError(`cannot look for ${quote(word)} in the prompt: it is empty after normalisation`);
    }
    const pieces = this.pieces(text);
    const starts: number[] = [];
    let pos = 1;
    for (const p of pieces) {
      starts.push(pos);
      pos += p.ids.length;
    }
    const out: number[][] = [];
    for (let i = 0; i + query.length <= pieces.length;) {
      let match = true;
      for (let j = 0; j < query.length; j++) {
        if (pieces[i + j]!.text !== query[j]) {
          match = false;
          break;
        }
      }
      if (!match) {
        i++;
        continue;
      }
      const indices: number[] = [];
      for (let j = 0; j < query.length; j++) {
        const p = pieces[i + j]!;
        for (let k = 0; k < p.ids.length; k++) if (starts[i + j]! + k <= lastKept) indices.push(starts[i + j]! + k);
      }
      if (indices.length > 0) out.push(indices);
      i += query.length;
    }
    return out;
  }

  private checkMaxLength(maxLength: number | undefined, allowInfinity: boolean): number {
    const m = maxLength ?? this.config.modelMaxLength;
    if (allowInfinity && m === Infinity) return m;
    if (!Number.isInteger(m) || m < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${m}`);
    return m;
  }

  /** Text normalisation of one chunk (between special tokens), as the chosen variant does it. */
  private normalize(chunk: string): string {
    switch (this.variant) {
      case 'hf-noftfy':
        return basicTokenize(chunk).join(' ');
      case 'hf-ftfy':
        return pyLower(whitespaceClean(fixText(chunk)));
      case 'openai':
        return pyLower(whitespaceClean(pyStrip(pyHtmlUnescape(pyHtmlUnescape(fixText(chunk))))));
    }
  }

  private pieces(text: string): Piece[] {
    const out: Piece[] = [];
    // With a capturing group, split() alternates: text, special token, text, ...
    const chunks = this.specialSplitRe ? text.split(this.specialSplitRe) : [text];
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      if (c % 2 === 1) {
        out.push({ text: chunk, ids: [this.encoder.get(chunk)!] });
        continue;
      }
      if (chunk === '') continue;
      for (const m of this.normalize(chunk).matchAll(CLIP_WORD_RE)) {
        const w = m[0];
        let encoded = '';
        for (const b of utf8Encoder.encode(w)) encoded += BYTE_ENCODER[b];
        const ids = this.bpe.encode(encoded).map((s) => this.encoder.get(s) ?? this.unkId);
        out.push({ text: w, ids });
      }
    }
    return out;
  }
}

function readRequired(path: string): string {
  try {
    return readTextFile(files(), path);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ENOENT') throw new UserError(`tokenizer file ${path} not found`);
    throw new UserError(`cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** vocab.json: a JSON object mapping token strings to distinct non-negative integer ids. */
export function parseVocab(text: string, path = 'vocab.json'): Map<string, number> {
  const obj = parseJson(text, path);
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new UserError(`${path}: expected a JSON object mapping tokens to ids`);
  }
  const vocab = new Map<string, number>();
  const seen = new Map<number, string>();
  for (const [token, id] of Object.entries(obj)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new UserError(
        `${path}: the id of ${JSON.stringify(token)} is ${JSON.stringify(id)}, not a non-negative integer`,
      );
    }
    const other = seen.get(id);
    if (other !== undefined) {
      throw new UserError(`${path}: id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    }
    seen.set(id, token);
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new UserError(`${path}: the vocabulary is empty`);
  return vocab;
}

/**
 * merges.txt: a '#version' header line, then one merge per line ("a b"). Like transformers, only the first
 * `CLIP_MAX_MERGES` (48894) merges are used.
 */
export function parseMerges(text: string, path = 'merges.txt'): [string, string][] {
  const lines = pyStrip(text).split('\n');
  if (!lines[0]!.startsWith('#')) {
    throw new UserError(
      `${path}: the first line should be the '#version' header, got ${JSON.stringify(lines[0]!.slice(0, 40))}`,
    );
  }
  const body = lines.slice(1, 1 + CLIP_MAX_MERGES);
  if (body.length === 0) throw new UserError(`${path}: contains no merges`);
  return body.map((line, i) => {
    const parts = pySplit(line);
    if (parts.length !== 2) {
      throw new UserError(
        `${path}:${i + 2}: expected two space-separated symbols, got ${JSON.stringify(line.slice(0, 40))}`,
      );
    }
    return [parts[0]!, parts[1]!];
  });
}

const TOKEN_KEYS: readonly [string, 'bosToken' | 'eosToken' | 'padToken' | 'unkToken'][] = [
  ['bos_token', 'bosToken'],
  ['eos_token', 'eosToken'],
  ['pad_token', 'padToken'],
  ['unk_token', 'unkToken'],
];

/**
 * The settings we use from tokenizer_config.json or special_tokens_map.json: `model_max_length`,
 * `clean_up_tokenization_spaces`, and bos/eos/pad/unk tokens given as a string or as an AddedToken-like object
 * `{"content": ...}`. Other keys are ignored.
 */
export function parseTokenizerConfig(text: string, path = 'tokenizer_config.json'): Partial<ClipTokenizerConfig> {
  const obj = parseJson(text, path);
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new UserError(`${path}: expected a JSON object`);
  }
  const o = obj as Record<string, unknown>;
  const out: Partial<ClipTokenizerConfig> = {};
  for (const [key, field] of TOKEN_KEYS) {
    if (!(key in o)) continue;
    const v = o[key];
    if (typeof v === 'string') out[field] = v;
    else if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') {
      out[field] = (v as { content: string }).content;
    } else {
      throw new UserError(
        `${path}: ${key} must be a string or an object with a string "content", got ${JSON.stringify(v)}`,
      );
    }
  }
  if ('model_max_length' in o) {
    const v = o['model_max_length'];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 2 || v > 1_000_000) {
      throw new UserError(`${path}: model_max_length must be an integer from 2 to 1000000, got ${JSON.stringify(v)}`);
    }
    out.modelMaxLength = v;
  }
  if ('clean_up_tokenization_spaces' in o) {
    const v = o['clean_up_tokenization_spaces'];
    if (typeof v !== 'boolean') {
      throw new UserError(`${path}: clean_up_tokenization_spaces must be true or false, got ${JSON.stringify(v)}`);
    }
    out.cleanUpTokenizationSpaces = v;
  }
  return out;
}

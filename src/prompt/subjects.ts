/**
 * Which prompt tokens a method should act on ("subjects"), from what a user types:
 *
 * - token positions, `--tokens 2,5`: diffusers' indexing into the 77 ids, SOT = 0, so in "a cat and a frog"
 *   cat = 2 and frog = 5. Each must name a real token of the prompt: 1 .. the last one before EOS.
 * - words, `--subjects cat,frog`: looked up with the tokenizer's own normalisation ('Cat' finds 'cat', 'red fox'
 *   finds the two consecutive words). Decisions:
 *   - a word that BPE splits into several tokens ('artstation' → art + station) keeps all of them in
 *     `tokenIndices` (for pictures and multi-token methods); single-token methods such as Attend-and-Excite use
 *     its LAST token (`tokenIndex`), because CLIP's text encoder is causal: only the last piece of a word has
 *     attended to the whole word. A note says so.
 *   - a word that appears several times resolves to its first occurrence (with a note); `frog#2` picks the second.
 *   - a word that is not in the prompt is a UserError listing the prompt's words; one cut off by the 77-token
 *     limit says that instead.
 *   Subjects are separated by commas, so a subject cannot itself contain a comma.
 */
import { FieldError, UserError } from '../errors.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import { escapeControls, quote, quoteWord } from '../util/quote.js';

export interface Subject {
  /** What was asked for: the word as typed ('frog', 'frog#2') or the token position ('5'). */
  query: string;
  /** The subject word (for `--tokens`: the prompt word that holds the token, as the tokenizer normalised it). */
  word: string;
  /** Which occurrence of the word in the prompt (1-based). */
  occurrence: number;
  /** How many times the word occurs in the (untruncated) prompt. */
  occurrences: number;
  /** Positions in the 77 ids (SOT = 0): every token of the word (for `--tokens`: just the one given). */
  tokenIndices: number[];
  /** Readable text of each of those tokens ('art', 'station'). */
  tokenTexts: string[];
  /** The one token a single-token method (Attend-and-Excite) uses: the last of `tokenIndices`. */
  tokenIndex: number;
  tokenText: string;
}

export interface ResolvedSubjects {
  /** 'tokens' for `--tokens`, 'words' for `--subjects`. */
  source: 'tokens' | 'words';
  subjects: Subject[];
  /** Things the user should be told about how subjects were chosen (multi-token words, repeated words). */
  notes: string[];
}

/** The single-token positions (`Subject.tokenIndex`) of resolved subjects, e.g. for Attend-and-Excite. */
export function subjectTokenIndices(resolved: ResolvedSubjects): number[] {
  return resolved.subjects.map((s) => s.tokenIndex);
}

/** A short human description: `cat (2), artstation (14 art, 15 station → 15)`. */
export function describeSubject(s: Subject): string {
  const name = s.occurrences > 1 ? `${s.word}#${s.occurrence}` : s.word;
  if (s.tokenIndices.length === 1)
    return `${name} (token ${s.tokenIndex}${s.tokenText !== s.word ? ` '${s.tokenText}'` : ''})`;
  const parts = s.tokenIndices.map((i, k) => `${i} '${s.tokenTexts[k]}'`).join(', ');
  return `${name} (tokens ${parts}; single-token methods use ${s.tokenIndex})`;
}

function promptWords(tokenizer: ClipTokenizer, prompt: string): string {
  const words = tokenizer.words(prompt, { maxLength: Infinity }).map((w) => w.word);
  if (words.length === 0) return 'none';
  const shown = words.slice(0, 12).map((w) => escapeControls(w.length > 24 ? `${w.slice(0, 24)}...` : w));
  return words.length > shown.length ? `${shown.join(', ')}, ... (${words.length} words)` : shown.join(', ');
}

function splitList(spec: string, option: string): string[] {
  const items = spec.split(',').map((s) => s.trim());
  if (spec.trim() === '' || items.some((s) => s === '')) {
    throw new FieldError(option, ` must be a comma-separated list with no empty items, got ${quote(spec)}`);
  }
  return items;
}

function checkDistinct(subjects: Subject[], option: string): void {
  for (let a = 0; a < subjects.length; a++) {
    for (let b = a + 1; b < subjects.length; b++) {
      const sa = subjects[a]!,
        sb = subjects[b]!;
      const shared = sa.tokenIndices.filter((i) => sb.tokenIndices.includes(i));
      if (shared.length > 0 || sa.tokenIndex === sb.tokenIndex) {
        const what =
          sa.query === sb.query
            ? `${quoteWord(sa.query)} is listed twice`
            : `${quoteWord(sa.query)} and ${quoteWord(sb.query)} overlap (token ${shared[0] ?? sa.tokenIndex})`;
        throw new FieldError(option, `: ${what}`);
      }
    }
  }
}

/** Positions of the real tokens of a prompt in its 77 ids: 1 .. last before EOS (empty for an empty prompt). */
export function realTokenRange(tokenizer: ClipTokenizer, prompt: string): { first: number; last: number } {
  const t = tokenizer.tokenize(prompt, { maxLength: tokenizer.modelMaxLength });
  const eos = t.ids.indexOf(tokenizer.eosId, 1);
  return { first: 1, last: (eos < 0 ? t.ids.length : eos) - 1 };
}

/** `--tokens 2,5`: explicit positions (SOT = 0), validated against the prompt. */
export function resolveTokenSubjects(
  tokenizer: ClipTokenizer,
  prompt: string,
  spec: string,
  option = 'tokens',
): ResolvedSubjects {
  const items = splitList(spec, option);
  const ids = tokenizer.tokenize(prompt, { maxLength: tokenizer.modelMaxLength }).ids;
  const { last } = realTokenRange(tokenizer, prompt);
  if (last < 1) throw new FieldError(option, `: the prompt ${quote(prompt)} has no tokens to choose from`);
  const words = tokenizer.words(prompt);
  const subjects = items.map((item): Subject => {
    const v = /^\d+$/.test(item) ? Number(item) : NaN;
    if (!Number.isSafeInteger(v))
      throw new FieldError(option, ` must be token positions such as 2,5, got ${quote(spec)}`);
    if (v < 1 || v > last) {
      throw new FieldError(
        option,
        `: token ${v} is outside 1..${last}, the prompt's tokens (0 is the start token, ${last + 1} the end token; prompt ${quote(prompt)})`,
      );
    }
    const owner = words.find((w) => w.tokenIndices.includes(v));
    const word = owner?.word ?? tokenizer.tokenText(ids[v]!);
    const same = words.filter((w) => w.word === word);
    const occurrence = owner ? same.indexOf(owner) + 1 : 1;
    const text = tokenizer.tokenText(ids[v]!);
    return {
      query: item,
      word,
      occurrence,
      occurrences: Math.max(1, same.length),
      tokenIndices: [v],
      tokenTexts: [text],
      tokenIndex: v,
      tokenText: text,
    };
  });
  checkDistinct(subjects, option);
  const notes: string[] = [];
  for (const s of subjects) {
    const owner = words.find((w) => w.tokenIndices.includes(s.tokenIndex));
    if (owner && owner.tokenIndices.length > 1) {
      notes.push(
        `token ${s.tokenIndex} '${s.tokenText}' is one of the ${owner.tokenIndices.length} tokens of '${owner.word}' (${owner.tokenIndices.join(', ')})`,
      );
    }
  }
  return { source: 'tokens', subjects, notes };
}

/** `--subjects cat,frog` (or `frog#2` for a later occurrence): words looked up in the prompt. */
export function resolveWordSubjects(
  tokenizer: ClipTokenizer,
  prompt: string,
  spec: string,
  option = 'subjects',
): ResolvedSubjects {
  const items = splitList(spec, option);
  const ids = tokenizer.tokenize(prompt, { maxLength: tokenizer.modelMaxLength }).ids;
  const notes: string[] = [];
  const subjects = items.map((item): Subject => {
    const m = /^(.*?)#(\d+)$/s.exec(item);
    const word = (m ? m[1]! : item).trim();
    const wanted = m ? Number(m[2]) : 1;
    if (word === '') throw new FieldError(option, `: ${quoteWord(item)} has no word before '#'`);
    if (m && wanted < 1) throw new FieldError(option, `: ${quoteWord(item)}: occurrences count from 1`);
    let found: number[][];
    try {
      found = tokenizer.findWord(prompt, word);
    } catch (e) {
      if (e instanceof UserError) throw new FieldError(option, `: ${e.message}`);
      throw e;
    }
    const all = tokenizer.findWord(prompt, word, { maxLength: Infinity });
    if (all.length === 0) {
      throw new UserError(
        `subject ${quoteWord(word)} is not in the prompt ${quote(prompt)} (its words: ${promptWords(tokenizer, prompt)})`,
      );
    }
    if (wanted > all.length) {
      throw new FieldError(
        option,
        `: ${quoteWord(item)} asks for occurrence ${wanted} of ${quoteWord(word)}, but the prompt has ${all.length === 1 ? 'only one' : `only ${all.length}`}`,
      );
    }
    const tokens = found[wanted - 1];
    const full = all[wanted - 1]!;
    if (!tokens || tokens.length < full.length) {
      throw new FieldError(
        option,
        `: ${quoteWord(item)} lies past the ${tokenizer.modelMaxLength}-token limit of the prompt (it is cut off; move it earlier or shorten the prompt)`,
      );
    }
    const texts = tokens.map((i) => tokenizer.tokenText(ids[i]!));
    if (!m && all.length > 1)
      notes.push(
        `'${word}' appears ${all.length} times in the prompt; using the first (token ${tokens.join(', ')}); write ${word}#2 for the second`,
      );
    if (tokens.length > 1) {
      notes.push(
        `'${word}' is ${tokens.length} tokens (${tokens.map((i, k) => `${i} '${texts[k]}'`).join(', ')}); single-token methods use the last, ${tokens[tokens.length - 1]} '${texts[texts.length - 1]}'`,
      );
    }
    return {
      query: item,
      word,
      occurrence: wanted,
      occurrences: all.length,
      tokenIndices: tokens,
      tokenTexts: texts,
      tokenIndex: tokens[tokens.length - 1]!,
      tokenText: texts[texts.length - 1]!,
    };
  });
  checkDistinct(subjects, option);
  return { source: 'words', subjects, notes };
}

/**
 * Subjects from either option (exactly one of them must be given). Returns null when neither is.
 */
export function resolveSubjects(
  tokenizer: ClipTokenizer,
  prompt: string,
  spec: { tokens?: string | undefined; subjects?: string | undefined },
): ResolvedSubjects | null {
  if (spec.tokens !== undefined && spec.subjects !== undefined)
    throw new FieldError('tokens', (name, nameOf) => `give either ${name} or ${nameOf('subjects')}, not both`);
  if (spec.tokens !== undefined) return resolveTokenSubjects(tokenizer, prompt, spec.tokens);
  if (spec.subjects !== undefined) return resolveWordSubjects(tokenizer, prompt, spec.subjects);
  return null;
}

/** JSON form for `--json`. */
export function subjectsJson(resolved: ResolvedSubjects): Record<string, unknown>[] {
  return resolved.subjects.map((s) => ({
    query: s.query,
    word: s.word,
    occurrence: s.occurrence,
    token_indices: s.tokenIndices,
    token_texts: s.tokenTexts,
    token_index: s.tokenIndex,
    token_text: s.tokenText,
  }));
}

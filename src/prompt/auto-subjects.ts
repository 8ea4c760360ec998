/**
 * `--subjects auto`: the nouns of the prompt and the adjectives that modify them, found with compromise
 * (a small rule-based English part-of-speech tagger: no model download, no native code, MIT, maintained
 * since 2011 — enough for prompts, which are mostly noun phrases; the platform installs it, see tagger.ts), then
 * mapped to token positions with the tokenizer's own word split.
 *
 * Rules: a run of nouns is one subject whose head (the last noun) stands for it ("teddy bear" → bear, with
 * both words' tokens edited); adjectives directly before it in the same phrase (skipping determiners, numbers
 * and adverbs) are its attributes; framing nouns before "of" ("a photo of", "an image of") are not subjects.
 */
import { FieldError } from '../errors.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import type { Subject } from './subjects.js';
import { tagger } from './tagger.js';
import { quote } from '../util/quote.js';

export interface AttributeLink {
  attribute: Subject;
  /** Index into `subjects`. */
  subject: number;
}

export interface AutoSubjects {
  subjects: Subject[];
  attributes: AttributeLink[];
  notes: string[];
}

const FRAME_NOUNS = new Set([
  'photo',
  'photograph',
  'picture',
  'image',
  'painting',
  'drawing',
  'illustration',
  'render',
  'rendering',
  'sketch',
  'close-up',
  'closeup',
  'view',
  'shot',
]);

interface Term {
  text: string;
  tags: string[];
}

function norm(s: string): string {
  return s
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '');
}

/**
 * The text the finder reads: what the text encoder sees (`visibleText`), when its tokens are the prompt's own first
 * ones (they are, as pre-tokenising is word by word; checked all the same). Words past the token limit can be no
 * subject, and the tagger's time grows faster than linearly with the text (docs/measurements.md#tagger-time).
 */
function readText(tokenizer: ClipTokenizer, prompt: string, ids: readonly number[]): string {
  const visible = tokenizer.visibleText(prompt);
  if (visible === prompt) return prompt;
  const seen = tokenizer.tokenize(visible).ids;
  return seen.every((id, i) => id === ids[i]) ? visible : prompt;
}

export function autoSubjects(tokenizer: ClipTokenizer, prompt: string): AutoSubjects {
  const ids = tokenizer.tokenize(prompt).ids;
  const text = readText(tokenizer, prompt, ids);
  const terms: Term[] = (tagger()(text).json() as { terms: Term[] }[]).flatMap((s) => s.terms);
  const words = tokenizer.words(text);
  // Align compromise's terms with the tokenizer's words (same order; the tokenizer also splits punctuation).
  const termWord: (number | null)[] = [];
  let w = 0;
  for (const t of terms) {
    const key = norm(t.text);
    let found: number | null = null;
    for (let k = w; k < words.length; k++) {
      if (norm(words[k]!.word) === key) {
        found = k;
        w = k + 1;
        break;
      }
    }
    termWord.push(found);
  }
  const isNoun = (t: Term) => t.tags.includes('Noun') && !t.tags.includes('Pronoun') && !t.tags.includes('Value');
  const isAdj = (t: Term) => t.tags.includes('Adjective');
  const skippable = (t: Term) => t.tags.includes('Determiner') || t.tags.includes('Value') || t.tags.includes('Adverb');
  const occurrences = new Map<string, number>();
  const toSubject = (indices: number[]): Subject | null => {
    const wordIdx = indices.map((i) => termWord[i]).filter((x): x is number => x !== null);
    if (wordIdx.length === 0) return null;
    const tokenIndices = wordIdx.flatMap((k) => words[k]!.tokenIndices);
    if (tokenIndices.length === 0) return null; // cut off by the token limit
    const word = wordIdx.map((k) => words[k]!.word).join(' ');
    const occurrence = (occurrences.get(word) ?? 0) + 1;
    occurrences.set(word, occurrence);
    const tokenTexts = tokenIndices.map((i) => tokenizer.tokenText(ids[i]!));
    return {
      query: 'auto',
      word,
      occurrence,
      occurrences: 0,
      tokenIndices,
      tokenTexts,
      tokenIndex: tokenIndices[tokenIndices.length - 1]!,
      tokenText: tokenTexts[tokenTexts.length - 1]!,
    };
  };

  const subjects: Subject[] = [];
  const attributes: AttributeLink[] = [];
  const notes: string[] = [];
  for (let i = 0; i < terms.length; i++) {
    if (!isNoun(terms[i]!)) continue;
    if (/ing$/i.test(terms[i]!.text) && i > 0 && isNoun(terms[i - 1]!)) continue; // "a dog sitting": a verb
    let end = i;
    // A following '-ing' word is a verb the tagger took for a noun ("a dog sitting"), not part of the name.
    while (end + 1 < terms.length && isNoun(terms[end + 1]!) && !/ing$/i.test(terms[end + 1]!.text)) end++;
    const headText = norm(terms[end]!.text);
    const next = terms[end + 1];
    if (FRAME_NOUNS.has(headText) && next && norm(next.text) === 'of') {
      i = end;
      continue;
    }
    const subject = toSubject(Array.from({ length: end - i + 1 }, (_, k) => i + k));
    if (subject) {
      const index = subjects.push(subject) - 1;
      for (let j = i - 1; j >= 0 && (isAdj(terms[j]!) || skippable(terms[j]!)); j--) {
        if (!isAdj(terms[j]!)) continue;
        const attribute = toSubject([j]);
        if (attribute) attributes.push({ attribute, subject: index });
      }
    }
    i = end;
  }
  attributes.sort((a, b) => a.attribute.tokenIndex - b.attribute.tokenIndex);
  if (subjects.length === 0)
    throw new FieldError(
      'subjects',
      (name, nameOf) =>
        `found no nouns in the prompt ${quote(prompt)}; name the subjects with ${name} or ${nameOf('tokens')}`,
    );
  for (const s of subjects) s.occurrences = occurrences.get(s.word) ?? 1;
  for (const a of attributes) a.attribute.occurrences = occurrences.get(a.attribute.word) ?? 1;
  const repeated = [...occurrences].filter(([, n]) => n > 1).map(([wd]) => wd);
  if (repeated.length)
    notes.push(`repeated words (${repeated.join(', ')}) are separate subjects, each with its own tokens`);
  return { subjects, attributes, notes };
}

/**
 * BERT's BasicTokenizer as in transformers 4.30 (`BasicTokenizer(do_lower_case=True)` with its defaults
 * `tokenize_chinese_chars=True, strip_accents=None, do_split_on_punc=True, never_split=None`). transformers'
 * slow CLIPTokenizer uses it as pre-tokeniser when `ftfy` is not installed: remove control characters, map whitespace
 * to ' ', put spaces around CJK ideographs, NFC, split on whitespace, lower-case, strip accents (NFD, drop Mn), and
 * split off every punctuation character.
 */
import {
  isBertWhitespace,
  isChineseChar,
  isControl,
  isNonspacingMark,
  isPunctuation,
  pyLower,
  pySplit,
} from './unicode.js';

const ASCII_SIMPLE_RE = /^[a-z0-9 ]*$/;

/** `_clean_text` then `_tokenize_chinese_chars`. */
function cleanText(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(cp)) continue;
    if (isBertWhitespace(cp)) out += ' ';
    else if (isChineseChar(cp)) out += ` ${ch} `;
    else out += ch;
  }
  return out;
}

/** `_run_strip_accents`: NFD, then drop nonspacing marks (category Mn). */
function stripAccents(token: string): string {
  const nfd = token.normalize('NFD');
  let out = '';
  for (const ch of nfd) if (!isNonspacingMark(ch.codePointAt(0)!)) out += ch;
  return out;
}

/** `_run_split_on_punc`: every punctuation character becomes its own token. */
function splitOnPunctuation(token: string, out: string[]): void {
  let cur = '';
  for (const ch of token) {
    if (isPunctuation(ch.codePointAt(0)!)) {
      if (cur !== '') out.push(cur);
      out.push(ch);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (cur !== '') out.push(cur);
}

/**
 * `BasicTokenizer(do_lower_case=True).tokenize(text)`: the list of lower-cased, accent-stripped words and punctuation
 * characters. Never contains empty strings or whitespace.
 */
export function basicTokenize(text: string): string[] {
  // Fast path: lower-case ASCII letters, digits and single spaces are left unchanged by every step but the split.
  if (ASCII_SIMPLE_RE.test(text)) return text.split(' ').filter((t) => t !== '');
  const cleaned = cleanText(text).normalize('NFC');
  const out: string[] = [];
  for (const word of pySplit(cleaned)) {
    const token = stripAccents(pyLower(word));
    splitOnPunctuation(token, out);
  }
  // The final `whitespace_tokenize(" ".join(split_tokens))` only drops tokens that became empty (all accents).
  return out.filter((t) => t !== '');
}

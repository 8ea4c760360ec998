/**
 * Character predicates that behave like Python 3.11's `unicodedata` (Unicode 14.0) and str methods, which is what the
 * reference tokenizers (transformers 4.30 on Python 3.11) use. Node's ICU is newer (Node 20.20: Unicode 17); for
 * characters already assigned in Unicode 14 its general categories, lower-casing and NFD agree with Python 3.11 code
 * point by code point (scratch/tok_unicode_parity.mts) except U+0295 (Ll -> Lo, irrelevant here) and U+1171E
 * (Mn -> Mc, overridden below). Characters assigned after Unicode 14 are treated as unassigned (Cn), as Python 3.11
 * does; the table comes from scratch/gen_tokenizer_tables.py.
 */
import { UNASSIGNED_UNICODE_14 } from './unicode14.js';

/** Binary search in the flat [start, end, start, end, ...] table. */
export function isUnassignedInUnicode14(cp: number): boolean {
  const t = UNASSIGNED_UNICODE_14;
  let lo = 0;
  let hi = t.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const start = t[2 * mid]!;
    const end = t[2 * mid + 1]!;
    if (cp < start) hi = mid - 1;
    else if (cp > end) lo = mid + 1;
    else return true;
  }
  return false;
}

// Bit flags per code point, computed lazily.
const F_DONE = 1;
const F_CONTROL = 2; // category C* (Cc, Cf, Cs, Co, Cn) in Unicode 14, except \t \n \r  (BERT _is_control)
const F_WHITESPACE = 4; // ' ', \t, \n, \r or category Zs (BERT _is_whitespace)
const F_PUNCT = 8; // ASCII non-alphanumeric printable or category P* (BERT _is_punctuation)
const F_MN = 16; // category Mn (removed by BERT _run_strip_accents)
const F_NEW = 32; // unassigned in Unicode 14 (assigned later)

const RE_C = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}]$/u;
const RE_ZS = /^\p{Zs}$/u;
const RE_P = /^\p{P}$/u;
const RE_MN = /^\p{Mn}$/u;

/** Python 3.11 (Unicode 14) categories that differ from Node's ICU for characters assigned in Unicode 14. */
const MN_OVERRIDE = new Map<number, boolean>([
  [0x1171e, true], // AHOM CONSONANT SIGN MEDIAL RA: Mn in Unicode 14, Mc since 15
]);

const bmpFlags = new Uint8Array(0x10000);
const astralFlags = new Map<number, number>();

function computeFlags(cp: number): number {
  const ch = String.fromCodePoint(cp);
  let f = F_DONE;
  const unassigned = isUnassignedInUnicode14(cp);
  if (unassigned) f |= F_NEW;
  if (cp === 0x20 || cp === 0x09 || cp === 0x0a || cp === 0x0d) {
    f |= F_WHITESPACE;
  } else if (unassigned || RE_C.test(ch)) {
    f |= F_CONTROL;
  } else if (RE_ZS.test(ch)) {
    f |= F_WHITESPACE;
  }
  if (!unassigned) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
      f |= F_PUNCT;
    } else if (RE_P.test(ch)) {
      f |= F_PUNCT;
    }
    const mn = MN_OVERRIDE.get(cp);
    if (mn ?? RE_MN.test(ch)) f |= F_MN;
  }
  return f;
}

function flags(cp: number): number {
  if (cp < 0x10000) {
    let f = bmpFlags[cp]!;
    if (f === 0) {
      f = computeFlags(cp);
      bmpFlags[cp] = f;
    }
    return f;
  }
  let f = astralFlags.get(cp);
  if (f === undefined) {
    f = computeFlags(cp);
    astralFlags.set(cp, f);
  }
  return f;
}

/** BERT `_is_control`: category starts with 'C' (Unicode 14), excluding \t \n \r. */
export const isControl = (cp: number): boolean => (flags(cp) & F_CONTROL) !== 0;
/** BERT `_is_whitespace`: ' ', \t, \n, \r or category Zs. */
export const isBertWhitespace = (cp: number): boolean => (flags(cp) & F_WHITESPACE) !== 0;
/** BERT `_is_punctuation`: ASCII 33-47, 58-64, 91-96, 123-126, or category P*. */
export const isPunctuation = (cp: number): boolean => (flags(cp) & F_PUNCT) !== 0;
/** Category Mn (nonspacing mark) in Unicode 14. */
export const isNonspacingMark = (cp: number): boolean => (flags(cp) & F_MN) !== 0;
/** Assigned after Unicode 14 (Python 3.11 sees category Cn). */
export const isNewerThanUnicode14 = (cp: number): boolean => (flags(cp) & F_NEW) !== 0;

/** BERT `_is_chinese_char`: the CJK Unified Ideographs blocks (not Hangul, Hiragana, Katakana). */
export function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** Python's `str.isspace()` characters (what `str.split()` / `str.strip()` use). */
export const PY_ISSPACE_CLASS =
  '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** The `regex` module's `\s` for str patterns (Unicode White_Space); unlike JS `\s` it has U+0085 and not U+FEFF. */
export const REGEX_WHITESPACE_CLASS =
  '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const PY_STRIP_RE = new RegExp(`^[${PY_ISSPACE_CLASS}]+|[${PY_ISSPACE_CLASS}]+$`, 'g');
const PY_SPLIT_RE = new RegExp(`[${PY_ISSPACE_CLASS}]+`);

/** Python `str.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP_RE, '');
}

/** Python `str.split()` with no argument (splits on runs of whitespace, drops empty strings). */
export function pySplit(s: string): string[] {
  const t = pyStrip(s);
  return t === '' ? [] : t.split(PY_SPLIT_RE);
}

// Any code point >= U+0860 might be newer than Unicode 14; below that everything was assigned long ago.
const MAYBE_NEW_RE = /[\u0860-\uffff]/;

/**
 * Python 3.11 `str.lower()`. JS `toLowerCase` uses the same full case mappings (incl. Final_Sigma) for every character
 * assigned in Unicode 14; characters assigned later are left alone, as Python 3.11 does not know them. (A character
 * Python sees as unassigned is neither cased nor case-ignorable, so lower-casing the pieces between such characters
 * separately gives the same Final_Sigma decisions.)
 */
export function pyLower(s: string): string {
  if (!MAYBE_NEW_RE.test(s)) return s.toLowerCase();
  let out = '';
  let start = 0;
  let i = 0;
  while (i < s.length) {
    const cp = s.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    if (cp >= 0x860 && isNewerThanUnicode14(cp)) {
      out += s.slice(start, i).toLowerCase() + s.slice(i, i + w);
      start = i + w;
    }
    i += w;
  }
  return out + s.slice(start).toLowerCase();
}

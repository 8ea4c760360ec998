/**
 * HTML character references, as decoded by Python's `html.unescape` (used by openai's CLIP tokenizer) and by
 * ftfy 6.1's more conservative `fixes.unescape_html`. Named references come from the `entities` package, whose
 * HTML5 table is the one Python's `html.entities.html5` holds (all 2,231 names, checked by
 * test/unit/html-entities.test.ts); numeric references follow Python's own rules, which differ from the
 * WHATWG decoder's (Python drops control characters instead of keeping them).
 */
import { decodeHTML, DecodingMode } from 'entities';

/** Python `html._invalid_charrefs`: numeric references that HTML5 maps elsewhere (mostly Windows-1252). */
const INVALID_CHARREFS = new Map<number, string>([
  [0x00, '\ufffd'],
  [0x0d, '\r'],
  [0x80, '\u20ac'],
  [0x81, '\x81'],
  [0x82, '\u201a'],
  [0x83, '\u0192'],
  [0x84, '\u201e'],
  [0x85, '\u2026'],
  [0x86, '\u2020'],
  [0x87, '\u2021'],
  [0x88, '\u02c6'],
  [0x89, '\u2030'],
  [0x8a, '\u0160'],
  [0x8b, '\u2039'],
  [0x8c, '\u0152'],
  [0x8d, '\x8d'],
  [0x8e, '\u017d'],
  [0x8f, '\x8f'],
  [0x90, '\x90'],
  [0x91, '\u2018'],
  [0x92, '\u2019'],
  [0x93, '\u201c'],
  [0x94, '\u201d'],
  [0x95, '\u2022'],
  [0x96, '\u2013'],
  [0x97, '\u2014'],
  [0x98, '\u02dc'],
  [0x99, '\u2122'],
  [0x9a, '\u0161'],
  [0x9b, '\u203a'],
  [0x9c, '\u0153'],
  [0x9d, '\x9d'],
  [0x9e, '\u017e'],
  [0x9f, '\u0178'],
]);

/** Python `html._invalid_codepoints`: numeric references that decode to nothing. */
function isInvalidCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe // U+xFFFE and U+xFFFF in every plane
  );
}

function numericCharref(digits: string, hex: boolean): string {
  // Python's int() is exact for any length; anything longer than 8 digits is out of range anyway.
  const trimmed = digits.replace(/^0+/, '');
  const num = trimmed.length > 8 ? Infinity : trimmed === '' ? 0 : parseInt(trimmed, hex ? 16 : 10);
  const mapped = INVALID_CHARREFS.get(num);
  if (mapped !== undefined) return mapped;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  if (isInvalidCodepoint(num)) return '';
  return String.fromCodePoint(num);
}

const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(s: string): string {
  if (s[0] === '#') {
    const hex = s[1] === 'x' || s[1] === 'X';
    const digits = s.slice(hex ? 2 : 1).replace(/;$/, '');
    return numericCharref(digits, hex);
  }
  // Python takes the name if it is one, else its longest prefix that is a legacy name (those without ';'),
  // keeping the rest: exactly the HTML5 decoder's legacy mode on this one reference.
  return decodeHTML('&' + s, DecodingMode.Legacy);
}

/** Python 3.11 `html.unescape(s)`. */
export function pyHtmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF_RE, (_m, g1: string) => replaceCharref(g1));
}

/**
 * ftfy.chardata.HTML_ENTITIES, one reference at a time: every HTML5 name ending in ';' (as '&name;'), plus the
 * upper-cased spelling of each all-lowercase name when `html.unescape` would leave that spelling alone
 * ('&NTILDE;' -> 'Ñ'); undefined for anything else.
 */
function ftfyEntity(ref: string): string | undefined {
  const named = decodeHTML(ref, DecodingMode.Strict); // only whole 'name;' references
  if (named !== ref) return named;
  const lower = ref.toLowerCase();
  if (ref !== ref.toUpperCase() || lower === ref || pyHtmlUnescape(ref) !== ref) return undefined;
  const char = decodeHTML(lower, DecodingMode.Strict);
  return char !== lower ? char.toUpperCase() : undefined;
}

const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy 6.1 `fixes.unescape_html`: decode '&name;' / '&#...;' references that are complete (end in ';'). */
export function ftfyUnescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const named = m.startsWith('&#') ? undefined : ftfyEntity(m);
    if (named !== undefined) return named;
    if (m.startsWith('&#')) {
      const unescaped = pyHtmlUnescape(m);
      // If html.unescape only decoded part of the reference, keep it as it was: the ';' should be consumed.
      return unescaped.includes(';') ? m : unescaped;
    }
    return m;
  });
}

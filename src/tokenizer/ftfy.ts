/**
 * The part of `ftfy.fix_text` (ftfy 6.1.1, default TextFixerConfig) that does not depend on ftfy's mojibake
 * heuristic, plus CLIP's `whitespace_clean`. Used by the 'hf-ftfy' and 'openai' tokenizer variants.
 *
 * Implemented, in ftfy's order and repeated until the text stops changing, line by line: unescape_html ("auto": not
 * in lines that follow a line containing '<'), fix_c1_controls, fix_latin_ligatures, fix_character_width,
 * uncurl_quotes, fix_line_breaks, fix_surrogates, remove_terminal_escapes, remove_control_chars, NFC.
 *
 * NOT implemented: `fix_encoding` (mojibake repair with its sub-steps restore_byte_a0, replace_lossy_sequences,
 * decode_inconsistent_utf8). ftfy only changes text there when `ftfy.badness.is_bad()` flags it as mojibake (for
 * example 'cafÃ©' -> 'café'); we leave such text as it is, so it tokenises differently from real ftfy.
 */
import { ftfyUnescapeHtml } from './html.js';
import { REGEX_WHITESPACE_CLASS, pyStrip } from './unicode.js';

/** Windows-1252 for bytes 0x80-0x9F; the five unassigned bytes stay as they are ("sloppy-windows-1252"). */
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

const C1_RE = /[\x80-\x9f]/g;
function fixC1Controls(text: string): string {
  return text.replace(C1_RE, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]!);
}

const LIGATURES = new Map<string, string>([
  ['\u0132', 'IJ'],
  ['\u0133', 'ij'],
  ['\u0149', '\u02bcn'],
  ['\u01f1', 'DZ'],
  ['\u01f2', 'Dz'],
  ['\u01f3', 'dz'],
  ['\u01c4', 'D\u017d'],
  ['\u01c5', 'D\u017e'],
  ['\u01c6', 'd\u017e'],
  ['\u01c7', 'LJ'],
  ['\u01c8', 'Lj'],
  ['\u01c9', 'lj'],
  ['\u01ca', 'NJ'],
  ['\u01cb', 'Nj'],
  ['\u01cc', 'nj'],
  ['\ufb00', 'ff'],
  ['\ufb01', 'fi'],
  ['\ufb02', 'fl'],
  ['\ufb03', 'ffi'],
  ['\ufb04', 'ffl'],
  ['\ufb05', '\u017ft'],
  ['\ufb06', 'st'],
]);
const LIGATURE_RE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');
function fixLatinLigatures(text: string): string {
  return text.replace(LIGATURE_RE, (c) => LIGATURES.get(c)!);
}

/** ftfy WIDTH_MAP: U+3000 -> ' ', and each of U+FF01..U+FFEF that NFKC changes -> its NFKC form. */
const WIDTH_MAP = new Map<string, string>([['\u3000', ' ']]);
for (let i = 0xff01; i < 0xfff0; i++) {
  const ch = String.fromCharCode(i);
  const alt = ch.normalize('NFKC');
  if (alt !== ch) WIDTH_MAP.set(ch, alt);
}
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;
function fixCharacterWidth(text: string): string {
  return text.replace(WIDTH_RE, (c) => WIDTH_MAP.get(c) ?? c);
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

function fixLineBreaks(text: string): string {
  return text
    .replaceAll('\r\n', '\n')
    .replaceAll('\r', '\n')
    .replaceAll('\u2028', '\n')
    .replaceAll('\u2029', '\n')
    .replaceAll('\u0085', '\n');
}

/** Surrogate pairs are already single code points in JS strings; lone surrogates become U+FFFD. */
function fixSurrogates(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

// Python `re` (str pattern): \d is any Unicode decimal digit.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const ANSI_RE = /\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu;
function removeTerminalEscapes(text: string): string {
  return text.replace(ANSI_RE, '');
}

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARS_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
function removeControlChars(text: string): string {
  return text.replace(CONTROL_CHARS_RE, '');
}

/** ftfy.fix_and_explain on one segment, without fix_encoding. */
function fixSegment(segment: string, unescapeHtml: boolean): string {
  let text = segment;
  for (;;) {
    const orig = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === orig) return text;
  }
}

/**
 * `ftfy.fix_text(text)` with the default configuration, minus mojibake repair (see the module comment).
 * Like ftfy, the text is fixed one line at a time, and once a line contains '<' (it may be HTML) HTML entities are no
 * longer decoded in it or in any later line. (ftfy also cuts lines longer than 10^6 code points; prompts never are.)
 */
export function fixText(text: string): string {
  let unescapeHtml = true;
  let out = '';
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    const end = nl === -1 ? text.length : nl + 1;
    const segment = text.slice(pos, end);
    if (unescapeHtml && segment.includes('<')) unescapeHtml = false;
    out += fixSegment(segment, unescapeHtml);
    pos = end;
  }
  return out;
}

const WHITESPACE_RUN_RE = new RegExp(`[${REGEX_WHITESPACE_CLASS}]+`, 'g');

/** CLIP `whitespace_clean`: `regex.sub(r"\s+", " ", text).strip()`. */
export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(WHITESPACE_RUN_RE, ' '));
}

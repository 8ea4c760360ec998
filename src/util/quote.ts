/**
 * User input quoted in one-line messages: escaped, so that no control character reaches the terminal (a prompt
 * holding `\u001b[2J` must not clear the screen, a newline must not start a second line), and bounded, so that a
 * megabyte prompt or option value gives a short line. Every message that shows what a user typed or a file held
 * goes through `quote`; the CLI passes each whole error line through `boundLine` as well, the last guard for a
 * message that quotes input some other way.
 */

/** At most this many characters of the quoted text are shown. */
export const QUOTE_MAX = 80;

/** The longest error message the CLI prints whole, in characters (a longer one loses its middle). */
export const LINE_MAX = 600;

// C0 and C1 controls, DEL, the line and paragraph separators, and the bidirectional formatting characters (which
// reorder what a terminal shows, "Trojan Source").
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `text` with every control character written as an escape (`\n`, `\u001b`, ...); the rest unchanged. */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Cuts `text` to `max` UTF-16 units without splitting a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * `text` in double quotes for a message: backslashes, quotes and control characters escaped, and at most `max`
 * characters of it, followed by its length when it was cut: `"a red circle and a bl..." (120000 characters)`.
 */
export function quote(text: string, max = QUOTE_MAX): string {
  const shown = cut(text, max);
  const body = escapeControls(shown.replace(/[\\"]/g, (c) => `\\${c}`));
  return shown.length < text.length ? `"${body}..." (${text.length} characters)` : `"${body}"`;
}

/**
 * One message as the CLI prints it: control characters escaped, and a message longer than `max` characters (one
 * that quotes input without `quote`) cut to its first 200 and last 100: the start names the file or option, the
 * end says what is wrong.
 */
export function boundLine(message: string, max = LINE_MAX): string {
  const line = escapeControls(message);
  if (line.length <= max) return line;
  let from = line.length - 100;
  const code = line.charCodeAt(from);
  if (code >= 0xdc00 && code <= 0xdfff) from++; // not half a surrogate pair
  const start = cut(line, 200);
  return `${start} ...[${from - start.length} characters left out]... ${line.slice(from)}`;
}

/** A word or list item the user gave, in single quotes: escaped, and at most `max` characters shown. */
export function quoteWord(text: string, max = 40): string {
  const shown = cut(text, max);
  const body = escapeControls(shown.replace(/[\\']/g, (c) => `\\${c}`));
  return shown.length < text.length ? `'${body}...' (${text.length} characters)` : `'${body}'`;
}

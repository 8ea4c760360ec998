/**
 * Pieces of the one-line error messages io gives about files a user handed us: names and values from a file are
 * arbitrary (newlines, quotes, megabytes of nesting), so they are quoted, shortened and flattened here.
 */

/** Collapse all whitespace runs (newlines included) to single spaces. */
export function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** Quote a key (a tensor or config name) for a one-line message: JSON escapes, single quotes. */
export function quoteKey(key: string): string {
  const quoted = `'${JSON.stringify(key).slice(1, -1)}'`;
  return quoted.length > 200 ? `${quoted.slice(0, 197)}...'` : quoted;
}

const MAX_SHOWN = 60;

/**
 * A short rendering of any JSON value for a message. Never throws: a deeply nested value (which would overflow
 * JSON.stringify's recursion) is shown by its outline instead.
 */
export function describeValue(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? '[...]' : typeof v === 'object' && v !== null ? '{...}' : String(v);
  }
  return s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN - 3)}...` : s;
}

/** "a, b, c and 4 more" for lists of keys in a message. */
export function listKeys(keys: readonly string[], shown = 5): string {
  const names = keys.slice(0, shown).map(quoteKey).join(', ');
  return keys.length > shown ? `${names} and ${keys.length - shown} more` : names;
}

/**
 * Named character references come from the `entities` package; Python's table is the reference. The fixture is
 * Python 3.11.7's `html.entities.html5` (2,231 names, with and without ';'), written by
 *   python3 -c "import html.entities, json; json.dump(html.entities.html5, open('test/fixtures/html5-entities.json', 'w'), ensure_ascii=True, indent=0, sort_keys=True)"
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ftfyUnescapeHtml, pyHtmlUnescape } from '../../src/tokenizer/html.js';

const HTML5 = JSON.parse(readFileSync(new URL('../fixtures/html5-entities.json', import.meta.url), 'utf8')) as Record<
  string,
  string
>;
const names = Object.keys(HTML5);

describe('HTML character references (entities package vs Python 3.11)', () => {
  it('the fixture is the whole HTML5 table', () => {
    expect(names).toHaveLength(2231);
  });

  it("html.unescape: every name decodes to Python's value, alone and followed by text", () => {
    const wrong = names.filter(
      (n) => pyHtmlUnescape(`&${n}`) !== HTML5[n] || pyHtmlUnescape(`a&${n} b`) !== `a${HTML5[n]} b`,
    );
    expect(wrong).toEqual([]);
  });

  it('html.unescape: a legacy name (no ;) is decoded as the longest prefix, the rest kept', () => {
    expect(pyHtmlUnescape('&notit;')).toBe('¬it;');
    expect(pyHtmlUnescape('&ampamp;')).toBe('&amp;');
    expect(pyHtmlUnescape('&notin;')).toBe('∉');
    // Not names, and no legacy name is a prefix: unchanged (entities 7 and 8 decoded these wrongly).
    for (const s of ['&acy1;', '&alpha1;', '&bepsix', '&backepsilonx;', '&zzz;']) expect(pyHtmlUnescape(s)).toBe(s);
  });

  it("ftfy: every name ending in ';' decodes, nothing without ';' does, upper-cased lowercase names decode too", () => {
    // ftfy's pattern takes names of up to 24 characters (all but CounterClockwiseContourIntegral;).
    const withSemicolon = names.filter((n) => n.endsWith(';') && n.length <= 25);
    expect(withSemicolon).toHaveLength(names.filter((n) => n.endsWith(';')).length - 1);
    expect(withSemicolon.filter((n) => ftfyUnescapeHtml(`&${n}`) !== HTML5[n])).toEqual([]);
    expect(ftfyUnescapeHtml('&CounterClockwiseContourIntegral;')).toBe('&CounterClockwiseContourIntegral;');
    expect(ftfyUnescapeHtml('&amp &lt')).toBe('&amp &lt');
    expect(ftfyUnescapeHtml('&NTILDE;')).toBe('Ñ');
    expect(ftfyUnescapeHtml('&AMP;')).toBe('&');
    expect(ftfyUnescapeHtml('&acy1;')).toBe('&acy1;');
    expect(ftfyUnescapeHtml('&#65;&#x1F600;&#0;')).toBe('A😀\ufffd');
  });
});

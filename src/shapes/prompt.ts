/**
 * Parsing shapes-world prompts into the objects they ask for (what the scorer and the benchmark check).
 *
 * Grammar (case-insensitive, extra spaces and a final period ignored):
 *
 *     prompt  := [prefix] list
 *     prefix  := ["a" | "an"] ("photo" | "image" | "picture" | "drawing" | "render" | "rendering") "of"
 *     list    := item ("," item)* [[","] "and" item]          -- also "and" between every item
 *     item    := ("a" | "an" | "one") [colour] shape
 *              | count [colour] shape "s"                      -- count: two..ten or 2..99: that many objects
 *     colour  := red | green | blue | yellow | purple | orange
 *     shape   := circle | square | triangle
 *
 * Captions made by `captionFor` always parse back to their objects. Anything else (unknown words, missing article,
 * count/plural mismatch, an empty prompt) is a `UserError` that quotes the prompt and says what was wrong.
 */
import { UserError } from '../errors.js';
import { quote } from '../util/quote.js';
import { type Colour, COLOURS, isColour, isShape, type Shape, SHAPES } from './world.js';

export interface PromptObject {
  shape: Shape;
  /** Absent when the prompt names the shape only ("a circle"); then any colour satisfies it. */
  colour?: Colour;
}

export interface ParsedPrompt {
  objects: PromptObject[];
}

const PREFIX_NOUNS = new Set(['photo', 'image', 'picture', 'drawing', 'render', 'rendering']);
const COUNT_WORDS: Record<string, number> = {
  two: 2,
  three: 3,
  four: 4,
  five: 5,
  six: 6,
  seven: 7,
  eight: 8,
  nine: 9,
  ten: 10,
};

function fail(prompt: string, why: string): never {
  throw new UserError(
    `cannot parse prompt ${quote(prompt)}: ${why} (expected e.g. "a red circle and a blue square"; ` +
      `colours: ${COLOURS.join(', ')}; shapes: ${SHAPES.join(', ')})`,
  );
}

function parseItem(prompt: string, words: string[]): PromptObject[] {
  if (words.length === 0) fail(prompt, 'empty item in the list');
  const [first, ...rest] = words as [string, ...string[]];
  let count: number;
  if (first === 'a' || first === 'an' || first === 'one') count = 1;
  else if (first in COUNT_WORDS) count = COUNT_WORDS[first]!;
  else if (/^\d{1,2}$/.test(first) && Number(first) >= 1) count = Number(first);
  else if (isColour(first) || isShape(first) || isShape(first.replace(/s$/, ''))) {
    fail(prompt, `${quote(words.join(' '))} needs an article or a count (${quote(`a ${words.join(' ')}`)})`);
  } else fail(prompt, `unknown word ${quote(first)}`);
  let colour: Colour | undefined;
  let i = 0;
  if (rest[i] !== undefined && isColour(rest[i]!)) colour = rest[i++] as Colour;
  const noun = rest[i++];
  if (noun === undefined) fail(prompt, `${quote(words.join(' '))} names no shape`);
  const known = isShape(noun) || (noun.endsWith('s') && isShape(noun.slice(0, -1)));
  if (!known)
    fail(prompt, isColour(noun) ? `${quote(words.join(' '))} has two colours` : `unknown word ${quote(noun)}`);
  if (i < rest.length)
    fail(prompt, `unexpected word ${quote(rest[i]!)} after ${quote(words.slice(0, i + 1).join(' '))}`);
  let shape: string;
  if (count === 1) {
    if (!isShape(noun)) {
      if (noun.endsWith('s') && isShape(noun.slice(0, -1)))
        fail(prompt, `${quote(words.join(' '))}: plural after ${quote(first)}`);
      fail(prompt, isColour(noun) ? `${quote(words.join(' '))} names no shape` : `unknown word ${quote(noun)}`);
    }
    shape = noun;
  } else {
    if (!(noun.endsWith('s') && isShape(noun.slice(0, -1)))) {
      if (isShape(noun))
        fail(prompt, `${quote(words.join(' '))}: a count of ${count} needs the plural ${quote(`${noun}s`)}`);
      fail(prompt, `unknown word ${quote(noun)}`);
    }
    shape = noun.slice(0, -1);
  }
  const obj: PromptObject = colour ? { shape: shape as Shape, colour } : { shape: shape as Shape };
  return Array.from({ length: count }, () => ({ ...obj }));
}

/** Parses a prompt or caption into the objects it asks for, in prompt order (see the grammar above). */
export function parsePrompt(prompt: string): ParsedPrompt {
  const text = prompt
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\s*[.!]+$/, '');
  if (text === '') fail(prompt, 'it is empty');
  const bad = /[^a-z0-9 ,]/.exec(text);
  if (bad) fail(prompt, `unexpected character ${quote(bad[0])}`);
  let words = text
    .replace(/,/g, ' , ')
    .split(' ')
    .filter((w) => w !== '');
  // Optional prefix "a photo of" / "an image of" / "photo of".
  const k = words[0] === 'a' || words[0] === 'an' ? 1 : 0;
  if (PREFIX_NOUNS.has(words[k] ?? '') && words[k + 1] === 'of') words = words.slice(k + 2);
  if (words.length === 0) fail(prompt, 'it names no objects');
  // Split on "," and "and" (", and" counts once).
  const items: string[][] = [[]];
  for (const w of words) {
    if (w === ',' || w === 'and') {
      if (items[items.length - 1]!.length === 0) {
        if (items.length === 1) fail(prompt, `it starts with ${quote(w)}`);
        if (w === ',') fail(prompt, 'two separators in a row');
        continue; // ", and"
      }
      items.push([]);
    } else items[items.length - 1]!.push(w);
  }
  if (items[items.length - 1]!.length === 0) fail(prompt, 'it ends with a separator');
  const objects = items.flatMap((it) => parseItem(prompt, it));
  return { objects };
}

/**
 * Prompt suites for the benchmark: the built-in shapes-world suites and prompt files.
 *
 * Built-in suites (fixed, no randomness at run time; the same list on every machine):
 *
 * | suite      | objects | tuning | held-apart | all |
 * |------------|---------|--------|------------|-----|
 * | `shapes-1` | 1       | 6      | 12         | 18  |
 * | `shapes-2` | 2       | 48     | 96         | 144 |
 * | `shapes-3` | 3       | 48     | 96         | 144 |
 *
 * The TUNING split is for choosing methods' hyperparameters; the HELD-APART split is disjoint from it and is what
 * the final table reports. `shapes-1` (every coloured shape once) is the model's own quality check.
 *
 * Construction of the multi-object suites. Colours are indexed 0–5 in `COLOURS` order (red, green, blue, yellow,
 * purple, orange). A *block* is a fixed arrangement of shapes and colour offsets, e.g. shapes (circle, square) with
 * offsets (0, k): its six prompts take first colour c = 0..5 and colour c + k (mod 6) for the second object. So
 * every block uses each colour exactly once in every position, and the suite is colour-balanced whatever blocks it
 * holds. The blocks' shape arrangements are chosen so that each shape is equally frequent in every position.
 *
 * `shapes-2` (24 blocks): 12 blocks with different shapes and different colours ("a red circle and a blue square"),
 * 6 with the same shape in two colours ("a red circle and a yellow circle"), 6 with the same colour on two shapes
 * ("a red circle and a red square", every ordered shape pair × every colour). Offsets cover distances 1, 2 and 3
 * around the colour wheel, so the close pairs (red/orange, blue/purple, orange/yellow) occur.
 *
 * `shapes-3` (24 blocks): 12 blocks with three different shapes and colours (every order of the three shapes,
 * twice), 6 with two objects of the same shape (two colours), 6 with two objects of the same colour.
 *
 * The split takes, from every block, the two prompts whose first colour index is r or r + 3 for tuning and the other
 * four for held-apart. Blocks come in triples with equal offsets mod 3, and r runs 0, 1, 2 within a triple, so both
 * splits are themselves balanced: in every position each colour occurs equally often (tuning: 8 times in 48
 * prompts, held-apart: 16 in 96) and each shape equally often (16 and 32).
 *
 * The held-apart split is itself two balanced halves (first colour index ≡ r + 1 and ≡ r + 2), listed one after the
 * other: `--limit 48` on held-apart (`--limit 6` for shapes-1) runs exactly the first half, which is as balanced as
 * the whole. Within each part the order is a fixed shuffle (a seeded `Rng`), so any `--limit N` takes a mixed subset.
 * `all` lists tuning, then held-apart.
 *
 * Prompt files (`FILE.jsonl`): one JSON object per line with a string field "prompt" (other fields are ignored;
 * blank lines are skipped). The objects each prompt asks for come from `parsePrompt`; a bad line is a `UserError`
 * naming the file and the line.
 */
import { existsSync, statSync } from 'node:fs';
import { FieldError, UserError } from '../errors.js';
import { readInputFile } from '../io/regular-file.js';
import { captionFor } from '../shapes/generate.js';
import { parsePrompt, type PromptObject } from '../shapes/prompt.js';
import { Rng } from '../shapes/rng.js';
import { COLOURS, SHAPES, type Colour, type Shape } from '../shapes/world.js';
import { quote } from '../util/quote.js';

export const SPLITS = ['tuning', 'held-apart', 'all'] as const;
export type Split = (typeof SPLITS)[number];

export const BUILTIN_SUITES = ['shapes-1', 'shapes-2', 'shapes-3'] as const;
export type BuiltinSuite = (typeof BUILTIN_SUITES)[number];

/** The kind of a multi-object prompt, for the suites' balance and for breaking results down. */
export type PromptKind = 'single' | 'distinct' | 'same-shape' | 'same-colour';

export interface SuitePrompt {
  prompt: string;
  /** The objects the prompt asks for (what the scorer checks), in prompt order. */
  objects: PromptObject[];
  /** Built-in suites only. */
  kind?: PromptKind;
  split?: Exclude<Split, 'all'>;
}

export interface Suite {
  /** `shapes-2`, or the file path as given. */
  name: string;
  split: Split | null;
  prompts: SuitePrompt[];
}

/** One block: shapes by position (indices into SHAPES) and colour offsets by position (first is 0). */
interface Block {
  shapes: readonly number[];
  offsets: readonly number[];
  kind: PromptKind;
}

/** Blocks listed in triples with equal offsets mod 3 (see the module comment); r = position in the triple. */
const SHAPES2_BLOCKS: readonly Block[] = (() => {
  const d = (a: number, b: number, k: number): Block => ({ shapes: [a, b], offsets: [0, k], kind: 'distinct' });
  const s = (a: number, k: number): Block => ({ shapes: [a, a], offsets: [0, k], kind: 'same-shape' });
  const c = (a: number, b: number): Block => ({ shapes: [a, b], offsets: [0, 0], kind: 'same-colour' });
  // Ordered shape pairs: (0,1) (0,2) (1,0) (1,2) (2,0) (2,1); each takes two offsets.
  return [
    // distinct: offsets mod 3 = 0
    d(0, 1, 3),
    d(1, 0, 3),
    d(2, 0, 3),
    // distinct: mod 3 = 1
    d(0, 2, 1),
    d(1, 2, 4),
    d(2, 1, 1),
    // distinct: mod 3 = 2 (two triples)
    d(0, 2, 2),
    d(1, 2, 5),
    d(2, 1, 5),
    d(0, 1, 5),
    d(1, 0, 2),
    d(2, 0, 5),
    // same shape, two colours: distance 3 for every shape, then distances 1 and 2
    s(0, 3),
    s(1, 3),
    s(2, 3),
    s(0, 1),
    s(1, 4),
    s(2, 4),
    // same colour, every ordered pair of different shapes
    c(0, 1),
    c(1, 2),
    c(2, 0),
    c(1, 0),
    c(2, 1),
    c(0, 2),
  ];
})();

const SHAPES3_BLOCKS: readonly Block[] = (() => {
  const perms = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
  ] as const;
  const d = (p: number, k2: number, k3: number): Block => ({
    shapes: perms[p]!,
    offsets: [0, k2, k3],
    kind: 'distinct',
  });
  const s = (shapes: number[], k2: number, k3: number): Block => ({ shapes, offsets: [0, k2, k3], kind: 'same-shape' });
  const c = (p: number, k2: number, k3: number): Block => ({
    shapes: perms[p]!,
    offsets: [0, k2, k3],
    kind: 'same-colour',
  });
  return [
    // three shapes, three colours: every order twice
    d(0, 1, 2),
    d(1, 4, 5),
    d(2, 1, 5), // offsets mod 3 = (1, 2)
    d(3, 2, 1),
    d(4, 5, 4),
    d(5, 2, 4), // (2, 1)
    d(1, 3, 1),
    d(3, 3, 4),
    d(5, 3, 1), // (0, 1)
    d(0, 2, 5),
    d(2, 5, 2),
    d(4, 2, 5), // (2, 2)
    // two objects of one shape (different colours), the pair first: (i, i, i+1), then last: (i+2, i, i)
    s([0, 0, 1], 1, 2),
    s([1, 1, 2], 4, 5),
    s([2, 2, 0], 4, 2), // (1, 2)
    s([2, 0, 0], 3, 1),
    s([0, 1, 1], 3, 4),
    s([1, 2, 2], 3, 1), // (0, 1)
    // two objects of one colour: the pair first, then first and last
    c(0, 0, 1),
    c(2, 0, 4),
    c(4, 0, 1), // (0, 1)
    c(1, 2, 0),
    c(3, 5, 0),
    c(5, 2, 0), // (2, 0)
  ];
})();

/**
 * A block's six prompts go to three parts by first colour index c: part 0 (tuning) when c ≡ r (mod 3), parts 1
 * and 2 (the two halves of held-apart) when c ≡ r + 1 and r + 2, with r the block's place in its triple. Each part
 * is balanced on its own (see the module comment).
 */
function blockPrompts(blocks: readonly Block[], shuffleSeed: string): SuitePrompt[] {
  const parts: SuitePrompt[][] = [[], [], []];
  blocks.forEach((b, i) => {
    const r = i % 3;
    for (let c = 0; c < COLOURS.length; c++) {
      const objects = b.shapes.map((sh, j) => ({
        shape: SHAPES[sh]! as Shape,
        colour: COLOURS[(c + b.offsets[j]!) % COLOURS.length]! as Colour,
      }));
      const part = (((c - r) % 3) + 3) % 3;
      parts[part]!.push({
        prompt: captionFor(objects),
        objects,
        kind: b.kind,
        split: part === 0 ? 'tuning' : 'held-apart',
      });
    }
  });
  return parts.flatMap((p, k) => shuffled(p, `${shuffleSeed}/${k}`));
}

function shuffled<T>(items: T[], seed: string): T[] {
  const rng = new Rng(seed);
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function shapes1(): SuitePrompt[] {
  const parts: SuitePrompt[][] = [[], [], []];
  SHAPES.forEach((shape, s) =>
    COLOURS.forEach((colour, c) => {
      const objects = [{ shape, colour }];
      const part = (((c - s) % 3) + 3) % 3;
      parts[part]!.push({
        prompt: captionFor(objects),
        objects,
        kind: 'single',
        split: part === 0 ? 'tuning' : 'held-apart',
      });
    }),
  );
  return parts.flatMap((p, k) => shuffled(p, `shapes-1/${k}`));
}

/** Every prompt of a built-in suite, both splits, in the suite's fixed order. */
export function builtinSuitePrompts(name: BuiltinSuite): SuitePrompt[] {
  switch (name) {
    case 'shapes-1':
      return shapes1();
    case 'shapes-2':
      return blockPrompts(SHAPES2_BLOCKS, 'shapes-2');
    case 'shapes-3':
      return blockPrompts(SHAPES3_BLOCKS, 'shapes-3');
  }
}

export function isBuiltinSuite(name: string): name is BuiltinSuite {
  return (BUILTIN_SUITES as readonly string[]).includes(name);
}

export function parseSplit(value: string, option = 'split'): Split {
  const v = value
    .trim()
    .toLowerCase()
    .replace(/[_\s]+/g, '-');
  const alias: Record<string, Split> = {
    tuning: 'tuning',
    tune: 'tuning',
    'held-apart': 'held-apart',
    heldapart: 'held-apart',
    'held-out': 'held-apart',
    heldout: 'held-apart',
    test: 'held-apart',
    all: 'all',
  };
  const s = alias[v];
  if (!s) throw new FieldError(option, `: unknown split ${quote(value)} (known: ${SPLITS.join(', ')})`);
  return s;
}

/**
 * Prompts of a `.jsonl` file: one {"prompt": "..."} per line (blank lines skipped). Each prompt is parsed with
 * `parsePrompt`; any problem is a UserError naming the file and line.
 */
export function readPromptFile(path: string): SuitePrompt[] {
  if (!existsSync(path))
    throw new FieldError('suite', `${path}: no such file (built-in suites: ${BUILTIN_SUITES.join(', ')})`);
  if (statSync(path).isDirectory()) throw new FieldError('suite', `${path} is a directory, not a .jsonl file`);
  let text: string;
  try {
    // A regular file only (a FIFO would block), opened without blocking; at most 256 MB.
    text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(readInputFile(path, 'suite', 256 * 1024 ** 2));
  } catch (e) {
    // readInputFile's messages start with the name it was given: the field, which the CLI calls by its flag.
    if (e instanceof UserError && e.message.startsWith('suite '))
      throw new FieldError('suite', e.message.slice('suite '.length), { cause: e });
    throw e;
  }
  const out: SuitePrompt[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${path}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new UserError(`${where}: not valid JSON (${(e as Error).message}); expected {"prompt": "..."}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new UserError(`${where}: expected a JSON object such as {"prompt": "a red circle and a blue square"}`);
    const prompt = (value as { prompt?: unknown }).prompt;
    if (typeof prompt !== 'string') throw new UserError(`${where}: the object has no string field "prompt"`);
    let objects: PromptObject[];
    try {
      objects = parsePrompt(prompt).objects;
    } catch (e) {
      if (e instanceof UserError) throw new UserError(`${where}: ${e.message}`, { cause: e });
      throw e;
    }
    out.push({ prompt, objects });
  });
  if (out.length === 0)
    throw new FieldError('suite', `${path}: the file holds no prompts (one {"prompt": "..."} per line)`);
  const seen = new Map<string, number>();
  out.forEach((p, i) => {
    const j = seen.get(p.prompt);
    if (j !== undefined)
      throw new FieldError(
        'suite',
        `${path}: prompt ${quote(p.prompt)} is listed twice (prompts ${j + 1} and ${i + 1})`,
      );
    seen.set(p.prompt, i);
  });
  return out;
}

/**
 * A suite by name (`shapes-1`, `shapes-2`, `shapes-3`) or a `.jsonl` file path; `split` applies to built-in suites
 * only (default `tuning`).
 */
export function loadSuite(nameOrFile: string, split?: Split): Suite {
  if (isBuiltinSuite(nameOrFile)) {
    const s = split ?? 'tuning';
    const all = builtinSuitePrompts(nameOrFile);
    return { name: nameOrFile, split: s, prompts: s === 'all' ? all : all.filter((p) => p.split === s) };
  }
  if (split !== undefined)
    throw new FieldError(
      'split',
      `applies to the built-in suites (${BUILTIN_SUITES.join(', ')}), not to a prompt file`,
    );
  if (!/\.jsonl$/i.test(nameOrFile) && !existsSync(nameOrFile)) {
    throw new FieldError(
      'suite',
      `: unknown suite ${quote(nameOrFile)} (built-in: ${BUILTIN_SUITES.join(', ')}; or a FILE.jsonl of {"prompt": "..."} lines)`,
    );
  }
  return { name: nameOrFile, split: null, prompts: readPromptFile(nameOrFile) };
}

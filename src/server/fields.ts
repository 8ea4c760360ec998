/**
 * Checks a JSON body against a table of fields, one declaration per field, and says what is wrong with the first
 * bad one in one sentence (`steps must be an integer from 1 to 150, got 500`). Each API turns a `BadField` into its
 * own error shape. Nothing here trusts the body: unknown fields are refused or ignored as the API does, strings
 * and lists are bounded, numbers must be finite.
 */

export class BadField extends Error {
  constructor(
    /** The field at fault (null: the body as a whole). */
    readonly field: string | null,
    message: string,
  ) {
    super(message);
  }
}

export type FieldSpec =
  | { type: 'string'; maxLength: number; enum?: readonly string[]; nullable?: boolean }
  | { type: 'integer'; min: number; max: number; nullable?: boolean }
  | { type: 'number'; min: number; max: number; nullable?: boolean }
  | { type: 'boolean'; nullable?: boolean }
  /** Accepted and not used (A1111 fields we do not implement): any JSON value. */
  | { type: 'ignored' }
  /** Accepted only with this value (or null / absent): a setting we do not implement, at its default. */
  | { type: 'only'; value: unknown; why: string }
  | { type: 'object'; fields: Record<string, FieldSpec>; nullable?: boolean }
  | { type: 'map'; maxKeys: number; nullable?: boolean };

/** A short, bounded rendering of a bad value for a message (never the whole of a long string). */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'a list' : 'an object';
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'boolean') return 'a boolean';
  return typeof v;
}

/**
 * The body's fields, checked: `unknown` says what happens to a field the table does not name ('refuse': a
 * BadField in OpenAI's words; 'ignore': dropped, as pydantic drops it for A1111).
 */
export function checkFields(
  body: unknown,
  specs: Record<string, FieldSpec>,
  unknown: 'refuse' | 'ignore',
  prefix = '',
): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new BadField(
      prefix ? prefix.slice(0, -1) : null,
      `${prefix ? prefix.slice(0, -1) : 'the body'} must be a JSON object, got ${kind(body)}`,
    );
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    const spec = Object.hasOwn(specs, name) ? specs[name]! : undefined;
    const field = `${prefix}${name}`;
    if (!spec) {
      if (unknown === 'refuse')
        throw new BadField(field, `Unrecognized request argument supplied: ${show(field).slice(1, -1)}`);
      continue;
    }
    const v = checkValue(field, value, spec);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

function checkValue(field: string, v: unknown, spec: FieldSpec): unknown {
  if (spec.type === 'ignored') return undefined;
  if (spec.type === 'only') {
    if (v === null || v === undefined || JSON.stringify(v) === JSON.stringify(spec.value)) return undefined;
    throw new BadField(field, `${field} ${show(v)} is not supported: ${spec.why}`);
  }
  if (v === null && spec.nullable) return undefined;
  const bad = (what: string) => new BadField(field, `${field} must be ${what}, got ${show(v)}`);
  switch (spec.type) {
    case 'string':
      if (typeof v !== 'string') throw bad('a string');
      if (v.length > spec.maxLength)
        throw new BadField(field, `${field} is too long: ${v.length} characters, at most ${spec.maxLength}`);
      if (spec.enum && !spec.enum.includes(v))
        throw bad(`one of ${spec.enum.map((e) => JSON.stringify(e)).join(', ')}`);
      return v;
    case 'integer':
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < spec.min || v > spec.max)
        throw bad(`an integer from ${spec.min} to ${spec.max}`);
      return v;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < spec.min || v > spec.max)
        throw bad(`a number from ${spec.min} to ${spec.max}`);
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'object':
      return checkFields(v, spec.fields, 'refuse', `${field}.`);
    case 'map':
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('an object');
      if (Object.keys(v).length > spec.maxKeys)
        throw new BadField(field, `${field} has more than ${spec.maxKeys} keys`);
      return v;
  }
}

/**
 * The methods' flags, derived from their specs' override schemas (methods/spec.ts): every field any method takes
 * becomes one commander Option, its help saying which methods it reaches; the given ones become the request's
 * method overrides. `generate` and `bench` declare them with one call.
 */
import { Option, type Command } from 'commander';
import { overrideFields, type MethodOverrides } from '../methods/registry.js';

/** Commander's key of a flag: `--edit-steps` → `editSteps`. */
const keyOf = (flag: string) => flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The flag of every method field (for naming fields in errors). */
export function methodFlagOfField(): Record<string, string> {
  return Object.fromEntries(overrideFields().map(({ key, field }) => [key, field.flag]));
}

/** Declares every method flag on a command. */
export function addMethodOptions(command: Command): Command {
  for (const { field } of overrideFields())
    command.addOption(new Option(`${field.flag} ${field.arg}`, `${field.scope}: ${field.help}`));
  return command;
}

/** The method overrides the given flags set (strings as commander gives them; only those given). */
export function methodOverridesFromFlags(flags: object): MethodOverrides {
  const given = flags as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const loop: Record<string, unknown> = {};
  for (const { key, field } of overrideFields()) {
    const text = given[keyOf(field.flag)];
    if (typeof text !== 'string') continue;
    (field.loop ? loop : out)[key] = field.parse(text);
  }
  if (Object.keys(loop).length) out['loop'] = loop;
  return out as MethodOverrides;
}

/**
 * Errors a user can act on: bad files, bad options, bad prompts. The CLI prints their message as one line and
 * exits non-zero, without a stack trace. Anything else escaping to the CLI is a bug and is shown in full.
 */
export class UserError extends Error {
  override readonly name: string = 'UserError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}

/** A message about request fields, given what the reader calls each field. */
export type FieldMessage = (name: string, nameOf: (field: string) => string) => string;

/**
 * A UserError about one field of a library call (`steps`, `guidanceScale`, `sampler`, ...). The library names its
 * fields; a front end that calls them something else (the CLI: flags such as `--guidance`) re-words the message
 * with `messageFor`.
 */
export class FieldError extends UserError {
  override readonly name: string = 'FieldError';
  /**
   * `detail` follows the field's name: `new FieldError('steps', 'must be an integer from 1 to 1000, got 0')`.
   * A function places the names itself: `(name, nameOf) => \`${name} needs ${nameOf('subjects')}\``.
   */
  constructor(
    readonly field: string,
    readonly detail: string | FieldMessage,
    options?: { cause?: unknown },
  ) {
    super(
      FieldError.format(field, detail, (f) => f),
      options,
    );
  }

  /** The message with every field called what `nameOf` says. */
  messageFor(nameOf: (field: string) => string): string {
    return FieldError.format(nameOf(this.field), this.detail, nameOf);
  }

  private static format(name: string, detail: string | FieldMessage, nameOf: (field: string) => string): string {
    if (typeof detail === 'function') return detail(name, nameOf);
    return /^[:,;]/.test(detail) ? `${name}${detail}` : `${name} ${detail.trimStart()}`;
  }
}

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

/**
 * A UserError about one field of a library call (`steps`, `guidanceScale`, `sampler`, ...). The library names the
 * field; a front end that calls it something else (the CLI: a flag such as `--guidance`) re-words the message with
 * `messageFor(itsName)`.
 */
export class FieldError extends UserError {
  override readonly name: string = 'FieldError';
  /**
   * `detail` follows the field's name: `new FieldError('steps', 'must be an integer from 1 to 1000, got 0')`.
   * A function places the name itself: `(name) => \`choose a sampler with ${name}\``.
   */
  constructor(
    readonly field: string,
    readonly detail: string | ((name: string) => string),
    options?: { cause?: unknown },
  ) {
    super(FieldError.format(field, detail), options);
  }

  /** The message with the field called `name`. */
  messageFor(name: string): string {
    return FieldError.format(name, this.detail);
  }

  private static format(name: string, detail: string | ((name: string) => string)): string {
    if (typeof detail === 'function') return detail(name);
    return /^[:,;]/.test(detail) ? `${name}${detail}` : `${name} ${detail.trimStart()}`;
  }
}

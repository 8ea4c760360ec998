/**
 * Errors a user can act on: bad files, bad options, bad prompts. The CLI prints their message as one line and
 * exits non-zero, without a stack trace. Anything else escaping to the CLI is a bug and is shown in full.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}

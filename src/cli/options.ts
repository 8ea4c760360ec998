/** Parsing and validating option values: one-line UserErrors that name the option. */
import { UserError } from '../errors.js';
import { PREDICTION_TYPES, type PredictionType } from '../pipeline/stable-diffusion.js';

export function parseInteger(value: string, flag: string, lo = -(2 ** 53 - 1), hi = 2 ** 53 - 1): number {
  const v = /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(v) || v < lo || v > hi) {
    throw new UserError(
      `${flag} must be an integer${hi < 2 ** 53 - 1 ? ` from ${lo} to ${hi}` : lo > -(2 ** 53 - 1) ? ` >= ${lo}` : ''}, got "${value}"`,
    );
  }
  return v;
}

export function parseNumber(value: string, flag: string, lo = -Infinity, hi = Infinity): number {
  const v = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(v) || v < lo || v > hi) {
    const range =
      Number.isFinite(lo) && Number.isFinite(hi)
        ? ` from ${lo} to ${hi}`
        : Number.isFinite(lo)
          ? ` >= ${lo}`
          : Number.isFinite(hi)
            ? ` <= ${hi}`
            : '';
    throw new UserError(`${flag} must be a number${range}, got "${value}"`);
  }
  return v;
}

export function parsePredictionType(value: string, flag: string): PredictionType {
  const v = value.trim();
  if (!(PREDICTION_TYPES as readonly string[]).includes(v)) {
    throw new UserError(`${flag} must be one of ${PREDICTION_TYPES.join(', ')}, got "${value}"`);
  }
  return v as PredictionType;
}

/** Whether progress bars should be drawn: only for a human watching stderr. */
export function interactive(json: boolean | undefined): boolean {
  return !json && process.stderr.isTTY === true && !process.env['CI'];
}

/**
 * An error a handler answers with: an HTTP status, the field at fault and one sentence. Each API's error handler
 * writes it in its own shape (OpenAI's `{error: {message, type, param, code}}`, Automatic1111's FastAPI shapes).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly options: {
      /** The request field at fault, in the API's own name. */
      field?: string | null;
      /** OpenAI's `code` (`invalid_api_key`, `model_not_found`, `rate_limit_exceeded`, ...). */
      code?: string | null;
      /** Seconds for Retry-After (429, 503). */
      retryAfter?: number;
      /** A1111's `error` (the Python exception's class name that its handler reports). */
      kind?: string;
      /** A1111's request validation failure: FastAPI's 422 `{detail: [{loc, msg, type}]}`. */
      validation?: boolean;
    } = {},
  ) {
    super(message);
  }
}

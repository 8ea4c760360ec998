/**
 * Pickle checkpoints (.ckpt/.pt/.pth/.bin/.pkl) are refused by name and never opened: unpickling runs arbitrary
 * code. This is the one place that decides what counts as one and what the user is told.
 */
import { posixPaths } from './files.js';
import { UserError } from '../errors.js';

export const PICKLE_EXTENSIONS: readonly string[] = ['.ckpt', '.pt', '.pth', '.bin', '.pkl'];

export function isPickleFile(path: string): boolean {
  return PICKLE_EXTENSIONS.includes(posixPaths.extname(path).toLowerCase());
}

/** The one-line refusal for a pickle checkpoint. */
export function pickleRefusal(path: string): UserError {
  return new UserError(
    `${path}: pickle checkpoints (.ckpt/.pt/.pth/.bin/.pkl) can execute arbitrary code when loaded and are never opened; ` +
      `convert the model to safetensors first, e.g. in Python with diffusers: ` +
      `DiffusionPipeline.from_pretrained(SRC).save_pretrained(DST, safe_serialization=True)`,
  );
}

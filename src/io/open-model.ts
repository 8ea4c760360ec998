/**
 * A model as a user names it: a diffusers folder, or one single-file `.safetensors` checkpoint (SD 1.x / 2.x in
 * the original LDM layout). Either way the result is a ModelFolder whose components give configs, tokenizer and
 * weights; `singleFile` says how a single file was read.
 */
import { UserError } from '../errors.js';
import { files, paths } from './files.js';
import { openModelFolder, type ModelFolder } from './model-folder.js';
import { isPickleFile, pickleRefusal } from './pickle.js';
import { checkRegularFile } from './regular-file.js';
import { openSingleFile, type SingleFileInfo } from './single-file/open.js';

const { extname, resolve } = paths;

export interface OpenModelRequest {
  /** Weights variant of a folder, e.g. 'fp16' for `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
  /** For a single file: a diffusers folder without weights giving its configs and tokenizer. */
  configDir?: string;
  /** For a single file: the prediction type it will run with (sets an SD 2.x file's default image size). */
  predictionType?: string;
}

export interface OpenedModel {
  folder: ModelFolder;
  /** Set when the model is a single-file checkpoint. */
  singleFile: SingleFileInfo | null;
}

export function openModel(path: string, request: OpenModelRequest = {}): OpenedModel {
  const abs = resolve(path);
  let isDir: boolean;
  try {
    isDir = files().stat(abs).kind === 'directory';
  } catch {
    throw new UserError(`${abs}: model folder or file not found`);
  }
  if (isDir) {
    if (request.configDir !== undefined) {
      throw new UserError(
        `${abs}: is a model folder, which has its own configs; a config folder applies to a single-file checkpoint`,
      );
    }
    return {
      folder: openModelFolder(abs, request.variant !== undefined ? { variant: request.variant } : {}),
      singleFile: null,
    };
  }
  if (isPickleFile(abs)) throw pickleRefusal(abs);
  checkRegularFile(abs);
  if (extname(abs).toLowerCase() !== '.safetensors') {
    throw new UserError(`${abs}: not a model folder or a single-file .safetensors checkpoint`);
  }
  if (request.variant !== undefined) {
    throw new UserError(`${abs}: a single-file checkpoint has no weight variants (variant '${request.variant}')`);
  }
  if (request.configDir !== undefined) {
    let st;
    try {
      st = files().stat(resolve(request.configDir));
    } catch {
      throw new UserError(`${resolve(request.configDir)}: config folder not found`);
    }
    if (st.kind !== 'directory')
      throw new UserError(
        `${resolve(request.configDir)}: not a folder (a config folder is a diffusers model folder without weights)`,
      );
  }
  const { folder, info } = openSingleFile(abs, {
    ...(request.configDir !== undefined ? { configDir: resolve(request.configDir) } : {}),
    ...(request.predictionType !== undefined ? { predictionType: request.predictionType } : {}),
  });
  return { folder, singleFile: info };
}

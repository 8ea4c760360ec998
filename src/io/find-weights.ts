/**
 * Where a diffusers component's weights are: `diffusion_pytorch_model.safetensors` / `model.safetensors`, a
 * variant (`*.fp16.safetensors`), or a shard index (`*.safetensors.index.json`). Files may be symbolic links to
 * regular files (the Hugging Face cache's snapshots/ link into blobs/). Pickle weights are refused by name.
 */
import { UserError } from '../errors.js';
import { errorCode, files, paths } from './files.js';
import { isPickleFile, pickleRefusal } from './pickle.js';
import { describeFileType } from './regular-file.js';

const { join } = paths;

const WEIGHT_BASENAMES = ['diffusion_pytorch_model', 'model'];

/** Where a component's weights are: one file, or a shard index. */
export type WeightLocation = { kind: 'file'; path: string } | { kind: 'index'; path: string };

/** Names of the regular files in `dir`, symbolic links to regular files included, sorted. */
export function listFiles(dir: string): string[] {
  return files().listFiles(dir);
}

/**
 * Find a component's safetensors weights. Preference: the requested variant (if any), else the plain file, else
 * a sharded index; with no variant requested and no plain file, a single variant file is taken (diffusers would
 * make the user name it, but there is nothing to choose between). Returns null when there are no weights at all;
 * throws the pickle refusal when only pickle weights exist.
 */
export function findWeights(dir: string, variant?: string): WeightLocation | null {
  const files = listFiles(dir);
  const has = (name: string) => files.includes(name);
  const pick = (names: string[]): WeightLocation | null => {
    for (const n of names) {
      if (!has(n)) continue;
      return n.endsWith('.json') ? { kind: 'index', path: join(dir, n) } : { kind: 'file', path: join(dir, n) };
    }
    return null;
  };

  if (variant !== undefined) {
    const found = pick(
      WEIGHT_BASENAMES.flatMap((b) => [
        `${b}.${variant}.safetensors`,
        `${b}.safetensors.index.${variant}.json`,
        `${b}.${variant}.safetensors.index.json`,
      ]),
    );
    if (found) return found;
    const plain = pick(WEIGHT_BASENAMES.flatMap((b) => [`${b}.safetensors`, `${b}.safetensors.index.json`]));
    if (plain || files.some((f) => f.endsWith('.safetensors'))) {
      const available = files.filter((f) => f.endsWith('.safetensors') || f.endsWith('.index.json')).join(', ');
      throw new UserError(`${dir}: no '${variant}' variant of the weights (found: ${available})`);
    }
  } else {
    const found = pick(WEIGHT_BASENAMES.flatMap((b) => [`${b}.safetensors`, `${b}.safetensors.index.json`]));
    if (found) return found;
    const variants = files.filter((f) =>
      WEIGHT_BASENAMES.some((b) => new RegExp(`^${b}\\.[A-Za-z0-9_-]+\\.safetensors$`).test(f)),
    );
    if (variants.length === 1) return { kind: 'file', path: join(dir, variants[0]!) };
    if (variants.length > 1) {
      throw new UserError(
        `${dir}: several weight variants (${variants.join(', ')}) and no plain file; choose one with a variant option`,
      );
    }
  }
  const pickle = files.find((f) => isPickleFile(f) || /\.bin\.index\.json$/.test(f));
  if (pickle) throw pickleRefusal(join(dir, pickle));
  const names = WEIGHT_BASENAMES.flatMap((b) => [
    `${b}.safetensors`,
    `${b}.safetensors.index.json`,
    ...(variant !== undefined ? [`${b}.${variant}.safetensors`, `${b}.safetensors.index.${variant}.json`] : []),
  ]);
  for (const name of names) {
    const unusable = unusableEntry(join(dir, name));
    if (unusable) throw unusable;
  }
  return null;
}

/**
 * Why an entry named as weights is not a file that can hold them (a FIFO, a folder, a dangling symbolic link), or
 * null when nothing is there: "no weights found" would send the user looking for a missing file.
 */
function unusableEntry(path: string): UserError | null {
  const fs = files();
  const link = fs.linkTarget?.(path) ?? null;
  try {
    const st = fs.stat(path);
    if (st.kind === 'file') return null;
    return new UserError(`${path} is ${describeFileType(st.kind)}; weights must be a regular file (or a link to one)`);
  } catch (e) {
    const code = errorCode(e) ?? 'error';
    if (link !== null)
      return new UserError(
        `${path} is a symbolic link to ${link}, which ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`,
      );
    return code === 'ENOENT' ? null : new UserError(`${path}: cannot be read (${code})`);
  }
}

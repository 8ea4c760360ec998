/**
 * `WeightStore`: checked, usage-tracked access to one component's tensors, by checkpoint key. Model code asks for
 * each weight by key and the shape its config implies; the store checks both and remembers what was used, so
 * that leftover keys (a mismatched architecture or config) are refused instead of silently ignored.
 *
 * A store is usually a diffusers component's file (or shards), key for key. A converted single-file checkpoint
 * gives it *views* instead: a diffusers key backed by a tensor of another name, possibly another shape over the
 * same bytes (a 1x1 convolution read as a linear layer) or a contiguous byte range of it (q, k and v out of
 * OpenCLIP's stacked `in_proj_weight`) — never a copy.
 */
import { UserError } from '../errors.js';
import type { WeightSource } from '../graph/graph.js';
import { numel, shapeString } from '../tensor.js';
import { paths } from './files.js';
import { readJsonObject } from './json-config.js';
import { describeValue, listKeys, quoteKey } from './messages.js';
import { isPickleFile, pickleRefusal } from './pickle.js';
import { checkRegularFile } from './regular-file.js';
import { isFloatDType, SafetensorsFile, weightSource, type SafetensorsDType, type TensorInfo } from './safetensors.js';

const { basename, dirname, join, resolve } = paths;

export interface StoredTensorInfo extends TensorInfo {
  /** The safetensors file holding it. */
  readonly file: string;
  /** The key the store answers to (`name` is the tensor's name in the file). */
  readonly key: string;
}

/** One key of a store: the file and the tensor (or view of a tensor) behind it. */
export interface WeightEntry {
  readonly file: SafetensorsFile;
  /** `name` is the tensor's name in the file; shape, offset and length may describe a view of it. */
  readonly tensor: TensorInfo;
  /**
   * A 2-D tensor the model reads transposed: OpenCLIP's `text_projection` (the matrix x is multiplied by) as the
   * nn.Linear weight transformers keeps. Not a view of the bytes, so it is read and transposed (a copy).
   */
  readonly transposed?: boolean;
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

export class WeightStore {
  private readonly byKey = new Map<string, WeightEntry>();
  private readonly usedKeys = new Set<string>();

  /**
   * @param files every file the store reads (closed with it).
   * @param label what messages call the store as a whole: the file, or the shard index.
   * @param entries the keys and what backs them; default: every tensor of `files` under its own name.
   */
  constructor(
    readonly files: readonly SafetensorsFile[],
    readonly label: string = files[0]?.path ?? '(no files)',
    entries?: ReadonlyMap<string, WeightEntry>,
  ) {
    if (entries) {
      for (const [k, e] of entries) this.byKey.set(k, e);
      return;
    }
    for (const f of files) {
      for (const t of f.infos()) {
        const other = this.byKey.get(t.name);
        if (other) {
          throw new UserError(`${label}: weight ${quoteKey(t.name)} appears in both ${other.file.path} and ${f.path}`);
        }
        this.byKey.set(t.name, { file: f, tensor: t });
      }
    }
  }

  /** One safetensors file. */
  static open(path: string): WeightStore {
    const f = SafetensorsFile.open(path);
    return new WeightStore([f], f.path);
  }

  /** A sharded checkpoint: `*.safetensors.index.json` with a `weight_map` {key: shard file}. */
  static openIndex(indexPath: string): WeightStore {
    const abs = resolve(indexPath);
    const index = readJsonObject(abs);
    const map = index['weight_map'];
    if (typeof map !== 'object' || map === null || Array.isArray(map)) {
      throw new UserError(`${abs}: missing or malformed "weight_map" (expected {key: shard file})`);
    }
    const shardNames = new Set<string>();
    for (const [key, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard === '' || shard.includes('/') || shard.includes('\\')) {
        throw new UserError(
          `${abs}: weight_map entry ${quoteKey(key)} must name a shard file in the same folder, found ${describeValue(shard)}`,
        );
      }
      shardNames.add(shard);
    }
    if (shardNames.size === 0) throw new UserError(`${abs}: weight_map is empty`);
    const files: SafetensorsFile[] = [];
    try {
      for (const shard of shardNames) {
        const p = join(dirname(abs), shard);
        if (isPickleFile(p)) throw pickleRefusal(p);
        checkRegularFile(p);
        files.push(SafetensorsFile.open(p));
      }
      const store = new WeightStore(files, abs);
      // The index must agree with the shards' own headers.
      for (const [key, shard] of Object.entries(map as Record<string, string>)) {
        const e = store.byKey.get(key);
        if (!e || basename(e.file.path) !== shard)
          throw new UserError(`${abs}: weight_map puts ${quoteKey(key)} in ${shard}, but that shard does not hold it`);
      }
      return store;
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }

  keys(): string[] {
    return [...this.byKey.keys()];
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  private entry(key: string): WeightEntry {
    const e = this.byKey.get(key);
    if (!e) throw new UserError(`missing weight ${quoteKey(key)} in ${this.label}`);
    return e;
  }

  /** Where a key comes from, for messages: "'key' in FILE" or "'key' (tensor 'orig') in FILE". */
  describe(key: string): string {
    const e = this.entry(key);
    const from = e.tensor.name === key ? '' : ` (tensor ${quoteKey(e.tensor.name)})`;
    return `${quoteKey(key)}${from} in ${e.file.path}`;
  }

  info(key: string): StoredTensorInfo {
    const e = this.entry(key);
    return { ...e.tensor, file: e.file.path, key };
  }

  dtypeOf(key: string): SafetensorsDType {
    return this.entry(key).tensor.dtype;
  }

  shapeOf(key: string): readonly number[] {
    const e = this.entry(key);
    return e.transposed ? [...e.tensor.shape].reverse() : e.tensor.shape;
  }

  /** Every tensor with its file, in key order (file then header order for a plain store). */
  tensorInfos(): StoredTensorInfo[] {
    return [...this.byKey].map(([key, e]) => ({ ...e.tensor, file: e.file.path, key }));
  }

  /**
   * Number of parameters: elements of the floating-point tensors. Integer tensors are buffers (such as CLIP's
   * `position_ids`), not parameters, matching what torch's `num_parameters()` counts.
   */
  paramCount(): number {
    let n = 0;
    for (const t of this.tensorInfos()) if (isFloatDType(t.dtype)) n += numel(t.shape);
    return n;
  }

  /** Element counts per on-disk dtype. */
  dtypeCounts(): Partial<Record<SafetensorsDType, number>> {
    const out: Partial<Record<SafetensorsDType, number>> = {};
    for (const t of this.tensorInfos()) out[t.dtype] = (out[t.dtype] ?? 0) + numel(t.shape);
    return out;
  }

  /** Bytes of the store's own tensors (of a converted single file: this component's share of it). */
  tensorBytes(): number {
    let n = 0;
    for (const e of this.byKey.values()) n += e.tensor.byteLength;
    return n;
  }

  /** Total size of the files. */
  fileBytes(): number {
    return this.files.reduce((s, f) => s + f.fileSize, 0);
  }

  /**
   * The weight `key` as a graph weight source, checked against the shape the config implies. Marks it used.
   */
  source(key: string, expectedShape: readonly number[]): WeightSource {
    const e = this.entry(key);
    const t = e.tensor;
    const shape = this.shapeOf(key);
    if (shape.length !== expectedShape.length || shape.some((d, i) => d !== expectedShape[i])) {
      throw new UserError(
        `weight ${this.describe(key)} has shape ${shapeString(shape)}${e.transposed ? ' (transposed)' : ''}, the config expects ${shapeString(expectedShape)}`,
      );
    }
    if (!isFloatDType(t.dtype))
      throw new UserError(`weight ${this.describe(key)} is ${t.dtype}, expected a floating-point tensor`);
    this.usedKeys.add(key);
    if (e.transposed) return { shape, read: () => this.readFloat32(key) };
    return weightSource(e.file, t.name, t);
  }

  /** Read a float tensor now (marks it used). */
  readFloat32(key: string): Float32Array {
    const e = this.entry(key);
    this.usedKeys.add(key);
    const data = e.file.readFloat32Of(e.tensor);
    return e.transposed ? transpose2d(data, e.tensor.shape[0]!, e.tensor.shape[1]!) : data;
  }

  /** Read an integer tensor now (marks it used). Views of integer tensors are not made, so this reads by name. */
  readInt64(key: string): BigInt64Array {
    const e = this.entry(key);
    this.usedKeys.add(key);
    return e.file.readInt64(e.tensor.name);
  }

  /** Count a key as used without reading it (a buffer the model recomputes, say). */
  markUsed(key: string): void {
    this.entry(key);
    this.usedKeys.add(key);
  }

  used(): string[] {
    return this.keys().filter((k) => this.usedKeys.has(k));
  }

  unused(): string[] {
    return this.keys().filter((k) => !this.usedKeys.has(k));
  }

  /**
   * Fail when the checkpoint holds weights the model did not ask for: that means the config and the weights
   * describe different architectures. `ignore` exempts keys that are expected to be left over.
   */
  assertAllUsed(ignore: (key: string) => boolean = () => false): void {
    const extra = this.unused().filter((k) => !ignore(k));
    if (extra.length === 0) return;
    throw new UserError(
      `${this.label}: ${extra.length} unexpected weight${extra.length === 1 ? '' : 's'} not used by the model ` +
        `(${listKeys(extra)}); the config and the weights do not describe the same architecture`,
    );
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/**
 * Opening a single-file checkpoint as a model folder: the file's weights, converted (convert.ts), under the
 * configs and tokenizer of a folder — the user's `--config DIR` (as diffusers' `from_single_file(config=DIR)`),
 * or, for the standard SD 1.x / 2.x architectures, configs inferred from the weights over the family's shipped
 * folder (architecture.ts).
 */
import { paths } from '../files.js';
import { configInt, readJsonObject } from '../json-config.js';
import { openModelFolder, type ComponentOverride, type ModelFolder } from '../model-folder.js';
import { SafetensorsFile } from '../safetensors.js';
import { WeightStore, type WeightEntry } from '../weight-store.js';
import { FAMILY_NAME, FAMILY_OF_LAYOUT, inferConfigs, shippedConfigDir, type SdFamily } from './architecture.js';
import {
  CLIP_PREFIX,
  convertLdmCheckpoint,
  OPEN_CLIP_PREFIX,
  SDXL_CLIP_PREFIX,
  SDXL_OPEN_CLIP_PREFIX,
  UNET_PREFIX,
  VAE_PREFIX,
  type TextEncoderLayout,
} from './convert.js';

const { join } = paths;

export interface SingleFileInfo {
  /** Absolute path of the checkpoint. */
  file: string;
  /** Which text encoder layout the keys show: OpenAI CLIP (SD 1.x), OpenCLIP (SD 2.x) or both (SDXL). */
  textEncoderLayout: TextEncoderLayout;
  family: SdFamily;
  familyName: string;
  /** The config folder used: the user's (--config), or the shipped one the inferred configs start from. */
  configDir: string;
  /** True when the configs were inferred from the weights (no --config). */
  inferred: boolean;
  /** Keys of the file not used on purpose: schedule buffers, EMA weights, OpenCLIP's unused last layer. */
  skippedKeys: string[];
  fileBytes: number;
}

export interface OpenSingleFileOptions {
  /** A diffusers folder without weights giving the configs and tokenizer (--config). */
  configDir?: string;
  /** The prediction type the model will run with; sets the default image size of an inferred SD 2.x model. */
  predictionType?: string;
}

/** OpenCLIP's last block is unused when the text encoder stops one layer short (SD 2.x's penultimate layer). */
function dropUnusedLastLayer(text: Map<string, WeightEntry>, layers: number, skipped: string[]): void {
  const re = /^text_model\.encoder\.layers\.(\d+)\./;
  let blocks = 0;
  for (const k of text.keys()) blocks = Math.max(blocks, Number(re.exec(k)?.[1] ?? -1) + 1);
  if (layers !== blocks - 1) return;
  for (const [k, e] of [...text]) {
    if (Number(re.exec(k)?.[1] ?? -1) === layers) {
      text.delete(k);
      if (!skipped.includes(e.tensor.name)) skipped.push(e.tensor.name);
    }
  }
}

export function openSingleFile(
  path: string,
  options: OpenSingleFileOptions = {},
): { folder: ModelFolder; info: SingleFileInfo } {
  const file = SafetensorsFile.open(path);
  try {
    const converted = convertLdmCheckpoint(file);
    const family = FAMILY_OF_LAYOUT[converted.textLayout];
    const skipped = [...converted.skipped];
    const store = (entries: Map<string, WeightEntry>, prefix: string) =>
      new WeightStore([file], `${file.path} [${prefix}* keys read as diffusers names]`, entries);
    const overrides = new Map<string, ComponentOverride>();
    let configDir: string;
    const textPrefix = { clip: CLIP_PREFIX, 'open-clip': OPEN_CLIP_PREFIX, sdxl: SDXL_CLIP_PREFIX }[
      converted.textLayout
    ];
    const text2 = converted.textEncoder2;

    if (options.configDir !== undefined) {
      configDir = options.configDir;
      const textConfig = join(configDir, 'text_encoder', 'config.json');
      const layers = configInt(readJsonObject(textConfig), 'num_hidden_layers', textConfig, 12);
      if (converted.textLayout === 'open-clip') dropUnusedLastLayer(converted.textEncoder, layers, skipped);
      overrides.set('unet', { weights: store(converted.unet, UNET_PREFIX) });
      overrides.set('vae', { weights: store(converted.vae, VAE_PREFIX) });
      overrides.set('text_encoder', { weights: store(converted.textEncoder, textPrefix) });
      if (text2) overrides.set('text_encoder_2', { weights: store(text2, SDXL_OPEN_CLIP_PREFIX) });
    } else {
      configDir = shippedConfigDir(family);
      const inferred = inferConfigs(family, converted.textLayout, converted, file.path);
      if (converted.textLayout === 'open-clip') {
        dropUnusedLastLayer(converted.textEncoder, inferred.textEncoder['num_hidden_layers'] as number, skipped);
      }
      // diffusers (convert_from_ckpt): a 2.x file is a 768-px v-prediction model unless told otherwise; the
      // 512-px 2.x base is the epsilon one.
      const unet = { ...inferred.unet };
      if (family === 'stable-diffusion-v2' && options.predictionType === 'epsilon') unet['sample_size'] = 64;
      const what = (c: string) => `${file.path} [${c} config inferred from the weights over ${configDir}/${c}]`;
      const config = (json: Record<string, unknown>, c: string, className: string) => ({
        json,
        path: what(c),
        className,
      });
      overrides.set('unet', {
        weights: store(converted.unet, UNET_PREFIX),
        config: config(unet, 'unet', 'UNet2DConditionModel'),
      });
      overrides.set('vae', {
        weights: store(converted.vae, VAE_PREFIX),
        config: config(inferred.vae, 'vae', 'AutoencoderKL'),
      });
      overrides.set('text_encoder', {
        weights: store(converted.textEncoder, textPrefix),
        config: config(inferred.textEncoder, 'text_encoder', 'CLIPTextModel'),
      });
      if (text2 && inferred.textEncoder2)
        overrides.set('text_encoder_2', {
          weights: store(text2, SDXL_OPEN_CLIP_PREFIX),
          config: config(inferred.textEncoder2, 'text_encoder_2', 'CLIPTextModelWithProjection'),
        });
    }
    const folder = openModelFolder(configDir, { overrides });
    return {
      folder,
      info: {
        file: file.path,
        textEncoderLayout: converted.textLayout,
        family,
        familyName: FAMILY_NAME[family],
        configDir: folder.dir,
        inferred: options.configDir === undefined,
        skippedKeys: skipped,
        fileBytes: file.fileSize,
      },
    };
  } catch (e) {
    file.close();
    throw e;
  }
}

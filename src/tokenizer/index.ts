export {
  CLIP_MAX_MERGES,
  CLIP_TOKENIZER_VARIANTS,
  ClipTokenizer,
  DEFAULT_CLIP_TOKENIZER_CONFIG,
  parseMerges,
  parseTokenizerConfig,
  parseVocab,
  type ClipTokenizerConfig,
  type ClipTokenizerInit,
  type ClipTokenizerVariant,
  type DecodeOptions,
  type PromptWord,
  type TokenizeOptions,
  type TokenizedPrompt,
  type WordOptions,
} from './clip.js';
export { basicTokenize } from './basic.js';
export { fixText, whitespaceClean } from './ftfy.js';
export { pyHtmlUnescape } from './html.js';

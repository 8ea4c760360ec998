/**
 * The part-of-speech tagger the subject finder reads (compromise, see auto-subjects.ts), installed by the platform's
 * entry point as the file system and the runtime are, and loaded on its first use: a run whose subjects are given
 * (or that has none) never loads it. Loading it is most of the CLI's start-up (its lexicon is unpacked at load,
 * ~0.6 s), so Node's entry (src/node.ts) installs compromise's CommonJS bundle, one file that loads ~0.2 s sooner
 * than its ~450 ES modules and tags alike (docs/measurements.md#tagger-load); a page's worker installs the ES
 * modules, which its bundler packs. This module imports nothing.
 */
/**
 * What the subject finder needs of compromise's `nlp`: text in, a document whose `json()` lists each sentence's terms
 * and their tags. compromise itself is one; so is a proxy to it on another thread (src/tagger-thread.ts).
 */
export type Tagger = (text: string) => { json(): unknown };

let loader: (() => Tagger) | null = null;
let loaded: Tagger | null = null;

/** Make `load` the tagger's source (done once by the platform's entry point); it is called on first use. */
export function setTaggerLoader(load: () => Tagger): void {
  loader = load;
  loaded = null;
}

/** The installed tagger, loaded now if this is its first use. */
export function tagger(): Tagger {
  if (!loaded) {
    if (!loader)
      throw new Error(
        "no part-of-speech tagger installed: import 'suppress-to-impress' (or src/node.ts) in Node, or install one",
      );
    loaded = loader();
  }
  return loaded;
}

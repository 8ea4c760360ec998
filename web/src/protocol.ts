/**
 * Messages between the page (main.ts) and the engine's worker (worker.ts). What the engine sends is in snake_case,
 * as every JSON s2i writes (the CLI's --json, the benchmark's rows): the engine converts at its edge.
 */

export interface RunRequest {
  prompt: string;
  method: string;
  seed: number;
  steps: number;
  /** Base URL of the model folder (with its manifest.json). */
  model: string;
  /** WebAssembly threads (default: the backend's choice); fixed by the first request. */
  threads?: number;
  /** 'wasm' keeps to WebAssembly even where WebGPU exists (default: WebGPU when there is an adapter). */
  backend?: 'wasm' | 'auto';
}

export interface SubjectInfo {
  word: string;
  /** Token position whose attention map is shown. */
  token: number;
}

/** One row of the per-step table: what the method logged (see methods/*: stepLog). */
export interface StepRow {
  index: number;
  timestep: number;
  ms: number;
  loss: number | null;
  max_attention: (number | null)[];
  terms: Record<string, number>;
  tries: number;
  updated: boolean;
  edited: boolean;
  /** The layout score (lower is better) where the method computed one: the call at which starts are compared. */
  layout_score: number | null;
}

export interface ObjectScore {
  object: string;
  present: boolean;
  colour_right: boolean;
  leaked: boolean;
  seen: string;
}

export interface Score {
  full_success: boolean;
  object_recall: number;
  binding: number;
  extra_objects: number;
  objects: ObjectScore[];
}

export type EngineMessage =
  | { type: 'phase'; text: string; fraction: number | null }
  | {
      type: 'started';
      subjects: SubjectInfo[];
      /** Whether the method acts on subjects (false: plain sampling): which columns the per-step log has. */
      guided: boolean;
      /** A suppress method's mode ('loss', 'edit', 'both'); null for the others. */
      mode: string | null;
      /** The loss terms the method logs (its loss is their weighted mean); none: A&E's loss. */
      terms: string[];
      /**
       * When the method chooses among starts: at most how many, the sampler call at which it compares them, and the
       * layout score at which a start is kept without trying the others (null: all are tried).
       */
      selection: { candidates: number; at_call: number; accept: number | null } | null;
      total_steps: number;
      runtime: string;
      width: number;
      height: number;
    }
  | {
      type: 'step';
      index: number;
      timestep: number;
      /**
       * While the method chooses among starts: which start this call belongs to (0: the seed's own); calls
       * 0..atCall-1 run once per start tried. null afterwards (the chosen start, continued).
       */
      round: number | null;
      ms: number;
      /** The latents as an image (pixel-space models), RGBA. */
      preview: Uint8ClampedArray | null;
      /** [h, w, T] maps of this step, or null. */
      maps: { data: Float32Array; shape: number[] } | null;
      row: StepRow;
    }
  | {
      type: 'done';
      /** The final image, RGBA, width x height. */
      image: Uint8ClampedArray;
      width: number;
      height: number;
      score: Score | null;
      /**
       * When the method chose among starts: the one that made the image, its noise seed, the layout score of every
       * start tried and the call at which they were compared.
       */
      candidate: { index: number; seed: number; scores: number[]; at_call: number } | null;
      timings: { load_ms: number; generate_ms: number; total_ms: number };
    }
  | { type: 'error'; message: string };

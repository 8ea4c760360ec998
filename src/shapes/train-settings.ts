/**
 * What `s2i train` trains and its default settings: apart from train.ts and tasks.ts so that declaring the CLI's
 * flags (their defaults and choices) loads no training code.
 */
import type { ShapesTrainOptions } from './train.js';

export const TRAIN_MODELS = ['shapes', 'shapes-ldm-vae', 'shapes-ldm'] as const;
export type TrainModel = (typeof TRAIN_MODELS)[number];

export const SHAPES_TRAIN_DEFAULTS: Omit<ShapesTrainOptions, 'runDir'> = {
  model: 'shapes',
  vae: '',
  init: '',
  klWeight: 1e-6,
  steps: 20000,
  batchSize: 32,
  lr: 5e-4,
  warmupSteps: 200,
  weightDecay: 0.01,
  gradClip: 1.0,
  emaDecay: 0.999,
  promptDropout: 0.1,
  minSnrGamma: 5,
  seed: 0,
  checkpointEvery: 250,
  sampleEvery: 2000,
  samplePrompts: 48,
  sampleSteps: 25,
  sampleGuidance: 5,
};

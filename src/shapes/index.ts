export * from './world.js';
export * from './rng.js';
export * from './generate.js';
export * from './prompt.js';
export * from './score.js';
export * from './degrade.js';

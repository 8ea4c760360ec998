/** Every sampler, in the order help and errors list them: one line each (its declaration is in its own file). */
import { ddimSpec } from './ddim.js';
import { dpmpp2mKarrasSpec } from './dpmpp-2m-karras.js';
import { dpmpp2mSpec } from './dpmpp-2m.js';
import { eulerAncestralSpec } from './euler-ancestral.js';
import { eulerSpec } from './euler.js';
import { pndmSpec } from './pndm.js';

export const SAMPLER_SPECS = [
  pndmSpec,
  ddimSpec,
  eulerSpec,
  eulerAncestralSpec,
  dpmpp2mSpec,
  dpmpp2mKarrasSpec,
] as const;

export type SamplerName = (typeof SAMPLER_SPECS)[number]['name'];

/**
 * DPM++ 2M Karras (the name Automatic1111 and ComfyUI users know): DPM-Solver++ 2M on Karras et al.'s (2022) sigma
 * schedule — diffusers' DPMSolverMultistepScheduler with `use_karras_sigmas=True`, whatever the model's file says.
 */
import { dpmpp2mSpec } from './dpmpp-2m.js';
import { defineSampler } from './spec.js';

export const dpmpp2mKarrasSpec = defineSampler({
  ...dpmpp2mSpec,
  name: 'dpmpp-2m-karras',
  aliases: ['dpmpp2m-karras', 'dpm++-2m-karras', 'dpm++2m-karras'],
  sets: { use_karras_sigmas: true, use_lu_lambdas: false },
});

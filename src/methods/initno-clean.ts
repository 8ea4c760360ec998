/**
 * Rival (reduced): INITNO's clean cross-attention term (terms/clean.ts) with A&E's excite term, in A&E's loop —
 * without INITNO's noise optimisation, self-attention conflict loss and restarts (initno.ts has the method
 * itself). Kept as the row it was benchmarked as before INITNO was implemented in full.
 */
import { only, suppressSpec } from './suppress-presets.js';

export const initnoCleanSpec = suppressSpec({
  name: 'initno-clean',
  group: 'ablation',
  mode: 'loss',
  weights: only({ excite: 1, clean: 0.1 }),
  tokenGroups: false,
  candidates: 1,
  description: "INITNO's clean cross-attention loss + A&E's excite, in A&E's loop (no noise optimisation)",
});

/**
 * Rival: A-STAR (Agarwal et al., ICCV 2023) as far as the paper describes it — no official code is public. Its
 * attention-segregation loss (terms/segregate.ts: the overlap of every pair of subjects' maps) with A&E's excite
 * term, minimised in A&E's latent-update loop. The paper's attention-retention loss (keeping each subject's
 * binarised map of earlier steps) is not included.
 */
import { only, suppressSpec } from './suppress-presets.js';

export const astarSpec = suppressSpec({
  name: 'astar',
  group: 'rival',
  mode: 'loss',
  weights: only({ excite: 1, segregate: 1 }),
  tokenGroups: false,
  candidates: 1,
  description: "rival: A-STAR-style segregation loss + A&E's excite, in A&E's loop (no retention loss)",
});

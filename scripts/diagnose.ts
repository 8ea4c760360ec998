/**
 * Diagnosis of plain sampling's failures on the shapes model (issue 11, step 2): for every (prompt, seed) of a suite,
 * generate as the benchmark does (same noise seed), record the conditional cross-attention maps of every step and
 * the sampler's predicted final image at every step, score both, and measure
 *  - when the layout forms: the first step from which the predicted image's detections stay those of the final
 *    image (same shapes and colours, centres within 4 px);
 *  - where attention goes: the share of each pixel's attention that each token group takes (start token, subject
 *    nouns, their adjectives, function words, end-of-text, padding), per step;
 *  - for each failure, which tokens carried it at the steps where the layout formed: for an extra object, the mean
 *    max-normalised map of each token group inside the extra object's cells against inside the prompted objects'
 *    cells; whether the extra object lies inside the peak component of its subject's map (what the suppress term and
 *    the edit treat as the subject's own region); for a missing object, its subject's peak and where it lies.
 *
 *   npx tsx scripts/diagnose.ts --suite shapes-2 --split tuning --seeds 0-3 --out out/diagnose [--pictures 2]
 *
 * Writes OUT/diagnose.json (per image) and OUT/summary.json (counts); prints the summary. With --pictures N, also
 * OUT/<kind>-<i>.png for the first N images of each failure kind (missing, recoloured, extra) and of successes: one
 * row per step, the predicted final image and each subject's (A&E-smoothed, max-normalised) map over it, then the
 * padding tokens' map.
 */
import '../src/node.js'; // Node's file system and onnxruntime-node as the defaults
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { autoSubjects } from '../src/prompt/auto-subjects.js';
import { noiseSeed, parseSeeds } from '../src/bench/plan.js';
import { loadSuite, parseSplit } from '../src/bench/suites.js';
import { overlayHeatmap } from '../src/image/colormap.js';
import { floatToRgb8 } from '../src/image/convert.js';
import { composeGrid } from '../src/image/grid.js';
import type { RgbImage } from '../src/image/image.js';
import { writePng } from '../src/image/png.js';
import { resizeImage } from '../src/image/resize.js';
import { findCarriers, groupMaps as carrierGroupMaps, layoutScore } from '../src/methods/carriers.js';
import { focusRegions, subjectMapsHost } from '../src/methods/focus.js';
import { generate } from '../src/pipeline/generate.js';
import { StableDiffusion } from '../src/pipeline/stable-diffusion.js';
import { type Detection, scoreImage, type ScoreReport } from '../src/shapes/score.js';
import type { Tensor } from '../src/tensor.js';

const { values } = parseArgs({
  options: {
    suite: { type: 'string', default: 'shapes-2' },
    split: { type: 'string', default: 'tuning' },
    seeds: { type: 'string', default: '0-3' },
    limit: { type: 'string' },
    model: { type: 'string', default: 'models/shapes' },
    steps: { type: 'string', default: '25' },
    guidance: { type: 'string', default: '5' },
    out: { type: 'string', default: 'out/diagnose' },
    pictures: { type: 'string', default: '0' },
  },
});

const PICTURE_STEPS = [0, 1, 2, 3, 4, 6, 8, 12, 24];
const SIGNAL_STEPS = [0, 1, 2, 3, 4, 5, 6, 7, 8];

/** Area under the ROC curve of `scores` for telling `positive` items apart (ties count half). */
function auc(scores: readonly number[], positive: readonly boolean[]): number | null {
  const pos = scores.filter((_, i) => positive[i]);
  const neg = scores.filter((_, i) => !positive[i]);
  if (pos.length === 0 || neg.length === 0) return null;
  let wins = 0;
  for (const p of pos) for (const n of neg) wins += p > n ? 1 : p === n ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}
const SCALE = 3;

/** Rows of (predicted image, each subject's map over it, the padding map) at PICTURE_STEPS. */
function picture(
  predicted: readonly Tensor[],
  maps: ReadonlyMap<number, Tensor>,
  subjects: readonly { word: string; token: number }[],
  padding: readonly number[],
): RgbImage {
  const tiles: RgbImage[] = [];
  const labels: string[] = [];
  const steps = PICTURE_STEPS.filter((i) => i < predicted.length);
  for (const i of steps) {
    const img = floatToRgb8(predicted[i]!);
    const big = resizeImage(img, img.width * SCALE, img.height * SCALE, 'nearest');
    tiles.push(big);
    labels.push(`step ${i}`);
    const m = maps.get(i)!;
    const hs = subjectMapsHost(
      m,
      subjects.map((s) => s.token),
      { kernelSize: 3, sigma: 0.5 },
    );
    const over = (map: Float32Array) => overlayHeatmap(big, map, W, H, { normalize: 'max', alpha: 0.55 });
    hs.maps.forEach((map, k) => {
      tiles.push(over(map));
      labels.push(subjects[k]!.word);
    });
    const pad = new Float32Array(H * W);
    for (const k of padding) tokenMapOf(m, k).forEach((v, p) => (pad[p]! += v));
    tiles.push(over(pad));
    labels.push('padding');
  }
  return composeGrid(tiles, subjects.length + 2, { pad: 2, labels });
}

const GROUPS = ['start', 'subject', 'attribute', 'function', 'end', 'padding'] as const;
type Group = (typeof GROUPS)[number];

interface ImageDiagnosis {
  prompt: string;
  seed: number;
  noiseSeed: number;
  fullSuccess: boolean;
  kinds: { missing: boolean; recoloured: boolean; extra: boolean };
  /** First step from which the predicted image's detections stay the final ones (null: only at the end). */
  layoutStep: number | null;
  /** Per step: mean attention share of each token group. */
  shares: Record<Group, number>[];
  extras: ExtraDiagnosis[];
  missing: MissingDiagnosis[];
  recoloured: RecolourDiagnosis[];
  /** Pairs of final detections whose 8x8 cells overlap (too close for the maps to separate). */
  closePairs: number;
  /**
   * Early-warning signals at steps 0..8, lower = looks better: A&E's (1 − the weakest subject's peak) on the subject
   * tokens' maps, and the layout score's duplicate and collision on the subjects' token groups (methods/carriers.ts).
   */
  signals: { aeWeakest: number; duplicate: number; collision: number; layout: number }[];
}

interface ExtraDiagnosis {
  shape: string;
  colour: string | null;
  /** The subject of the same shape (the extra copy's likely owner), or null. */
  subject: string | null;
  /** Mean max-normalised map inside the extra object's cells, per token group (mean over layout steps). */
  inside: Record<Group, number>;
  /** The same inside the prompted objects' cells. */
  onObjects: Record<Group, number>;
  /** Share of the owning subject's map mass inside the extra object's cells. */
  subjectMassShare: number | null;
  /** The extra object's cells lie in the owning subject's peak component (its "own" region) at the layout step. */
  inPeakComponent: boolean | null;
}

interface MissingDiagnosis {
  subject: string;
  /** Max of the subject's smoothed map (A&E's quantity) at the layout steps, mean. */
  peak: number;
  /** The subject's peak lies on another prompted object's cells in the final image. */
  peakOnOtherObject: boolean;
}

interface RecolourDiagnosis {
  subject: string;
  drawnIn: string | null;
  /** Share of the object's own attribute map inside its cells, vs of the other subjects' attributes. */
  ownAttribute: number;
  otherAttribute: number;
}

const H = 8;
const W = 8;
const CELL = 4;

function cellsOf(d: Pick<Detection, 'bbox'>): Uint8Array {
  const m = new Uint8Array(H * W);
  const [x, y, w, h] = d.bbox;
  for (let cy = Math.floor(y / CELL); cy <= Math.floor((y + h - 1) / CELL); cy++)
    for (let cx = Math.floor(x / CELL); cx <= Math.floor((x + w - 1) / CELL); cx++)
      if (cy >= 0 && cy < H && cx >= 0 && cx < W) m[cy * W + cx] = 1;
  return m;
}

function meanIn(map: Float32Array, mask: Uint8Array): number {
  let s = 0,
    n = 0;
  for (let i = 0; i < mask.length; i++)
    if (mask[i]) {
      s += map[i]!;
      n++;
    }
  return n ? s / n : 0;
}

function tokenMapOf(maps: Tensor, token: number): Float32Array {
  const T = maps.shape[2]!;
  const out = new Float32Array(H * W);
  for (let p = 0; p < H * W; p++) out[p] = maps.data[p * T + token]!;
  return out;
}

function normalized(m: Float32Array): Float32Array {
  let mx = 0;
  for (const v of m) mx = Math.max(mx, v);
  return mx > 0 ? m.map((v) => v / mx) : m;
}

function sameLayout(a: ScoreReport, b: ScoreReport): boolean {
  if (a.detections.length !== b.detections.length) return false;
  const used = new Set<number>();
  for (const d of a.detections) {
    const j = b.detections.findIndex(
      (e, k) =>
        !used.has(k) &&
        e.shape === d.shape &&
        e.colour === d.colour &&
        Math.hypot(e.centroid[0] - d.centroid[0], e.centroid[1] - d.centroid[1]) <= 4,
    );
    if (j < 0) return false;
    used.add(j);
  }
  return true;
}

async function main(): Promise<void> {
  const suite = loadSuite(values.suite!, parseSplit(values.split!));
  const seeds = parseSeeds(values.seeds!);
  const prompts = values.limit ? suite.prompts.slice(0, Number(values.limit)) : suite.prompts;
  const model = await StableDiffusion.load(values.model!);
  const out = values.out!;
  mkdirSync(out, { recursive: true });
  const results: ImageDiagnosis[] = [];
  const pictures = Number(values.pictures);
  const pictured: Record<string, number> = { missing: 0, recoloured: 0, extra: 0, success: 0 };
  const t0 = performance.now();
  for (const entry of prompts) {
    const auto = autoSubjects(model.tokenizer, entry.prompt);
    const ids = model.tokenizer.tokenize(entry.prompt).ids;
    const eos = ids.indexOf(model.tokenizer.eosId);
    const groupOf = (k: number): Group => {
      if (k === 0) return 'start';
      if (k === eos) return 'end';
      if (k > eos) return 'padding';
      if (auto.subjects.some((s) => s.tokenIndices.includes(k))) return 'subject';
      if (auto.attributes.some((a) => a.attribute.tokenIndices.includes(k))) return 'attribute';
      return 'function';
    };
    for (const seed of seeds) {
      const ns = noiseSeed(seed, entry.prompt);
      const predicted: Tensor[] = [];
      const result = await generate(model, {
        prompt: entry.prompt,
        seed: ns,
        steps: Number(values.steps),
        guidanceScale: Number(values.guidance),
        recordAttention: { resolution: [H, W] },
        onStep: (s) => predicted.push(s.predictedOriginal[0]!),
      });
      const final = scoreImage(floatToRgb8(result.image), undefined, undefined, entry.objects);
      const perStep = predicted.map((x) => scoreImage(floatToRgb8(x), undefined, undefined, entry.objects));
      let layoutStep: number | null = null;
      for (let i = perStep.length - 1; i >= 0 && sameLayout(perStep[i]!, final); i--) layoutStep = i;
      const steps = [...result.attentionMaps.keys()].sort((a, b) => a - b);
      const T = result.attentionMaps.get(0)!.shape[2]!;
      const shares = steps.map((i) => {
        const m = result.attentionMaps.get(i)!;
        const acc = Object.fromEntries(GROUPS.map((g) => [g, 0])) as Record<Group, number>;
        for (let p = 0; p < H * W; p++) for (let k = 0; k < T; k++) acc[groupOf(k)] += m.data[p * T + k]! / (H * W);
        return acc;
      });
      // The steps where the layout forms: up to the layout step (at least the first three).
      const window = steps.filter((i) => i <= Math.max(2, layoutStep ?? steps.length - 1));
      const groupMaps = (i: number) => {
        const m = result.attentionMaps.get(i)!;
        const byGroup = Object.fromEntries(GROUPS.map((g) => [g, new Float32Array(H * W)])) as Record<
          Group,
          Float32Array
        >;
        for (let k = 0; k < T; k++) {
          const tm = tokenMapOf(m, k);
          const g = byGroup[groupOf(k)];
          for (let p = 0; p < H * W; p++) g[p]! += tm[p]!;
        }
        return Object.fromEntries(GROUPS.map((g) => [g, normalized(byGroup[g])])) as Record<Group, Float32Array>;
      };
      const meanOverWindow = (f: (i: number) => number) => window.reduce((s, i) => s + f(i), 0) / window.length;

      const objectCells = new Uint8Array(H * W);
      for (const d of final.detections)
        if (d.matched_to !== null) cellsOf(d).forEach((v, p) => v && (objectCells[p] = 1));
      const extras: ExtraDiagnosis[] = final.detections
        .filter((d) => d.matched_to === null)
        .map((d) => {
          const cells = cellsOf(d);
          const subjectIx = auto.subjects.findIndex((s) => s.word === d.shape);
          const subject = subjectIx >= 0 ? auto.subjects[subjectIx]! : null;
          const inside = Object.fromEntries(
            GROUPS.map((g) => [g, meanOverWindow((i) => meanIn(groupMaps(i)[g], cells))]),
          ) as Record<Group, number>;
          const onObjects = Object.fromEntries(
            GROUPS.map((g) => [g, meanOverWindow((i) => meanIn(groupMaps(i)[g], objectCells))]),
          ) as Record<Group, number>;
          let subjectMassShare: number | null = null;
          let inPeakComponent: boolean | null = null;
          if (subject) {
            subjectMassShare = meanOverWindow((i) => {
              const sm = tokenMapOf(result.attentionMaps.get(i)!, subject.tokenIndex);
              let a = 0,
                b = 0;
              sm.forEach((v, p) => ((b += v), cells[p] && (a += v)));
              return b > 0 ? a / b : 0;
            });
            const at = window[window.length - 1]!;
            const hs = subjectMapsHost(
              result.attentionMaps.get(at)!,
              auto.subjects.map((s) => s.tokenIndex),
              { kernelSize: 3, sigma: 0.5 },
            );
            const regions = focusRegions(hs);
            const comp = regions.components[subjectIx]!;
            let inComp = 0,
              n = 0;
            cells.forEach((v, p) => v && (n++, comp[p] && inComp++));
            inPeakComponent = n > 0 && inComp / n >= 0.5;
          }
          return {
            shape: d.shape,
            colour: d.colour,
            subject: subject?.word ?? null,
            inside,
            onObjects,
            subjectMassShare,
            inPeakComponent,
          };
        });
      const missing: MissingDiagnosis[] = [];
      const recoloured: RecolourDiagnosis[] = [];
      final.objects.forEach((o, j) => {
        const subjectIx = auto.subjects.findIndex((s) => s.word === o.shape);
        const subject = auto.subjects[subjectIx];
        if (!subject) return;
        if (!o.found_shape_match) {
          const peaks = window.map((i) => {
            const hs = subjectMapsHost(result.attentionMaps.get(i)!, [subject.tokenIndex], {
              kernelSize: 3,
              sigma: 0.5,
            });
            const m = hs.maps[0]!;
            let best = 0;
            for (let p = 1; p < m.length; p++) if (m[p]! > m[best]!) best = p;
            return { peak: m[best]!, at: best };
          });
          const lastPeak = peaks[peaks.length - 1]!.at;
          const others = final.detections.filter((d) => d.matched_to !== null && d.matched_to !== j);
          missing.push({
            subject: subject.word,
            peak: peaks.reduce((s, p) => s + p.peak, 0) / peaks.length,
            peakOnOtherObject: others.some((d) => cellsOf(d)[lastPeak] === 1),
          });
        } else if (!o.colour_correct && o.detection !== null) {
          const cells = cellsOf(final.detections[o.detection]!);
          const own = auto.attributes.filter((a) => a.subject === subjectIx);
          const other = auto.attributes.filter((a) => a.subject !== subjectIx);
          const share = (links: typeof own) =>
            links.length === 0
              ? 0
              : meanOverWindow((i) => {
                  let s = 0;
                  for (const a of links) {
                    const am = tokenMapOf(result.attentionMaps.get(i)!, a.attribute.tokenIndex);
                    let inside = 0,
                      total = 0;
                    am.forEach((v, p) => ((total += v), cells[p] && (inside += v)));
                    s += total > 0 ? inside / total : 0;
                  }
                  return s / links.length;
                });
          recoloured.push({
            subject: subject.word,
            drawnIn: o.detected_colour,
            ownAttribute: share(own),
            otherAttribute: share(other),
          });
        }
      });
      if (pictures > 0) {
        const kind = final.full_success
          ? 'success'
          : final.objects.some((o) => !o.found_shape_match)
            ? 'missing'
            : final.objects.some((o) => o.found_shape_match && !o.colour_correct)
              ? 'recoloured'
              : 'extra';
        if (pictured[kind]! < pictures) {
          pictured[kind]!++;
          const padding = ids.map((_, k) => k).filter((k) => k > eos);
          const pic = picture(
            predicted,
            result.attentionMaps,
            auto.subjects.map((s) => ({ word: s.word, token: s.tokenIndex })),
            padding,
          );
          writePng(join(out, `${kind}-${pictured[kind]}.png`), pic);
          writeFileSync(join(out, `${kind}-${pictured[kind]}.txt`), `${entry.prompt} (seed ${seed})\n`);
        }
      }
      let closePairs = 0;
      const dets = final.detections;
      for (let a = 0; a < dets.length; a++)
        for (let b = a + 1; b < dets.length; b++) {
          const ca = cellsOf(dets[a]!),
            cb = cellsOf(dets[b]!);
          if (ca.some((v, p) => v && cb[p])) closePairs++;
        }
      const signals = SIGNAL_STEPS.filter((i) => result.attentionMaps.has(i)).map((i) => {
        const m = result.attentionMaps.get(i)!;
        const tokens = auto.subjects.map((s) => ({ token: s.tokenIndex, tokens: s.tokenIndices }));
        const ae = subjectMapsHost(
          m,
          tokens.map((t) => t.token),
          { kernelSize: 3, sigma: 0.5 },
        );
        const groups = findCarriers(
          m,
          tokens,
          auto.attributes.flatMap((a) => a.attribute.tokenIndices),
        );
        const score = layoutScore(carrierGroupMaps(m, groups, false));
        return {
          aeWeakest: 1 - Math.min(...ae.maps.map((a) => Math.max(...a))),
          duplicate: score.duplicate,
          collision: score.collision,
          layout: score.total,
        };
      });
      results.push({
        signals,
        prompt: entry.prompt,
        seed,
        noiseSeed: ns,
        fullSuccess: final.full_success,
        kinds: {
          missing: final.objects.some((o) => !o.found_shape_match),
          recoloured: final.objects.some((o) => o.found_shape_match && !o.colour_correct),
          extra: final.extra_objects > 0,
        },
        layoutStep,
        shares,
        extras,
        missing,
        recoloured,
        closePairs,
      });
    }
    process.stderr.write(`\r${results.length} images, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  process.stderr.write('\n');
  await model.release();
  writeFileSync(join(out, 'diagnose.json'), JSON.stringify(results));
  const summary = summarizeDiagnosis(results);
  writeFileSync(join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}

function summarizeDiagnosis(rs: ImageDiagnosis[]) {
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const layout = rs.map((r) => r.layoutStep ?? 99);
  const hist: Record<string, number> = {};
  for (const l of layout) hist[String(l)] = (hist[String(l)] ?? 0) + 1;
  const extras = rs.flatMap((r) => r.extras);
  const groupMean = (pick: (e: ExtraDiagnosis) => Record<Group, number>) =>
    Object.fromEntries(GROUPS.map((g) => [g, mean(extras.map((e) => pick(e)[g]))]));
  const missing = rs.flatMap((r) => r.missing);
  const rec = rs.flatMap((r) => r.recoloured);
  const nSteps = rs[0]?.shares.length ?? 0;
  return {
    images: rs.length,
    fullSuccess: rs.filter((r) => r.fullSuccess).length,
    imagesWith: {
      missing: rs.filter((r) => r.kinds.missing).length,
      recoloured: rs.filter((r) => r.kinds.recoloured).length,
      extra: rs.filter((r) => r.kinds.extra).length,
    },
    layoutStepHistogram: hist,
    layoutStepByOutcome: {
      success: mean(rs.filter((r) => r.fullSuccess).map((r) => r.layoutStep ?? nSteps)),
      failure: mean(rs.filter((r) => !r.fullSuccess).map((r) => r.layoutStep ?? nSteps)),
    },
    attentionShareByStep: [0, 1, 2, 4, 8, 16, nSteps - 1]
      .filter((i) => i < nSteps)
      .map((i) => ({ step: i, ...Object.fromEntries(GROUPS.map((g) => [g, mean(rs.map((r) => r.shares[i]![g]))])) })),
    extras: {
      count: extras.length,
      withSubjectOfSameShape: extras.filter((e) => e.subject !== null).length,
      inPeakComponentOfSubject: extras.filter((e) => e.inPeakComponent === true).length,
      outsidePeakComponent: extras.filter((e) => e.inPeakComponent === false).length,
      subjectMassShareInside: mean(extras.filter((e) => e.subjectMassShare !== null).map((e) => e.subjectMassShare!)),
      normalizedMapInsideExtra: groupMean((e) => e.inside),
      normalizedMapOnPromptedObjects: groupMean((e) => e.onObjects),
    },
    missing: {
      count: missing.length,
      meanPeak: mean(missing.map((m) => m.peak)),
      peakOnAnotherObject: missing.filter((m) => m.peakOnOtherObject).length,
    },
    recoloured: {
      count: rec.length,
      ownAttributeShareInside: mean(rec.map((r) => r.ownAttribute)),
      otherAttributeShareInside: mean(rec.map((r) => r.otherAttribute)),
    },
    imagesWithCloseObjects: rs.filter((r) => r.closePairs > 0).length,
    // How well each signal at each step tells the images that will fail (any kind / an object missing / an extra
    // object) from the others: ROC AUC (0.5 = no better than chance).
    signalAuc: SIGNAL_STEPS.filter((i) => i < (rs[0]?.signals.length ?? 0)).map((i) => {
      const row: Record<string, unknown> = { step: i };
      for (const k of ['aeWeakest', 'duplicate', 'collision', 'layout'] as const) {
        const sc = rs.map((r) => r.signals[i]![k]);
        const round = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);
        row[k] = {
          failure: round(
            auc(
              sc,
              rs.map((r) => !r.fullSuccess),
            ),
          ),
          missing: round(
            auc(
              sc,
              rs.map((r) => r.kinds.missing),
            ),
          ),
          extra: round(
            auc(
              sc,
              rs.map((r) => r.kinds.extra),
            ),
          ),
        };
      }
      return row;
    }),
    // Choosing among the seeds of a prompt by the layout score at a step (as a selection of the initial noise among
    // K candidates would): full success of the chosen image, against the mean over all seeds.
    selectionBySeed: [3, 4, 5].map((step) => {
      const byPrompt = new Map<string, ImageDiagnosis[]>();
      for (const r of rs) byPrompt.set(r.prompt, [...(byPrompt.get(r.prompt) ?? []), r]);
      const chosen = [...byPrompt.values()].map((list) =>
        list.reduce((a, b) => (b.signals[step]!.layout < a.signals[step]!.layout ? b : a)),
      );
      return {
        step,
        candidates: rs.length / byPrompt.size,
        chosenFullSuccess: chosen.filter((r) => r.fullSuccess).length / chosen.length,
        meanFullSuccess: rs.filter((r) => r.fullSuccess).length / rs.length,
      };
    }),
  };
}

await main();

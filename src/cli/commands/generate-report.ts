/**
 * What `s2i generate` prints about a run: the summary (settings, subjects, the method's per-step log, timings,
 * files) or, with --json, one JSON object (snake_case keys).
 */
import { isAbsolute, relative } from 'node:path';
import { quoteKey } from '../../io/safetensors.js';
import { ATTEND_EXCITE_DEFAULTS } from '../../methods/attend-and-excite.js';
import { REFERENCE_STEPS, SELECT_AT_50 } from '../../methods/registry.js';
import { LOSS_TERMS } from '../../methods/suppress.js';
import { stepLogJson } from '../../methods/types.js';
import type { GenerateRequest, GenerateRun } from '../../pipeline/request.js';
import type { GraphTiming } from '../../pipeline/stable-diffusion.js';
import { describeSubject, subjectsJson } from '../../prompt/subjects.js';
import { flagOf } from '../options.js';
import { quote } from '../../util/quote.js';

/** The run as the command made it: the request, the files, and the run with its model load. */
export interface GenerateCommandRun {
  request: GenerateRequest;
  threads: number | undefined;
  latents: { file: string; key: string } | null;
  /** The first image's files, and the grid of all images (when there are several). */
  outputs: { image: string; latents: string | null; maps: string | null; grid: string | null };
  /** Every image's files, in seed order. */
  files: { image: string; latents: string | null; maps: string | null }[];
  upscale: number;
  run: GenerateRun & { modelDir: string; loadMs: number; graphs: GraphTiming[] };
}

export const fmtThresholds = (m: ReadonlyMap<number, number>) => [...m].map(([k, v]) => `${k}:${v}`).join(',');
const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** A method's own settings as JSON writes them: snake_case keys (the values are numbers, lists and maps of steps). */
const snakeKeys = (o: Readonly<Record<string, unknown>>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [snake(k), v]));

/** A path as the summary shows it: relative to the working directory when inside it. */
function shown(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

const sec = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

export function summary(p: GenerateCommandRun): string {
  const r = p.run;
  const L: string[] = [];
  const row = (k: string, v: string) => L.push(`${k.padEnd(10)} ${v}`);
  const res = r.result;
  const subjects = r.subjects?.subjects ?? [];
  row('prompt', quote(p.request.prompt, 300));
  if (p.request.negativePrompt !== undefined) row('negative', quote(p.request.negativePrompt, 300));
  row('model', r.modelDir);
  row('sampler', `${r.sampler}, ${r.steps} steps (${res.timesteps.length} UNet calls), guidance ${r.guidance}`);
  row('timesteps', res.timesteps.join(' '));
  const n = r.images.length;
  const seeds = n > 1 ? `seeds ${r.images[0]!.seed}..${r.images[n - 1]!.seed}` : `seed ${r.seed}`;
  row(
    'image',
    `${res.width}x${res.height}, latents [${res.finalLatents.shape.join(', ')}], ${seeds}${n > 1 ? ` (${n} images, ${r.batchSize} per batch)` : ''}`,
  );
  row(
    'start',
    p.latents ? `latents ${quoteKey(p.latents.key)} from ${shown(p.latents.file)}` : `seeded noise (${seeds})`,
  );
  if (r.subjects) row('subjects', subjects.map(describeSubject).join(', '));
  const m = r.method;
  if (m) {
    const links = r.attributes.map((a) => `${a.attribute.word}→${subjects[a.subject]!.word}`).join(', ');
    row('method', `${m.name}: ${m.preset.description}`);
    row(
      '',
      `tokens ${subjects.map((x) => x.tokenIndex).join(', ')}${links ? `; attributes ${links}` : ''}, attn_res ${r.attnRes!.join('x')}`,
    );
    if (m.suppress) {
      const { mode, weights: w, gamma, editSteps, tokenGroups, attributeRegions, selection } = m.suppress;
      const on = LOSS_TERMS.filter((t) => w[t])
        .map((t) => `${t}=${w[t]}`)
        .join(',');
      const starts =
        selection.candidates > 1
          ? `, best of ${selection.candidates} starts at call ${selection.atCall}${selection.accept !== null ? ` (or the first scoring <= ${selection.accept})` : ''}`
          : '';
      row(
        '',
        `mode ${mode}${mode !== 'edit' ? `, weights ${on}` : ''}${mode !== 'loss' ? `, gamma ${gamma}, edit steps ${editSteps}` : ''}, token groups ${tokenGroups ? 'on' : 'off'}${attributeRegions ? `, attribute regions ${attributeRegions === true ? 'on' : attributeRegions}` : ''}${starts}`,
      );
      const c = res.candidate;
      if (c)
        row(
          '',
          `start ${c.index + 1} of ${c.scores.length} tried (layout scores ${c.scores.map((x) => x.toFixed(3)).join(', ')}), noise seed ${c.seed}`,
        );
    }
    // Edit mode never runs the latent-update loop: its settings would only be noise here.
    if (m.suppress?.mode !== 'edit')
      row(
        '',
        `max_iter_to_alter ${m.loop.maxIterToAlter}, thresholds ${fmtThresholds(m.loop.thresholds)}, scale_factor ${m.loop.scaleFactor}`,
      );
    if (m.scaled.length) {
      // The preset's own edit steps at the reference step count (45 for suppress, 18 for its ablations).
      const editAt50 = m.spec.resolve(REFERENCE_STEPS, {}).suppress?.editSteps;
      const d = `${ATTEND_EXCITE_DEFAULTS.maxIterToAlter} / ${fmtThresholds(ATTEND_EXCITE_DEFAULTS.thresholds)}${m.suppress ? ` / ${editAt50}${m.scaled.includes('selectAt') ? ` / ${SELECT_AT_50}` : ''}` : ''}`;
      row(
        '',
        `(${m.scaled.map(snake).join(', ')} scaled from the ${REFERENCE_STEPS}-step defaults ${d} to ${r.steps} steps)`,
      );
    }
  } else row('method', 'none');
  for (const n of r.notes) row('note', n(flagOf));
  if (m && m.suppress?.mode !== 'edit') {
    if (n > 1) row('', `per-step log of the first image (seed ${r.seed}); --json has every image's`);
    L.push(...stepTable(r));
  } else {
    // Plain sampling and edit mode log no loss, maxima or tries: one line, not a table of dashes.
    const ms = res.steps.map((s) => s.ms).sort((a, b) => a - b);
    const edited = res.steps.filter((s) => s.method?.edited).map((s) => s.index);
    const edits = edited.length ? `, attention edited at calls ${edited[0]}–${edited[edited.length - 1]}` : '';
    row(
      'steps',
      `${ms.length} UNet calls${edits}, ${ms[Math.floor(ms.length / 2)]!.toFixed(0)} ms median (min ${ms[0]!.toFixed(0)}, max ${ms[ms.length - 1]!.toFixed(0)}, including graph compilation)`,
    );
  }
  const build = r.graphs.reduce((s, t) => s + t.buildMs + t.serializeMs, 0);
  const sess = r.graphs.reduce((s, t) => s + t.sessionMs, 0);
  const t = totalTimings(r);
  row(
    'timings',
    `total ${sec(t.totalMs + r.loadMs)}: load ${sec(r.loadMs)}, text encoder ${sec(t.encodeMs)}, denoise ${sec(t.denoiseMs)}, decode ${sec(t.decodeMs)}`,
  );
  row(
    '',
    `of which ${r.graphs.length} graphs built in ${sec(build)} and ONNX Runtime sessions created in ${sec(sess)}`,
  );
  row(
    'cost',
    `${res.cost.unetForward} UNet forward passes (guided passes and the method's own), ${res.cost.unetBackward} backward${n > 1 ? ' (first image)' : ''}`,
  );
  wroteRows(p, row);
  return L.join('\n') + '\n';
}

/** The summary's rows naming the files written. */
function wroteRows(p: GenerateCommandRun, row: (k: string, v: string) => void): void {
  const r = p.run;
  const res = r.result;
  const n = r.images.length;
  const k = p.upscale;
  const pngs = `${res.width * k}x${res.height * k} PNG${k > 1 ? `, enlarged ${k}x` : ''}`;
  if (n > 1) {
    const first = shown(p.files[0]!.image);
    const last = shown(p.files[n - 1]!.image);
    row('wrote', `${first}${n > 2 ? ' ... ' : ', '}${last} (${n} images, ${pngs})`);
    if (p.outputs.grid) row('', `${shown(p.outputs.grid)} (all ${n}, labelled with their seeds)`);
    if (p.outputs.latents) row('', `${shown(p.outputs.latents)} ... (each image's final latents as tensor 'latents')`);
    if (p.outputs.maps) row('', `${shown(p.outputs.maps)} ... (each image's cross-attention ${mapSizes(p)})`);
    return;
  }
  row('wrote', `${shown(p.outputs.image)} (${pngs})`);
  if (p.outputs.latents)
    row('', `${shown(p.outputs.latents)} (final latents [${res.finalLatents.shape.join(', ')}] as tensor 'latents')`);
  if (p.outputs.maps && r.picture)
    row('', `${shown(p.outputs.maps)} (cross-attention ${mapSizes(p)}, ${r.picture.width}x${r.picture.height} PNG)`);
}

/** The picture's map sizes: the run's, then any further ones (`--attn-res 16,8`). */
function mapSizes(p: GenerateCommandRun): string {
  const further = p.request.attentionPicture?.alsoAt ?? [];
  return [p.run.attnRes!, ...further].map((r) => r.join('x')).join(' and ');
}

/** The timings of all the run's batches together (each result carries its batch's). */
function totalTimings(r: GenerateCommandRun['run']): {
  encodeMs: number;
  denoiseMs: number;
  decodeMs: number;
  totalMs: number;
} {
  const sum = { encodeMs: 0, denoiseMs: 0, decodeMs: 0, totalMs: 0 };
  for (const { result } of r.images) {
    if (result.batch.index !== 0) continue;
    for (const key of Object.keys(sum) as (keyof typeof sum)[]) sum[key] += result.timings[key];
  }
  return sum;
}

const stepsJson = (res: GenerateCommandRun['run']['result']) =>
  res.steps.map((s) => ({
    index: s.index,
    timestep: s.timestep,
    ms: s.ms,
    ...(s.method ? stepLogJson(s.method) : {}),
  }));

/** The guided methods' per-step table: loss, each subject's max attention, loss terms, refinement tries. */
function stepTable(r: GenerateCommandRun['run']): string[] {
  const names = r.subjects!.subjects.map((x) => (x.occurrences > 1 ? `${x.word}#${x.occurrence}` : x.word));
  const widths = names.map((n) => Math.max(6, n.length));
  const logs = r.result.steps.map((x) => x.method);
  const terms = r.method!.suppress ? LOSS_TERMS.filter((t) => logs.some((m) => m?.terms?.[t] !== undefined)) : [];
  const termW = terms.map((t) => Math.max(6, t.length));
  const num = (v: number | null | undefined, w: number) =>
    (v === null || v === undefined ? '-' : v.toFixed(3)).padStart(w);
  const cols = (xs: string[], ws: number[]) => xs.map((x, i) => x.padStart(ws[i]!)).join('  ');
  const termHead = terms.length ? '  ' + cols([...terms], termW) : '';
  const L = [
    '',
    `${'step'.padStart(4)} ${'t'.padStart(5)}  ${'loss'.padStart(6)}  ${cols(names, widths)}${termHead}  ${'tries'.padStart(5)}  ${'ms'.padStart(7)}`,
  ];
  r.result.steps.forEach((x, j) => {
    const m = logs[j];
    const maxes = names.map((_, i) => num(m?.maxAttention?.[i], widths[i]!)).join('  ');
    const mark = m?.stepSize !== null && m?.stepSize !== undefined ? '*' : m?.edited ? 'e' : ' ';
    const termCols = terms.length ? '  ' + terms.map((t, i) => num(m?.terms?.[t], termW[i]!)).join('  ') : '';
    L.push(
      `${String(x.index).padStart(4)} ${String(x.timestep).padStart(5)}  ${num(m?.loss, 6)}${mark} ${maxes}${termCols}  ${String(m?.refinementTries || '-').padStart(5)}  ${x.ms.toFixed(0).padStart(7)}`,
    );
  });
  L.push(
    r.method!.suppress
      ? '(loss = weighted mean of the terms; * = latents updated; e = attention edited; tries = refinement steps;'
      : '(loss = 1 - the smallest max attention; * = latents updated; tries = refinement steps;',
  );
  L.push(' subject columns: max attention; ms includes compiling graphs on first use)', '');
  return L;
}

export function jsonReport(p: GenerateCommandRun): Record<string, unknown> {
  const r = p.run;
  const res = r.result;
  const m = r.method;
  const subjects = r.subjects?.subjects ?? [];
  const t = totalTimings(r);
  return {
    prompt: p.request.prompt,
    negative_prompt: p.request.negativePrompt ?? null,
    model: r.modelDir,
    settings: {
      steps: r.steps,
      guidance: r.guidance,
      scheduler: r.sampler,
      seed: r.seed,
      height: res.height,
      width: res.width,
      latents: p.latents,
      method: m?.name ?? 'none',
      threads: p.threads ?? null,
    },
    seed: r.seed,
    sampler: r.sampler,
    timesteps: res.timesteps,
    subjects: r.subjects ? subjectsJson(r.subjects) : null,
    method: m
      ? {
          name: m.name,
          description: m.preset.description,
          token_indices: subjects.map((x) => x.tokenIndex),
          attributes: r.attributes.map((a) => ({
            word: a.attribute.word,
            token_indices: a.attribute.tokenIndices,
            subject: subjects[a.subject]!.word,
          })),
          max_iter_to_alter: m.loop.maxIterToAlter,
          thresholds: Object.fromEntries(m.loop.thresholds),
          scale_factor: m.loop.scaleFactor,
          attn_res: r.attnRes,
          ...(m.suppress
            ? {
                mode: m.suppress.mode,
                weights: m.suppress.weights,
                gamma: m.suppress.gamma,
                edit_steps: m.suppress.editSteps,
                token_groups: m.suppress.tokenGroups,
                candidates: m.suppress.selection.candidates,
                select_at: m.suppress.selection.atCall,
                accept: m.suppress.selection.accept,
              }
            : {}),
          ...(m.own && !m.suppress ? { settings: snakeKeys(m.own) } : {}),
          scaled_from_50_steps: m.scaled.map(snake),
        }
      : { name: 'none' },
    notes: r.notes.map((n) => n(flagOf)),
    candidate: res.candidate && {
      index: res.candidate.index,
      seed: res.candidate.seed,
      scores: res.candidate.scores,
      at_call: res.candidate.atCall,
    },
    steps: stepsJson(res),
    cost: { unet_forward: res.cost.unetForward, unet_backward: res.cost.unetBackward, seconds: res.cost.seconds },
    timings: {
      load_ms: r.loadMs,
      encode_ms: t.encodeMs,
      denoise_ms: t.denoiseMs,
      decode_ms: t.decodeMs,
      total_ms: t.totalMs + r.loadMs,
    },
    graphs: r.graphs.map((t) => ({
      key: t.key,
      build_ms: t.buildMs,
      serialize_ms: t.serializeMs,
      session_ms: t.sessionMs,
      nodes: t.nodes,
    })),
    outputs: { image: p.outputs.image, latents: p.outputs.latents, attention_maps: p.outputs.maps },
    ...(r.images.length > 1
      ? {
          batch_size: r.batchSize,
          images: r.images.map((one, i) => ({
            seed: one.seed,
            image: p.files[i]!.image,
            latents: p.files[i]!.latents,
            attention_maps: p.files[i]!.maps,
            steps: stepsJson(one.result),
          })),
          grid: p.outputs.grid,
        }
      : {}),
  };
}

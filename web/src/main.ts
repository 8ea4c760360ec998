/**
 * The page: a form, the engine in a worker, and what it reports drawn as it comes. The URL's query (prompt, seed,
 * method, steps; model for another folder) reproduces a run, and the page runs it on load. `<body data-status>`
 * reads running, done or error, so that scripts (and the browser test) can wait for it.
 */
import { colormapTable } from '../../src/image/colormap.js';
import { DEFAULT_METHOD, METHOD_NAMES, METHOD_SPECS } from '../../src/methods/registry.js';
import type { EngineMessage, RunRequest, Score, StepRow, SubjectInfo } from './protocol.js';

const DEFAULTS = {
  prompt: 'a red circle and a blue square',
  seed: 7,
  method: DEFAULT_METHOD,
  steps: 25,
  model: './models/shapes',
};

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>('form');
const promptIn = $<HTMLInputElement>('prompt');
const methodIn = $<HTMLSelectElement>('method');
const seedIn = $<HTMLInputElement>('seed');
const stepsIn = $<HTMLInputElement>('steps');
const button = $<HTMLButtonElement>('generate');
const progress = $<HTMLProgressElement>('progress');
const statusText = $('status-text');
const errorBox = $('error');
const imageCanvas = $<HTMLCanvasElement>('image');
const caption = $('image-caption');
const scoreBox = $('score');
const mapsBox = $('maps');
const scrubber = $<HTMLInputElement>('scrubber');
const scrubberValue = $<HTMLOutputElement>('scrubber-value');
const table = $<HTMLTableElement>('steps-table');
const startChoice = $('start-choice');

// The menu, from the registry's specs: the main methods first (plain sampling, A&E, Suppress-to-Impress and its
// edit alone and gradient mode), then the rivals, then the ablations.
for (const [label, group] of [
  ['methods', 'main'],
  ['rivals', 'rival'],
  ['ablations', 'ablation'],
] as const) {
  const optgroup = Object.assign(document.createElement('optgroup'), { label });
  for (const spec of METHOD_SPECS.filter((s) => s.group === group)) {
    const o = document.createElement('option');
    o.value = spec.name;
    o.textContent = spec.name;
    o.title = spec.description;
    optgroup.append(o);
  }
  methodIn.append(optgroup);
}

function setStatus(s: 'idle' | 'running' | 'done' | 'error'): void {
  document.body.dataset['status'] = s;
  button.disabled = s === 'running';
}

function readQuery(): RunRequest {
  const q = new URLSearchParams(location.search);
  const num = (k: string, d: number) => (q.has(k) ? Number(q.get(k)) : d);
  return {
    prompt: q.get('prompt') ?? DEFAULTS.prompt,
    method: q.get('method') ?? DEFAULTS.method,
    seed: num('seed', DEFAULTS.seed),
    steps: num('steps', DEFAULTS.steps),
    // Absolute: the worker resolves URLs against its own script's address.
    model: new URL(q.get('model') ?? DEFAULTS.model, location.href).href,
    ...(q.has('threads') ? { threads: Number(q.get('threads')) } : {}),
    ...(q.get('backend') === 'wasm' ? { backend: 'wasm' as const } : {}),
  };
}

function fillForm(r: RunRequest): void {
  promptIn.value = r.prompt;
  methodIn.value = METHOD_NAMES.includes(r.method) ? r.method : DEFAULT_METHOD;
  seedIn.value = String(r.seed);
  stepsIn.value = String(r.steps);
}

// ---------------------------------------------------------------------------------------------------- the run

const TURBO = colormapTable('turbo');

type Maps = { data: Float32Array; shape: number[] } | null;

interface RunState {
  subjects: SubjectInfo[];
  /** The maps and log rows by call, of the image's own trajectory (while starts are tried: the latest start's). */
  maps: Maps[];
  rows: StepRow[];
  /** While the method chooses among starts: each start's maps and rows of calls 0..at_call-1. */
  starts: { maps: Maps[]; rows: StepRow[] }[];
  selection: { candidates: number; at_call: number; accept: number | null } | null;
  totalSteps: number;
  started: number;
  follow: boolean;
}
let state: RunState | null = null;

function drawRgba(canvas: HTMLCanvasElement, data: Uint8ClampedArray, width: number, height: number): void {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(data), width, height), 0, 0);
}

function drawMaps(step: number): void {
  if (!state) return;
  const m = state.maps[step];
  const canvases = mapsBox.querySelectorAll('canvas');
  if (!m) return;
  const [h, w, t] = m.shape as [number, number, number];
  state.subjects.forEach((s, k) => {
    const canvas = canvases[k];
    if (!canvas || s.token >= t) return;
    let max = 0;
    for (let i = 0; i < h * w; i++) max = Math.max(max, m.data[i * t + s.token]!);
    const px = new Uint8ClampedArray(h * w * 4);
    for (let i = 0; i < h * w; i++) {
      const v = max > 0 ? m.data[i * t + s.token]! / max : 0;
      const c = Math.round(Math.min(1, Math.max(0, v)) * 255) * 3;
      px.set([TURBO[c]!, TURBO[c + 1]!, TURBO[c + 2]!, 255], i * 4);
    }
    drawRgba(canvas, px, w, h);
  });
  const row = state.rows[step];
  scrubberValue.textContent = row ? `${step + 1} of ${state.totalSteps} (t=${row.timestep})` : '';
  for (const tr of table.tBodies[0]?.rows ?? [])
    tr.classList.toggle('current', tr.dataset['step'] === String(step) && !tr.classList.contains('discarded'));
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? '–' : v.toFixed(3));

/** The per-step log's columns: what the method logs (plain sampling logs only its timings). */
let columns: { head: string; cell: (r: StepRow & { start: number | null }) => string }[] = [];

function buildTable(
  guided: boolean,
  mode: string | null,
  subjects: SubjectInfo[],
  terms: string[],
  starts: boolean,
): void {
  columns = [
    { head: 'step', cell: (r) => String(r.index) },
    { head: 't', cell: (r) => String(r.timestep) },
  ];
  const notes: string[] = [];
  // Where the method tries several starts, which start a row belongs to (blank: the chosen one, continued).
  if (starts) columns.unshift({ head: 'start', cell: (r) => (r.start === null ? '' : String(r.start + 1)) });
  if (!guided) notes.push('Plain sampling: one guided UNet pass per step.');
  if (mode === 'edit') {
    // The attention edit alone: no loss is evaluated, nothing but the edit and the layout score to log.
    columns.push({ head: 'edited', cell: (r) => (r.edited ? 'yes' : '–') });
    notes.push("edited: the pass zeroed each subject's token group outside its own region.");
  } else if (guided) {
    const mark = (r: StepRow) => (r.updated ? '*' : r.edited ? 'e' : '');
    columns.push({ head: 'loss', cell: (r) => `${fmt(r.loss)}${mark(r)}` });
    subjects.forEach((s, i) => columns.push({ head: `max ${s.word}`, cell: (r) => fmt(r.max_attention[i]) }));
    for (const t of terms) columns.push({ head: t, cell: (r) => fmt(r.terms[t]) });
    columns.push({ head: 'tries', cell: (r) => (r.tries ? String(r.tries) : '–') });
    notes.push(
      `loss: ${terms.length ? 'the weighted mean of the terms' : '1 − the smallest max attention'}; max: each subject's largest (smoothed) attention; * latents updated${mode === 'both' ? ', e edited attention' : ''}; tries: refinement steps.`,
    );
  }
  if (starts) {
    columns.push({ head: 'layout', cell: (r) => fmt(r.layout_score) });
    notes.push(
      'start: which initial noise the row ran from (the starts not chosen are struck through); layout: the layout score the starts are compared by, lower is better.',
    );
  }
  columns.push({ head: 'ms', cell: (r) => r.ms.toFixed(0) });
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const c of columns) head.append(Object.assign(document.createElement('th'), { textContent: c.head }));
  table.createTBody();
  table.createCaption().textContent = notes.join(' ');
}

function addRow(r: StepRow, start: number | null): void {
  const tr = table.tBodies[0]!.insertRow();
  tr.dataset['step'] = String(r.index);
  if (start !== null) tr.dataset['start'] = String(start);
  for (const c of columns) tr.insertCell().textContent = c.cell({ ...r, start });
}

/** Which start made the image: its rows and maps become the image's; the others' rows are struck through. */
function showChosenStart(c: { index: number; seed: number; scores: number[]; at_call: number } | null): void {
  startChoice.hidden = c === null;
  if (!state || !c) return;
  const chosen = state.starts[c.index];
  if (chosen)
    chosen.maps.forEach((m, i) => {
      state!.maps[i] = m;
      state!.rows[i] = chosen.rows[i]!;
    });
  for (const tr of table.tBodies[0]?.rows ?? []) {
    const start = tr.dataset['start'];
    if (start === undefined) tr.cells[0]!.textContent = String(c.index + 1);
    else tr.classList.toggle('discarded', start !== String(c.index));
  }
  const scores = c.scores.map((v, k) => (k === c.index ? `<b>${v.toFixed(3)}</b>` : v.toFixed(3))).join(', ');
  const sel = state.selection;
  const rule = sel
    ? ` (up to ${sel.candidates}${sel.accept !== null ? `; a start scoring at most ${sel.accept} is kept without trying the others` : ''})`
    : '';
  startChoice.innerHTML = `Start ${c.index + 1} of the ${c.scores.length} tried${rule} made the image (noise seed ${c.seed}); layout scores at call ${c.at_call}, lower is better: ${scores}.`;
}

function showScore(s: Score | null): void {
  scoreBox.replaceChildren();
  if (!s) {
    scoreBox.textContent = 'Not a shapes-world prompt: no exact score.';
    return;
  }
  const head = document.createElement('p');
  head.innerHTML = `Shapes-world score: <span class="${s.full_success ? 'ok' : 'bad'}">${s.full_success ? 'fully right' : 'not fully right'}</span> — object recall ${(100 * s.object_recall).toFixed(0)}%, binding ${(100 * s.binding).toFixed(0)}%, ${s.extra_objects} extra object${s.extra_objects === 1 ? '' : 's'}`;
  const t = document.createElement('table');
  const h = t.createTHead().insertRow();
  for (const c of ['asked for', 'present', 'colour', 'seen'])
    h.append(Object.assign(document.createElement('th'), { textContent: c }));
  const body = t.createTBody();
  for (const o of s.objects) {
    const tr = body.insertRow();
    tr.insertCell().textContent = o.object;
    tr.insertCell().textContent = o.present ? 'yes' : 'no';
    tr.insertCell().textContent = o.colour_right ? 'right' : o.leaked ? 'leaked' : 'wrong';
    tr.insertCell().textContent = o.seen;
  }
  scoreBox.append(head, t);
}

function fail(message: string): void {
  errorBox.hidden = false;
  errorBox.textContent = message;
  statusText.textContent = 'error';
  setStatus('error');
}

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
worker.onerror = (e) => fail(`the engine failed to start: ${e.message || 'worker error'}`);
worker.onmessage = (e: MessageEvent<EngineMessage>) => {
  const m = e.data;
  switch (m.type) {
    case 'phase':
      statusText.textContent = m.text;
      if (m.fraction !== null) progress.value = m.fraction;
      break;
    case 'started':
      state = {
        subjects: m.subjects,
        maps: [],
        rows: [],
        starts: [],
        selection: m.selection,
        totalSteps: m.total_steps,
        started: performance.now(),
        follow: true,
      };
      progress.value = 0;
      statusText.textContent = `generating on ${m.runtime}`;
      document.body.dataset['runtime'] = m.runtime;
      mapsBox.replaceChildren(
        ...m.subjects.map((s) => {
          const f = document.createElement('figure');
          f.className = 'map';
          const c = document.createElement('canvas');
          c.width = 8;
          c.height = 8;
          c.dataset['token'] = String(s.token);
          f.append(c, Object.assign(document.createElement('figcaption'), { textContent: s.word }));
          return f;
        }),
      );
      if (m.subjects.length === 0) mapsBox.textContent = 'The prompt names no noun whose map could be shown.';
      scrubber.max = String(m.total_steps - 1);
      scrubber.value = '0';
      scrubber.disabled = true;
      buildTable(m.guided, m.mode, m.subjects, m.terms, m.selection !== null);
      caption.textContent = '';
      startChoice.hidden = true;
      break;
    case 'step':
      if (!state) break;
      state.maps[m.index] = m.maps;
      state.rows[m.index] = m.row;
      if (m.round !== null) {
        const start = (state.starts[m.round] ??= { maps: [], rows: [] });
        start.maps[m.index] = m.maps;
        start.rows[m.index] = m.row;
      }
      addRow(m.row, m.round);
      if (m.preview) drawRgba(imageCanvas, m.preview, imageCanvas.width, imageCanvas.height);
      progress.value = (m.index + 1) / state.totalSteps;
      statusText.textContent = `step ${m.index + 1} of ${state.totalSteps}${m.round !== null ? `, start ${m.round + 1}` : ''} (${m.ms.toFixed(0)} ms)`;
      scrubber.disabled = false;
      if (state.follow) {
        scrubber.value = String(m.index);
        drawMaps(m.index);
      }
      break;
    case 'done': {
      drawRgba(imageCanvas, m.image, m.width, m.height);
      showScore(m.score);
      showChosenStart(m.candidate);
      if (state) drawMaps(Number(scrubber.value));
      const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
      caption.textContent = `${m.width}x${m.height}, shown ${imageCanvas.clientWidth / m.width}x; model loaded in ${sec(m.timings.load_ms)}, generated in ${sec(m.timings.generate_ms)}`;
      statusText.textContent = `done in ${sec(m.timings.total_ms)}`;
      progress.value = 1;
      // Time from the page's start to this image, for the benchmark in the browser test.
      if (!document.body.dataset['firstImageMs']) document.body.dataset['firstImageMs'] = performance.now().toFixed(0);
      document.body.dataset['generateMs'] = m.timings.generate_ms.toFixed(0);
      setStatus('done');
      break;
    }
    case 'error':
      fail(m.message);
      break;
  }
};

scrubber.addEventListener('input', () => {
  if (!state) return;
  state.follow = Number(scrubber.value) === state.maps.length - 1;
  drawMaps(Number(scrubber.value));
});

function start(req: RunRequest): void {
  errorBox.hidden = true;
  errorBox.textContent = '';
  setStatus('running');
  statusText.textContent = 'starting';
  worker.postMessage(req);
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const req: RunRequest = {
    ...readQuery(),
    prompt: promptIn.value,
    method: methodIn.value,
    seed: Number(seedIn.value),
    steps: Number(stepsIn.value),
  };
  const q = new URLSearchParams(location.search);
  for (const k of ['prompt', 'method', 'seed', 'steps'] as const) q.set(k, String(req[k]));
  history.replaceState(null, '', `?${q}`);
  start(req);
});

const initial = readQuery();
fillForm(initial);
start(initial);

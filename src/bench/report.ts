/**
 * Summaries of a benchmark run: the JSON object (`--json`), the terminal table, summary.md (the table as Markdown,
 * for the README) and the self-contained HTML report (the table and image grids with every image's score, images
 * embedded as base64 PNG data URLs).
 */
import { existsSync } from 'node:fs';
import { readInputFile } from '../io/regular-file.js';
import { join } from 'node:path';
import { drawText, textHeight, textWidth } from '../image/font.js';
import { blit, createImage, fillRect, type Rgb, type RgbImage } from '../image/image.js';
import { readPng } from '../image/png.js';
import { resizeNearest } from '../image/resize.js';
import {
  BASELINES,
  columns,
  formatInterval,
  metricsLegend,
  summarize,
  type MethodSummary,
  type StatRow,
  type Summary,
} from './metrics.js';
import type { BenchRow } from './row.js';
import type { BenchFailure, BenchItem, BenchOutcome } from './run.js';
import { twoWayRate, type Comparison, type Interval } from './stats.js';
import type { PromptKind, Split } from './suites.js';

export interface RunInfo {
  suites: { name: string; split: Split | null; prompts: number }[];
  seeds: number[];
  methods: string[];
  steps: number;
  guidance: number;
  sampler: string;
  model: string;
  model_fingerprint: string;
  images: number;
  generated: number;
  skipped: number;
  /** Images of the plan that failed for good (job queue): not in any rate. */
  failed: number;
}

export interface BenchSummary extends Summary {
  run: RunInfo;
  /** Per suite, when the run covers several. */
  by_suite?: Record<string, Summary>;
  /** full_success per prompt kind (built-in suites: distinct, same-shape, same-colour, single) and method. */
  by_kind: Partial<Record<PromptKind, Record<string, Interval & { n: number }>>>;
  /** The failed images, with the last error of each. */
  failed: BenchFailure[];
}

function statRow(r: BenchRow): StatRow {
  return r;
}

/**
 * Methods every other method is compared with when they ran: the two baselines of the main table, and the rivals
 * (the targets of Suppress-to-Impress are stated against the best of them; `suppress@<passes>`, S2I held to a
 * rival's cost, is compared with each, so the row against the rival whose cost it was given is the matched one).
 */
const COMPARED_WITH = [...BASELINES, 'initno', 'astar', 'syngen', 'divide-and-bind', 'conform', 'initno-clean'];

/** Comparisons worth printing: everything against the baselines; against a rival, only the non-rivals. */
function compared(s: Summary): Summary {
  const keep = (c: Comparison) =>
    (BASELINES as readonly string[]).includes(c.baseline) || !COMPARED_WITH.includes(c.method);
  return { ...s, comparisons: s.comparisons.filter(keep) };
}

export function benchSummary(
  outcome: BenchOutcome,
  info: { methods: readonly string[]; seeds: readonly number[]; model: string },
): BenchSummary {
  const items = outcome.items;
  const suites: RunInfo['suites'] = [];
  for (const it of items) {
    if (!suites.some((x) => x.name === it.suite)) suites.push({ name: it.suite, split: it.split, prompts: 0 });
  }
  for (const s of suites) s.prompts = new Set(items.filter((i) => i.suite === s.name).map((i) => i.row.prompt)).size;
  const rows = items.map((i) => statRow(i.row));
  const baselines = COMPARED_WITH.filter((b) => info.methods.includes(b));
  const overall = compared(summarize(rows, info.methods, baselines));
  const summary: BenchSummary = {
    run: {
      suites,
      seeds: [...info.seeds],
      methods: [...info.methods],
      steps: outcome.settings.steps,
      guidance: outcome.settings.guidance,
      sampler: outcome.settings.sampler,
      model: info.model,
      model_fingerprint: outcome.settings.model,
      images: items.length,
      generated: outcome.generated,
      skipped: outcome.skipped,
      failed: outcome.failed?.length ?? 0,
    },
    ...overall,
    by_kind: {},
    failed: outcome.failed ?? [],
  };
  if (suites.length > 1) {
    summary.by_suite = {};
    for (const s of suites)
      summary.by_suite[s.name] = compared(
        summarize(
          items.filter((i) => i.suite === s.name).map((i) => statRow(i.row)),
          info.methods,
          baselines,
        ),
      );
  }
  const kinds = [...new Set(items.map((i) => i.kind).filter((k): k is PromptKind => k !== null))];
  for (const k of kinds) {
    const per: Record<string, Interval & { n: number }> = {};
    for (const m of info.methods) {
      const rs = items.filter((i) => i.kind === k && i.row.method === m).map((i) => i.row);
      const cells = rs.map((r) => ({ prompt: r.prompt, seed: r.seed, successes: r.full_success ? 1 : 0, trials: 1 }));
      per[m] = { ...twoWayRate(cells), n: rs.length };
    }
    summary.by_kind[k] = per;
  }
  return summary;
}

// ------------------------------------------------------------------------------------------------------ formatting

export function formatP(p: number): string {
  if (p >= 0.001) return p >= 0.1 ? p.toFixed(2) : p.toFixed(3);
  return p.toExponential(1);
}

function formatComparison(c: Comparison | undefined): string {
  if (!c) return '';
  if (c.pairs === 0) return 'no pairs';
  return `+${c.method_only} −${c.baseline_only}, p=${formatP(c.p)}`;
}

const BASELINE_LABEL: Record<string, string> = { none: 'none', 'attend-and-excite': 'A&E' };

interface TableData {
  header: string[];
  rows: string[][];
}

function tableData(summary: Summary, methods: readonly string[]): TableData {
  const baselines = BASELINES.filter((b) => methods.includes(b));
  const metrics = columns('main');
  const header = [
    'method',
    'n',
    ...metrics.map((c) => c.label),
    ...baselines.map((b) => `vs ${BASELINE_LABEL[b]} (+won −lost, p)`),
  ];
  const rows = methods.map((m) => {
    const s: MethodSummary = summary.methods[m]!;
    return [
      m,
      String(s.n),
      ...metrics.map((c) => c.cell(s)),
      ...baselines.map((b) =>
        b === m ? '—' : formatComparison(summary.comparisons.find((c) => c.method === m && c.baseline === b)),
      ),
    ];
  });
  return { header, rows };
}

/** Share of images with each failure kind, per method. */
function failureTable(summary: Summary, methods: readonly string[]): TableData {
  const kinds = columns('failures');
  return {
    header: ['method', ...kinds.map((c) => c.label)],
    rows: methods.map((m) => [m, ...kinds.map((c) => c.cell(summary.methods[m]!))]),
  };
}

/** Paired comparisons: failure ratios and both tests, against every baseline that ran. */
function comparisonTable(summary: Summary): TableData {
  const ratio = (iv: Interval) =>
    iv.rate === null ? '–' : `${iv.rate.toFixed(2)} [${iv.low!.toFixed(2)}–${iv.high!.toFixed(2)}]`;
  return {
    header: ['method', 'vs', 'pairs', 'failures ÷ baseline failures', '+won −lost', 'p (McNemar)', 'p (by prompt)'],
    rows: summary.comparisons.map((c) => [
      c.method,
      BASELINE_LABEL[c.baseline] ?? c.baseline,
      String(c.pairs),
      ratio(c.failure_ratio),
      `+${c.method_only} −${c.baseline_only}`,
      formatP(c.p),
      formatP(c.p_cluster),
    ]),
  };
}

function textTable(t: TableData): string {
  const all = [t.header, ...t.rows];
  const widths = t.header.map((_, j) => Math.max(...all.map((r) => [...r[j]!].length)));
  const line = (r: string[]) =>
    r
      .map((c, j) => (j <= 1 ? c.padEnd(widths[j]!) : c.padEnd(widths[j]!)))
      .join('  ')
      .trimEnd();
  return [line(t.header), widths.map((w) => '-'.repeat(w)).join('  '), ...t.rows.map(line)].join('\n');
}

function markdownTable(t: TableData): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${t.header.map(esc).join(' | ')} |`,
    `|${t.header.map((_, j) => (j === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function describeRun(run: RunInfo): string {
  const suites = run.suites.map((s) => `${s.name}${s.split ? ` (${s.split})` : ''}: ${s.prompts} prompts`).join('; ');
  const seeds = run.seeds.length === 1 ? `seed ${run.seeds[0]}` : `seeds ${formatSeeds(run.seeds)}`;
  return `${suites}; ${seeds}; ${run.steps} steps, guidance ${run.guidance}, ${run.sampler}; model ${run.model} (${run.model_fingerprint})`;
}

/** The images that failed for good, one line each: they are missing from every rate above. */
function failedLines(failed: readonly BenchFailure[]): string[] {
  return [
    `FAILED: ${failed.length} image${failed.length > 1 ? 's' : ''} could not be made and ${failed.length > 1 ? 'are' : 'is'} not in the rates (a rerun retries them):`,
    ...failed.map(
      (f) => `  ${f.method} seed ${f.seed} ${JSON.stringify(f.prompt)} after ${f.attempts} tries: ${f.reason}`,
    ),
  ];
}

/** `0-3`, `0,2,5-7`. */
function formatSeeds(seeds: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < seeds.length;) {
    let j = i;
    while (j + 1 < seeds.length && seeds[j + 1] === seeds[j]! + 1) j++;
    parts.push(j > i ? `${seeds[i]}-${seeds[j]}` : String(seeds[i]));
    i = j + 1;
  }
  return parts.join(',');
}

const LEGEND =
  'Every image is its own noise draw (from its prompt and seed); the methods of a (prompt, seed) pair share it. ' +
  'Rates in % with 95% intervals from a two-way bootstrap over prompts and seeds. ' +
  `${metricsLegend()}. ` +
  'vs none / vs A&E: +won = pairs where the method ' +
  'succeeded and the baseline failed, −lost = the reverse, p = exact McNemar test. Comparisons: the failure ratio ' +
  '(method failures ÷ baseline failures over the same pairs, paired bootstrap interval), McNemar, and an exact ' +
  'sign-flip test that flips the pairs of a prompt together (it does not take the seeds of a prompt as independent).';

/** The terminal summary: one table per suite when there are several, then the combined one. */
export function formatSummaryText(summary: BenchSummary): string {
  const parts: string[] = [describeRun(summary.run), ''];
  if (summary.by_suite) {
    for (const [name, s] of Object.entries(summary.by_suite))
      parts.push(`${name}:`, textTable(tableData(s, summary.run.methods)), '');
    parts.push('all suites:');
  }
  parts.push(textTable(tableData(summary, summary.run.methods)), '');
  parts.push('failure kinds (share of images):', textTable(failureTable(summary, summary.run.methods)), '');
  if (summary.comparisons.length) parts.push('comparisons:', textTable(comparisonTable(summary)), '');
  if (summary.failed.length) parts.push(...failedLines(summary.failed), '');
  parts.push(LEGEND);
  return parts.join('\n') + '\n';
}

/** summary.md: the same tables in Markdown, with the run's settings and the legend. */
export function formatSummaryMarkdown(summary: BenchSummary): string {
  const parts: string[] = [
    `<!-- written by s2i bench; ${summary.run.images} images -->`,
    '',
    `*${describeRun(summary.run)}*`,
    '',
  ];
  const methods = summary.run.methods;
  const section = (s: Summary) => {
    parts.push(markdownTable(tableData(s, methods)), '');
    parts.push('Failure kinds (share of images):', '', markdownTable(failureTable(s, methods)), '');
    if (s.comparisons.length) parts.push('Comparisons:', '', markdownTable(comparisonTable(s)), '');
  };
  if (summary.by_suite) {
    for (const [name, s] of Object.entries(summary.by_suite)) {
      parts.push(`**${name}**`, '');
      section(s);
    }
    parts.push('**all suites**', '');
  }
  section(summary);
  if (summary.failed.length) parts.push(...failedLines(summary.failed).map((l) => l.replace(/^ {2}/, '- ')), '');
  const kinds = Object.keys(summary.by_kind) as PromptKind[];
  if (kinds.length > 1) {
    parts.push('Full success % by prompt kind:', '');
    const header = ['method', ...kinds.map((k) => `${k} (n)`)];
    const rows = summary.run.methods.map((m) => [
      m,
      ...kinds.map((k) => `${formatInterval(summary.by_kind[k]![m]!)} (${summary.by_kind[k]![m]!.n})`),
    ]);
    parts.push(markdownTable({ header, rows }), '');
  }
  parts.push(LEGEND, '');
  return parts.join('\n');
}

// ------------------------------------------------------------------------------------------------------ HTML

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function dataUrl(out: string, rel: string | null): string | null {
  if (!rel) return null;
  const p = join(out, rel);
  if (!existsSync(p)) return null;
  return `data:image/png;base64,${Buffer.from(readInputFile(p, 'image')).toString('base64')}`;
}

/** What went wrong with an image, object by object ("missing blue square", "red circle → blue (leak)", "+1 extra"). */
export function failures(row: Pick<BenchRow, 'objects' | 'extra_objects'>): string[] {
  const out: string[] = [];
  for (const o of row.objects) {
    const name = `${o.colour ? `${o.colour} ` : ''}${o.shape}`;
    if (!o.found) out.push(`missing ${name}`);
    else if (!o.found_shape_match) out.push(`${name} → ${o.detected_colour ?? 'grey'} ${o.detected_shape}`);
    else if (!o.colour_correct) out.push(`${name} → ${o.detected_colour ?? 'grey'}${o.leaked ? ' (leak)' : ''}`);
  }
  if (row.extra_objects > 0) out.push(`+${row.extra_objects} extra`);
  return out;
}

function htmlTable(t: TableData): string {
  return `<div class="scroll"><table class="summary"><thead><tr>${t.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${t.rows
    .map((r) => `<tr>${r.map((c, j) => `<td${j === 0 ? ' class="m"' : ''}>${esc(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table></div>`;
}

export interface HtmlReportOptions {
  /** Show the attention-map pictures of rows that have them. */
  maps?: boolean;
}

/** The self-contained HTML report: settings, tables, then per suite a grid of (prompt, seed) rows × method columns. */
export function renderHtmlReport(
  summary: BenchSummary,
  items: readonly BenchItem[],
  out: string,
  options: HtmlReportOptions = {},
): string {
  const methods = summary.run.methods;
  const tables: string[] = [];
  if (summary.by_suite) {
    for (const [name, s] of Object.entries(summary.by_suite))
      tables.push(`<h3>${esc(name)}</h3>${htmlTable(tableData(s, methods))}`);
    tables.push('<h3>all suites</h3>');
  }
  tables.push(htmlTable(tableData(summary, methods)));

  const grids: string[] = [];
  for (const s of summary.run.suites) {
    const suiteItems = items.filter((i) => i.suite === s.name);
    const pairs: { prompt: string; seed: number; cells: Map<string, BenchRow> }[] = [];
    const index = new Map<string, number>();
    for (const it of suiteItems) {
      const k = `${it.row.seed}\u0000${it.row.prompt}`;
      let i = index.get(k);
      if (i === undefined) {
        i = pairs.push({ prompt: it.row.prompt, seed: it.row.seed, cells: new Map() }) - 1;
        index.set(k, i);
      }
      pairs[i]!.cells.set(it.row.method, it.row);
    }
    const head = `<tr><th>prompt, seed</th>${methods.map((m) => `<th>${esc(m)}</th>`).join('')}</tr>`;
    // Fixed column widths: every picture is scaled into its own cell, and a grid wider than the window scrolls
    // inside its box instead of spilling one method's maps under the next method's column.
    const cols = `<colgroup><col class="p">${methods.map(() => `<col class="${options.maps ? 'mm' : 'm'}">`).join('')}</colgroup>`;
    const body = pairs
      .map((p) => {
        const cells = methods
          .map((m) => {
            const r = p.cells.get(m);
            if (!r) return '<td></td>';
            const img = dataUrl(out, r.image);
            const fails = failures(r);
            const mark = r.full_success ? '<span class="ok">✓</span>' : '<span class="bad">✗</span>';
            const maps = options.maps ? dataUrl(out, r.maps) : null;
            const mapsHtml = options.maps
              ? maps
                ? `<img class="maps" src="${maps}" alt="attention maps">`
                : '<div class="note">no maps recorded</div>'
              : '';
            return `<td>${img ? `<img class="img" src="${img}" alt="">` : '<div class="note">image missing</div>'}<div>${mark} ${esc(fails.join('; '))}</div>${mapsHtml}</td>`;
          })
          .join('');
        return `<tr><td class="p">${esc(p.prompt)}<br><span class="note">seed ${p.seed}</span></td>${cells}</tr>`;
      })
      .join('\n');
    grids.push(
      `<h2>${esc(s.name)}${s.split ? ` (${esc(s.split)})` : ''}</h2><div class="scroll"><table class="grid">${cols}<thead>${head}</thead><tbody>\n${body}\n</tbody></table></div>`,
    );
  }

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>s2i bench: ${esc(summary.run.suites.map((s) => s.name).join(', '))}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;overflow-wrap:anywhere}
table{border-collapse:collapse}
.scroll{overflow-x:auto;max-width:100%}
.summary td,.summary th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums;overflow-wrap:normal}
.summary td.m,.summary th{text-align:left}
.grid{table-layout:fixed;width:max-content}
.grid col.p{width:180px}.grid col.m{width:124px}.grid col.mm{width:260px}
.grid td,.grid th{border:1px solid #ddd;padding:4px;vertical-align:top;font-size:12px;text-align:left}
.grid th{background:#f4f4f4}
img.img{width:96px;height:96px;image-rendering:pixelated;display:block}
img.maps{width:100%;height:auto;image-rendering:pixelated;display:block;margin-top:3px}
.ok{color:#080;font-weight:bold}.bad{color:#c00;font-weight:bold}.note{color:#888}
</style></head><body>
<h1>s2i bench</h1>
<p>${esc(describeRun(summary.run))}</p>
<p class="note">${esc(LEGEND)}</p>
${tables.join('\n')}
${grids.join('\n')}
</body></html>
`;
}

// ------------------------------------------------------------------------------------------------------ PNG grid

const OK_GREEN: Rgb = [40, 160, 60];
const FAIL_RED: Rgb = [210, 40, 40];

/**
 * A picture for the README: per suite, its first `rowsPerSuite` (prompt, seed) pairs as rows and the methods as
 * columns, every image enlarged `scale` times (nearest neighbour) in a green (full success) or red frame, the
 * prompt above each row. The same rows for every method, so a column compares methods on the same noise.
 */
export function renderPngGrid(
  summary: BenchSummary,
  items: readonly BenchItem[],
  out: string,
  options: { rowsPerSuite?: number; scale?: number } = {},
): RgbImage {
  const methods = summary.run.methods;
  const rowsPerSuite = options.rowsPerSuite ?? 4;
  const scale = options.scale ?? 3;
  const rows: { prompt: string; seed: number; cells: Map<string, BenchRow> }[] = [];
  for (const s of summary.run.suites) {
    const index = new Map<string, number>();
    const suiteRows: typeof rows = [];
    for (const it of items) {
      if (it.suite !== s.name) continue;
      const k = `${it.row.seed}\u0000${it.row.prompt}`;
      let i = index.get(k);
      if (i === undefined) {
        if (suiteRows.length >= rowsPerSuite) continue;
        i = suiteRows.push({ prompt: it.row.prompt, seed: it.row.seed, cells: new Map() }) - 1;
        index.set(k, i);
      }
      suiteRows[i]!.cells.set(it.row.method, it.row);
    }
    rows.push(...suiteRows);
  }
  if (rows.length === 0) throw new Error('renderPngGrid: no images');
  const first = [...rows[0]!.cells.values()][0]!;
  const sample = readPng(join(out, first.image));
  const frame = 2;
  const cellW = sample.width * scale + 2 * frame;
  const cellH = sample.height * scale + 2 * frame;
  const pad = 4;
  const colW = Math.max(cellW, ...methods.map((m) => textWidth(m) + 2));
  const headH = textHeight() + 6;
  const captionH = textHeight() + 4;
  const width = pad + methods.length * (colW + pad);
  const height = headH + rows.length * (captionH + cellH + pad) + pad;
  const img = createImage(width, height);
  methods.forEach((m, j) => drawText(img, m, pad + j * (colW + pad) + Math.floor((colW - textWidth(m)) / 2), 3));
  rows.forEach((r, i) => {
    const y = headH + i * (captionH + cellH + pad);
    drawText(img, `${r.prompt} (seed ${r.seed})`, pad, y + 1, [60, 60, 60]);
    methods.forEach((m, j) => {
      const row = r.cells.get(m);
      if (!row || !existsSync(join(out, row.image))) return;
      const x = pad + j * (colW + pad) + Math.floor((colW - cellW) / 2);
      fillRect(img, x, y + captionH, cellW, cellH, row.full_success ? OK_GREEN : FAIL_RED);
      const tile = readPng(join(out, row.image));
      blit(img, resizeNearest(tile, tile.width * scale, tile.height * scale), x + frame, y + captionH + frame);
    });
  });
  return img;
}

/** The speed benchmark's Markdown report (the JSON report is the PerfReport object itself). */
import { fmtMs, type CaseReport, type PerfReport } from './harness.js';
import { median } from './profile.js';

const ratio = (a: number | null | undefined, b: number | null | undefined, digits = 2): string =>
  a !== null && a !== undefined && b !== null && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0
    ? `${(a / b).toFixed(digits)}×`
    : '—';
const mb = (x: number | null | undefined) =>
  x === null || x === undefined ? '—' : x >= 1024 ? `${(x / 1024).toFixed(2)} GB` : `${x.toFixed(0)} MB`;

/** Σ best kernels of the plain step (for *-ae: only the step graph) and of the gradient graph. */
function kernelParts(c: CaseReport): { step: number | null; grad: number | null } {
  if (!c.kernels) return { step: null, grad: null };
  const step = c.kernels.graphs.find((g) => g.key.startsWith('guided') || g.key === 'train');
  const grad = c.kernels.graphs.find((g) => g.key.startsWith('ae:'));
  return { step: step?.summary.bestKernelSumMs ?? null, grad: grad?.summary.bestKernelSumMs ?? null };
}

export function formatPerfMarkdown(r: PerfReport): string {
  const out: string[] = [];
  const m = r.machine;
  out.push('## Speed benchmark: this engine (ONNX Runtime) vs PyTorch CPU, same machine, same run');
  out.push('');
  out.push(
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB; Node ${m.node}, onnxruntime-node ${m.onnxruntime}, ` +
      `${m.torch ? `PyTorch ${m.torch}` : 'no PyTorch'}. Load average (1/5/15 min) at start ${r.loadavg.start.join(' / ')}, at end ${r.loadavg.end.join(' / ')}. ` +
      `Runs after the first step: ${Object.entries(r.runs)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}.` +
      (Object.keys(r.compile).length ? ` Session options: \`${JSON.stringify(r.compile)}\`.` : '') +
      (Object.keys(r.env).length
        ? ` Environment: \`${Object.entries(r.env)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}\`.`
        : ''),
  );
  out.push('');
  out.push(
    '| case | ours (median) | Σ best kernels | ours ÷ kernels | PyTorch (median) | PyTorch ÷ ours | first step: ours | first step: ours, cached | first step: PyTorch | peak RSS: ours | peak RSS: PyTorch |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of r.cases) {
    const k = c.kernels?.bestKernelSumMs ?? null;
    out.push(
      `| ${c.label} | ${fmtMs(c.ours?.medianMs)} | ${fmtMs(k)} | ${ratio(c.ours?.medianMs, k)} | ${fmtMs(c.torch?.medianMs)} | ${ratio(c.torch?.medianMs, c.ours?.medianMs)} | ` +
        `${fmtMs(c.ours?.firstStepMs)} | ${fmtMs(c.oursCached?.firstStepMs)} | ${fmtMs(c.torch?.firstStepMs)} | ${mb(c.ours?.peakRssMb)} | ${mb(c.torch?.peakRssMb)} |`,
    );
  }
  if (r.batches.length) {
    out.push('');
    out.push(
      "Batched generation (shapes model, 25 steps, guidance 5; the same 16 two-object (prompt, seed) pairs one image at a time and as one batch, alternating, in one process; graph compilation left out; images/s from each side's fastest run, CPU seconds per image the median over runs, all threads):",
    );
    out.push('');
    out.push(
      '| method | one at a time: images/s | batch 16: images/s | speed-up | CPU s/image: one at a time | CPU s/image: batch 16 | CPU speed-up | compile (one at a time / batch) | peak RSS |',
    );
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const b of r.batches) {
      out.push(
        `| ${b.method} | ${b.single.imagesPerSecond.toFixed(2)} | ${b.batched.imagesPerSecond.toFixed(2)} | **${b.speedup.toFixed(2)}×** | ${b.single.cpuSecondsPerImage.toFixed(2)} | ${b.batched.cpuSecondsPerImage.toFixed(2)} | ${b.cpuSpeedup.toFixed(2)}× | ${b.single.compileSeconds.toFixed(1)} s / ${b.batched.compileSeconds.toFixed(1)} s | ${mb(b.peakRssMb)} |`,
      );
    }
    const one = r.cases.find((c) => c.case === 'shapes-step-b1');
    const many = r.cases.find((c) => c.case === 'shapes-step-b16');
    const perImage = (c: CaseReport | undefined, n: number) => {
      const k = c?.kernels?.bestKernelSumMs;
      return k === undefined ? '—' : fmtMs(k / n);
    };
    if (one || many) {
      out.push('');
      out.push(
        `The shapes model's guided step per image: ${fmtMs(one?.ours ? one.ours.medianMs : null)} at 1 image, ${fmtMs(many?.ours ? many.ours.medianMs / 16 : null)} at 16 (median step ÷ images); Σ best kernels per image ${perImage(one, 1)} and ${perImage(many, 16)}.`,
      );
    }
  }
  const ae = r.cases.filter((c) => c.case.endsWith('-ae'));
  if (ae.length) {
    out.push('');
    out.push(
      'Attend-and-Excite: each A&E step is the gradient pass (batch-1 forward + backward to the latent) plus the plain guided step; both timed back to back in one process.',
    );
    out.push('');
    out.push(
      '| model | gradient pass: ours | plain step: ours | A&E step ÷ plain step: ours | gradient pass: PyTorch | plain step: PyTorch | A&E step ÷ plain step: PyTorch | gradient pass ÷ its kernels: ours |',
    );
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of ae) {
      const og = c.ours?.gradMs ? median(c.ours.gradMs) : null;
      const os = c.ours?.stepMs ? median(c.ours.stepMs) : null;
      const tg = c.torch?.gradMs ? median(c.torch.gradMs) : null;
      const ts = c.torch?.stepMs ? median(c.torch.stepMs) : null;
      const model = c.case.startsWith('tiny') ? 'tiny-sd' : 'SD-1.5';
      out.push(
        `| ${model} | ${fmtMs(og)} | ${fmtMs(os)} | ${ratio(c.ours?.medianMs, os)} | ${fmtMs(tg)} | ${fmtMs(ts)} | ${ratio(c.torch?.medianMs, ts)} | ${ratio(og, kernelParts(c).grad)} |`,
      );
    }
  }
  out.push('');
  out.push(
    'First step, ours: what it is made of (weights opened or initialised, graphs built, serialised to ONNX, sessions created, first runs); "cached": a second process that finds the optimized models.',
  );
  out.push('');
  out.push(
    '| case | open weights | build graphs | serialise | create sessions | first run(s) | total | create sessions, cached | total, cached | peak RSS, cached | nodes | PyTorch: build + load |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of r.cases) {
    const s = c.ours?.setup;
    const nodes = c.ours?.graphs.map((g) => g.nodes).join(' + ') ?? '—';
    const tb = c.torch ? fmtMs(c.torch.setup.buildMs + c.torch.setup.loadMs) : '—';
    const w = c.oursCached;
    out.push(
      `| ${c.case} | ${fmtMs(s?.openMs)} | ${fmtMs(s?.buildMs)} | ${fmtMs(s?.serializeMs)} | ${fmtMs(s?.sessionMs)} | ${fmtMs(s?.firstRunMs)} | ${fmtMs(c.ours?.firstStepMs)} | ` +
        `${fmtMs(w?.setup.sessionMs)} | ${fmtMs(w?.firstStepMs)} | ${mb(w?.peakRssMb)} | ${nodes} | ${tb} |`,
    );
  }
  const prof = r.cases.filter((c) => c.kernels);
  if (prof.length) {
    out.push('');
    out.push('Where the kernel time goes (Σ best kernel time per operator type, largest first):');
    out.push('');
    for (const c of prof) {
      for (const g of c.kernels!.graphs) {
        const total = g.summary.bestKernelSumMs;
        const top = g.summary.byOp
          .slice(0, 7)
          .map((o) => `${o.op} ${fmtMs(o.ms)} (${((100 * o.ms) / total).toFixed(0)}%)`)
          .join(', ');
        out.push(
          `- ${c.case} \`${g.key}\` (${g.summary.nodes} nodes, Σ best ${fmtMs(total)}; median run: kernels ${fmtMs(g.summary.medianKernelSumMs)} of ONNX Runtime's ${fmtMs(g.summary.medianModelRunMs)}): ${top}`,
        );
      }
    }
  }
  const errors = r.cases.flatMap((c) => c.errors.map((e) => `${c.case}: ${e}`));
  if (errors.length || r.notes.length) {
    out.push('');
    for (const n of r.notes) out.push(`- ${n}`);
    for (const e of errors) out.push(`- error: ${e}`);
  }
  out.push('');
  out.push(
    'Columns: medians of the timed runs after the first step. "Σ best kernels" sums, over the graph\'s nodes, each node\'s smallest kernel time in ONNX Runtime\'s profiler over the profiled runs; "ours ÷ kernels" is how much of a step is not kernel time. ' +
      '"PyTorch ÷ ours" > 1 means this engine is faster. First step: weights opened → first step finished (PyTorch: module construction + state-dict load + first step). Peak RSS: each case in its own process.',
  );
  return out.join('\n') + '\n';
}

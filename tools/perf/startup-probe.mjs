// Preloaded into each measured `s2i` process by tools/perf/startup.ts (node --import): at exit, writes the
// process's own CPU time (user and system, all threads: ONNX Runtime's included) to the file named by
// $S2I_STARTUP_PROBE. The parent measures the wall time; only the child can tell its CPU time portably.
import { writeFileSync } from 'node:fs';
import process from 'node:process';

const file = process.env['S2I_STARTUP_PROBE'];
if (file)
  process.on('exit', () => {
    const { user, system } = process.cpuUsage();
    writeFileSync(file, JSON.stringify({ userMs: user / 1000, systemMs: system / 1000 }));
  });

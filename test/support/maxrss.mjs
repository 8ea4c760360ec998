// Preloaded into CLI children by the fuzz suite (node --import): writes the process's peak RSS (kB) on exit.
import { writeFileSync } from 'node:fs';

const file = process.env['S2I_MAXRSS_FILE'];
if (file) process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS)));

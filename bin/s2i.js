#!/usr/bin/env node
// Imported one after the other, not statically: static imports all load before any runs, and `generate` starts its
// tagger thread in early.js before the rest of the CLI loads.
(await import('../dist/cli/early.js')).early(process.argv.slice(2));
const { main } = await import('../dist/cli/main.js');

// `s2i ... | head` closes the pipe early: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

process.exitCode = await main(process.argv.slice(2));

/**
 * The `s2i` command line: a thin layer over the library. Each subcommand lives in `commands/` and registers
 * itself on the program; this file only wires them up and turns errors into one-line messages.
 *
 * Start-up time matters (`s2i generate` on a small model takes a few seconds in all): only the commands'
 * declarations load here. Node's bindings (onnxruntime-node among them) load when a command runs, and each
 * command's implementation is imported by its action (see commands/index.ts), so `s2i --help` or a usage error
 * loads neither, and `s2i generate` never loads the server, the job queue or the trainer.
 */
import { Command, CommanderError } from '@commander-js/extra-typings';
import { FieldError, isUserError } from '../errors.js';
import { installSignalHandlers } from '../util/cleanup.js';
import { MEMORY_ENV, setMemoryBudget } from '../util/memory.js';
import { boundLine } from '../util/quote.js';
import { flagOf } from './options.js';
import { registerCommands } from './commands/index.js';

/** A user error's one line, in the CLI's words. */
export function userMessage(e: Error): string {
  return e instanceof FieldError ? e.messageFor(flagOf) : e.message;
}

export function buildProgram() {
  const program = new Command('s2i')
    .description(
      'Stable Diffusion text-to-image with attention control (Attend-and-Excite, Suppress-to-Impress),\n' +
        'running on ONNX Runtime from TypeScript.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .option(
      '--max-memory <size>',
      `memory budget for large allocations, e.g. 16G or off (default: ${MEMORY_ENV}, else physical memory)`,
    )
    .configureHelp({ showGlobalOptions: true })
    // commander's own errors quote what was typed (an unknown option, an extra argument): escaped, and a line
    // longer than 300 characters keeps its first 200 and last 100
    .configureOutput({
      outputError: (text, write) =>
        write(
          text
            .split('\n')
            .map((l) => boundLine(l, 300))
            .join('\n'),
        ),
    })
    .exitOverride();
  program.hook('preAction', async () => {
    await import('../node.js'); // Node's file system and onnxruntime-node as the defaults, for every command
    const budget = program.opts().maxMemory;
    if (budget !== undefined) setMemoryBudget(budget);
  });
  registerCommands(program);
  return program;
}

/** Run the CLI; returns the process exit code (never throws for user errors). */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  installSignalHandlers();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0; // a command may set it (an interrupted run)
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander already printed help/version/usage error
    if (isUserError(e)) {
      process.stderr.write(`s2i: error: ${boundLine(userMessage(e))}\n`);
      return 1;
    }
    if (process.env['S2I_DEBUG']) throw e;
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(
      `s2i: internal error: ${boundLine(message.split('\n')[0]!)}\n(set S2I_DEBUG=1 for a stack trace)\n`,
    );
    return 70;
  }
}

import type { Command } from '@commander-js/extra-typings';
import { register as registerBench } from './bench.js';
import { register as registerGenerate } from './generate.js';
import { register as registerInfo } from './info.js';
import { register as registerServe } from './serve.js';
import { register as registerShapes } from './shapes.js';
import { register as registerTrain } from './train.js';
import { register as registerWorker } from './worker.js';

/**
 * Every subcommand module declares its command (flags with their types, defaults and help) and exports
 * `register(program)`, whose action imports the implementation, `X-run.ts`, when the command runs: only
 * declarations load at start-up. They are listed here in the order `s2i --help` shows.
 */
export function registerCommands(program: Command): void {
  registerGenerate(program);
  registerBench(program);
  registerWorker(program);
  registerServe(program);
  registerInfo(program);
  registerShapes(program);
  registerTrain(program);
}

import type { Command } from 'commander';

/**
 * Every subcommand module exports `register(program)`; they are listed here in the order `s2i --help` shows.
 */
export function registerCommands(program: Command): void {
  void program;
}

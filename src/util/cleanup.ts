/**
 * What to undo when the process ends early: temporary files and folders, locks. Code that creates such a thing
 * registers its removal with `onCleanup` (and unregisters it once it has removed it itself). The CLI installs
 * `installSignalHandlers`: on SIGINT, SIGTERM or SIGHUP every registered cleanup runs, one line goes to stderr
 * and the process exits with 128 + the signal's number (130 for Ctrl-C), without a stack trace. A command that
 * can stop gracefully (training: finish the step, write the checkpoint; a queue worker: finish its jobs) takes
 * signals with `onInterrupt` and says so itself; when it declines (typically the second signal), the process
 * ends as above.
 */
const cleanups = new Set<() => void>();
const interceptors: ((signal: NodeJS.Signals) => boolean)[] = [];

/** Registers a synchronous cleanup; returns the function that unregisters it. */
export function onCleanup(fn: () => void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Runs (and forgets) every registered cleanup, newest first; a failing one does not stop the others. */
export function runCleanups(): void {
  const all = [...cleanups].reverse();
  cleanups.clear();
  for (const fn of all) {
    try {
      fn();
    } catch {
      // best effort: the process is ending
    }
  }
}

/**
 * Lets a command take interrupts: `fn` returns true when it handles this signal (it will stop by itself), false
 * to let the process end now. Returns the function that removes it.
 */
export function onInterrupt(fn: (signal: NodeJS.Signals) => boolean): () => void {
  interceptors.push(fn);
  return () => {
    const i = interceptors.lastIndexOf(fn);
    if (i >= 0) interceptors.splice(i, 1);
  };
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

let installed = false;

/** Installs the handlers (once per process). */
export function installSignalHandlers(): void {
  if (installed) return;
  installed = true;
  const handler = (signal: NodeJS.Signals) => {
    for (const fn of [...interceptors].reverse()) if (fn(signal)) return;
    runCleanups();
    process.stderr.write(`s2i: interrupted (${signal})\n`);
    process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 0));
  };
  for (const s of Object.keys(SIGNAL_NUMBERS) as NodeJS.Signals[]) process.on(s, handler);
  process.on('exit', runCleanups);
}

/** Whether a process with this id is alive (EPERM: it is, but another user's): a temporary of a dead one is stale. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

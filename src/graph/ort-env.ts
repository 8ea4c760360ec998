/**
 * ONNX Runtime's process environment, set before its native library loads. Every importer of onnxruntime-node
 * (graph/runtime-node.ts, and through it the CLI, the library's entry, the benchmark's worker threads, the tests'
 * setup and any server) imports this module first, so the setting is in place whichever of them loads first.
 *
 * Telemetry off (`ORT_DISABLE_TELEMETRY=1`): onnxruntime-node 1.30's telemetry client, on by default where `CI` is
 * unset, writes `mat-debug-<pid>.log` and a `.ses` file (a timestamp and a UUID) into the temporary folder on every
 * run, and reads `/proc/self/cmdline` recursively: a command line of ~30,000 characters or more (a long prompt)
 * overflows the stack and the process dies with SIGSEGV. An offline image generator sends nothing anywhere.
 *
 * The native library reads the real process environment (getenv). Only the main thread's `process.env` writes
 * through to it — a worker thread's is a copy — which is why the main thread must import this before starting
 * threads that load ONNX Runtime (s2i's own threads are started by modules that import it).
 */
export const ORT_ENVIRONMENT: Readonly<Record<string, string>> = {
  ORT_DISABLE_TELEMETRY: '1',
};

for (const [key, value] of Object.entries(ORT_ENVIRONMENT)) process.env[key] = value;

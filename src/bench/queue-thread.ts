/**
 * The thread in which a queue worker (`s2i worker`) loads its model and generates. ONNX Runtime's Node binding
 * creates sessions and runs them synchronously, blocking its thread for up to minutes on SD-1.5; on the main
 * thread that would stop BullMQ from renewing the jobs' locks, and other workers would take the jobs as stalled.
 * Here the main thread keeps the queue's connection and locks alive while this one computes.
 *
 * Protocol: workerData {modelDir, threads?, out?}; this thread posts {type: 'ready', fingerprint, dir} or
 * {type: 'fatal', message, user}; then for each {type: 'job', id, data} it posts {type: 'result', id, result} or
 * {type: 'failed', id, message, unrecoverable}.
 */
import '../node.js'; // a thread has its own modules: Node's file system and onnxruntime-node as its defaults
import { parentPort, workerData } from 'node:worker_threads';
import { UnrecoverableError } from 'bullmq';
import { isUserError } from '../errors.js';
import { StableDiffusion } from '../pipeline/stable-diffusion.js';
import type { PredictionType } from '../schedulers/index.js';
import { QueuedJobRunner } from './queue-job.js';
import { modelFingerprint } from './plan.js';

export interface ThreadData {
  modelDir: string;
  threads?: number;
  config?: string;
  predictionType?: PredictionType;
  out?: string;
}

export type ToThread = { type: 'job'; id: number; data: unknown } | { type: 'close' };
export type FromThread =
  | { type: 'ready'; fingerprint: string; dir: string }
  | { type: 'fatal'; message: string; user: boolean }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'failed'; id: number; message: string; unrecoverable: boolean };

async function main(port: NonNullable<typeof parentPort>, data: ThreadData): Promise<void> {
  const post = (m: FromThread) => port.postMessage(m);
  let model: StableDiffusion;
  let runner: QueuedJobRunner;
  try {
    model = await StableDiffusion.load(data.modelDir, {
      ...(data.threads !== undefined ? { threads: data.threads } : {}),
      ...(data.config !== undefined ? { config: data.config } : {}),
      ...(data.predictionType !== undefined ? { predictionType: data.predictionType } : {}),
    });
    runner = new QueuedJobRunner(model, modelFingerprint(model.dir), data.out);
  } catch (e) {
    post({ type: 'fatal', message: (e as Error).message, user: isUserError(e) });
    return;
  }
  post({ type: 'ready', fingerprint: runner.fingerprint, dir: model.dir });
  port.on('message', (m: ToThread) => {
    if (m.type === 'close') {
      void model.release().finally(() => port.close());
      return;
    }
    runner.run(m.data).then(
      (result) => post({ type: 'result', id: m.id, result }),
      (e: unknown) =>
        post({
          type: 'failed',
          id: m.id,
          message: e instanceof Error ? e.message : String(e),
          unrecoverable: e instanceof UnrecoverableError,
        }),
    );
  });
}

if (parentPort && (workerData as { s2iBenchWorker?: boolean } | null)?.s2iBenchWorker)
  void main(parentPort, workerData as ThreadData);

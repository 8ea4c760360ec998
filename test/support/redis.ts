/**
 * A real `redis-server` for the tests of `--queue`: on a free port of 127.0.0.1 (never any other address), no
 * persistence, killed when the test file ends. Where redis-server is not installed the tests that need it are
 * skipped with one loud line (.ci/run installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

export const hasRedis = spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;

/** A port of 127.0.0.1 nothing listens on (at the time of asking): a closed port for "unreachable" cases. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  port: number;
  /** Keys in all 16 databases (0 after a case that must queue nothing). */
  keyCount(): Promise<number>;
  stop(): void;
}

/** Starts redis-server on a free loopback port (its files in `dir`) and waits until it answers. */
export async function startRedis(dir: string): Promise<TestRedis> {
  const port = await freePort();
  const server: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  const client = () => {
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    c.on('error', () => {}); // refused until the server listens
    return c;
  };
  for (let i = 0; ; i++) {
    const c = client();
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      break;
    } catch (e) {
      c.disconnect();
      if (i > 100) {
        server.kill('SIGKILL');
        throw e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port,
    async keyCount() {
      const c = client();
      await c.connect();
      let keys = 0;
      for (let db = 0; db < 16; db++) {
        await c.select(db);
        keys += await c.dbsize();
      }
      c.disconnect();
      return keys;
    },
    stop: () => server.kill('SIGKILL'),
  };
}

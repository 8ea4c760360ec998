/**
 * The `--queue redis://...` URL of a benchmark's job queue, and `redact`, which keeps its password out of every
 * message. Apart from redis.ts (the connections) so that the CLI can check the flag without loading ioredis.
 */
import { UserError } from '../errors.js';

export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** The URL as it may be shown: the password replaced by `***`. */
  display: string;
}

const URL_FORM = 'redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (or rediss:// for TLS)';

/**
 * Parses `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS). A URL without a password takes
 * $S2I_REDIS_PASSWORD when set (keeps the password out of the process list). Errors never echo the value.
 */
export function parseRedisUrl(value: string, option = 'queue', env = process.env): RedisTarget {
  const bad = (why: string) => new UserError(`${option} must be ${URL_FORM}; ${why}`);
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw bad('this value is not a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw bad(`got the scheme "${url.protocol}"`);
  if (url.hostname === '') throw bad('the host is missing');
  if (url.search !== '' || url.hash !== '') throw bad('it takes no ?query or #fragment');
  const port = url.port === '' ? 6379 : Number(url.port);
  const dbText = url.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw bad('the database after the / must be a number');
  const db = dbText === '' ? 0 : Number(dbText);
  let username = url.username === '' ? undefined : decodeURIComponent(url.username);
  let password = url.password === '' ? undefined : decodeURIComponent(url.password);
  if (password === undefined && env['S2I_REDIS_PASSWORD']) password = env['S2I_REDIS_PASSWORD'];
  if (username === '') username = undefined;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const auth = password !== undefined ? `${username ?? ''}:***@` : username !== undefined ? `${username}@` : '';
  return {
    host,
    port,
    db,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    tls: url.protocol === 'rediss:',
    display: `${url.protocol}//${auth}${url.host}/${db}`,
  };
}

/** `text` with the target's password (raw and URL-encoded) replaced by `***`. */
export function redact(text: string, target: RedisTarget): string {
  const pw = target.password;
  if (!pw) return text;
  let out = text;
  for (const form of new Set([pw, encodeURIComponent(pw)])) out = out.split(form).join('***');
  return out;
}

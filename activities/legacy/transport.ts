import { PassThrough, type Readable } from 'node:stream';
import { Client, FTPError } from 'basic-ftp';
import type { SourceConfig } from '../../config/release';
import { Limiter } from '../fetch/retry';
import { HttpPmcSource, SourceError, asSourceError } from '../fetch/source';

/** Reads files of the legacy tree (the file list, packages) by their path relative to the configured base. */
export interface LegacyTransport {
  readonly description: string;
  /**
   * The file as a stream. Failures to start are SourceErrors (404/550 'not-found', 403/530 'forbidden', others
   * retryable); a transfer that breaks later errors the stream (retryable 'network').
   */
  open(relPath: string, signal?: AbortSignal): Promise<Readable>;
  close(): Promise<void>;
}

type LegacyConfig = Extract<SourceConfig, { kind: 'pmc-legacy' }>;

export function openLegacyTransport(
  cfg: Pick<LegacyConfig, 'baseUrl' | 'connections'>,
  timeoutMs = 60_000,
): LegacyTransport {
  const url = new URL(cfg.baseUrl);
  if (url.protocol === 'ftp:') return new FtpTransport(url, cfg.connections, timeoutMs);
  if (url.protocol === 'http:' || url.protocol === 'https:') return new HttpTransport(cfg.baseUrl, timeoutMs);
  throw new Error(`unsupported legacy base URL ${cfg.baseUrl}`);
}

/** HTTPS (the FTP site's https mirror, or any static server): an S3-style GET per file, streamed. */
class HttpTransport implements LegacyTransport {
  readonly description: string;
  private readonly http: HttpPmcSource;
  constructor(baseUrl: string, timeoutMs: number) {
    this.http = new HttpPmcSource(baseUrl, timeoutMs);
    this.description = `legacy PMC tree at ${baseUrl.replace(/\/+$/, '')}`;
  }
  open(relPath: string, signal?: AbortSignal): Promise<Readable> {
    return this.http.getStream(relPath, { signal });
  }
  async close(): Promise<void> {
    /* fetch keeps no state to release */
  }
}

/** Maps an FTP reply to the source's error kinds: 550 no such file, 530 not logged in, 4xx transient. */
export function ftpError(err: unknown, relPath: string): SourceError | Error {
  if (err instanceof SourceError) return err;
  if (err instanceof FTPError) {
    const code = err.code;
    // 550 (and ftp-srv's 551 carrying ENOENT): no such file.
    if (code === 550 || code === 553 || (code === 551 && /ENOENT|no such file/i.test(err.message))) {
      return new SourceError(`RETR ${relPath}: ${code} ${err.message}`, 'not-found', false, relPath);
    }
    if (code === 530 || code === 532)
      return new SourceError(`RETR ${relPath}: ${code} ${err.message}`, 'forbidden', false, relPath);
    return new SourceError(`RETR ${relPath}: ${code} ${err.message}`, 'server', code >= 400 && code < 500, relPath);
  }
  return asSourceError(err, relPath, 'RETR');
}

/** A transfer that failed after it began: retryable ('network'), whatever the reply code said. */
function brokenTransfer(err: unknown, relPath: string): SourceError | Error {
  const e = ftpError(err, relPath);
  if (!(e instanceof SourceError) || e.kind === 'network') return e;
  return new SourceError(
    `RETR ${relPath}: the transfer broke after it began: ${e.message.replace(`RETR ${relPath}: `, '')}`,
    'network',
    true,
    relPath,
  );
}

/**
 * Anonymous FTP through basic-ftp: a small pool of control connections (at most `connections` transfers at a
 * time per worker), each reused across files; a connection whose transfer failed is closed, never reused.
 */
class FtpTransport implements LegacyTransport {
  readonly description: string;
  private readonly idle: Client[] = [];
  /** At most `connections` transfers at a time; a cancelled waiter leaves the line at once. */
  private readonly slots: Limiter;
  private closed = false;
  private readonly root: string;
  constructor(
    private readonly url: URL,
    connections: number,
    private readonly timeoutMs: number,
  ) {
    this.slots = new Limiter(connections);
    this.root = decodeURIComponent(url.pathname).replace(/\/+$/, '');
    this.description = `legacy PMC FTP at ftp://${url.host}${this.root}`;
  }

  private async client(): Promise<Client> {
    const reused = this.idle.pop();
    if (reused && !reused.closed) return reused;
    // basic-ftp's timeout: the control connection's replies, and a data connection that stops moving (its watchdog).
    const c = new Client(this.timeoutMs);
    try {
      await c.access({
        host: this.url.hostname,
        port: this.url.port ? Number(this.url.port) : 21,
        user: this.url.username ? decodeURIComponent(this.url.username) : 'anonymous',
        password: this.url.password ? decodeURIComponent(this.url.password) : 'anonymous@',
      });
    } catch (err) {
      c.close(); // a refused login (or a 421 greeting) must not leave its socket open
      throw err;
    }
    return c;
  }

  async open(relPath: string, signal?: AbortSignal): Promise<Readable> {
    if (relPath.startsWith('/') || relPath.split('/').includes('..'))
      throw new SourceError(`unsafe path ${JSON.stringify(relPath)}`, 'unsafe-key', false, relPath);
    const release = await this.slots.acquire(signal);
    let client: Client;
    try {
      client = await this.client();
    } catch (err) {
      release();
      throw ftpError(err, relPath);
    }
    if (signal?.aborted) {
      // Cancelled while logging in: the connection is sound, the transfer never began.
      if (!this.closed) this.idle.push(client);
      else client.close();
      release();
      throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
    }
    // The data connection's end alone does not prove a whole file: only the control connection's 226 does. So the
    // bytes pass through `raw`, and `out` ends only once the transfer is confirmed; a failed one errors `out`.
    const raw = new PassThrough({ highWaterMark: 256 * 1024 });
    const out = new PassThrough({ highWaterMark: 256 * 1024 });
    raw.pipe(out, { end: false });
    out.on('error', () => undefined); // the consumer sees it when it reads (see HttpPmcSource.getStream)
    raw.on('error', () => undefined); // basic-ftp reports the same failure through downloadTo
    const rawEnded = new Promise<void>((resolve) => raw.once('end', () => resolve()));
    let settled = false;
    // basic-ftp reports progress from the server's 150 on: the transfer has begun, so a failure from then on (a
    // dropped data connection, whatever the reply that follows: ftp-srv says 551, others 426 or 451) is a broken
    // transfer to retry, never an answer about the file.
    let begun = false;
    client.trackProgress(() => (begun = true));
    const onAbort = () => client.close();
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      client.trackProgress();
      signal?.removeEventListener('abort', onAbort);
      if (ok && !this.closed) this.idle.push(client);
      else client.close();
      release();
    };
    // A consumer that stops early (a rejected package) closes the connection: that transfer cannot be reused.
    out.on('close', () => finish(false));
    client
      .downloadTo(raw, `${this.root}/${relPath}`)
      .then(async () => {
        await rawEnded;
        finish(true);
        out.end();
      })
      .catch((err: unknown) => {
        finish(false);
        out.destroy(
          signal?.aborted ? (signal.reason as Error) : begun ? brokenTransfer(err, relPath) : ftpError(err, relPath),
        );
      });
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.close();
  }
}

const shared = new Map<string, { transport: LegacyTransport; users: number }>();

/**
 * The worker's transport for a legacy tree, shared by every activity of the process, so that `connections` bounds
 * the FTP connections of the whole worker (not of each activity). Release it when done; the last user closes it.
 */
export function acquireLegacyTransport(
  cfg: Pick<LegacyConfig, 'baseUrl' | 'connections'>,
  timeoutMs = 60_000,
): { transport: LegacyTransport; release: () => Promise<void> } {
  const id = `${cfg.baseUrl}|${cfg.connections}|${timeoutMs}`;
  let entry = shared.get(id);
  if (!entry) shared.set(id, (entry = { transport: openLegacyTransport(cfg, timeoutMs), users: 0 }));
  entry.users++;
  let released = false;
  const e = entry;
  return {
    transport: e.transport,
    release: async () => {
      if (released) return;
      released = true;
      if (--e.users === 0) {
        shared.delete(id);
        await e.transport.close();
      }
    },
  };
}

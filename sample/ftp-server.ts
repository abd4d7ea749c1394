import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import FtpSrv, { FileSystem, type FtpConnection } from 'ftp-srv';
import type { FaultRule } from './mirror-server';

/**
 * A real FTP server (ftp-srv) on loopback serving a folder read-only to anonymous users, in the legacy layout
 * (`oa_file_list.csv`, `oa_package/xx/yy/PMC<id>.tar.gz`). Passive mode on an ephemeral port; nothing listens
 * beyond 127.0.0.1, and `close()` ends every connection. Faults (below) can be injected per file and per
 * connection, for tests of the FTP transport under a mirror that drops transfers and connections.
 */
export interface FtpServer {
  /** ftp://127.0.0.1:<port> (the served folder is the root, so a legacy base URL is this plus any sub-folder). */
  url: string;
  port: number;
  /** Files sent whole (successful RETR, not a `truncate` fault), by server path. */
  retrieved: string[];
  /** Every RETR that reached the file, by path below the served folder, with the fault injected into it. */
  transfers: { path: string; fault?: FtpFault['kind'] }[];
  /** Fault rules, checked in order for every RETR; editable while the server runs. */
  faults: FtpFaultRule[];
  /** The next this many control connections are answered `421` and closed as soon as they connect. */
  refuseConnections: number;
  /** Control connections: accepted since the start, refused, and open now. */
  stats: { connects: number; refused: number; open: number };
  close(): Promise<void>;
}

/**
 * Faults injected into a RETR, each through ftp-srv's own machinery (a `FileSystem` whose `read` hands ftp-srv's
 * RETR handler the stream it sends, and the connection's own data and control sockets), never a hand-written reply:
 * - `drop`: `afterBytes` of the file reach the client, then the data connection is reset (`how: 'reset'`, the
 *   default: an RST, the client's read fails) or closed (`how: 'close'`: a FIN, the client sees an early end). The
 *   file's stream then fails, and ftp-srv answers the RETR as it answers any failed read: `551 <message>` (where
 *   vsftpd or ProFTPD would say 426 or 451);
 * - `close`: the RETR is answered `421` (or `code`) and the control connection is closed (ftp-srv's
 *   `connection.close`), as an overloaded mirror does; nothing is sent on the data connection;
 * - `stall`: `afterBytes` are sent, then nothing: the data connection stays open until the client gives up;
 * - `truncate`: the first `keepBytes` are sent, the data connection ends normally and the RETR is answered 226: a
 *   short file reported whole.
 * `afterBytes` and `keepBytes` default to half the file, and are kept below its length.
 */
export type FtpFault =
  | { kind: 'drop'; afterBytes?: number; how?: 'reset' | 'close' }
  | { kind: 'close'; code?: number; message?: string }
  | { kind: 'stall'; afterBytes?: number }
  | { kind: 'truncate'; keepBytes?: number };

/**
 * A rule as the S3 stand-in's (`match` on the file's path below the served folder, e.g.
 * `pub/pmc/oa_package/ac/6a/PMC7112410.tar.gz`; `times`: how many matching RETRs get the fault; `hits`: so far).
 */
export type FtpFaultRule = Omit<FaultRule, 'fault'> & { fault: FtpFault };

function matches(rule: FtpFaultRule, file: string): boolean {
  if (rule.times !== undefined && (rule.hits ?? 0) >= rule.times) return false;
  return typeof rule.match === 'string'
    ? rule.match === file
    : rule.match instanceof RegExp
      ? rule.match.test(file)
      : rule.match(file);
}

const silent = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  fatal() {},
  child() {
    return silent;
  },
};

/** What ftp-srv keeps on a connection and its typings leave out (or mistype): the sockets, `close`'s message. */
interface ConnectionInternals {
  commandSocket: Socket;
  connector: { socket: Socket | null };
  close(code: number, message: string): Promise<unknown>;
}

interface FaultHooks {
  faults: FtpFaultRule[];
  transfers: FtpServer['transfers'];
  /** Client paths of short files sent with a 226 (`truncate`): not recorded as retrieved. */
  truncated: Set<string>;
  /** Streams held open by `stall`, ended when the server closes. */
  stalled: Set<Readable>;
}

/** ftp-srv's file system, read-only, with the faults applied to RETR (`read` is what ftp-srv's RETR handler calls). */
class FaultyFileSystem extends FileSystem {
  constructor(
    connection: FtpConnection,
    root: string,
    private readonly hooks: FaultHooks,
  ) {
    super(connection, { root, cwd: '/' });
  }

  override async read(fileName: string, opts: { start?: number } = {}): Promise<unknown> {
    const clientPath = path.posix.resolve('/', this.currentDirectory(), fileName);
    const file = clientPath.slice(1);
    const rule = this.hooks.faults.find((r) => matches(r, file));
    this.hooks.transfers.push({ path: file, ...(rule ? { fault: rule.fault.kind } : {}) });
    if (!rule) return super.read(fileName, opts);
    rule.hits = (rule.hits ?? 0) + 1;
    const fault = rule.fault;
    const conn = this.connection as unknown as ConnectionInternals;
    if (fault.kind === 'close') {
      await conn.close(
        fault.code ?? 421,
        fault.message ?? 'Service not available, closing control connection (injected fault)',
      );
      throw new Error('control connection closed (injected fault)');
    }
    // ftp-srv calls read() once the passive data connection is established.
    const socket = conn.connector.socket;
    if (!socket) throw new Error('no data connection');
    const body = (await fs.readFile(path.join(this.root, file))).subarray(opts.start ?? 0);
    const cut = Math.max(
      0,
      Math.min(
        body.length - 1,
        (fault.kind === 'truncate' ? fault.keepBytes : fault.afterBytes) ?? Math.floor(body.length / 2),
      ),
    );
    let reads = 0;
    const stream = new Readable({
      read() {
        reads++;
        if (reads === 1) {
          // ftp-srv starts reading before its 150 reply and resumes the (paused) data socket after it: the fault's
          // bytes go out once the transfer has begun, as a server's would.
          if (socket.isPaused()) return void socket.once('resume', () => this.push(body.subarray(0, cut)));
          return void this.push(body.subarray(0, cut));
        }
        if (reads !== 2) return;
        if (fault.kind === 'truncate') return void this.push(null);
        if (fault.kind === 'drop') {
          // An empty write completes after every earlier one: the `cut` bytes have left before the connection goes.
          socket.write(Buffer.alloc(0), () => {
            if (fault.how === 'close') socket.destroy();
            else socket.resetAndDestroy();
            this.destroy(
              new Error(
                `data connection ${fault.how === 'close' ? 'closed' : 'reset'} after ${cut} of ${body.length} bytes (injected fault)`,
              ),
            );
          });
        }
        // stall: nothing more, until the client closes the data connection (or the server closes)
      },
    });
    if (fault.kind === 'stall') {
      this.hooks.stalled.add(stream);
      socket.once('close', () => stream.destroy(new Error(`stalled after ${cut} bytes; the data connection closed`)));
      stream.once('close', () => this.hooks.stalled.delete(stream));
    }
    if (fault.kind === 'truncate') this.hooks.truncated.add(clientPath);
    return { stream, clientPath };
  }
}

/**
 * `idleTimeoutMs`: ftp-srv's own idle timeout, which answers a control connection silent that long with `421` and
 * closes it (as mirrors close idle sessions; ftp-srv counts a RETR's silent control connection as idle too).
 */
export async function startFtpServer(
  root: string,
  opts: { host?: string; faults?: FtpFaultRule[]; idleTimeoutMs?: number } = {},
): Promise<FtpServer> {
  const host = opts.host ?? '127.0.0.1';
  const signals = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  // pasv_min = pasv_max = 0: every passive data connection listens on a fresh ephemeral port.
  const server = new FtpSrv({
    url: `ftp://${host}:0`,
    pasv_url: host,
    pasv_min: 0,
    pasv_max: 0,
    anonymous: true,
    log: silent as never,
    greeting: 'biomedica loopback FTP',
    timeout: opts.idleTimeoutMs ?? 0,
  });
  // ftp-srv installs process-wide signal handlers that exit the process; a test server must not.
  for (const s of signals)
    for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.removeListener(s, l as never);
  const hooks: FaultHooks = { faults: opts.faults ?? [], transfers: [], truncated: new Set(), stalled: new Set() };
  const retrieved: string[] = [];
  const stats = { connects: 0, refused: 0, open: 0 };
  let handle: FtpServer | null = null;
  // 'connect' is emitted before ftp-srv writes its greeting (its typings leave the event out).
  (server as unknown as EventEmitter).on('connect', ({ connection }: { connection: FtpConnection }) => {
    stats.connects++;
    stats.open++;
    if (handle && handle.refuseConnections > 0) {
      handle.refuseConnections--;
      stats.refused++;
      // Before ftp-srv's greeting: the 421 is the first and last line this connection gets.
      (connection as unknown as ConnectionInternals).commandSocket.end(
        '421 Too many connections, try again later (injected fault)\r\n',
      );
    }
  });
  server.on('disconnect', () => void stats.open--);
  server.on('login', ({ connection, username }, resolve, reject) => {
    if (username !== 'anonymous') return reject(new Error('only anonymous logins here')); // ftp-srv answers 530
    connection.on('RETR', (err: unknown, file: string) => {
      if (!err && !hooks.truncated.delete(file)) retrieved.push(file);
    });
    // Read-only: no STOR, DELE, MKD, RNFR... for anonymous users.
    resolve({
      fs: new FaultyFileSystem(connection, root, hooks),
      blacklist: ['STOR', 'APPE', 'STOU', 'DELE', 'MKD', 'RMD', 'RNFR', 'RNTO', 'SITE'],
    } as never);
  });
  server.on('client-error', () => undefined);
  await server.listen();
  const port = ((server as unknown as { server: import('node:net').Server }).server.address() as { port: number }).port;
  handle = {
    url: `ftp://${host}:${port}`,
    port,
    retrieved,
    transfers: hooks.transfers,
    faults: hooks.faults,
    refuseConnections: 0,
    stats,
    close: async () => {
      for (const s of hooks.stalled) s.destroy(new Error('server closing'));
      await server.close().catch(() => undefined);
    },
  };
  return handle;
}

/** One member of a hand-built tar (ustar), for packages no archiver would write: links, devices, escapes. */
export interface TarMemberSpec {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char-device' | 'block-device' | 'fifo';
  body?: Buffer | string;
  linkname?: string;
}

const TYPEFLAG: Record<NonNullable<TarMemberSpec['type']>, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  'char-device': '3',
  'block-device': '4',
  dir: '5',
  fifo: '6',
};

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** A tar archive (not compressed) of the given members, ustar headers with correct checksums, and the end blocks. */
export function buildTar(members: readonly TarMemberSpec[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const body = m.type === undefined || m.type === 'file' ? Buffer.from(m.body ?? '') : Buffer.alloc(0);
    const h = Buffer.alloc(512);
    let name = m.name;
    let prefix = '';
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', 154);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    h.write(name, 0, 100, 'utf8');
    h.write(octal(m.type === 'dir' ? 0o755 : 0o644, 8), 100, 'ascii');
    h.write(octal(0, 8), 108, 'ascii');
    h.write(octal(0, 8), 116, 'ascii');
    h.write(octal(body.length, 12), 124, 'ascii');
    h.write(octal(1_585_000_000, 12), 136, 'ascii');
    h.write('        ', 148, 'ascii');
    h.write(TYPEFLAG[m.type ?? 'file'], 156, 'ascii');
    h.write(m.linkname ?? '', 157, 100, 'utf8');
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    h.write('pmc', 265, 'ascii');
    h.write('pmcdev', 297, 'ascii');
    h.write(octal(m.type === 'char-device' || m.type === 'block-device' ? 1 : 0, 8), 329, 'ascii');
    h.write(octal(m.type === 'char-device' || m.type === 'block-device' ? 3 : 0, 8), 337, 'ascii');
    h.write(prefix, 345, 155, 'utf8');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** A package listed in a legacy tree: its bytes (null: listed, but absent from the server) and its list row. */
export interface LegacyPackageSpec {
  pmcid: string;
  tarGz: Buffer | null;
  citation?: string;
  updated?: string;
  pmid?: string | null;
  license?: string;
  /** The package path; by default `oa_package/<2 hex>/<2 hex>/<PMCID>.tar.gz` from the PMCID's md5. */
  file?: string;
}

export function legacyPackagePath(pmcid: string): string {
  const h = createHash('md5').update(pmcid).digest('hex');
  return `oa_package/${h.slice(0, 2)}/${h.slice(2, 4)}/${pmcid}.tar.gz`;
}

function csvCell(v: string): string {
  return /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/**
 * Lays out a legacy tree under `root`: the packages at their paths, `oa_file_list.csv` (with its header) and the
 * older tab-separated `oa_file_list.txt` (a date line, then `File, Citation, Accession ID, PMID:<n>, License`).
 */
export async function writeLegacyTree(
  root: string,
  packages: readonly LegacyPackageSpec[],
  listDate = '2024-06-18 10:00:00',
): Promise<void> {
  const csv = ['File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License'];
  const txt = [listDate];
  for (const p of packages) {
    const file = p.file ?? legacyPackagePath(p.pmcid);
    if (p.tarGz) {
      await fs.mkdir(path.dirname(path.join(root, file)), { recursive: true });
      await fs.writeFile(path.join(root, file), p.tarGz);
    } else await fs.rm(path.join(root, file), { force: true });
    const citation = p.citation ?? `Synthetic J. 2024 Jun 1; 1(1):${p.pmcid.slice(3)}`;
    const pmid = p.pmid === undefined ? String(30_000_000 + (Number(p.pmcid.slice(3)) % 1_000_000)) : p.pmid;
    csv.push(
      [file, citation, p.pmcid, p.updated ?? '2024-06-01 12:00:00', pmid ?? '', p.license ?? 'CC BY']
        .map(csvCell)
        .join(','),
    );
    txt.push([file, citation, p.pmcid, pmid ? `PMID:${pmid}` : '', p.license ?? 'CC BY'].join('\t'));
  }
  await fs.mkdir(root, { recursive: true });
  await fs.writeFile(path.join(root, 'oa_file_list.csv'), csv.join('\n') + '\n');
  await fs.writeFile(path.join(root, 'oa_file_list.txt'), txt.join('\n') + '\n');
}

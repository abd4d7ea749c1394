import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import FtpSrv from 'ftp-srv';

/**
 * A real FTP server (ftp-srv) on loopback serving a folder read-only to anonymous users, in the legacy layout
 * (`oa_file_list.csv`, `oa_package/xx/yy/PMC<id>.tar.gz`). Passive mode on an ephemeral port; nothing listens
 * beyond 127.0.0.1, and `close()` ends every connection.
 */
export interface FtpServer {
  /** ftp://127.0.0.1:<port> (the served folder is the root, so a legacy base URL is this plus any sub-folder). */
  url: string;
  port: number;
  /** Files sent whole (successful RETR), by server path. */
  retrieved: string[];
  close(): Promise<void>;
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

export async function startFtpServer(root: string, opts: { host?: string } = {}): Promise<FtpServer> {
  const host = opts.host ?? '127.0.0.1';
  const signals = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  // pasv_min = pasv_max = 0: every passive data connection listens on a fresh ephemeral port.
  const server = new FtpSrv({ url: `ftp://${host}:0`, pasv_url: host, pasv_min: 0, pasv_max: 0, anonymous: true, log: silent as never, greeting: 'biomedica loopback FTP' });
  // ftp-srv installs process-wide signal handlers that exit the process; a test server must not.
  for (const s of signals) for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.removeListener(s, l as never);
  const retrieved: string[] = [];
  server.on('login', ({ connection }, resolve, reject) => {
    connection.on('RETR', (err: unknown, file: string) => {
      if (!err) retrieved.push(file);
    });
    // Read-only: no STOR, DELE, MKD, RNFR... for anonymous users.
    resolve({ root, blacklist: ['STOR', 'APPE', 'STOU', 'DELE', 'MKD', 'RMD', 'RNFR', 'RNTO', 'SITE'] } as never);
    void reject;
  });
  server.on('client-error', () => undefined);
  await server.listen();
  const port = ((server as unknown as { server: import('node:net').Server }).server.address() as { port: number }).port;
  return {
    url: `ftp://${host}:${port}`,
    port,
    retrieved,
    close: async () => {
      await server.close().catch(() => undefined);
    },
  };
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
export async function writeLegacyTree(root: string, packages: readonly LegacyPackageSpec[], listDate = '2024-06-18 10:00:00'): Promise<void> {
  const csv = ['File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License'];
  const txt = [listDate];
  for (const p of packages) {
    const file = p.file ?? legacyPackagePath(p.pmcid);
    if (p.tarGz) {
      await fs.mkdir(path.dirname(path.join(root, file)), { recursive: true });
      await fs.writeFile(path.join(root, file), p.tarGz);
    } else await fs.rm(path.join(root, file), { force: true });
    const citation = p.citation ?? `Synthetic J. 2024 Jun 1; 1(1):${p.pmcid.slice(3)}`;
    const pmid = p.pmid === undefined ? String(30_000_000 + Number(p.pmcid.slice(3)) % 1_000_000) : p.pmid;
    csv.push([file, citation, p.pmcid, p.updated ?? '2024-06-01 12:00:00', pmid ?? '', p.license ?? 'CC BY'].map(csvCell).join(','));
    txt.push([file, citation, p.pmcid, pmid ? `PMID:${pmid}` : '', p.license ?? 'CC BY'].join('\t'));
  }
  await fs.mkdir(root, { recursive: true });
  await fs.writeFile(path.join(root, 'oa_file_list.csv'), csv.join('\n') + '\n');
  await fs.writeFile(path.join(root, 'oa_file_list.txt'), txt.join('\n') + '\n');
}

import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { listDirectory } from '../activities/fetch/source';

/**
 * A loopback stand-in for the PMC cloud bucket: serves a directory in the bucket's layout with S3's
 * GetObject (ETag = md5, Last-Modified, Content-Length) and ListObjectsV2 XML, and S3's error bodies.
 */
export interface MirrorServer {
  baseUrl: string;
  close(): Promise<void>;
  /** Every request: `fault` is set when one was injected. */
  requests: { method: string; key: string; status: number; fault?: MirrorFault['kind'] }[];
  /** Fault rules, checked in order for every GET of an object; editable while the server runs. */
  faults: FaultRule[];
  /** Object GETs being answered now, and the most at once since the start (or the last reset). */
  stats: { inFlight: number; maxInFlight: number };
}

/**
 * Faults the stand-in can inject into a GET of an object (tests of retries, quarantine and verification):
 * - `status`: an S3 error response (500 InternalError by default, 503 SlowDown, 403 AccessDenied...);
 * - `drop`: the full Content-Length is declared, `afterBytes` of the body are sent, then the connection is destroyed;
 * - `slow`: the body trickles, `bytesPerTick` every `tickMs` (for timeouts);
 * - `corrupt`: the same length with different bytes, so the md5 in the metadata no longer matches;
 * - `truncate`: a shorter object served as if whole (consistent Content-Length), e.g. a cut-off inventory csv.gz.
 */
export type MirrorFault =
  | { kind: 'status'; status?: number; code?: string }
  | { kind: 'drop'; afterBytes?: number }
  | { kind: 'slow'; bytesPerTick?: number; tickMs?: number }
  | { kind: 'corrupt' }
  | { kind: 'truncate'; keepBytes?: number };

export interface FaultRule {
  match: string | RegExp | ((key: string) => boolean);
  fault: MirrorFault;
  /** How many matching GETs get the fault (then the rule is spent); unlimited when absent. */
  times?: number;
  /** GETs this rule answered so far. */
  hits?: number;
}

function matches(rule: FaultRule, key: string): boolean {
  if (rule.times !== undefined && (rule.hits ?? 0) >= rule.times) return false;
  if (typeof rule.match === 'string') return rule.match === key;
  if (rule.match instanceof RegExp) return rule.match.test(key);
  return rule.match(key);
}

const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const LAST_MODIFIED = 'Sun, 01 Nov 2026 00:00:00 GMT';

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function s3Error(res: http.ServerResponse, status: number, code: string, message: string, key: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><Key>${xmlEscape(key)}</Key><RequestId>LOOPBACK</RequestId></Error>`;
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function contentType(key: string): string {
  const ext = path.extname(key).toLowerCase();
  return (
    {
      '.xml': 'text/xml',
      '.json': 'application/json',
      '.txt': 'text/plain',
      '.jpg': 'image/jpeg',
      '.png': 'image/png',
      '.gif': 'image/gif',
      '.tif': 'image/tiff',
      '.gz': 'application/x-gzip',
    }[ext] ?? 'binary/octet-stream'
  );
}

export async function startMirrorServer(
  root: string,
  opts: { port?: number; host?: string; faults?: FaultRule[] } = {},
): Promise<MirrorServer> {
  const requests: MirrorServer['requests'] = [];
  const faults: FaultRule[] = opts.faults ?? [];
  const stats = { inFlight: 0, maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err) => {
      if (!res.headersSent) s3Error(res, 500, 'InternalError', String((err as Error).message), '');
      else res.destroy();
    });
  });
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mirror');
    const key = decodeURIComponent(url.pathname.slice(1));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      requests.push({ method: req.method ?? '', key, status: 405 });
      return s3Error(res, 405, 'MethodNotAllowed', 'Method not allowed', key);
    }
    if (key === '' && url.searchParams.get('list-type') === '2') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const delimiter = url.searchParams.get('delimiter') ?? undefined;
      const listed = await listDirectory(root, prefix, delimiter);
      const contents = await Promise.all(
        listed.keys.map(async (k) => {
          const st = await fs.stat(path.join(root, k));
          return `<Contents><Key>${xmlEscape(k)}</Key><LastModified>2026-11-01T00:00:00.000Z</LastModified><Size>${st.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
        }),
      );
      const body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="${S3_NS}"><Name>pmc-oa-opendata</Name><Prefix>${xmlEscape(prefix)}</Prefix>` +
        `<KeyCount>${listed.keys.length + listed.prefixes.length}</KeyCount><MaxKeys>1000</MaxKeys>` +
        (delimiter ? `<Delimiter>${xmlEscape(delimiter)}</Delimiter>` : '') +
        `<IsTruncated>false</IsTruncated>${contents.join('')}` +
        listed.prefixes.map((p) => `<CommonPrefixes><Prefix>${xmlEscape(p)}</Prefix></CommonPrefixes>`).join('') +
        `</ListBucketResult>`;
      requests.push({ method: 'LIST', key: prefix, status: 200 });
      res.writeHead(200, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (key.split('/').includes('..') || key.startsWith('/')) {
      requests.push({ method: req.method ?? 'GET', key, status: 403 });
      return s3Error(res, 403, 'AccessDenied', 'Access Denied', key);
    }
    let data: Buffer;
    try {
      data = await fs.readFile(path.join(root, key));
    } catch {
      requests.push({ method: req.method ?? 'GET', key, status: 404 });
      return s3Error(res, 404, 'NoSuchKey', 'The specified key does not exist.', key);
    }
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    let counted = true;
    const settle = () => {
      if (counted) stats.inFlight--;
      counted = false;
    };
    res.once('finish', settle);
    res.once('close', settle);
    const rule = req.method === 'GET' ? faults.find((r) => matches(r, key)) : undefined;
    const fault = rule?.fault;
    if (rule) rule.hits = (rule.hits ?? 0) + 1;
    if (fault?.kind === 'status') {
      const status = fault.status ?? 500;
      requests.push({ method: 'GET', key, status, fault: 'status' });
      const code =
        fault.code ??
        ({ 403: 'AccessDenied', 404: 'NoSuchKey', 503: 'SlowDown' } as Record<number, string>)[status] ??
        'InternalError';
      return s3Error(res, status, code, 'Injected fault', key);
    }
    const etag = createHash('md5').update(data).digest('hex');
    if (fault?.kind === 'corrupt') {
      data = Buffer.from(data);
      for (let i = 0; i < data.length; i += 97) data[i] = data[i]! ^ 0x5a;
      if (data.length === 0) data = Buffer.from('x');
    } else if (fault?.kind === 'truncate') {
      data = data.subarray(0, fault.keepBytes ?? Math.floor(data.length / 2));
    }
    requests.push({ method: req.method ?? 'GET', key, status: 200, ...(fault ? { fault: fault.kind } : {}) });
    res.writeHead(200, {
      'Content-Type': contentType(key),
      'Content-Length': data.length,
      // A transfer fault leaves S3's ETag (the stored object's md5) as it was.
      ETag: `"${fault?.kind === 'truncate' ? createHash('md5').update(data).digest('hex') : etag}"`,
      'Last-Modified': LAST_MODIFIED,
      'Accept-Ranges': 'bytes',
      Server: 'AmazonS3',
    });
    if (req.method === 'HEAD') return void res.end();
    if (fault?.kind === 'drop') {
      res.write(data.subarray(0, Math.min(data.length - 1, fault.afterBytes ?? Math.floor(data.length / 2))));
      // Let the partial body reach the client, then cut the connection mid-body.
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    if (fault?.kind === 'slow') {
      const per = Math.max(1, fault.bytesPerTick ?? 64);
      const tick = fault.tickMs ?? 50;
      let offset = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        const chunk = data.subarray(offset, offset + per);
        offset += per;
        if (offset >= data.length) {
          clearInterval(timer);
          res.end(chunk);
        } else res.write(chunk);
      }, tick);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.end(data);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as { port: number };
  return {
    baseUrl: `http://${opts.host ?? '127.0.0.1'}:${addr.port}`,
    requests,
    faults,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // slow or dropped responses must not hold the close
      }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Synthetic buckets for tests and benchmarks: small, fast, exactly in PMC's layout (docs/sources.md).

export interface SyntheticArticle {
  pmcid: number;
  version?: number;
  license?: string | null;
  oa?: boolean;
  retracted?: boolean;
  /** Figure images (each `<fig>` with a caption and a graphic). */
  figures?: number;
  /** Bytes per image (deterministic content). */
  imageBytes?: number;
  /** Changes every object's bytes (and so every md5 and the metadata's ETag) without changing anything else. */
  revision?: number;
}

const md5hex = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');

function syntheticBytes(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < n; i += 32) {
    block.copy(out, i, 0, Math.min(32, n - i));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/**
 * Writes one article version: `PMC<id>.<v>/` with a small JATS XML whose figures point at `f<i>` (no extension,
 * like PMC), the images `f<i>.jpg`, and the metadata JSON there and under `metadata/`. Returns its metadata.
 */
export async function writeSyntheticArticle(root: string, a: SyntheticArticle): Promise<Record<string, unknown>> {
  const version = a.version ?? 1;
  const prefix = `PMC${a.pmcid}.${version}`;
  const rev = a.revision ?? 0;
  const figures = a.figures ?? 2;
  const figs = Array.from(
    { length: figures },
    (_, i) =>
      `<fig id="f${i + 1}"><label>Figure ${i + 1}</label><caption><p>Caption ${i + 1} of ${prefix} r${rev}.</p></caption><graphic xlink:href="f${i + 1}"/></fig>`,
  ).join('');
  const xml =
    `<?xml version="1.0" encoding="UTF-8"?>\n<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article"><front><journal-meta><journal-title-group><journal-title>Synthetic J</journal-title></journal-title-group></journal-meta>` +
    `<article-meta><article-id pub-id-type="pmcid">PMC${a.pmcid}</article-id><article-id pub-id-type="pmid">${10_000_000 + a.pmcid}</article-id><title-group><article-title>Article ${prefix} r${rev}</article-title></title-group></article-meta></front>` +
    `<body><sec><title>Results</title><p>Text of ${prefix}.</p>${figs}</sec></body></article>\n`;
  const dir = path.join(root, prefix);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, `${prefix}.xml`), xml);
  const mediaUrls: string[] = [];
  for (let i = 1; i <= figures; i++) {
    const img = syntheticBytes(`${prefix}/f${i}/r${rev}`, a.imageBytes ?? 2048);
    await fs.writeFile(path.join(dir, `f${i}.jpg`), img);
    mediaUrls.push(`s3://pmc-oa-opendata/${prefix}/f${i}.jpg?md5=${md5hex(img)}`);
  }
  const meta = {
    pmcid: `PMC${a.pmcid}`,
    version,
    pmid: 10_000_000 + a.pmcid,
    doi: `10.5555/${prefix}`,
    title: `Article ${prefix} r${rev}`,
    citation: `Synthetic J. 2026;${a.pmcid}:e${version}.`,
    is_pmc_openaccess: a.oa ?? true,
    is_manuscript: false,
    is_historical_ocr: false,
    is_retracted: a.retracted ?? false,
    license_code: a.license === undefined ? 'CC BY' : a.license,
    xml_url: `s3://pmc-oa-opendata/${prefix}/${prefix}.xml?md5=${md5hex(xml)}`,
    text_url: null,
    media_urls: mediaUrls,
  };
  const json = JSON.stringify(meta, null, 2) + '\n';
  await fs.writeFile(path.join(dir, `${prefix}.json`), json);
  await fs.mkdir(path.join(root, 'metadata'), { recursive: true });
  await fs.writeFile(path.join(root, 'metadata', `${prefix}.json`), json);
  return meta;
}

/** Removes one article version (its folder and metadata JSON), as PMC does in rare cases. */
export async function removeSyntheticArticle(root: string, pmcid: number, version = 1): Promise<void> {
  await fs.rm(path.join(root, `PMC${pmcid}.${version}`), { recursive: true, force: true });
  await fs.rm(path.join(root, 'metadata', `PMC${pmcid}.${version}.json`), { force: true });
}

/**
 * Writes an S3 inventory of every `metadata/*.json` in `root`, as of `snapshot` (YYYY-MM-DD): data files of at
 * most `rowsPerFile` rows (csv.gz, quoted, no header; ETag = md5 of the JSON) and the dated manifest.json
 * (fileSchema `Bucket, Key, LastModifiedDate, ETag`; MD5checksum per file unless withMd5 is false).
 */
export async function writeSyntheticInventory(
  root: string,
  snapshot: string,
  opts: { rowsPerFile?: number; withMd5?: boolean } = {},
): Promise<string> {
  const names = (await fs.readdir(path.join(root, 'metadata')).catch(() => [] as string[]))
    .filter((n) => n.endsWith('.json'))
    .sort();
  const rows: string[] = [];
  for (const n of names) {
    const json = await fs.readFile(path.join(root, 'metadata', n));
    rows.push(`"pmc-oa-opendata","metadata/${n}","${snapshot}T00:00:00.000Z","${md5hex(json)}"`);
  }
  const invBase = 'inventory-reports/pmc-oa-opendata/metadata';
  const per = opts.rowsPerFile ?? 1000;
  const files: { key: string; size: number; MD5checksum?: string }[] = [];
  for (let i = 0; i === 0 || i < rows.length; i += per) {
    const gz = gzipSync(Buffer.from(rows.slice(i, i + per).join('\n') + '\n'));
    const key = `${invBase}/data/${snapshot}-${String(i / per).padStart(4, '0')}.csv.gz`;
    await fs.mkdir(path.dirname(path.join(root, key)), { recursive: true });
    await fs.writeFile(path.join(root, key), gz);
    files.push({ key, size: gz.length, ...(opts.withMd5 === false ? {} : { MD5checksum: md5hex(gz) }) });
  }
  const manifestKey = `${invBase}/${snapshot}T01-00Z/manifest.json`;
  await fs.mkdir(path.dirname(path.join(root, manifestKey)), { recursive: true });
  await fs.writeFile(
    path.join(root, manifestKey),
    JSON.stringify(
      { sourceBucket: 'pmc-oa-opendata', fileFormat: 'CSV', fileSchema: 'Bucket, Key, LastModifiedDate, ETag', files },
      null,
      2,
    ),
  );
  return manifestKey;
}

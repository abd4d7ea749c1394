import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { listDirectory } from '../activities/fetch/source';

/**
 * A loopback stand-in for the PMC cloud bucket: serves a directory in the bucket's layout with S3's
 * GetObject (ETag = md5, Last-Modified, Content-Length) and ListObjectsV2 XML, and S3's error bodies.
 */
export interface MirrorServer {
  baseUrl: string;
  close(): Promise<void>;
  requests: { method: string; key: string; status: number }[];
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
    { '.xml': 'text/xml', '.json': 'application/json', '.txt': 'text/plain', '.jpg': 'image/jpeg', '.png': 'image/png', '.gif': 'image/gif', '.tif': 'image/tiff', '.gz': 'application/x-gzip' }[ext] ??
    'binary/octet-stream'
  );
}

export async function startMirrorServer(root: string, opts: { port?: number; host?: string } = {}): Promise<MirrorServer> {
  const requests: MirrorServer['requests'] = [];
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
    requests.push({ method: req.method ?? 'GET', key, status: 200 });
    res.writeHead(200, {
      'Content-Type': contentType(key),
      'Content-Length': data.length,
      ETag: `"${createHash('md5').update(data).digest('hex')}"`,
      'Last-Modified': LAST_MODIFIED,
      'Accept-Ranges': 'bytes',
      Server: 'AmazonS3',
    });
    res.end(req.method === 'HEAD' ? undefined : data);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as { port: number };
  return {
    baseUrl: `http://${opts.host ?? '127.0.0.1'}:${addr.port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

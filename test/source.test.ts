import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DirPmcSource,
  HttpPmcSource,
  SourceError,
  md5Hex,
  parseListObjectsV2,
  parseObjectUrl,
} from '../activities/fetch/source';
import { startMirrorServer, type MirrorServer } from '../sample/mirror-server';

const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');

async function rejection(p: Promise<unknown>): Promise<SourceError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof SourceError, `expected a SourceError, got ${String(err)}`);
    return err;
  }
  throw new Error('expected the promise to reject');
}

/** A hand-made tree in the bucket's layout; every value below is what the tests expect back. */
const TREE: Record<string, string> = {
  'README.txt': 'sample bucket\n',
  'PMC1.1/PMC1.1.xml': '<article>PMC1 version 1</article>\n',
  'PMC1.1/gr 1+x.jpg': 'not really a jpeg, but bytes',
  'PMC1.2/PMC1.2.xml': '<article>PMC1 version 2</article>\n',
  'PMC11.1/PMC11.1.xml': '<article>PMC11</article>\n',
  'metadata/PMC1.1.json': '{"pmcid":"PMC1","version":1}\n',
  'metadata/PMC1.2.json': '{"pmcid":"PMC1","version":2}\n',
  'metadata/PMC11.1.json': '{"pmcid":"PMC11","version":1}\n',
  'odd/a&b.txt': 'ampersand in the key',
};

let root: string;
let mirror: MirrorServer;
let http1: HttpPmcSource;
let dir: DirPmcSource;

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'source-test-'));
  for (const [k, v] of Object.entries(TREE)) {
    fs.mkdirSync(path.dirname(path.join(root, k)), { recursive: true });
    fs.writeFileSync(path.join(root, k), v);
  }
  mirror = await startMirrorServer(root);
  http1 = new HttpPmcSource(`${mirror.baseUrl}/`, 5_000);
  dir = new DirPmcSource(root);
});
after(async () => {
  await mirror?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('HttpPmcSource against the mirror server', () => {
  it('gets the body and the md5 ETag without quotes', async () => {
    const got = await http1.get('PMC1.1/PMC1.1.xml');
    assert.equal(got.key, 'PMC1.1/PMC1.1.xml');
    assert.equal(got.body.toString('utf8'), '<article>PMC1 version 1</article>\n');
    assert.equal(got.etag, md5('<article>PMC1 version 1</article>\n'));
    assert.equal(mirror.requests.at(-1)?.key, 'PMC1.1/PMC1.1.xml');
    assert.equal(mirror.requests.at(-1)?.status, 200);
  });

  it('encodes keys with spaces, plus signs and ampersands', async () => {
    assert.equal((await http1.get('PMC1.1/gr 1+x.jpg')).body.toString(), 'not really a jpeg, but bytes');
    assert.equal((await http1.get('odd/a&b.txt')).body.toString(), 'ampersand in the key');
  });

  it('accepts a body whose md5 matches, in either case', async () => {
    const sum = md5(TREE['metadata/PMC1.2.json']!);
    assert.equal(
      (await http1.get('metadata/PMC1.2.json', { expectedMd5: sum })).body.toString(),
      TREE['metadata/PMC1.2.json'],
    );
    assert.equal((await http1.get('metadata/PMC1.2.json', { expectedMd5: sum.toUpperCase() })).etag, sum);
  });

  it("fails a body whose md5 does not match with a retryable 'checksum' error", async () => {
    const err = await rejection(http1.get('metadata/PMC1.2.json', { expectedMd5: md5('something else') }));
    assert.equal(err.kind, 'checksum');
    assert.equal(err.retryable, true);
    assert.equal(err.key, 'metadata/PMC1.2.json');
  });

  it("reports a missing key as 'not-found', not retryable (also a prefix, which is no object)", async () => {
    for (const key of ['PMC2.1/PMC2.1.xml', 'PMC1.1/']) {
      const err = await rejection(http1.get(key));
      assert.equal(err.kind, 'not-found', key);
      assert.equal(err.retryable, false, key);
      assert.deepEqual(mirror.requests.at(-1), { method: 'GET', key, status: 404 });
    }
  });

  it("refuses unsafe keys with 'unsafe-key' before sending any request", async () => {
    const before = mirror.requests.length;
    for (const key of ['../x', '/etc/passwd', 'a/./b', 'PMC1.1/../../x', 'a\\b', 'a\0b', '.']) {
      const err = await rejection(http1.get(key));
      assert.equal(err.kind, 'unsafe-key', key);
      assert.equal(err.retryable, false, key);
      const derr = await rejection(dir.get(key));
      assert.equal(derr.kind, 'unsafe-key', key);
    }
    assert.equal(mirror.requests.length, before, 'the server saw no request');
  });

  it('lists like ListObjectsV2: a trailing "." keeps PMC11 out of the PMC1 versions', async () => {
    assert.deepEqual(await http1.list('PMC1.', '/'), { prefixes: ['PMC1.1/', 'PMC1.2/'], keys: [] });
    assert.deepEqual(await http1.list('PMC1', '/'), { prefixes: ['PMC1.1/', 'PMC1.2/', 'PMC11.1/'], keys: [] });
    assert.deepEqual(await http1.list('PMC404.', '/'), { prefixes: [], keys: [] });
    assert.deepEqual(mirror.requests.at(-1), { method: 'LIST', key: 'PMC404.', status: 200 });
  });

  it('lists keys under a prefix, sorted, and the top level with a delimiter', async () => {
    assert.deepEqual(await http1.list('PMC1.1/'), { prefixes: [], keys: ['PMC1.1/PMC1.1.xml', 'PMC1.1/gr 1+x.jpg'] });
    assert.deepEqual(await http1.list('metadata/PMC1.'), {
      prefixes: [],
      keys: ['metadata/PMC1.1.json', 'metadata/PMC1.2.json'],
    });
    assert.deepEqual(await http1.list('', '/'), {
      prefixes: ['PMC1.1/', 'PMC1.2/', 'PMC11.1/', 'metadata/', 'odd/'],
      keys: ['README.txt'],
    });
    assert.deepEqual(await http1.list('odd/'), { prefixes: [], keys: ['odd/a&b.txt'] });
  });
});

describe('DirPmcSource on the same tree', () => {
  it('answers get exactly as HttpPmcSource does', async () => {
    for (const key of Object.keys(TREE)) {
      const [h, d] = [await http1.get(key), await dir.get(key)];
      assert.ok(h.body.equals(d.body), key);
      assert.equal(d.etag, h.etag, key);
      assert.equal(d.etag, md5Hex(Buffer.from(TREE[key]!)), key);
    }
    for (const key of ['PMC2.1/PMC2.1.xml', 'PMC1.1/', 'PMC1.1', 'README.txt/x']) {
      const [h, d] = [await rejection(http1.get(key)), await rejection(dir.get(key))];
      assert.equal(d.kind, h.kind, key);
      assert.equal(d.retryable, h.retryable, key);
    }
    const bad = md5('nope');
    assert.equal((await rejection(dir.get('README.txt', { expectedMd5: bad }))).kind, 'checksum');
  });

  it('answers list exactly as HttpPmcSource does', async () => {
    const cases: [string, string | undefined][] = [
      ['', undefined],
      ['', '/'],
      ['PMC1.', '/'],
      ['PMC1', '/'],
      ['PMC1.1/', undefined],
      ['PMC1.1/', '/'],
      ['metadata/', '/'],
      ['metadata/PMC1', undefined],
      ['odd', '/'],
      ['nothing/', '/'],
    ];
    for (const [prefix, delimiter] of cases) {
      assert.deepEqual(
        await dir.list(prefix, delimiter),
        await http1.list(prefix, delimiter),
        `list(${JSON.stringify(prefix)}, ${delimiter})`,
      );
    }
    assert.equal((await dir.list('', undefined)).keys.length, Object.keys(TREE).length);
  });
});

describe('the mirror server', () => {
  it('refuses a request whose decoded key climbs out of the root with 403 AccessDenied', async () => {
    // Encoded slashes: URL parsing keeps this one segment, decoding then yields ../../etc/passwd.
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const u = new URL(mirror.baseUrl);
      http
        .get({ host: u.hostname, port: u.port, path: '/%2e%2e%2f%2e%2e%2fetc%2fpasswd' }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        })
        .on('error', reject);
    });
    assert.equal(status, 403);
    assert.match(body, /<Code>AccessDenied<\/Code>/);
    assert.deepEqual(mirror.requests.at(-1), { method: 'GET', key: '../../etc/passwd', status: 403 });
  });
});

describe('HttpPmcSource against a misbehaving server', () => {
  let server: http.Server;
  let src: HttpPmcSource;
  const listPages: string[] = [];
  before(async () => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/short') {
        // Declares 100 bytes, sends 10, then closes the connection.
        res.writeHead(200, { 'Content-Length': '100', ETag: '"abc"' });
        res.write(Buffer.alloc(10, 0x41));
        res.socket?.end();
      } else if (url.pathname === '/busy') {
        res.writeHead(503, { 'Content-Type': 'application/xml' });
        res.end('<Error><Code>SlowDown</Code></Error>');
      } else if (url.pathname === '/denied') {
        res.writeHead(403);
        res.end('<Error><Code>AccessDenied</Code></Error>');
      } else if (url.pathname === '/' && url.searchParams.get('list-type') === '2') {
        const token = url.searchParams.get('continuation-token');
        listPages.push(token ?? '');
        res.writeHead(200, { 'Content-Type': 'application/xml' });
        if (!token) {
          res.end(
            '<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a/1</Key></Contents>' +
              '<CommonPrefixes><Prefix>a/p&amp;1/</Prefix></CommonPrefixes><NextContinuationToken>tok2</NextContinuationToken></ListBucketResult>',
          );
        } else {
          res.end(
            '<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a/2</Key></Contents></ListBucketResult>',
          );
        }
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    src = new HttpPmcSource(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 5_000);
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("turns a body shorter than its Content-Length into a retryable 'network' error", async () => {
    const err = await rejection(src.get('short'));
    assert.equal(err.kind, 'network');
    assert.equal(err.retryable, true);
  });

  it("maps 503 to retryable 'server' and 403 to non-retryable 'forbidden'", async () => {
    const busy = await rejection(src.get('busy'));
    assert.deepEqual([busy.kind, busy.retryable], ['server', true]);
    const denied = await rejection(src.get('denied'));
    assert.deepEqual([denied.kind, denied.retryable], ['forbidden', false]);
  });

  it("reports a refused connection as retryable 'network'", async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const err = await rejection(new HttpPmcSource(`http://127.0.0.1:${port}`, 5_000).get('x'));
    assert.deepEqual([err.kind, err.retryable], ['network', true]);
  });

  it('follows continuation tokens across list pages and unescapes XML', async () => {
    assert.deepEqual(await src.list('a/', '/'), { prefixes: ['a/p&1/'], keys: ['a/1', 'a/2'] });
    assert.deepEqual(listPages, ['', 'tok2']);
  });
});

describe('parseObjectUrl', () => {
  it('reads s3:// URLs with and without md5', () => {
    assert.deepEqual(parseObjectUrl('s3://pmc-oa-opendata/PMC1.1/PMC1.1.xml?md5=0123abc'), {
      key: 'PMC1.1/PMC1.1.xml',
      md5: '0123abc',
    });
    assert.deepEqual(parseObjectUrl('s3://pmc-oa-opendata/PMC7159286.1/gr1_lrg.jpg'), {
      key: 'PMC7159286.1/gr1_lrg.jpg',
      md5: null,
    });
  });
  it('reads https:// (and http://) URLs with and without md5, decoding the key', () => {
    assert.deepEqual(parseObjectUrl('https://pmc-oa-opendata.s3.amazonaws.com/PMC1.2/fig%201.png?md5=ff'), {
      key: 'PMC1.2/fig 1.png',
      md5: 'ff',
    });
    assert.deepEqual(parseObjectUrl('https://pmc-oa-opendata.s3.amazonaws.com/metadata/PMC1.2.json'), {
      key: 'metadata/PMC1.2.json',
      md5: null,
    });
    assert.deepEqual(parseObjectUrl('http://127.0.0.1:9000/PMC1.1/x.tif?versionId=3&md5=ab'), {
      key: 'PMC1.1/x.tif',
      md5: 'ab',
    });
  });
  it('rejects anything that is not an object URL', () => {
    assert.throws(() => parseObjectUrl('PMC1.1/PMC1.1.xml'), /not an object URL/);
    assert.throws(() => parseObjectUrl('ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/x.tar.gz'), /not an object URL/);
    assert.throws(() => parseObjectUrl('s3://pmc-oa-opendata/'), /not an object URL/);
  });
});

describe('parseListObjectsV2', () => {
  it('reads keys, prefixes and the continuation token with an XML parser: entities, CDATA, any child order', () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>pmc-oa-opendata</Name><Prefix>PMC1</Prefix>
<KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>1/a+b==</NextContinuationToken>
<Contents><LastModified>2026-11-01T00:00:00.000Z</LastModified><Key>PMC1.1/a&amp;b&lt;c&gt;.jpg</Key><Size>3</Size></Contents>
<Contents><Key><![CDATA[PMC1.1/fig 2.jpg]]></Key></Contents>
<CommonPrefixes><Prefix>PMC11.</Prefix></CommonPrefixes></ListBucketResult>`;
    assert.deepEqual(parseListObjectsV2(xml, 'PMC1'), {
      keys: ['PMC1.1/a&b<c>.jpg', 'PMC1.1/fig 2.jpg'],
      prefixes: ['PMC11.'],
      truncated: true,
      nextToken: '1/a+b==',
    });
  });

  it('refuses what is not a list answer (an error page, a cut-off body, a truncated page without its token)', () => {
    for (const bad of [
      '<html><body>Service Unavailable</body></html>',
      '<ListBucketResult><Contents><Key>x</Key>',
      '<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>',
    ]) {
      assert.throws(
        () => parseListObjectsV2(bad, 'p'),
        (err: unknown) => err instanceof SourceError && err.retryable && /^LIST p: /.test(err.message),
        bad,
      );
    }
  });
});

/**
 * The release store (activities/common/store.ts): one contract for a folder and for an S3-compatible bucket (moto's
 * server mode on loopback, which checks SigV4 signatures and IAM policies), the clear errors of a missing bucket,
 * wrong credentials, a store that refuses writes and an unreachable endpoint, and a unit stage that commits to the
 * store (outputs, then its manifest) so that a stage on another host finds its inputs by key.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { loadEnv } from '../config/env';
import { ReleaseInputSchema } from '../config/release';
import { checkStore, closeStores, FolderStore, openStore, parseStoreUrl, StoreError } from '../activities/common/store';
import { releaseTree } from '../activities/common/sync';
import { layoutOf, runUnitStage } from '../activities/common/stage';
import { startS3Standin, type S3Standin } from './support/s3-standin';
import { publishRelease } from '../activities/publish/activity';
import { commitPlannedBatch, planHub } from '../activities/publish/hub';
import { hubFetch } from '../activities/publish/hub-http';
import { buildSyntheticRelease, startHubStandin } from '../sample/hub-standin';

const TOKEN = `hf_${'StoreToken'.repeat(4)}x`;

describe('the release store', function () {
  this.timeout(120_000);
  let s3: S3Standin;
  let tmp: string;
  const saved = { ...process.env };

  before(async () => {
    s3 = await startS3Standin();
    await s3.createBucket('releases');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-store-'));
  });
  after(async () => {
    process.env = saved;
    closeStores();
    await s3?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(() => {
    process.env = { ...saved };
    closeStores();
  });

  /** A release whose tree is in `store`; this worker's folder is BIOMEDICA_WORK_DIR. */
  const storeRelease = (releaseId: string, store: string, more: Record<string, unknown> = {}) =>
    ReleaseInputSchema.parse({
      releaseId,
      dataDir: path.join(tmp, 'unused'),
      store,
      source: { kind: 'pmc-cloud-dir', root: tmp },
      ...more,
    });

  const backends = () => [
    { name: 'a folder (file://)', store: () => new FolderStore(path.join(tmp, 'folder')) },
    { name: 'an S3 bucket (moto on loopback)', store: () => openStore('s3://releases/contract', loadEnv(s3.env())) },
  ];
  for (const b of [0, 1]) {
    it(`keeps the contract on ${['a folder (file://)', 'an S3 bucket (moto on loopback)'][b]}`, async () => {
      const store = backends()[b]!.store();
      assert.equal(await store.head('a/b.json'), null);
      assert.equal(await store.get('a/b.json'), null);
      assert.equal(await store.download('a/b.json', path.join(tmp, `d${b}`, 'x')), false);
      await store.put('a/b.json', '{"x":1}\n');
      assert.deepEqual(await store.head('a/b.json'), { key: 'a/b.json', bytes: 8 });
      assert.equal((await store.get('a/b.json'))!.toString(), '{"x":1}\n');
      // A file past the multipart threshold (64 MiB) goes up in parts and comes back byte for byte.
      const big = path.join(tmp, `big${b}.bin`);
      const bytes = Buffer.alloc(65 * 1024 * 1024 + 17);
      for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i % 251;
      fs.writeFileSync(big, bytes);
      await store.upload('a/c/big.bin', big);
      const back = path.join(tmp, `back${b}`, 'big.bin');
      assert.equal(await store.download('a/c/big.bin', back), true);
      assert.ok(fs.readFileSync(back).equals(bytes));
      assert.deepEqual(fs.readdirSync(path.dirname(back)), ['big.bin'], 'no temporary file is left beside it');
      await store.copy('a/b.json', 'z/copy.json');
      assert.deepEqual(
        (await store.list('a/')).map((o) => [o.key, o.bytes]),
        [
          ['a/b.json', 8],
          ['a/c/big.bin', bytes.length],
        ],
      );
      assert.equal((await store.get('z/copy.json'))!.toString(), '{"x":1}\n');
      await store.delete('z/copy.json');
      assert.equal(await store.head('z/copy.json'), null);
      await assert.rejects(store.put('../escape', 'x'), StoreError);
      await checkStore(store);
    });
  }

  it('parses store URLs and refuses others with what it takes', () => {
    assert.deepEqual(parseStoreUrl('s3://my-bucket/a/b/'), { kind: 's3', bucket: 'my-bucket', prefix: 'a/b/' });
    assert.deepEqual(parseStoreUrl('s3://my-bucket'), { kind: 's3', bucket: 'my-bucket', prefix: '' });
    assert.deepEqual(parseStoreUrl('file:///data/x'), { kind: 'file', root: '/data/x' });
    for (const bad of ['s3://B/x', 'http://x/y', 'file://relative', 's3://ok-bucket/a/../b'])
      assert.throws(
        () => parseStoreUrl(bad),
        (e: StoreError) => e.kind === 'bad-url' && e.message.includes(bad),
      );
    assert.throws(() => ReleaseInputSchema.parse({ releaseId: 'r', dataDir: '/d', store: 'gs://x', source: {} }));
  });

  it('names what to fix for a missing bucket, wrong credentials, refused writes and an unreachable endpoint', async () => {
    const cases: [string, NodeJS.ProcessEnv, string, StoreError['kind'], RegExp][] = [
      [
        'missing bucket',
        s3.env(),
        's3://no-such-bucket/p',
        'no-bucket',
        /bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+/,
      ],
      [
        'unknown access key',
        { ...s3.env(), AWS_ACCESS_KEY_ID: 'AKIAUNKNOWN000000000' },
        's3://releases/p',
        'credentials',
        /refused the credentials of this environment for s3:\/\/releases\/p\/ \(InvalidAccessKeyId\): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
      ],
      [
        'wrong secret',
        { ...s3.env(), AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
        's3://releases/p',
        'credentials',
        /\(SignatureDoesNotMatch\)/,
      ],
      [
        'read-only user',
        s3.env(s3.reader),
        's3://releases/p',
        'denied',
        /refused to write s3:\/\/releases\/p\/\.biomedica-probe-.*\(AccessDenied\)/,
      ],
      [
        'nothing listening',
        { ...s3.env(), BIOMEDICA_S3_ENDPOINT: 'http://127.0.0.1:1' },
        's3://releases/p',
        'unreachable',
        /cannot reach the S3 endpoint http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\).*check BIOMEDICA_S3_ENDPOINT/,
      ],
    ];
    // S3 answers a HEAD on a missing bucket with a bare 404: still the missing bucket, never "no such object".
    await assert.rejects(
      openStore('s3://no-such-bucket/p', loadEnv(s3.env())).head('models/m.onnx'),
      (e: StoreError) => e.kind === 'no-bucket' && e.message.includes('bucket "no-such-bucket" does not exist'),
    );
    for (const [what, env, url, kind, message] of cases) {
      closeStores();
      const err = await checkStore(openStore(url, loadEnv(env))).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreError, `${what}: ${String(err)}`);
      assert.equal(err.kind, kind, `${what}: ${err.message}`);
      assert.match(err.message, message, what);
      assert.equal(err.message.includes('\n'), false, `${what}: one line`);
      assert.equal(err.message.includes(String(env.AWS_SECRET_ACCESS_KEY)), false, `${what}: no secret`);
    }
  });

  it('commits a unit stage to the store (outputs, then the manifest), and a worker elsewhere finds it by key', async () => {
    Object.assign(process.env, s3.env(), { BIOMEDICA_WORK_DIR: path.join(tmp, 'host-a') });
    const release = storeRelease('r1', 's3://releases/stage-test');
    const store = openStore(release.store!);
    const unitId = 'commercial-000000';
    const unitKey = `releases/r1/plan/units/${unitId}.json`;
    await store.put(unitKey, JSON.stringify({ unitId, subset: 'commercial', index: 0, articles: [] }));
    let calls = 0;
    const stage = () =>
      runUnitStage({ release, unitId }, 'parse', async ({ layout }) => {
        calls++;
        const out = path.join(layout.unitDir(unitId), 'articles.ndjson');
        fs.mkdirSync(path.dirname(out), { recursive: true });
        fs.writeFileSync(out, '{"article":"PMC1.1"}\n');
        return { result: { parsed: 1 }, outputs: [out] };
      });
    // Without the stage before it (fetch) in the store, parse waits: a retryable failure, never a guess.
    await assert.rejects(stage(), (e: ApplicationFailure) => e.type === 'StoreObjectMissing' && !e.nonRetryable);
    await store.put(
      `releases/r1/units/${unitId}/manifests/fetch.json`,
      JSON.stringify({ stage: 'fetch', unitId, result: {}, outputs: [], quarantined: 0 }),
    );
    assert.deepEqual(await stage(), { parsed: 1, quarantined: 0 });
    assert.equal(calls, 1);
    assert.deepEqual(
      (await store.list(`releases/r1/units/${unitId}/`)).map((o) => o.key.split(`${unitId}/`)[1]),
      ['articles.ndjson', 'manifests/fetch.json', 'manifests/parse.json', 'quarantine/parse.ndjson'],
    );
    // Another host (its own empty folder) sees the stage done, from the store's manifest alone.
    process.env.BIOMEDICA_WORK_DIR = path.join(tmp, 'host-b');
    assert.deepEqual(await stage(), { parsed: 1, quarantined: 0 });
    assert.equal(calls, 1);
    // A stage on host b that reads parse's outputs gets them pulled, byte for byte.
    const files = releaseTree(release);
    const layout = layoutOf(release);
    assert.equal(files.localDir, path.join(tmp, 'host-b'));
    const mediaFile = path.join(layout.unitDir(unitId), 'media', 'PMC1.1', 'f1.jpg');
    await runUnitStage({ release, unitId }, 'media', async () => {
      assert.equal(
        fs.readFileSync(path.join(layout.unitDir(unitId), 'articles.ndjson'), 'utf8'),
        '{"article":"PMC1.1"}\n',
      );
      fs.mkdirSync(path.dirname(mediaFile), { recursive: true });
      fs.writeFileSync(mediaFile, 'jpeg bytes');
      return { result: {}, outputs: [mediaFile] };
    });
    // Committed, then gone from the host (its disk holds the units in work, not the release); parse's outputs stay.
    assert.equal(fs.existsSync(mediaFile), false);
    assert.equal((await store.get(`releases/r1/units/${unitId}/media/PMC1.1/f1.jpg`))?.toString(), 'jpeg bytes');
    assert.ok(fs.existsSync(path.join(layout.unitDir(unitId), 'articles.ndjson')));
    // The next stage pulls what it reads, and lets it go again when it has committed.
    await runUnitStage({ release, unitId }, 'images', async () => {
      assert.equal(fs.readFileSync(mediaFile, 'utf8'), 'jpeg bytes');
      return { result: {}, outputs: [] };
    });
    assert.equal(fs.existsSync(mediaFile), false);
    // Annotate pulls the images stage's index and model inputs, not its JPEGs (it pulls one only to decode it).
    const unitDir = layout.unitDir(unitId);
    const imagesOut = ['images.ndjson', 'inputs.bin', 'inputs.json', 'images/f1.jpg'].map((f) => path.join(unitDir, f));
    await store.delete(`releases/r1/units/${unitId}/manifests/images.json`);
    await runUnitStage({ release, unitId }, 'images', async () => {
      for (const f of imagesOut) {
        fs.mkdirSync(path.dirname(f), { recursive: true });
        fs.writeFileSync(f, path.basename(f));
      }
      return { result: {}, outputs: imagesOut };
    });
    await runUnitStage({ release, unitId }, 'annotate', async () => {
      assert.deepEqual(
        imagesOut.map((f) => fs.existsSync(f)),
        [true, true, true, false],
      );
      assert.equal(await files.pull(imagesOut[3]!), true);
      assert.equal(fs.readFileSync(imagesOut[3]!, 'utf8'), 'f1.jpg');
      return { result: {}, outputs: [] };
    });
    // An attempt that died after its outputs but before its manifest left no commit: the stage runs again.
    await store.delete(`releases/r1/units/${unitId}/manifests/parse.json`);
    assert.deepEqual(await stage(), { parsed: 1, quarantined: 0 });
    assert.equal(calls, 2);
  });

  it('fails a stage at once, with the store error, when its settings are wrong', async () => {
    Object.assign(process.env, s3.env(s3.reader), { BIOMEDICA_WORK_DIR: path.join(tmp, 'host-c') });
    const release = storeRelease('r2', 's3://releases/stage-test');
    const writer = openStore('s3://releases/stage-test', loadEnv(s3.env()));
    await writer.put('releases/r2/plan/units/u.json', JSON.stringify({ unitId: 'u', articles: [] }));
    closeStores();
    await assert.rejects(
      runUnitStage({ release, unitId: 'u' }, 'fetch', async () => ({ result: {}, outputs: [] })),
      (e: ApplicationFailure) =>
        e.nonRetryable &&
        e.type === 'Store-denied' &&
        /refused to write s3:\/\/releases\/stage-test\/releases\/r2\//.test(e.message),
    );
  });

  it('publishes a release in the store from an io host that holds none of it: to the Hub, and to the local-folder layout', async () => {
    const built = await buildSyntheticRelease(path.join(tmp, 'built'), 'r3', { shards: { commercial: 3, other: 1 } });
    const writer = openStore('s3://releases/publish-test', loadEnv(s3.env()));
    const source = new FolderStore(path.join(tmp, 'built'));
    for (const o of await source.list('releases/r3/')) await writer.upload(o.key, path.join(tmp, 'built', o.key));
    const hub = await startHubStandin({ tokens: [TOKEN] });
    try {
      Object.assign(process.env, s3.env(), { BIOMEDICA_WORK_DIR: path.join(tmp, 'io-host') });
      const release = storeRelease('r3', 's3://releases/publish-test', {
        publish: { kind: 'hub', repoId: 'biomedica/from-store', endpoint: hub.url, maxFilesPerCommit: 4 },
      });
      const session = { token: TOKEN, endpoint: hub.url, repoId: 'biomedica/from-store', http: hubFetch() };
      const plan = await planHub(release, session);
      for (let i = 0; i < plan.batches.length; i++) await commitPlannedBatch(release, plan.planId, i, session);
      for (const [p, bytes] of built.files) assert.ok(hub.read('biomedica/from-store', p)?.equals(bytes), p);
      // The local-folder layout goes into the store itself (copies there; no shard passes through the io host).
      closeStores();
      fs.rmSync(path.join(tmp, 'io-host'), { recursive: true, force: true });
      const local = ReleaseInputSchema.parse({ ...release, publish: { kind: 'local-folder' } });
      const published = await publishRelease(local);
      assert.equal(published.target, 's3://releases/publish-test/releases/r3/hub');
      for (const [p, bytes] of built.files) assert.ok((await writer.get(`releases/r3/hub/${p}`))?.equals(bytes), p);
      assert.ok(await writer.head('releases/r3/hub/README.md'));
      const onHost = fs.readdirSync(path.join(tmp, 'io-host'), { recursive: true }).map(String);
      assert.deepEqual(
        onHost.filter((f) => f.endsWith('.tar') || f.endsWith('.parquet')),
        [],
        'the io host never held a shard',
      );
    } finally {
      await hub.close();
    }
  });
});

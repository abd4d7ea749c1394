import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ReleaseInput, ReleaseInputArgs } from '../config/release';
import { ReleaseInputSchema } from '../config/release';
import {
  insideRoot,
  iterateNdjson,
  ndjson,
  NdjsonWriter,
  readNdjson,
  sweepPartials,
  writeFileAtomic,
  writeJsonAtomic,
} from '../activities/common/files';
import { ReleaseLayout } from '../activities/common/layout';
import { quarantine, type QuarantineRecord } from '../activities/common/quarantine';
import { mapLimit, runUnitStage, withPulse, type StageManifest } from '../activities/common/stage';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { PlannedUnit } from '../activities/plan/plan';

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-test-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Every file name under dir, recursively. */
function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

describe('runUnitStage', () => {
  const UNIT = 'commercial-000000';
  let release: ReleaseInput;
  let layout: ReleaseLayout;
  let calls: number;
  let failNext: boolean;
  let payload: string;
  const unit: PlannedUnit = {
    unitId: UNIT,
    subset: 'commercial',
    index: 0,
    articles: [
      {
        pmcid: 'PMC7159286',
        version: 1,
        pmid: '31986261',
        doi: '10.1016/S0140-6736(20)30154-9',
        citation: null,
        licenseCode: null,
        xml: { key: 'PMC7159286.1/PMC7159286.1.xml', md5: null },
        media: [],
        etag: 'e',
      },
    ],
  };

  /** A stage that writes two outputs and quarantines one figure; counts its calls. */
  const work = async (ctx: { layout: ReleaseLayout; unit: PlannedUnit; quarantine: QuarantineRecord[] }) => {
    calls++;
    if (failNext) {
      failNext = false;
      ctx.quarantine.push(
        quarantine({
          article: 'PMC7159286',
          figure: 'f0',
          stage: 'images',
          reason: 'never-written',
          detail: 'this attempt fails',
        }),
      );
      throw new Error('worker died');
    }
    const dir = ctx.layout.unitDir(ctx.unit.unitId);
    const a = path.join(dir, 'images', 'a.jpg');
    const b = path.join(dir, 'images.ndjson');
    await writeFileAtomic(a, payload);
    await writeFileAtomic(b, ndjson([{ article: ctx.unit.articles[0]!.pmcid }]));
    ctx.quarantine.push(
      quarantine({
        article: 'PMC7159286',
        figure: 'PMC7159286_1_2',
        stage: 'images',
        reason: 'corrupt-image',
        detail: 'VipsJpeg: premature end',
      }),
    );
    return { result: { images: 1, call: calls }, outputs: [a, b] };
  };
  const run = () => runUnitStage({ release, unitId: UNIT }, 'images', work);

  beforeEach(async () => {
    const dataDir = fs.mkdtempSync(path.join(tmp, 'data-'));
    const args: ReleaseInputArgs = {
      releaseId: 'stage-test',
      dataDir,
      source: { kind: 'pmc-cloud-dir', root: path.join(dataDir, 'mirror') },
    };
    release = ReleaseInputSchema.parse(args);
    layout = new ReleaseLayout(dataDir, 'stage-test');
    await writeJsonAtomic(layout.unitFile(UNIT), unit);
    calls = 0;
    failNext = false;
    payload = 'jpeg bytes';
  });

  it('runs the work once, then writes the quarantine file and the manifest', async () => {
    assert.deepEqual(await run(), { images: 1, call: 1, quarantined: 1 });
    assert.equal(calls, 1);
    const manifest = JSON.parse(
      fs.readFileSync(layout.stageManifest(UNIT, 'images'), 'utf8'),
    ) as StageManifest<unknown>;
    assert.deepEqual(manifest, {
      stage: 'images',
      unitId: UNIT,
      result: { images: 1, call: 1 },
      outputs: [
        { path: `units/${UNIT}/images/a.jpg`, bytes: 10 },
        { path: `units/${UNIT}/images.ndjson`, bytes: '{"article":"PMC7159286"}\n'.length },
      ],
      quarantined: 1,
    });
    assert.deepEqual(await readNdjson(layout.quarantineFile(UNIT, 'images')), [
      {
        article: 'PMC7159286',
        figure: 'PMC7159286_1_2',
        stage: 'images',
        reason: 'corrupt-image',
        detail: 'VipsJpeg: premature end',
      },
    ]);
    assert.deepEqual(
      filesUnder(layout.root).filter((f) => f.includes('.partial')),
      [],
    );
  });

  it('returns the recorded result without calling the work again', async () => {
    await run();
    const manifestBefore = fs.readFileSync(layout.stageManifest(UNIT, 'images'));
    assert.deepEqual(await run(), { images: 1, call: 1, quarantined: 1 });
    assert.deepEqual(await run(), { images: 1, call: 1, quarantined: 1 });
    assert.equal(calls, 1);
    assert.ok(fs.readFileSync(layout.stageManifest(UNIT, 'images')).equals(manifestBefore));
  });

  it('re-runs the work when a recorded output was deleted', async () => {
    await run();
    fs.unlinkSync(path.join(layout.unitDir(UNIT), 'images', 'a.jpg'));
    assert.deepEqual(await run(), { images: 1, call: 2, quarantined: 1 });
    assert.equal(calls, 2);
    assert.ok(fs.existsSync(path.join(layout.unitDir(UNIT), 'images', 'a.jpg')));
    assert.deepEqual(await run(), { images: 1, call: 2, quarantined: 1 });
    assert.equal(calls, 2);
  });

  it('re-runs the work when a recorded output changed size, and records the new size', async () => {
    await run();
    fs.writeFileSync(path.join(layout.unitDir(UNIT), 'images', 'a.jpg'), 'truncated');
    payload = 'jpeg bytes, longer now';
    assert.deepEqual(await run(), { images: 1, call: 2, quarantined: 1 });
    const manifest = JSON.parse(
      fs.readFileSync(layout.stageManifest(UNIT, 'images'), 'utf8'),
    ) as StageManifest<unknown>;
    assert.equal(manifest.outputs[0]!.bytes, 'jpeg bytes, longer now'.length);
    assert.deepEqual(await run(), { images: 1, call: 2, quarantined: 1 });
    assert.equal(calls, 2);
  });

  it('writes no manifest when the work throws, and the retry runs it again', async () => {
    failNext = true;
    await assert.rejects(run(), /worker died/);
    assert.ok(!fs.existsSync(layout.stageManifest(UNIT, 'images')));
    assert.deepEqual(await run(), { images: 1, call: 2, quarantined: 1 });
    assert.equal(calls, 2);
    // Nothing from the failed attempt leaked into the quarantine.
    assert.deepEqual(
      (await readNdjson<QuarantineRecord>(layout.quarantineFile(UNIT, 'images'))).map((q) => q.reason),
      ['corrupt-image'],
    );
  });

  it('replaces, never appends to, the quarantine file of an earlier attempt', async () => {
    // An earlier attempt wrote its quarantine and died before its manifest.
    const stale = [
      quarantine({ article: 'PMC1', stage: 'images', reason: 'stale-1', detail: '' }),
      quarantine({ article: 'PMC2', stage: 'images', reason: 'stale-2', detail: '' }),
    ];
    await writeFileAtomic(layout.quarantineFile(UNIT, 'images'), ndjson(stale));
    await run();
    assert.deepEqual(
      (await readNdjson<QuarantineRecord>(layout.quarantineFile(UNIT, 'images'))).map((q) => q.reason),
      ['corrupt-image'],
    );
    // And a re-run after a lost output rewrites it with exactly its own records.
    fs.unlinkSync(path.join(layout.unitDir(UNIT), 'images.ndjson'));
    await run();
    assert.equal(calls, 2);
    assert.deepEqual(
      (await readNdjson<QuarantineRecord>(layout.quarantineFile(UNIT, 'images'))).map((q) => q.reason),
      ['corrupt-image'],
    );
  });

  it('keeps stages apart by manifest name', async () => {
    await run();
    const other = await runUnitStage(
      { release, unitId: UNIT },
      'enrich',
      async () => ({ result: { batch: 3 }, outputs: [] }),
      'enrich-0003',
    );
    assert.deepEqual(other, { batch: 3, quarantined: 0 });
    assert.ok(fs.existsSync(layout.stageManifest(UNIT, 'enrich-0003')));
    assert.equal(fs.readFileSync(layout.quarantineFile(UNIT, 'enrich-0003'), 'utf8'), '');
    assert.deepEqual(await run(), { images: 1, call: 1, quarantined: 1 });
  });
});

describe('mapLimit', () => {
  it('keeps the input order in its results whatever the completion order', async () => {
    const delays = [30, 5, 20, 0, 10, 25, 1];
    const got = await mapLimit(delays, 3, async (d, i) => {
      await new Promise((r) => setTimeout(r, d));
      return `${i}:${d}`;
    });
    assert.deepEqual(got, ['0:30', '1:5', '2:20', '3:0', '4:10', '5:25', '6:1']);
  });

  it('never has more than the limit in flight, and uses the whole limit', async () => {
    for (const limit of [1, 2, 4]) {
      let inFlight = 0;
      let most = 0;
      const seen: number[] = [];
      await mapLimit(
        Array.from({ length: 12 }, (_, i) => i),
        limit,
        async (i) => {
          inFlight++;
          most = Math.max(most, inFlight);
          await new Promise((r) => setTimeout(r, (i * 7) % 5));
          seen.push(i);
          inFlight--;
        },
      );
      assert.equal(most, limit, `limit ${limit}`);
      assert.deepEqual(
        [...seen].sort((a, b) => a - b),
        Array.from({ length: 12 }, (_, i) => i),
        `limit ${limit}: every item once`,
      );
    }
  });

  it('handles fewer items than the limit, and none', async () => {
    assert.deepEqual(await mapLimit([1, 2], 16, async (x) => x * 2), [2, 4]);
    assert.deepEqual(await mapLimit([], 4, async (x: number) => x), []);
  });

  it('rejects when one item fails', async () => {
    await assert.rejects(
      mapLimit([1, 2, 3], 2, async (x) => {
        if (x === 2) throw new Error('item 2 failed');
        return x;
      }),
      /item 2 failed/,
    );
  });

  it('after a failure starts no further item, and rejects only once the calls in flight have settled', async () => {
    const started: number[] = [];
    const settled: number[] = [];
    const delays = [40, 5, 60, 10, 10, 10];
    await assert.rejects(
      mapLimit(delays, 3, async (d, i) => {
        started.push(i);
        await new Promise((r) => setTimeout(r, d));
        settled.push(i);
        if (i === 1) throw new Error('item 1 failed');
        return i;
      }),
      /item 1 failed/,
    );
    // Items 0-2 were in flight when item 1 failed (after 5 ms); 0 and 2 still finished before the rejection.
    assert.deepEqual(started, [0, 1, 2]);
    assert.deepEqual([...settled].sort(), [0, 1, 2]);
  });
});

describe('withPulse', () => {
  it('heartbeats the current details while the work waits, and stops when it settles', async () => {
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    let step = 0;
    const out = await env.run(() =>
      withPulse(
        () => ({ step }),
        async () => {
          await new Promise((r) => setTimeout(r, 130));
          step = 1;
          await new Promise((r) => setTimeout(r, 130));
          return 'done';
        },
        40,
      ),
    );
    assert.equal(out, 'done');
    assert.ok(beats.length >= 2, `${beats.length} heartbeats in 260 ms at one per 40 ms`);
    assert.ok(
      beats.some((b) => JSON.stringify(b) === '{"step":0}'),
      'the details of the first wait',
    );
    assert.deepEqual(beats.at(-1), { step: 1 });
    const after = beats.length;
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(beats.length, after, 'no heartbeat once the work settled');
  });

  it('stops its timer when the work throws, and passes the error on', async () => {
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
    let beats = 0;
    env.on('heartbeat', () => beats++);
    await assert.rejects(
      env.run(() =>
        withPulse(
          () => null,
          async () => {
            await new Promise((r) => setTimeout(r, 100));
            throw new Error('broken');
          },
          30,
        ),
      ),
      /broken/,
    );
    const after = beats;
    assert.ok(after >= 1, `${after} heartbeats`);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(beats, after);
  });
});

describe('insideRoot', () => {
  const root = path.resolve(os.tmpdir(), 'insideRoot-root');

  it('resolves paths inside the root', () => {
    assert.equal(insideRoot(root, 'media', 'PMC1.1/gr1.jpg'), path.join(root, 'media', 'PMC1.1', 'gr1.jpg'));
    assert.equal(insideRoot(root, 'a/../b'), path.join(root, 'b'));
    assert.equal(insideRoot(root), root);
    assert.equal(insideRoot(root, '.'), root);
  });

  it("refuses '../' escapes", () => {
    assert.throws(() => insideRoot(root, '..'), /escapes/);
    assert.throws(() => insideRoot(root, '../x'), /escapes/);
    assert.throws(() => insideRoot(root, 'media', '../../x'), /escapes/);
    assert.throws(() => insideRoot(root, 'a/../../insideRoot-root-sibling/x'), /escapes/);
  });

  it('refuses absolute paths outside the root, and a sibling that only shares its name prefix', () => {
    assert.throws(() => insideRoot(root, '/etc/passwd'), /escapes/);
    assert.throws(() => insideRoot(root, `${root}-evil/x`), /escapes/);
    assert.equal(insideRoot(root, path.join(root, 'ok')), path.join(root, 'ok'));
  });
});

describe('writeFileAtomic', () => {
  it('writes the content, creating folders, and leaves no .partial file', async () => {
    const dir = path.join(tmp, 'atomic');
    const file = path.join(dir, 'deep', 'er', 'out.json');
    await writeFileAtomic(file, 'first');
    await writeFileAtomic(file, Buffer.from('second, longer'));
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => writeFileAtomic(path.join(dir, 'many', `${i}.txt`), String(i))),
    );
    assert.equal(fs.readFileSync(file, 'utf8'), 'second, longer');
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['out.json']);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'many')).sort(), [
      '0.txt',
      '1.txt',
      '2.txt',
      '3.txt',
      '4.txt',
      '5.txt',
      '6.txt',
      '7.txt',
    ]);
  });

  it('leaves no .partial file behind when the final rename fails', async () => {
    const dir = path.join(tmp, 'atomic-fail');
    const target = path.join(dir, 'taken');
    fs.mkdirSync(path.join(target, 'child'), { recursive: true }); // a non-empty folder where the file should go
    await assert.rejects(writeFileAtomic(target, 'data'));
    assert.deepEqual(fs.readdirSync(dir), ['taken']);
  });
});

describe('iterateNdjson and NdjsonWriter', () => {
  it('write and read an ndjson file a line at a time, the same bytes and rows as ndjson() and readNdjson', async () => {
    const dir = path.join(tmp, 'ndjson');
    // Lines longer than a read chunk, and multi-byte characters falling across chunk boundaries.
    const rows = [
      { a: 1, s: 'é😀'.repeat(700_000) },
      { b: 'plain' },
      { c: ['x\ny', '\u2028'], d: 'ü'.repeat(1_500_001) },
      ...Array.from({ length: 3000 }, (_, i) => ({ i, t: 'Ω'.repeat(i % 97) })),
    ];
    const file = path.join(dir, 'rows.ndjson');
    const w = await NdjsonWriter.create(file);
    for (const r of rows) await w.write(r);
    await w.close();
    assert.ok(fs.readFileSync(file).equals(Buffer.from(ndjson(rows))));
    assert.deepEqual(fs.readdirSync(dir), ['rows.ndjson'], 'no temporary file left');
    const read: unknown[] = [];
    for await (const r of iterateNdjson(file)) read.push(r);
    assert.deepEqual(read, rows);
    // Blank lines are skipped and a missing file has no rows, as readNdjson has them.
    fs.writeFileSync(path.join(dir, 'blank.ndjson'), '{"x":1}\n\n  \n{"x":2}');
    const blank: unknown[] = [];
    for await (const r of iterateNdjson(path.join(dir, 'blank.ndjson'))) blank.push(r);
    assert.deepEqual(blank, await readNdjson(path.join(dir, 'blank.ndjson')));
    for await (const r of iterateNdjson(path.join(dir, 'missing.ndjson')))
      assert.fail(`a row of no file: ${String(r)}`);
    // No rows: an empty file. An aborted writer leaves nothing.
    const empty = await NdjsonWriter.create(path.join(dir, 'empty.ndjson'));
    await empty.close();
    assert.equal(fs.readFileSync(path.join(dir, 'empty.ndjson'), 'utf8'), ndjson([]));
    const dropped = await NdjsonWriter.create(path.join(dir, 'dropped.ndjson'));
    await dropped.write({ x: 1 });
    await dropped.abort();
    assert.deepEqual(fs.readdirSync(dir).sort(), ['blank.ndjson', 'empty.ndjson', 'rows.ndjson']);
  });
});

describe('sweepPartials', () => {
  it('removes the temporary files a killed process left anywhere in a tree, and only those', async () => {
    const root = path.join(tmp, 'sweep');
    const put = (rel: string) => {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), rel);
    };
    const kept = [
      'webdataset/other/000000.tar',
      'units/u/embeddings.partial.f32',
      'units/u/embeddings.partial-failed.ndjson',
      'notes.partial-draft',
    ];
    const leftovers = [
      'parquet/other/000000.parquet.partial-4123',
      'units/u/manifests/shard.json.partial-9-a1b2c3',
      'webdataset/noncommercial/000000.tar.partial-4123',
    ];
    for (const f of [...kept, ...leftovers]) put(f);
    assert.deepEqual(await sweepPartials(root), [...leftovers].sort());
    assert.deepEqual(filesUnder(root).sort(), [...kept].sort());
    assert.deepEqual(await sweepPartials(path.join(root, 'missing')), []);
  });
});

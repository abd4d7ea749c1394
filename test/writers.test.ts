import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import * as tar from 'tar';
import { fixturePaths, testPython } from '../config/paths';
import {
  isValidSampleKey,
  ShardLimitError,
  tarArchiveBytes,
  tarSampleBytes,
  TarShardWriter,
} from '../activities/shard/tar-writer';
import { readTarEntries, splitMemberName } from '../activities/shard/tar-reader';
import * as zlib from 'node:zlib';
import { pyFloat, pyJsonDumps, PyFloat } from '../activities/shard/pyjson';
import { normalizeFigureImage } from '../activities/images/normalize';
import { ParquetReader } from '@dsnp/parquetjs';
import {
  planRowGroups,
  publishedJsonOf,
  readSamplesParquet,
  SampleRow,
  writeSamplesParquet,
} from '../activities/parquet/writer';
import { PUBLISHED_KEYS } from '../activities/shard/sample-json';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function python(script: string, args: string[] = [], input?: string): string {
  const r = spawnSync(testPython(), ['-c', script, ...args], { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${testPython()} failed: ${r.stderr}`);
  return r.stdout;
}

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'writers-test-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('TarShardWriter', () => {
  const samples = [
    { key: 'filelist_commercial_batch_3_17-PMC7159286-0-gr1', jpg: Buffer.alloc(1000, 1), txt: 'Figure 1. Caption é' },
    { key: 'filelist_commercial_batch_3_17-PMC7159286-1-gr2', jpg: Buffer.alloc(512, 2), txt: '' },
    { key: 'filelist_commercial_batch_3_17-PMC7159286-2-gr3a', jpg: Buffer.alloc(3, 3), txt: 'x'.repeat(700) },
  ];
  const members = (s: (typeof samples)[number]) => [
    // Deliberately unsorted: the writer must order them jpg, json, txt.
    { ext: 'txt', data: Buffer.from(s.txt, 'utf8') },
    { ext: 'jpg', data: s.jpg },
    { ext: 'json', data: Buffer.from(pyJsonDumps({ key: s.key, n: s.txt.length })) },
  ];
  async function writeShard(file: string, mtime?: number) {
    const w = await TarShardWriter.create(file, mtime === undefined ? {} : { mtime });
    for (const s of samples) await w.addSample(s.key, members(s));
    return w.close();
  }
  const expected = () =>
    samples.flatMap((s) => {
      const m = members(s).sort((a, b) => a.ext.localeCompare(b.ext));
      return m.map((x) => ({ name: `${s.key}.${x.ext}`, data: x.data }));
    });
  function readBack(file: string) {
    const out: {
      name: string;
      size: number;
      mode?: number;
      mtime?: number;
      uname?: string;
      gname?: string;
      uid?: number;
      type: string;
      data: Buffer;
    }[] = [];
    tar.t({
      file,
      sync: true,
      strict: true, // turns bad checksums or malformed headers into errors
      onReadEntry: (e) => {
        const chunks: Buffer[] = [];
        const rec = {
          name: e.path,
          size: e.size,
          mode: e.mode,
          mtime: e.mtime?.getTime(),
          uname: e.uname,
          gname: e.gname,
          uid: e.uid,
          type: e.type,
          data: Buffer.alloc(0),
        };
        out.push(rec);
        e.on('data', (c: Buffer) => chunks.push(c));
        e.on('end', () => (rec.data = Buffer.concat(chunks)));
      },
    });
    return out;
  }

  it('writes members sorted by extension with fixed ustar metadata, readable by node-tar', async () => {
    const file = path.join(tmp, 'tar', 'commercial', '000000.tar');
    const res = await writeShard(file);
    const bytes = fs.readFileSync(file);
    assert.equal(res.path, file);
    assert.equal(res.samples, 3);
    assert.equal(res.bytes, bytes.length);
    assert.equal(res.sha256, sha256(bytes));
    assert.equal(bytes.length % 10240, 0);
    assert.equal(bytes.subarray(257, 265).toString('latin1'), 'ustar\u000000');
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['000000.tar'], 'no partial file left behind');
    const entries = readBack(file);
    const want = expected();
    assert.deepEqual(
      entries.map((e) => e.name),
      want.map((w) => w.name),
    );
    entries.forEach((e, i) => {
      assert.equal(e.type, 'File');
      assert.equal(e.size, want[i].data.length);
      assert.ok(e.data.equals(want[i].data), `content of ${e.name}`);
      assert.equal(e.mode, 0o444);
      assert.equal(e.mtime, 0);
      assert.equal(e.uname, 'bigdata');
      assert.equal(e.gname, 'bigdata');
      assert.equal(e.uid, 0);
    });
  });

  it('is deterministic, and honours a configured fixed mtime', async () => {
    const a = await writeShard(path.join(tmp, 'tar', 'a.tar'));
    const b = await writeShard(path.join(tmp, 'tar', 'b.tar'));
    assert.equal(a.sha256, b.sha256);
    assert.ok(fs.readFileSync(a.path).equals(fs.readFileSync(b.path)));
    const c = await writeShard(path.join(tmp, 'tar', 'c.tar'), 1_700_000_000);
    assert.notEqual(c.sha256, a.sha256);
    assert.ok(readBack(c.path).every((e) => e.mtime === 1_700_000_000_000));
  });

  it('validates keys, extensions and name length without breaking the writer', async () => {
    for (const k of ['a-b_c', 'PMC1-0-x+y', 'batch_1-PMC7159286-3-gr1']) assert.ok(isValidSampleKey(k), k);
    for (const k of ['', 'a.b', 'a/b', 'a\\b', 'a b', 'é', 'a\nb']) assert.ok(!isValidSampleKey(k), JSON.stringify(k));
    const file = path.join(tmp, 'tar', 'validate.tar');
    const w = await TarShardWriter.create(file);
    const m = [{ ext: 'txt', data: Buffer.from('x') }];
    await assert.rejects(w.addSample('PMC1.gr1', m), /invalid sample key/);
    await assert.rejects(w.addSample('k', [{ ext: 'JPG', data: Buffer.alloc(1) }]), /invalid member extension/);
    await assert.rejects(w.addSample('k', [...m, ...m]), /duplicate member/);
    await assert.rejects(w.addSample('k'.repeat(97), m), /name too long/);
    await w.addSample('k'.repeat(96), m); // exactly 100 bytes is allowed
    await assert.rejects(w.addSample('k'.repeat(96), m), /duplicate sample key/);
    const res = await w.close();
    assert.equal(res.samples, 1);
    assert.deepEqual(
      readBack(file).map((e) => e.name),
      [`${'k'.repeat(96)}.txt`],
    );
  });

  it('keeps samples whole and in call order when addSample calls are not awaited one by one', async () => {
    const file = path.join(tmp, 'tar', 'concurrent.tar');
    const w = await TarShardWriter.create(file);
    await Promise.all(samples.map((s) => w.addSample(s.key, members(s))));
    await w.close();
    assert.deepEqual(
      readBack(file).map((e) => [e.name, e.data.length]),
      expected().map((e) => [e.name, e.data.length]),
    );
  });

  it('never leaves a file at finalPath before close or after abort', async () => {
    const dir = path.join(tmp, 'tar', 'abort');
    const file = path.join(dir, '000001.tar');
    const w = await TarShardWriter.create(file);
    await w.addSample(samples[0].key, members(samples[0]));
    assert.ok(!fs.existsSync(file));
    assert.ok(fs.existsSync(w.partialPath));
    assert.ok(path.basename(w.partialPath).startsWith(`000001.tar.partial-${process.pid}-`));
    await w.abort();
    await w.abort(); // idempotent
    assert.deepEqual(fs.readdirSync(dir), []);
    await assert.rejects(w.addSample('x', [{ ext: 'txt', data: Buffer.from('x') }]), /aborted/);
  });

  it('removes what a killed earlier attempt left beside the shard, and nothing else', async () => {
    const dir = path.join(tmp, 'tar', 'stale');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, '000002.tar');
    // A SIGKILLed worker cannot remove its temporary file: one from an old pid-only name, one from the current form.
    fs.writeFileSync(`${file}.partial-4123`, 'half a shard');
    fs.writeFileSync(`${file}.partial-77-k3j9zq`, '');
    fs.writeFileSync(path.join(dir, '000003.tar.partial-4123'), "another unit's shard, not ours");
    fs.writeFileSync(path.join(dir, '000002.tar.partial-notes.txt'), 'not a temporary file');
    const res = await writeShard(file);
    assert.equal(res.path, file);
    assert.deepEqual(fs.readdirSync(dir).sort(), [
      '000002.tar',
      '000002.tar.partial-notes.txt',
      '000003.tar.partial-4123',
    ]);
  });

  it('is listed by Python tarfile and equals tarfile USTAR and default-PAX output byte for byte', async function () {
    const res = await writeShard(path.join(tmp, 'tar', 'py.tar'));
    assert.equal(
      python('import tarfile,sys; print(len(tarfile.open(sys.argv[1]).getnames()))', [res.path]).trim(),
      '9',
    );
    const listing = JSON.parse(
      python(
        'import tarfile,sys,json; t=tarfile.open(sys.argv[1]); print(json.dumps([[m.name,m.size,m.mode,m.mtime,m.uname,m.gname,m.isreg()] for m in t]))',
        [res.path],
      ),
    );
    assert.deepEqual(
      listing,
      expected().map((e) => [e.name, e.data.length, 0o444, 0, 'bigdata', 'bigdata', true]),
    );
    // Python tarfile writing the same members with the same metadata, as USTAR and in its default
    // PAX format (what webdataset's TarWriter uses; no PAX records are needed for an int mtime and
    // ASCII names), gives identical bytes.
    const spec = JSON.stringify(expected().map((e) => [e.name, e.data.toString('base64')]));
    const outs = ['ustar', 'pax'].map((f) => path.join(tmp, 'tar', `python-${f}.tar`));
    python(
      `import tarfile,sys,json,io,base64
members = json.loads(sys.stdin.read())
for out, fmt in zip(sys.argv[1:], (tarfile.USTAR_FORMAT, tarfile.DEFAULT_FORMAT)):
    with tarfile.open(out, 'w', format=fmt) as tf:
        for name, b64 in members:
            data = base64.b64decode(b64)
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o444; ti.mtime = 0
            ti.uid = ti.gid = 0; ti.uname = ti.gname = 'bigdata'
            tf.addfile(ti, io.BytesIO(data))`,
      outs,
      spec,
    );
    const ours = fs.readFileSync(res.path);
    for (const out of outs) assert.ok(fs.readFileSync(out).equals(ours), path.basename(out));
  });

  it('refuses a sample that would take the shard past maxSamples or maxBytes, and stays usable', async () => {
    const file = path.join(tmp, 'tar', 'limits.tar');
    const sizesOf = (s: (typeof samples)[number]) => members(s).map((m) => m.data.length);
    const first = tarSampleBytes(sizesOf(samples[0]));
    const both = first + tarSampleBytes(sizesOf(samples[1]));
    // Exactly room for the first two samples' archive; the third would need another record.
    const w = await TarShardWriter.create(file, { maxBytes: tarArchiveBytes(both), maxSamples: 2 });
    await w.addSample(samples[0].key, members(samples[0]));
    await w.addSample(samples[1].key, members(samples[1]));
    const full = await w.addSample(samples[2].key, members(samples[2])).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(full instanceof ShardLimitError && full.limit === 'samples' && full.max === 2, String(full));
    const res = await w.close();
    assert.equal(res.samples, 2);
    assert.equal(res.bytes, tarArchiveBytes(both), 'tarSampleBytes and tarArchiveBytes give the file size');
    assert.ok(res.bytes <= w.maxBytes);

    const big = { ...samples[2], jpg: Buffer.alloc(20_000, 7) };
    const w2 = await TarShardWriter.create(path.join(tmp, 'tar', 'limits2.tar'), { maxBytes: 20_480 });
    await w2.addSample(samples[0].key, members(samples[0]));
    const over = await w2.addSample(big.key, members(big)).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(over instanceof ShardLimitError && over.limit === 'bytes' && over.wouldBe > 20_480, String(over));
    assert.match(over.message, /over the limit of 20480 bytes per shard/);
    await w2.addSample(samples[1].key, members(samples[1])); // still usable after the refusal
    const res2 = await w2.close();
    assert.equal(res2.samples, 2);
    assert.ok(res2.bytes <= 20_480);
    assert.deepEqual(
      readBack(res2.path).map((e) => e.name.split('.')[0]),
      [samples[0].key, samples[0].key, samples[0].key, samples[1].key, samples[1].key, samples[1].key],
    );
    await assert.rejects(TarShardWriter.create(path.join(tmp, 'tar', 'x.tar'), { maxBytes: 100 }), /maxBytes/);
    await assert.rejects(TarShardWriter.create(path.join(tmp, 'tar', 'x.tar'), { maxSamples: 0 }), /maxSamples/);
  });

  it('readTarEntries reads our shards and Python PAX archives with long names', async () => {
    const res = await writeShard(path.join(tmp, 'tar', 'read.tar'));
    const got: [string, number, number, string][] = [];
    for await (const e of readTarEntries(res.path)) got.push([e.name, e.mode, e.mtime, sha256(await e.read())]);
    assert.deepEqual(
      got,
      expected().map((e) => [e.name, 0o444, 0, sha256(e.data)]),
    );
    assert.deepEqual(splitMemberName('a/b_c.tar.gz'), { key: 'a/b_c', ext: 'tar.gz' });
    assert.deepEqual(splitMemberName('PMC1_1_0.json'), { key: 'PMC1_1_0', ext: 'json' });
    assert.equal(splitMemberName('noext'), null);
    const pax = path.join(tmp, 'tar', 'pax.tar');
    const long = `${'k'.repeat(150)}-é.txt`;
    python(
      `import tarfile, io, sys
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as tf:
    for name, data in ((sys.argv[2], b'long'), ('short.json', b'{}')):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000.5
        tf.addfile(ti, io.BytesIO(data))`,
      [pax, long],
    );
    const entries: [string, string, number][] = [];
    for await (const e of readTarEntries(pax)) entries.push([e.name, (await e.read()).toString(), e.mtime]);
    assert.deepEqual(entries, [
      [long, 'long', 1700000000],
      ['short.json', '{}', 1700000000],
    ]);
    const corrupt = fs.readFileSync(res.path);
    corrupt[600] ^= 0xff; // inside the first member's data (1000 bytes, padded to 1024): not checked
    corrupt[512 + 1024] ^= 0xff; // the second header's name: its checksum no longer matches
    fs.writeFileSync(path.join(tmp, 'tar', 'corrupt.tar'), corrupt);
    await assert.rejects(
      (async () => {
        for await (const e of readTarEntries(path.join(tmp, 'tar', 'corrupt.tar'))) await e.read();
      })(),
      /bad header checksum/,
    );
  });
});

describe('pyJsonDumps', () => {
  // Expected strings written by hand from Python 3 json.dumps semantics.
  const vectors: [unknown, string][] = [
    [{ a: [1, 'é', null], b: 'x\ny' }, '{"a": [1, "\\u00e9", null], "b": "x\\ny"}'],
    [[], '[]'],
    [{}, '{}'],
    [[[], {}, [{}]], '[[], {}, [{}]]'],
    ['', '""'],
    ['"\\/', '"\\"\\\\/"'],
    ['\b\f\n\r\t\u0000\u001f\u007f', '"\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f"'],
    ['😀', '"\\ud83d\\ude00"'],
    ['\ud800x', '"\\ud800x"'],
    ['Ωµ\u2028€', '"\\u03a9\\u00b5\\u2028\\u20ac"'],
    [true, 'true'],
    [false, 'false'],
    [null, 'null'],
    [0, '0'],
    [-0, '0'],
    [-17, '-17'],
    [1.0, '1'],
    [2 ** 53 + 2, '9007199254740994'],
    [1e21, '1000000000000000000000'],
    [123n, '123'],
    [1.5, '1.5'],
    [0.1, '0.1'],
    [pyFloat(1), '1.0'],
    [pyFloat(-0), '-0.0'],
    [pyFloat(1e16), '1e+16'],
    [pyFloat(1e15), '1000000000000000.0'],
    [pyFloat(123456789012345680), '1.2345678901234568e+17'],
    [pyFloat(0.0001), '0.0001'],
    [pyFloat(0.00001), '1e-05'],
    [pyFloat(1.5e-7), '1.5e-07'],
    [pyFloat(5e-324), '5e-324'],
    [pyFloat(1.7976931348623157e308), '1.7976931348623157e+308'],
    [pyFloat(NaN), 'NaN'],
    [pyFloat(Infinity), 'Infinity'],
    [pyFloat(-Infinity), '-Infinity'],
    [
      new Map<unknown, unknown>([
        ['b', 1],
        ['2', 2],
        [3, 'x'],
        [true, null],
        [null, 0],
      ]),
      '{"b": 1, "2": 2, "3": "x", "true": null, "null": 0}',
    ],
    [{ b: 1, a: { ü: [1, 2] } }, '{"b": 1, "a": {"\\u00fc": [1, 2]}}'],
    [{ image_size: [750, 1041], image_hash: 'None' }, '{"image_size": [750, 1041], "image_hash": "None"}'],
  ];
  vectors.forEach(([value, want], i) => {
    it(`vector ${i}: ${want.slice(0, 40)}`, () => assert.equal(pyJsonDumps(value), want));
  });

  it('refuses values Python json could not have produced', () => {
    assert.throws(() => pyJsonDumps({ a: undefined }), /not JSON serializable \(at \$\.a\)/);
    assert.throws(() => pyJsonDumps([Buffer.from('x')]), /Buffer is not JSON serializable/);
    assert.throws(() => pyJsonDumps(new Date(0)), /not JSON serializable/);
    const loop: unknown[] = [];
    loop.push(loop);
    assert.throws(() => pyJsonDumps(loop), /circular/);
    // The same object twice (not nested in itself) is fine, as in Python.
    const shared = { x: 1 };
    assert.equal(pyJsonDumps([shared, shared]), '[{"x": 1}, {"x": 1}]');
  });

  it('matches real Python json.dumps on randomised values', function () {
    let seed = 0x9e3779b9;
    const rnd = () => {
      // xorshift32: reproducible across runs so a failure can be replayed.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const f64 = new Float64Array(1);
    const u32 = new Uint32Array(f64.buffer);
    const randStr = () => {
      const pools = [
        () => 0x20 + Math.floor(rnd() * 95),
        () => Math.floor(rnd() * 0x20),
        () => 0x80 + Math.floor(rnd() * 0x780),
        () => Math.floor(rnd() * 0x10000),
      ];
      let s = '';
      for (let n = Math.floor(rnd() * 12); n > 0; n--) s += rnd() < 0.1 ? '😀𝔘' : String.fromCharCode(pick(pools)());
      return s;
    };
    const gen = (depth: number): unknown => {
      const r = rnd();
      if (depth > 3 || r < 0.5) {
        return pick<() => unknown>([
          () => null,
          () => rnd() < 0.5,
          randStr,
          () => Math.floor((rnd() - 0.5) * 2 ** 53),
          () => Math.floor((rnd() - 0.5) * 2000),
          () => pyFloat((rnd() - 0.5) * 10 ** Math.floor(rnd() * 40 - 20)),
          () => {
            u32[0] = Math.floor(rnd() * 2 ** 32);
            u32[1] = Math.floor(rnd() * 2 ** 32);
            return pyFloat(f64[0]);
          },
          () => pyFloat(pick([0.1, 1e16, 1e-5, 100, NaN, -Infinity, 2.5e-308])),
        ])();
      }
      if (r < 0.75) return Array.from({ length: Math.floor(rnd() * 5) }, () => gen(depth + 1));
      const o: Record<string, unknown> = {};
      for (let n = Math.floor(rnd() * 5); n > 0; n--)
        o[rnd() < 0.2 ? String(Math.floor(rnd() * 20)) : randStr()] = gen(depth + 1);
      return o;
    };
    const values = Array.from({ length: 300 }, () => gen(0));
    // Transport floats tagged so Python rebuilds them as float, not int.
    const transport = JSON.stringify(values, (_k, v) => (v instanceof PyFloat ? { __f__: pyFloatish(v.value) } : v));
    const out = python(
      `import json,sys
hook = lambda d: float(d['__f__']) if list(d) == ['__f__'] else d
for v in json.loads(sys.stdin.buffer.read().decode('utf-8'), object_hook=hook):
    print(json.dumps(v))`,
      [],
      transport,
    ).split('\n');
    values.forEach((v, i) => assert.equal(pyJsonDumps(v), out[i], `random value ${i}`));
  });
});

/** A string Python's float() parses back to exactly x. */
function pyFloatish(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  return Object.is(x, -0) ? '-0.0' : x.toExponential();
}

describe('normalizeFigureImage', () => {
  const dir = path.join(fixturePaths.images(), 'PMC7159286');
  const realJpeg = () => fs.readFileSync(path.join(dir, 'gr1_lrg.jpg'));
  const solid = (width: number, height: number) =>
    sharp({ create: { width, height, channels: 3, background: { r: 30, g: 120, b: 200 } } });
  async function expectConverted(input: Buffer, format: string, width: number, height: number) {
    const r = await normalizeFigureImage(input);
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.passthrough, false);
    assert.equal(r.sourceFormat, format);
    assert.deepEqual([r.width, r.height], [width, height]);
    const m = await sharp(r.jpeg).metadata();
    assert.deepEqual(
      [m.format, m.channels, m.space, m.depth, m.isProgressive, m.chromaSubsampling],
      ['jpeg', 3, 'srgb', 'uchar', false, '4:2:0'],
    );
    assert.deepEqual([m.width, m.height], [width, height]);
    return r;
  }

  it('passes a real sRGB JPEG through byte for byte', async () => {
    const bytes = realJpeg();
    const r = await normalizeFigureImage(bytes);
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.passthrough, true);
    assert.equal(r.sourceFormat, 'jpeg');
    assert.deepEqual([r.width, r.height], [750, 1041]);
    assert.ok(r.jpeg.equals(bytes));
  });

  it('passes an 8-bit greyscale JPEG through', async () => {
    const grey = await solid(40, 30).toColourspace('b-w').jpeg().toBuffer();
    const r = await normalizeFigureImage(grey);
    assert.ok(r.ok && r.passthrough && r.jpeg.equals(grey));
  });

  it('converts the real GIF (first frame) to a baseline JPEG with the same dimensions', async () => {
    await expectConverted(fs.readFileSync(path.join(dir, 'gr1_lrg.gif')), 'gif', 100, 139);
  });

  it('flattens PNG alpha onto white and converts TIFF, WebP, CMYK JPEG, 16-bit and grey PNG', async () => {
    const transparent = await sharp({
      create: { width: 32, height: 24, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toBuffer();
    const r = await expectConverted(transparent, 'png', 32, 24);
    assert.ok(r.ok);
    const { data } = await sharp(r.jpeg).raw().toBuffer({ resolveWithObject: true });
    assert.ok(
      data.every((v) => v >= 250),
      'fully transparent pixels become white',
    );
    await expectConverted(await solid(50, 40).tiff().toBuffer(), 'tiff', 50, 40);
    await expectConverted(await solid(50, 40).webp().toBuffer(), 'webp', 50, 40);
    const cmyk = await solid(50, 40).toColourspace('cmyk').jpeg().toBuffer();
    assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
    await expectConverted(cmyk, 'jpeg', 50, 40);
    await expectConverted(await solid(50, 40).toColourspace('rgb16').png().toBuffer(), 'png', 50, 40);
    await expectConverted(await solid(50, 40).toColourspace('b-w').png().toBuffer(), 'png', 50, 40);
  });

  it('converts deterministically', async () => {
    const png = await sharp({
      create: { width: 64, height: 48, channels: 4, background: { r: 10, g: 200, b: 90, alpha: 0.5 } },
    })
      .png()
      .toBuffer();
    const [a, b] = await Promise.all([normalizeFigureImage(png), normalizeFigureImage(png)]);
    assert.ok(a.ok && b.ok && a.jpeg.equals(b.jpeg));
  });

  it('reports truncated, garbage and unsupported input', async () => {
    const bytes = realJpeg();
    const half = await normalizeFigureImage(bytes.subarray(0, bytes.length >> 1));
    assert.ok(!half.ok && half.reason === 'corrupt', JSON.stringify(half));
    assert.match(half.detail, /premature end|truncat/i);
    const nearlyWhole = await normalizeFigureImage(bytes.subarray(0, bytes.length - 100));
    assert.ok(!nearlyWhole.ok && nearlyWhole.reason === 'corrupt');
    const garbage = await normalizeFigureImage(Buffer.from('not an image at all'));
    assert.ok(!garbage.ok && garbage.reason === 'unsupported-format');
    const empty = await normalizeFigureImage(Buffer.alloc(0));
    assert.ok(!empty.ok && empty.reason === 'corrupt');
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"><rect width="50" height="50"/></svg>',
    );
    const s = await normalizeFigureImage(svg);
    assert.ok(!s.ok && s.reason === 'unsupported-format');
  });

  it('names what a file is when it is not a raster image, whatever its name, and refuses a side a JPEG cannot have', async () => {
    const cases: [string, Buffer, RegExp][] = [
      [
        'malformed SVG',
        Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100"</svg>'),
        /SVG/,
      ],
      [
        'SVG with an XML declaration and a comment',
        Buffer.from('<?xml version="1.0"?>\n<!-- drawn by hand -->\n<svg width="0" height="0"></svg>'),
        /SVG/,
      ],
      ['PDF', Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n'), /PDF/],
      ['HTML error page', Buffer.from('<!DOCTYPE html><html><body>404 Not Found</body></html>'), /HTML/],
    ];
    for (const [what, bytes, detail] of cases) {
      const r = await normalizeFigureImage(bytes);
      assert.ok(!r.ok && r.reason === 'unsupported-format', `${what}: ${JSON.stringify(r)}`);
      assert.match(r.detail, detail, what);
    }
    const tall = await normalizeFigureImage(await solid(30, 70_000).png().toBuffer());
    assert.deepEqual(tall.ok ? null : [tall.reason, tall.width, tall.height], ['too-large', 30, 70_000]);
    assert.match(tall.ok ? '' : tall.detail, /30x70000: a side over 65500 px cannot be a JPEG/);
    // A supported format whose bytes are broken is still `corrupt`.
    const png = await solid(40, 40).png().toBuffer();
    const broken = await normalizeFigureImage(Buffer.concat([png.subarray(0, 40), Buffer.alloc(200, 7)]));
    assert.ok(!broken.ok && broken.reason === 'corrupt', JSON.stringify(broken));
  });

  it('enforces the size filter and the pixel limit', async () => {
    const tiny = await normalizeFigureImage(await solid(10, 10).png().toBuffer());
    assert.deepEqual(tiny.ok ? null : [tiny.reason, tiny.width, tiny.height], ['too-small', 10, 10]);
    const edge = await normalizeFigureImage(await solid(21, 20).png().toBuffer());
    assert.ok(!edge.ok && edge.reason === 'too-small', 'a 20px side is filtered (published rule: > 20)');
    assert.ok((await normalizeFigureImage(await solid(21, 21).png().toBuffer())).ok);
    const big = await normalizeFigureImage(realJpeg(), { maxPixels: 750 * 1041 - 1 });
    assert.deepEqual(big.ok ? null : [big.reason, big.width, big.height], ['too-many-pixels', 750, 1041]);
    assert.ok((await normalizeFigureImage(realJpeg(), { maxPixels: 750 * 1041 })).ok);
  });

  it('passes a progressive JPEG through unchanged, and refuses it truncated', async () => {
    const progressive = await sharp(realJpeg()).jpeg({ progressive: true, quality: 85 }).toBuffer();
    assert.equal((await sharp(progressive).metadata()).isProgressive, true);
    const r = await normalizeFigureImage(progressive);
    assert.ok(r.ok && r.passthrough && r.jpeg.equals(progressive), JSON.stringify(r.ok ? r.sourceFormat : r));
    for (const cut of [0.5, 0.95]) {
      const t = await normalizeFigureImage(progressive.subarray(0, Math.floor(progressive.length * cut)));
      assert.ok(!t.ok && t.reason === 'corrupt', JSON.stringify(t));
    }
    const noEoi = await normalizeFigureImage(progressive.subarray(0, progressive.length - 2));
    assert.ok(!noEoi.ok && noEoi.reason === 'corrupt', 'missing end-of-image marker');
  });

  it('refuses a decompression bomb (a PNG declaring 30000x30000) from its header, quickly', async () => {
    const crc32 = (buf: Buffer): number => {
      let c = ~0;
      for (const b of buf) {
        c ^= b;
        for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
      }
      return ~c >>> 0;
    };
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(crc32(body), 8 + data.length);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(30000, 0);
    ihdr.writeUInt32BE(30000, 4);
    ihdr[8] = 1; // 1-bit greyscale: 900 million pixels from a ~110 kB deflate stream of zeros
    const png = Buffer.concat([
      Buffer.from('89504e470d0a1a0a', 'hex'),
      chunk('IHDR', ihdr),
      chunk('IDAT', zlib.deflateSync(Buffer.alloc((30000 / 8 + 1) * 30000), { level: 9 })),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    assert.ok(png.length < 200_000, `${png.length} bytes`);
    const t0 = performance.now();
    const r = await normalizeFigureImage(png);
    const ms = performance.now() - t0;
    assert.deepEqual(r.ok ? null : [r.reason, r.width, r.height], ['too-many-pixels', 30000, 30000]);
    assert.ok(ms < 500, `refused in ${ms.toFixed(0)} ms`);
    // The default limit is Pillow's bomb threshold, the release's images.maxPixels default.
    const limit = await normalizeFigureImage(await solid(30, 30).png().toBuffer(), { maxPixels: 899 });
    assert.ok(!limit.ok && limit.reason === 'too-many-pixels');
  });
});

describe('writeSamplesParquet', () => {
  function row(i: number, image: Buffer): SampleRow {
    return {
      key: `filelist_commercial_batch_3_17-PMC715928${i}-${i}-gr${i}`,
      shard: 'commercial/000000.tar',
      subset: 'commercial',
      caption: i === 1 ? 'None' : `Figure ${i}. Über-caption “quoted” 😀`,
      image_width: 750 + i,
      image_height: 1041,
      image_bytes_size: image.length,
      image_sha256: sha256(image),
      image,
      image_file_name: `gr${i}_lrg.jpg`,
      image_cluster_id: `gr${i}_lrg`,
      image_hash: i === 2 ? 'None' : 'ab'.repeat(32),
      image_label_id: String(i * 7),
      image_panel_type: 'single',
      image_panel_subtype: 'single panel',
      image_primary_label: i === 0 ? [] : ['Microscopy', 'Plots and Charts'].slice(0, i),
      image_secondary_label: ['light microscopy'],
      image_size: [750 + i, 1041],
      image_set: [
        {
          image_id: `gr${i}_lrg`,
          image_file_name: `gr${i}_lrg.jpg`,
          image_path: `PMC715928${i}.1/gr${i}_lrg.jpg`,
          caption: `Figure ${i}. é`,
          hash: 'ab'.repeat(32),
        },
        { image_id: 'gr9', image_file_name: 'gr9.gif', image_path: '', caption: '', hash: null },
      ].slice(0, i === 0 ? 0 : 2),
      image_context:
        i === 1
          ? []
          : [
              { image_id: `gr${i}_lrg`, paragraphs: ['As Fig 1 shows “x”.', 'Again.'] },
              { image_id: '7', paragraphs: i === 2 ? [] : ['p'] },
            ],
      article_accession_id: `PMC715928${i}`,
      article_title: 'A title',
      article_journal: 'J Test',
      article_date: '2020 04 14',
      article_abstract: 'Abstract '.repeat(50),
      article_mesh_terms: i % 2 ? ['Humans', 'Mice'] : [],
      article_keywords: [''],
      article_reference_ids: ['12345', '67890'],
      article_reference_count: 2 ** 40 + i,
      article_reference_list: [],
      article_subject: ['Article'],
      article_citation: 'J Test. 2020;1:1.',
      article_license: 'CC BY',
      article_text: `Introduction\n\nBody ${i} ` + 'text '.repeat(200),
      article_pmid: i === 3 ? null : `3229${i}`,
      article_doi: i % 2 ? null : `10.1000/x${i}`,
      // Struct lists with null fields, empty lists and booleans (real names from the fixtures).
      article_authors:
        i === 0
          ? []
          : [
              {
                name: 'Todd S Macfarlan',
                surname: 'Macfarlan',
                given_names: 'Todd S',
                group: false,
                orcid: i % 2 ? '0000-0003-2495-9809' : null,
                corresponding: true,
                affiliations: ['NICHD, NIH, Bethesda, United States', 'École Polytechnique Fédérale de Lausanne'],
                source: 'jats',
              },
              {
                name: 'The Thai Cohort Study Team',
                surname: null,
                given_names: null,
                group: true,
                orcid: null,
                corresponding: false,
                affiliations: [],
                source: i === 2 ? 'pubmed' : 'jats+pubmed',
              },
            ],
      article_chemicals: i % 2 ? [{ registry_number: null, name: 'Cytochrome c Group', ui: 'D003574' }] : [],
      article_pubmed_article_date: i === 4 ? '2016-10-21' : null,
      article_pubmed_history: i === 1 ? [] : [{ status: 'received', date: '2016-06-27' }],
      caption_mathml:
        i === 1 ? ['<mml:math><mml:mfrac><mml:mi>C</mml:mi><mml:mi>M</mml:mi></mml:mfrac></mml:math>'] : [],
      article_mathml: [],
      figure_role: 'figure',
    };
  }
  const rows = Array.from({ length: 5 }, (_, i) => row(i, Buffer.alloc(100 + i, i + 1)));
  const withoutImage = (r: SampleRow): SampleRow => {
    const { image: _image, ...rest } = r;
    return rest;
  };

  it('round-trips rows without image bytes and rewrites byte-identically', async () => {
    const a = await writeSamplesParquet(path.join(tmp, 'pq', 'a.parquet'), rows, { rowGroupSize: 2 });
    const b = await writeSamplesParquet(path.join(tmp, 'pq', 'b.parquet'), rows, { rowGroupSize: 2 });
    assert.equal(a.rows, 5);
    assert.equal(a.bytes, fs.statSync(a.path).size);
    assert.equal(a.sha256, sha256(fs.readFileSync(a.path)));
    assert.equal(a.sha256, b.sha256);
    assert.ok(fs.readFileSync(a.path).equals(fs.readFileSync(b.path)));
    assert.deepEqual(await readSamplesParquet(a.path), rows.map(withoutImage));
    assert.deepEqual(fs.readdirSync(path.join(tmp, 'pq')).sort(), ['a.parquet', 'b.parquet']);
  });

  it('round-trips image bytes (null where a row has none)', async () => {
    const input = [...rows.slice(0, 4), withoutImage(rows[4])];
    const a = await writeSamplesParquet(path.join(tmp, 'pq', 'img.parquet'), input, { includeImageBytes: true });
    const back = await readSamplesParquet(a.path);
    assert.deepEqual(back, input);
    assert.ok(back[0].image?.equals(rows[0].image!));
    const again = await writeSamplesParquet(path.join(tmp, 'pq', 'img2.parquet'), input, { includeImageBytes: true });
    assert.equal(again.sha256, a.sha256);
    assert.ok(a.bytes > (await writeSamplesParquet(path.join(tmp, 'pq', 'noimg.parquet'), input)).bytes);
  });

  it('uses the fixed physical layout: INT64, repeated/optional UTF8, optional BYTE_ARRAY, SNAPPY, row groups', async () => {
    const a = await writeSamplesParquet(path.join(tmp, 'pq', 'layout.parquet'), rows, {
      includeImageBytes: true,
      rowGroupSize: 2,
    });
    const bytes = fs.readFileSync(a.path);
    assert.equal(bytes.subarray(0, 4).toString(), 'PAR1');
    assert.equal(bytes.subarray(-4).toString(), 'PAR1');
    const reader = await ParquetReader.openFile(a.path);
    try {
      const f = reader.schema.fields;
      const shape = (n: string) => [f[n].primitiveType, f[n].originalType ?? null, f[n].repetitionType];
      assert.deepEqual(shape('key'), ['BYTE_ARRAY', 'UTF8', 'REQUIRED']);
      assert.deepEqual(shape('image_width'), ['INT64', null, 'REQUIRED']);
      assert.deepEqual(shape('image_primary_label'), ['BYTE_ARRAY', 'UTF8', 'REPEATED']);
      assert.deepEqual(shape('article_pmid'), ['BYTE_ARRAY', 'UTF8', 'OPTIONAL']);
      assert.deepEqual(shape('image'), ['BYTE_ARRAY', null, 'OPTIONAL']);
      assert.deepEqual(shape('image_size'), ['INT64', null, 'REPEATED']);
      assert.deepEqual(
        [f.image_set.repetitionType, f.image_set.isNested, Object.keys(f.image_set.fields!)],
        ['REPEATED', true, ['image_id', 'image_file_name', 'image_path', 'caption', 'hash']],
      );
      assert.deepEqual(
        [f.image_context.repetitionType, Object.keys(f.image_context.fields!)],
        ['REPEATED', ['image_id', 'paragraphs']],
      );
      assert.deepEqual(shape('article_text'), ['BYTE_ARRAY', 'UTF8', 'REQUIRED']);
      const top = reader.schema.fieldList.filter((x) => x.path.length === 1).map((x) => x.name);
      assert.deepEqual(top.slice(0, 10), [
        'key',
        'shard',
        'subset',
        'caption',
        'image_width',
        'image_height',
        'image_bytes_size',
        'image_sha256',
        'image',
        'image_file_name',
      ]);
      assert.deepEqual(top.slice(9, 34), [...PUBLISHED_KEYS], 'every published json key, in the published order');
      assert.deepEqual(top.slice(34, 36), ['article_pmid', 'article_doi']);
      // Article metadata beyond the json: struct lists and PubMed's dates, never json keys.
      assert.deepEqual(top.slice(36), [
        'article_authors',
        'article_chemicals',
        'article_pubmed_article_date',
        'article_pubmed_history',
        // the raw MathML of the caption and the article (issue 15, text)
        'caption_mathml',
        'article_mathml',
        // 'figure' or 'graphical-abstract' (published only when the release asks for them)
        'figure_role',
      ]);
      assert.deepEqual(
        [f.article_authors.repetitionType, Object.keys(f.article_authors.fields!)],
        ['REPEATED', ['name', 'surname', 'given_names', 'group', 'orcid', 'corresponding', 'affiliations', 'source']],
      );
      const authorField = (n: string) => f.article_authors.fields![n]!;
      assert.deepEqual(
        ['surname', 'group', 'affiliations'].map((n) => [authorField(n).primitiveType, authorField(n).repetitionType]),
        [
          ['BYTE_ARRAY', 'OPTIONAL'],
          ['BOOLEAN', 'REQUIRED'],
          ['BYTE_ARRAY', 'REPEATED'],
        ],
      );
      assert.deepEqual(Object.keys(f.article_chemicals.fields!), ['registry_number', 'name', 'ui']);
      assert.deepEqual(shape('article_pubmed_article_date'), ['BYTE_ARRAY', 'UTF8', 'OPTIONAL']);
      const groups = reader.metadata!.row_groups;
      assert.deepEqual(
        groups.map((g) => Number(g.num_rows)),
        [2, 2, 1],
      );
      const SNAPPY = 1; // parquet.thrift CompressionCodec
      assert.ok(groups.every((g) => g.columns.every((c) => c.meta_data!.codec === SNAPPY)));
    } finally {
      await reader.close();
    }
    const empty = await writeSamplesParquet(path.join(tmp, 'pq', 'empty.parquet'), []);
    assert.deepEqual([empty.rows, await readSamplesParquet(empty.path)], [0, []]);
  });

  it('rejects invalid rows and leaves no file, wherever the bad row comes', async () => {
    const dir = path.join(tmp, 'pq-bad');
    const bad = [{ ...rows[0], caption_json: 'x' } as unknown as SampleRow];
    await assert.rejects(writeSamplesParquet(path.join(dir, 'x.parquet'), bad), /row 0/);
    await assert.rejects(writeSamplesParquet(path.join(dir, 'y.parquet'), [{ ...rows[0], image_width: 1.5 }]), /row 0/);
    await assert.rejects(
      writeSamplesParquet(path.join(dir, 'z.parquet'), [{ ...rows[0], image_sha256: sha256(Buffer.from('other')) }], {
        includeImageBytes: true,
      }),
      /image_sha256/,
    );
    // Streamed: rows 0 and 1 (a whole row group) are already in the temporary file when row 2 is found bad.
    await assert.rejects(
      writeSamplesParquet(path.join(dir, 'w.parquet'), [rows[0], rows[1], { ...rows[2], image_height: -1 }], {
        rowGroupSize: 1,
      }),
      /row 2/,
    );
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('streams: rows from an async iterable, each row group written as it fills, the same bytes as from an array', async () => {
    const many = Array.from({ length: 25 }, (_, i) => ({ ...withoutImage(rows[i % 5]!), key: `k${i}` }));
    const dir = path.join(tmp, 'pq-stream');
    const file = path.join(dir, 'streamed.parquet');
    // What the temporary file holds each time the writer asks for its next row.
    const seen: number[] = [];
    async function* source(): AsyncGenerator<SampleRow> {
      for (const r of many) {
        const partial = fs.existsSync(dir)
          ? fs.readdirSync(dir).filter((f) => f.startsWith('streamed.parquet.partial-'))
          : [];
        seen.push(partial.length === 1 ? fs.statSync(path.join(dir, partial[0]!)).size : -1);
        yield r;
      }
    }
    const streamed = await writeSamplesParquet(file, source(), { rowGroupSize: 10 });
    const fromArray = await writeSamplesParquet(path.join(dir, 'array.parquet'), many, { rowGroupSize: 10 });
    assert.equal(streamed.sha256, fromArray.sha256);
    assert.equal(streamed.rows, 25);
    // At most the 4-byte magic until the first group is full; that group is on disk before row 11 (from 0) is asked
    // for (a row ends its group once the next row is seen), the second before row 21; the third is written by close().
    assert.ok(
      seen.slice(0, 11).every((n) => n >= 0 && n <= 4),
      `no row group on disk before the first is full: ${seen}`,
    );
    assert.ok(seen[11]! > 4, `first row group on disk before row 11: ${seen[11]}`);
    assert.equal(seen[20], seen[11], 'nothing more until the second group is full');
    assert.ok(seen[21]! > seen[20]!, 'second row group on disk before row 21');
    assert.equal(seen[24], seen[21]);
    const meta = JSON.parse(
      python(
        'import pyarrow.parquet as pq,sys,json; m=pq.ParquetFile(sys.argv[1]).metadata; print(json.dumps([m.num_row_groups, [m.row_group(i).num_rows for i in range(m.num_row_groups)], m.num_rows]))',
        [file],
      ),
    ) as [number, number[], number];
    assert.deepEqual(meta, [3, [10, 10, 5], 25]);
    assert.deepEqual(await readSamplesParquet(file), many);
  });

  it('is read by pyarrow as list<string> / int64 columns', async function () {
    const a = await writeSamplesParquet(path.join(tmp, 'pq', 'arrow.parquet'), rows, { includeImageBytes: true });
    const out = python(
      'import pyarrow.parquet as pq,sys,json; t=pq.read_table(sys.argv[1]); print(json.dumps({f.name: str(f.type) for f in t.schema}))',
      [a.path],
    );
    const types = JSON.parse(out) as Record<string, string>;
    assert.match(types.image_primary_label, /^list</);
    assert.equal(types.article_reference_count, 'int64');
    assert.equal(types.image, 'binary');
  });

  it('keeps the raw MathML of the caption and the article as list<string> columns beside the 25 json keys', async () => {
    const { path: a } = await writeSamplesParquet(path.join(tmp, 'pq', 'mathml.parquet'), rows, {
      includeImageBytes: false,
    });
    const out = python(
      'import pyarrow.parquet as pq,sys,json; t=pq.read_table(sys.argv[1], columns=["caption_mathml","article_mathml"]); print(json.dumps({"types": [str(f.type) for f in t.schema], "rows": t.to_pylist()}))',
      [a],
    );
    const { types, rows: read } = JSON.parse(out) as { types: string[]; rows: { caption_mathml: string[] }[] };
    assert.deepEqual(
      types,
      ['list<element: string not null>', 'list<element: string not null>'].map((t, i) =>
        t.replace('element', i ? 'article_mathml' : 'caption_mathml'),
      ),
    );
    assert.deepEqual(
      read.map((r) => r.caption_mathml),
      rows.map((r) => r.caption_mathml),
    );
    assert.equal(
      read[1]?.caption_mathml[0],
      '<mml:math><mml:mfrac><mml:mi>C</mml:mi><mml:mi>M</mml:mi></mml:mfrac></mml:math>',
    );
  });

  it('sizes row groups by rows and by bytes (images included)', async () => {
    assert.deepEqual(planRowGroups([10, 10, 10, 10, 10], 2, 1000), [2, 2, 1]);
    assert.deepEqual(planRowGroups([10, 10, 10, 10, 10], 1000, 25), [2, 2, 1]);
    assert.deepEqual(
      planRowGroups([50, 5, 5, 50], 1000, 20),
      [1, 2, 1],
      'a row bigger than the limit gets a group of its own',
    );
    assert.deepEqual(planRowGroups([], 10, 10), []);
    const big = rows.map((r, i) => {
      const image = Buffer.alloc(40_000 + i, i + 1);
      return { ...r, image, image_bytes_size: image.length, image_sha256: sha256(image) };
    });
    const a = await writeSamplesParquet(path.join(tmp, 'pq', 'groups.parquet'), big, {
      includeImageBytes: true,
      rowGroupBytes: 100_000,
    });
    const reader = await ParquetReader.openFile(a.path);
    try {
      assert.deepEqual(
        reader.metadata!.row_groups.map((g) => Number(g.num_rows)),
        [2, 2, 1],
      );
    } finally {
      await reader.close();
    }
    assert.deepEqual(await readSamplesParquet(a.path), big);
  });

  it('holds every published json key: publishedJsonOf gives the json back', () => {
    const r = rows[3]!;
    const doc = publishedJsonOf(r);
    assert.deepEqual(Object.keys(doc), [...PUBLISHED_KEYS]);
    assert.deepEqual(doc.image_context, { gr3_lrg: ['As Fig 1 shows “x”.', 'Again.'], 7: ['p'] });
    assert.equal(doc.image_size, r.image_size);
    assert.equal(pyJsonDumps(doc).includes('"image_set": [{"image_id": "gr3_lrg"'), true);
  });

  it('is read by pyarrow with image_set and image_context as list<struct>', async () => {
    const a = await writeSamplesParquet(path.join(tmp, 'pq', 'nested.parquet'), rows);
    const out = JSON.parse(
      python(
        'import pyarrow.parquet as pq,sys,json; t=pq.read_table(sys.argv[1]); print(json.dumps({"types": {f.name: str(f.type) for f in t.schema}, "rows": t.to_pylist()}))',
        [a.path],
      ),
    ) as { types: Record<string, string>; rows: Record<string, unknown>[] };
    assert.match(
      out.types.image_set!,
      /^list<image_set: struct<image_id: string not null, image_file_name: string not null, image_path: string not null, caption: string not null, hash: string> not null>$/,
    );
    assert.match(
      out.types.image_context!,
      /^list<image_context: struct<image_id: string not null, paragraphs: list<paragraphs: string not null> not null> not null>$/,
    );
    assert.equal(out.types.image_size, 'list<image_size: int64 not null>');
    assert.equal(out.types.article_text, 'string');
    rows.forEach((r, i) => {
      const py = out.rows[i]!;
      for (const k of PUBLISHED_KEYS) assert.deepEqual(py[k], r[k], `row ${i} ${k}`);
    });
  });
});

import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DefaultLogger, Worker } from '@temporalio/worker';
import { MockActivityEnvironment, TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { exportSubset as exportSubsetActivity } from '../activities/export/activity';
import {
  exportSubset,
  ExportConfigError,
  resolveExportTarget,
  type ExportInput,
  type ExportProgress,
  type ExportResult,
} from '../activities/export/export';
import { compileFilter, yearOfArticleDate, type ExportFilterArgs } from '../activities/export/filter';
import { emptyParquetOnlyColumns, readSamplesParquet, type SampleRow } from '../activities/parquet/writer';
import { publishedArticleDate } from '../activities/shard/sample-json';
import { readTarEntries } from '../activities/shard/tar-reader';
import { parseExportArgs, runExport, startOrAttachExport } from '../cli/export';
import { temporalCliPath } from '../config/dev-server';
import { TASK_QUEUES } from '../config/task-queues';
import { testPython } from '../config/paths';
import { installQuietRuntime } from './support/runtime';
import { writeSyntheticRelease, type SyntheticSample } from './support/synthetic-release';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function python(script: string, args: string[] = []): string {
  const r = spawnSync(testPython(), ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${testPython()} failed: ${r.stderr}`);
  return r.stdout;
}

/** Every member of a tar with its raw 512-byte header block. */
async function members(file: string): Promise<{ name: string; header: Buffer; data: Buffer }[]> {
  const bytes = fs.readFileSync(file);
  const out: { name: string; header: Buffer; data: Buffer }[] = [];
  for await (const e of readTarEntries(file))
    out.push({ name: e.name, header: bytes.subarray(e.offset - 512, e.offset), data: await e.read() });
  return out;
}

function row(over: Partial<SampleRow>): SampleRow {
  return {
    key: 'PMC1_1_0',
    shard: 'commercial/000000.tar',
    subset: 'commercial',
    caption: 'Confocal image of HeLa cells (Fig. 2B)',
    image_width: 100,
    image_height: 80,
    image_bytes_size: 10,
    image_sha256: 'a'.repeat(64),
    image_file_name: 'f.jpg',
    image_cluster_id: 'f',
    image_hash: 'a'.repeat(64),
    image_label_id: '17',
    image_panel_type: 'single',
    image_panel_subtype: '',
    image_primary_label: ['Microscopy'],
    image_secondary_label: ['confocal'],
    image_size: [100, 80],
    image_set: [],
    image_context: [],
    article_accession_id: 'PMC1',
    article_title: 't',
    article_journal: 'PLoS One',
    article_date: publishedArticleDate('2020-01-01'),
    article_abstract: '',
    article_mesh_terms: [],
    article_keywords: ['HeLa', 'Confocal'],
    article_reference_ids: [],
    article_reference_count: 0,
    article_reference_list: [],
    article_subject: [],
    article_citation: '',
    article_license: 'CC BY',
    article_text: '',
    article_pmid: null,
    article_doi: null,
    ...emptyParquetOnlyColumns(),
    ...over,
  };
}

describe('export filter', () => {
  const cases: [ExportFilterArgs, Partial<SampleRow>, boolean][] = [
    [{}, {}, true],
    [{ subsets: ['commercial'] }, {}, true],
    [{ subsets: ['noncommercial', 'other'] }, {}, false],
    [{ licenses: ['cc by'] }, {}, true],
    [{ licenses: ['CC BY-NC'] }, {}, false],
    [{ primaryLabels: ['microscopy '] }, {}, true],
    [{ primaryLabels: ['Micro'] }, {}, false],
    [{ primaryLabels: ['Plots and Charts', 'Microscopy'] }, {}, true],
    [{ secondaryLabels: ['CONFOCAL'] }, {}, true],
    [{ labelIds: [17] }, {}, true],
    [{ labelIds: ['3', '170'] }, {}, false],
    [{ journals: ['plos one'] }, {}, true],
    [{ journals: ['PLoS'] }, {}, false],
    [{ years: { from: 2020, to: 2020 } }, {}, true],
    [{ years: { from: 2021 } }, {}, false],
    [{ years: { to: 2019 } }, { article_date: publishedArticleDate('2019-12-31') }, true],
    [{ years: { from: 2000 } }, { article_date: '' }, false],
    [{ keywords: ['hela'] }, {}, true],
    [{ keywords: ['mice'] }, {}, false],
    [{ captionContains: ['hela', 'CONFOCAL'] }, {}, true],
    [{ captionContains: ['hela', 'mouse'] }, {}, false],
    [{ captionRegex: { source: 'Fig\\. \\d+[A-Z]' } }, {}, true],
    [{ captionRegex: { source: 'fig\\. \\d' } }, {}, false],
    [{ captionRegex: { source: 'fig\\. \\d', flags: 'i' } }, {}, true],
    [{ subsets: ['commercial'], primaryLabels: ['Microscopy'], years: { from: 2020 }, journals: ['eLife'] }, {}, false],
    [
      {
        subsets: ['commercial'],
        primaryLabels: ['Microscopy'],
        years: { from: 2020 },
        journals: ['eLife', 'PLoS One'],
      },
      {},
      true,
    ],
  ];
  cases.forEach(([filter, over, want], i) => {
    it(`case ${i}: ${JSON.stringify(filter)} -> ${want}`, () => assert.equal(compileFilter(filter)(row(over)), want));
  });

  it('reads the year in Los Angeles time, as article_date is written', () => {
    assert.equal(yearOfArticleDate(publishedArticleDate('2020-01-01')), 2020);
    assert.equal(yearOfArticleDate(publishedArticleDate('2019-12-31')), 2019);
    assert.equal(yearOfArticleDate(''), null);
    assert.equal(yearOfArticleDate('None'), null);
  });

  it('refuses invalid filters', () => {
    assert.throws(() => compileFilter({ captionRegex: { source: '(' } }), /invalid regular expression/);
    assert.throws(() => compileFilter({ captionRegex: { source: 'x', flags: 'g' } }), /flags/);
    assert.throws(() => compileFilter({ subsets: ['public'] } as unknown as ExportFilterArgs));
    assert.throws(() => compileFilter({ label: ['x'] } as unknown as ExportFilterArgs), /label/);
    assert.throws(() => compileFilter({ years: { from: 2021, to: 2020 } }), /after/);
    assert.throws(() => compileFilter({ journals: [] }));
  });
});

describe('subset export', function () {
  this.timeout(60_000);
  let dataDir: string;
  let source: SyntheticSample[][];
  const releaseId = 'synthetic-2026';
  const base = (over: Partial<ExportInput>): ExportInput => ({
    dataDir,
    releaseId,
    target: 'exports/x',
    filter: {},
    ...over,
  });

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'export-test-'));
    source = await writeSyntheticRelease(dataDir, releaseId, { commercial: [7, 6], noncommercial: [5], other: [4] });
  });
  after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it('refuses targets outside the data dir, the data dir itself and its release folders', async () => {
    for (const t of [
      '../outside',
      '/tmp/elsewhere',
      '.',
      '',
      'releases/synthetic-2026/x',
      'releases',
      'models/m',
      'temporal',
    ]) {
      await assert.rejects(resolveExportTarget(dataDir, t), ExportConfigError, t);
    }
    fs.mkdirSync(path.join(dataDir, 'links'));
    fs.symlinkSync(os.tmpdir(), path.join(dataDir, 'links', 'out'));
    await assert.rejects(resolveExportTarget(dataDir, 'links/out/x'), /outside the data dir/);
    assert.equal(
      await resolveExportTarget(dataDir, path.join(dataDir, 'exports', 'a')),
      path.join(dataDir, 'exports', 'a'),
    );
    await assert.rejects(exportSubset(base({ target: '../x' })), ExportConfigError);
    await assert.rejects(exportSubset(base({ releaseId: 'missing' })), /no finished release/);
    await assert.rejects(exportSubset(base({ filter: { captionRegex: { source: '[' } } })), /invalid export filter/);
    assert.ok(!fs.existsSync(path.join(dataDir, 'exports')), 'nothing written for a refused export');
  });

  it('writes only the matching samples, members copied byte for byte, in release order, with sizes.json and parquet', async () => {
    const filter: ExportFilterArgs = { primaryLabels: ['Microscopy'], years: { from: 2019 } };
    const res = await exportSubset(base({ target: 'exports/micro', filter }));
    const predicate = compileFilter(filter);
    const want = new Map<string, string[]>();
    for (const s of source.flat())
      if (predicate(s.row)) want.set(s.row.subset, [...(want.get(s.row.subset) ?? []), s.row.key]);
    assert.ok(
      [...want.values()].flat().length > 3 && [...want.values()].flat().length < source.flat().length,
      'the filter selects some, not all',
    );
    assert.equal(res.samples, [...want.values()].flat().length);
    assert.equal(res.scanned.rows, source.flat().length);
    assert.equal(res.reused, false);
    const out = path.join(dataDir, 'exports', 'micro');
    assert.equal(res.target, out);

    // Source members by name, with their raw header blocks.
    const src = new Map<string, { header: Buffer; data: Buffer }>();
    for (const f of fs
      .readdirSync(path.join(dataDir, 'releases', releaseId, 'webdataset'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.tar'))) {
      for (const m of await members(path.join(dataDir, 'releases', releaseId, 'webdataset', f))) src.set(m.name, m);
    }
    for (const [subset, keys] of want) {
      const dir = path.join(out, 'webdataset', subset);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['000000.tar', 'index.json', 'sizes.json']);
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'sizes.json'), 'utf8')), {
        '000000.tar': keys.length,
      });
      const got = await members(path.join(dir, '000000.tar'));
      assert.deepEqual(
        got.map((m) => m.name),
        keys.flatMap((k) => ['jpg', 'json', 'txt'].map((e) => `${k}.${e}`)),
      );
      for (const m of got) {
        assert.ok(m.data.equals(src.get(m.name)!.data), `${m.name} data`);
        assert.ok(m.header.equals(src.get(m.name)!.header), `${m.name} header`);
      }
      const rows = await readSamplesParquet(path.join(out, 'parquet', subset, '000000.parquet'));
      assert.deepEqual(
        rows.map((r) => r.key),
        keys,
      );
      assert.ok(rows.every((r) => r.shard === `${subset}/000000.tar`));
      const byKey = new Map(source.flat().map((s) => [s.row.key, s.row]));
      for (const r of rows) assert.deepEqual({ ...r, shard: '' }, { ...byKey.get(r.key)!, shard: '' });
    }
    for (const subset of ['commercial', 'noncommercial', 'other']) {
      if (!want.has(subset)) assert.ok(!fs.existsSync(path.join(out, 'webdataset', subset)));
    }
    const record = JSON.parse(fs.readFileSync(path.join(out, 'export.json'), 'utf8'));
    assert.equal(record.result.samples, res.samples);
    assert.deepEqual(fs.readdirSync(path.dirname(out)), ['micro'], 'no partial folder left');

    // Python's webdataset reads the export.
    const tars = [...want.keys()].map((s) => path.join(out, 'webdataset', s, '000000.tar'));
    const n = python(
      'import sys, webdataset as wds\nprint(sum(1 for s in wds.WebDataset(sys.argv[1:], shardshuffle=False, empty_check=False).decode("pil") if s["jpg"].size and s["json"]["image_primary_label"]))',
      tars,
    );
    assert.equal(Number(n.trim()), res.samples);
  });

  it('rolls over to a new shard at the sample and byte limits, numbering contiguously', async () => {
    const res = await exportSubset(
      base({
        target: 'exports/small',
        filter: { subsets: ['commercial'] },
        maxSamplesPerShard: 4,
        maxBytesPerShard: 250_000,
      }),
    );
    assert.equal(res.samples, 13);
    const dir = path.join(dataDir, 'exports', 'small', 'webdataset', 'commercial');
    const sizes = JSON.parse(fs.readFileSync(path.join(dir, 'sizes.json'), 'utf8')) as Record<string, number>;
    const names = Object.keys(sizes);
    assert.deepEqual(
      names,
      names.map((_, i) => `${String(i).padStart(6, '0')}.tar`),
    );
    assert.ok(
      names.slice(0, -1).some((n) => sizes[n]! < 4),
      `the byte limit closed a shard early: ${JSON.stringify(sizes)}`,
    );
    assert.equal(
      Object.values(sizes).reduce((a, b) => a + b, 0),
      13,
    );
    for (const name of names) {
      assert.ok(sizes[name]! <= 4);
      const bytes = fs.statSync(path.join(dir, name)).size;
      assert.ok(bytes <= 250_000, `${name}: ${bytes} bytes`);
    }
    // A sample bigger than the byte limit on its own is refused rather than written into an oversize shard.
    await assert.rejects(
      exportSubset(base({ target: 'exports/tiny', maxBytesPerShard: 10_240 })),
      /over the limit of 10240 bytes/,
    );
    assert.ok(!fs.existsSync(path.join(dataDir, 'exports', 'tiny')));
  });

  it('is deterministic, returns an intact earlier export as is, and replaces one only with overwrite', async () => {
    const filter: ExportFilterArgs = { journals: ['eLife', 'PLoS One'] };
    const a = await exportSubset(base({ target: 'exports/det-a', filter }));
    const b = await exportSubset(base({ target: 'exports/det-b', filter }));
    const digest = (t: string) =>
      fs
        .readdirSync(t, { recursive: true })
        .map(String)
        .filter((f) => /\.(tar|parquet|json)$/.test(f))
        .sort()
        .map((f) => [f, sha256(fs.readFileSync(path.join(t, f)))]);
    assert.deepEqual(digest(a.target), digest(b.target));
    const mtime = fs.statSync(path.join(a.target, 'export.json')).mtimeMs;
    // What an overwrite killed after its swap leaves beside the target goes when the intact export is found again.
    fs.mkdirSync(path.join(dataDir, 'exports', 'det-a.partial-old-4242-abc123', 'webdataset'), { recursive: true });
    const again = await exportSubset(base({ target: 'exports/det-a', filter }));
    assert.equal(again.reused, true);
    assert.deepEqual(
      fs.readdirSync(path.join(dataDir, 'exports')).filter((f) => f.startsWith('det-a')),
      ['det-a'],
    );
    assert.equal(again.samples, a.samples);
    assert.equal(fs.statSync(path.join(a.target, 'export.json')).mtimeMs, mtime);
    await assert.rejects(
      exportSubset(base({ target: 'exports/det-a', filter: { journals: ['eLife'] } })),
      /pass overwrite/,
    );
    const replaced = await exportSubset(
      base({ target: 'exports/det-a', filter: { journals: ['eLife'] }, overwrite: true }),
    );
    assert.ok(replaced.samples < a.samples);
    assert.deepEqual(
      fs.readdirSync(path.join(dataDir, 'exports')).filter((f) => f.startsWith('det-a')),
      ['det-a'],
    );
    // A folder that is not an export is never replaced.
    fs.mkdirSync(path.join(dataDir, 'exports', 'mine'));
    fs.writeFileSync(path.join(dataDir, 'exports', 'mine', 'notes.txt'), 'keep');
    await assert.rejects(exportSubset(base({ target: 'exports/mine', overwrite: true })), /not an export folder/);
    assert.equal(fs.readFileSync(path.join(dataDir, 'exports', 'mine', 'notes.txt'), 'utf8'), 'keep');
  });

  it('the CLI parses filters and runs a local export', async () => {
    const p = parseExportArgs([
      '--to',
      'exports/cli',
      '--release',
      releaseId,
      '--data-dir',
      dataDir,
      '--subset',
      'commercial,other',
      '--label',
      'Microscopy',
      '--label-id=0,3',
      '--journal',
      'PLoS One',
      '--year',
      '2019-2021',
      '--keyword',
      'HeLa',
      '--caption',
      'confocal',
      '--caption-regex',
      '/hela/i',
      '--max-samples',
      '100',
      '--local',
    ]);
    assert.deepEqual(p.input, {
      dataDir,
      releaseId,
      target: 'exports/cli',
      maxSamplesPerShard: 100,
      filter: {
        subsets: ['commercial', 'other'],
        primaryLabels: ['Microscopy'],
        labelIds: ['0', '3'],
        journals: ['PLoS One'],
        keywords: ['HeLa'],
        years: { from: 2019, to: 2021 },
        captionContains: ['confocal'],
        captionRegex: { source: 'hela', flags: 'i' },
      },
    });
    assert.equal(p.local, true);
    assert.deepEqual(parseExportArgs(['--to', 'x', '--year', '2020']).input.filter, {
      years: { from: 2020, to: 2020 },
    });
    assert.deepEqual(
      parseExportArgs(['--to', 'x', '--year', '-2020', '--filter', '{"licenses":["CC0"]}']).input.filter,
      { licenses: ['CC0'], years: { to: 2020 } },
    );
    for (const bad of [
      ['--year', '2020'],
      ['--to', 'x', '--year', '20'],
      ['--to', 'x', '--bogus', '1'],
      ['--to', 'x', '--caption-regex', '('],
      ['--to', 'x', '--subset', 'public'],
      ['--to', 'x', '--max-samples', '-1'],
    ]) {
      assert.throws(() => parseExportArgs(bad), ExportConfigError, bad.join(' '));
    }
    const log = console.log;
    const err = console.error;
    const out: string[] = [];
    console.log = (...a: unknown[]) => out.push(a.join(' '));
    console.error = (...a: unknown[]) => out.push(a.join(' '));
    try {
      assert.equal(
        await runExport([
          '--local',
          '--data-dir',
          dataDir,
          '--release',
          releaseId,
          '--to',
          'exports/cli',
          '--label',
          'Microscopy',
          '--year',
          '2018-2019',
        ]),
        0,
      );
      assert.equal(
        await runExport(['--local', '--data-dir', dataDir, '--release', releaseId, '--to', '../outside']),
        2,
      );
    } finally {
      console.log = log;
      console.error = err;
    }
    assert.match(out.join('\n'), /samples of 22 .* exported to/);
    assert.match(out.join('\n'), /not inside the data dir/);
    const n = JSON.parse(fs.readFileSync(path.join(dataDir, 'exports', 'cli', 'export.json'), 'utf8')).result.samples;
    assert.equal(
      n,
      source
        .flat()
        .filter((s) => compileFilter({ primaryLabels: ['Microscopy'], years: { from: 2018, to: 2019 } })(s.row)).length,
    );
  });

  it('runs as exportSubsetWorkflow on a real dev server, a bad target failing without retries, one export per folder at a time', async function () {
    installQuietRuntime();
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCliPath() },
        log: { format: 'pretty', level: 'warn' },
      },
    });
    try {
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue: 'export-test',
        workflowsPath: require.resolve('../workflows/export'),
        activities: { exportSubset: exportSubsetActivity },
      });
      // The workflow sends its activity to the cpu queue, as the pools do.
      const cpuWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue: TASK_QUEUES.cpu,
        activities: { exportSubset: exportSubsetActivity },
      });
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      await Promise.all([
        worker
          .runUntil(async () => {
            const ok = await env.client.workflow.execute('exportSubsetWorkflow', {
              taskQueue: 'export-test',
              workflowId: 'export-ok',
              args: [base({ target: 'exports/wf', filter: { subsets: ['other'] } })],
            });
            assert.equal((ok as { samples: number }).samples, 4);
            assert.ok(fs.existsSync(path.join(dataDir, 'exports', 'wf', 'webdataset', 'other', '000000.tar')));
            const handle = await env.client.workflow.start('exportSubsetWorkflow', {
              taskQueue: 'export-test',
              workflowId: 'export-bad',
              args: [base({ target: '../escape' })],
            });
            const err = await handle.result().then(
              () => null,
              (e: unknown) => e,
            );
            assert.ok(err instanceof WorkflowFailedError);
            const cause = (err.cause as { cause?: unknown }).cause;
            assert.ok(cause instanceof ApplicationFailure && cause.type === 'ExportConfigError', String(cause));
            const history = await handle.fetchHistory();
            const attempts = history
              .events!.filter((e) => e.activityTaskStartedEventAttributes)
              .map((e) => e.activityTaskStartedEventAttributes!.attempt);
            assert.deepEqual(attempts, [1], 'not retried');

            // One export into a folder at a time: no worker polls 'export-idle', so these stay running.
            const a = base({ target: 'exports/busy', filter: { subsets: ['other'] } });
            const first = await startOrAttachExport(env.client, a, 'export-idle');
            assert.equal(first.kind, 'started');
            assert.equal(
              (await startOrAttachExport(env.client, { ...a }, 'export-idle')).kind,
              'attached',
              'the same export is joined',
            );
            const other = await startOrAttachExport(
              env.client,
              base({ target: 'exports/./busy', filter: { subsets: ['commercial'] } }),
              'export-idle',
            );
            assert.equal(other.kind, 'busy', 'another filter into the same folder is refused while the first runs');
            assert.deepEqual(other.kind === 'busy' && other.running.filter, { subsets: ['other'] });
            const elsewhere = await startOrAttachExport(
              env.client,
              base({ target: 'exports/elsewhere', filter: { subsets: ['commercial'] } }),
              'export-idle',
            );
            assert.equal(elsewhere.kind, 'started', 'another folder is free');
            if (first.kind === 'started') await first.handle.terminate('test done');
            if (elsewhere.kind === 'started') await elsewhere.handle.terminate('test done');
            const again = await startOrAttachExport(
              env.client,
              base({ target: 'exports/busy', filter: { subsets: ['commercial'] } }),
              'export-idle',
            );
            assert.equal(again.kind, 'started', 'once the first has ended, the folder takes another export');
            if (again.kind === 'started') await again.handle.terminate('test done');
          })
          .finally(() => done()),
        cpuWorker.runUntil(finished),
      ]);
    } finally {
      await env.teardown();
    }
  });
});

/** Every file under dir (relative path -> sha256). */
function tree(dir: string): Record<string, string> {
  const files = fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile());
  return Object.fromEntries(
    files
      .map((d) => path.join(d.parentPath, d.name))
      .sort()
      .map((f) => [path.relative(dir, f), sha256(fs.readFileSync(f))]),
  );
}

/**
 * Runs the export activity in a child process (in a MockActivityEnvironment, as a worker would run it),
 * writing every heartbeat to a file, and SIGKILLs the process at the first heartbeat whose checkpoint has
 * reached the given subset and count of closed output shards: a worker killed mid-export.
 */
async function killedExport(
  input: ExportInput,
  stopAt: { subset: number; shards: number },
  heartbeatsFile: string,
): Promise<ExportProgress[]> {
  const script = `
    const fs = require('node:fs');
    const { MockActivityEnvironment } = require('@temporalio/testing');
    const { exportSubset } = require(${JSON.stringify(require.resolve('../activities/export/activity'))});
    const stopAt = ${JSON.stringify(stopAt)};
    const env = new MockActivityEnvironment({ attempt: 1 }, { logger: new (require('@temporalio/worker').DefaultLogger)('WARN') });
    env.on('heartbeat', (d) => {
      fs.appendFileSync(${JSON.stringify(heartbeatsFile)}, JSON.stringify(d) + '\\n');
      if (d.checkpoint.subset === stopAt.subset && d.checkpoint.shards === stopAt.shards) {
        fs.writeSync(1, 'stopped\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
      }
    });
    env.run(exportSubset, ${JSON.stringify(input)}).then(() => fs.writeSync(1, 'finished\\n'), (e) => { fs.writeSync(2, String(e)); process.exit(3); });`;
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', script], {
    cwd: path.resolve(__dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b));
  const exited = new Promise<number | string | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      stdout += b;
      if (stdout.includes('stopped')) resolve();
    });
    void exited.then((how) => reject(new Error(`export child exited (${how}) before the kill: ${stdout} ${stderr}`)));
  });
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  return fs
    .readFileSync(heartbeatsFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ExportProgress);
}

describe('resumable subset export', function () {
  this.timeout(120_000);
  let dataDir: string;
  const releaseId = 'resume-2026';
  // Two journals of three: 3 or 4 selected samples per source shard, output shards of 3, so most output shards
  // begin in the middle of a source shard and span two of them.
  const input = (target: string, over: Partial<ExportInput> = {}): ExportInput => ({
    dataDir,
    releaseId,
    target,
    filter: { journals: ['PLoS One', 'eLife'] },
    maxSamplesPerShard: 3,
    ...over,
  });
  const sourceShards = [
    'commercial/000000',
    'commercial/000001',
    'commercial/000002',
    'commercial/000003',
    'noncommercial/000000',
    'noncommercial/000001',
    'other/000000',
  ];
  const releaseFile = (kind: 'webdataset' | 'parquet', shard: string) =>
    path.join(dataDir, 'releases', releaseId, kind, `${shard}.${kind === 'webdataset' ? 'tar' : 'parquet'}`);
  /** Moves source shards out of reach (and back): an export that read them would fail. */
  const hide = (shards: string[], hidden: boolean) => {
    for (const s of shards)
      for (const kind of ['webdataset', 'parquet'] as const) {
        const f = releaseFile(kind, s);
        if (hidden) fs.renameSync(f, `${f}.away`);
        else fs.renameSync(`${f}.away`, f);
      }
  };
  let clean: { result: unknown; files: Record<string, string> };
  const quiet = new DefaultLogger('ERROR');

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'export-resume-test-'));
    await writeSyntheticRelease(dataDir, releaseId, { commercial: [5, 5, 5, 5], noncommercial: [5, 4], other: [3] });
    const res = await exportSubset(input('exports/clean'));
    assert.deepEqual(res.subsets, {
      commercial: { shards: 5, samples: 14, bytes: res.subsets.commercial!.bytes },
      noncommercial: { shards: 2, samples: 6, bytes: res.subsets.noncommercial!.bytes },
      other: { shards: 1, samples: 2, bytes: res.subsets.other!.bytes },
    });
    clean = { result: { ...res, target: '' }, files: tree(res.target) };
  });
  after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  /** Runs the activity as attempt 2 with the given heartbeat details; returns the result and its heartbeats. */
  async function retry(
    target: string,
    details: ExportProgress | undefined,
  ): Promise<{ result: ExportResult; heartbeats: ExportProgress[] }> {
    const env = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: details }, { logger: quiet });
    const heartbeats: ExportProgress[] = [];
    env.on('heartbeat', (d: ExportProgress) => heartbeats.push(structuredClone(d)));
    const result: ExportResult = await env.run(exportSubsetActivity, input(target));
    return { result, heartbeats };
  }

  /** The target and anything named after it beside it (partial folders). */
  const besideTarget = (target: string): string[] =>
    fs
      .readdirSync(path.join(dataDir, 'exports'))
      .filter((f) => f === path.basename(target) || f.startsWith(`${path.basename(target)}.`));

  function assertSameAsClean(result: { target: string }, target: string): void {
    assert.deepEqual({ ...result, target: '' }, clean.result);
    assert.deepEqual(
      tree(path.join(dataDir, target)),
      clean.files,
      'byte for byte the files of an uninterrupted export',
    );
    assert.deepEqual(besideTarget(target), [path.basename(target)], 'no partial folder left');
  }

  it('a worker killed mid-export: the retry continues from the last heartbeat, reads no finished source shard again and writes the same bytes', async () => {
    const hbFile = path.join(dataDir, 'heartbeats-a.ndjson');
    // Killed once the third output shard of commercial has begun (in the middle of source shard 000001).
    const heartbeats = await killedExport(input('exports/a'), { subset: 0, shards: 2 }, hbFile);
    const last = heartbeats.at(-1)!;
    assert.deepEqual(
      { ...last.checkpoint, spec: '' },
      {
        version: 1,
        spec: '',
        subset: 0,
        source: 1,
        skip: 2,
        shards: 2,
        scanned: { shards: 1, rows: 5 },
        samples: 0,
        subsets: {},
      },
    );
    const partial = path.join(dataDir, 'exports', 'a.partial-export');
    assert.ok(
      fs.existsSync(path.join(partial, 'webdataset', 'commercial', '000001.tar')),
      'closed output shards survive the kill',
    );
    assert.ok(!fs.existsSync(path.join(dataDir, 'exports', 'a')), 'no target before the export is complete');

    hide(['commercial/000000'], true);
    let resumed;
    try {
      resumed = await retry('exports/a', last);
    } finally {
      hide(['commercial/000000'], false);
    }
    assertSameAsClean(resumed.result, 'exports/a');
    // Source shard 000001 is read again (the open output shard began there, after two of its samples), 000000 is not.
    const read = [...new Set(resumed.heartbeats.map((h) => h.sourceShard.replace(/\.tar$/, '')))];
    assert.deepEqual(read, sourceShards.slice(1));
    assert.deepEqual(resumed.heartbeats[0]!.checkpoint, last.checkpoint, 'the two closed output shards are kept');
  });

  it('a retry whose last delivered heartbeat is older than the disk drops what came after it', async () => {
    const hbFile = path.join(dataDir, 'heartbeats-b.ndjson');
    // Killed in noncommercial; the heartbeats after commercial's fourth output shard closed never reached the server.
    const heartbeats = await killedExport(input('exports/b'), { subset: 1, shards: 1 }, hbFile);
    const delivered = heartbeats.find((h) => h.checkpoint.subset === 0 && h.checkpoint.shards === 3)!;
    assert.ok(delivered && heartbeats.indexOf(delivered) < heartbeats.length - 5);
    const partial = path.join(dataDir, 'exports', 'b.partial-export');
    assert.ok(
      fs.existsSync(path.join(partial, 'webdataset', 'commercial', 'index.json')) &&
        fs.existsSync(path.join(partial, 'webdataset', 'noncommercial', '000000.tar')),
    );
    // As a worker killed while writing a file through a temporary name would leave it.
    fs.writeFileSync(path.join(partial, 'webdataset', 'commercial', 'sizes.json.partial-4242-x1y2z3'), '{');

    const resumed = await retry('exports/b', delivered);
    assertSameAsClean(resumed.result, 'exports/b');
    const read = [...new Set(resumed.heartbeats.map((h) => h.sourceShard.replace(/\.tar$/, '')))];
    assert.deepEqual(read, sourceShards.slice(delivered.checkpoint.source));
  });

  it('a journal whose lines are not output shards 0, 1, 2... in order (another attempt wrote into it) is not resumed from: the export starts over', async () => {
    const hbFile = path.join(dataDir, 'heartbeats-z.ndjson');
    const heartbeats = await killedExport(input('exports/z'), { subset: 1, shards: 1 }, hbFile);
    const last = heartbeats.at(-1)!;
    const journal = path.join(dataDir, 'exports', 'z.partial-export', '.resume', 'commercial.ndjson');
    const lines = fs.readFileSync(journal, 'utf8').split('\n').filter(Boolean);
    assert.ok(lines.length >= 2, `${lines.length} journal lines`);
    // Every line still matches its files and the samples still add up, but shard 000001 is listed first.
    fs.writeFileSync(journal, [lines[1], lines[0], ...lines.slice(2)].join('\n') + '\n');
    const resumed = await retry('exports/z', last);
    assert.equal(
      new Set(resumed.heartbeats.map((h) => h.sourceShard)).size,
      sourceShards.length,
      'every source shard read again',
    );
    assertSameAsClean(resumed.result, 'exports/z');
  });

  it("a failed attempt keeps its partial folder for the retry; a cancelled one or a bad input leaves nothing, another export's checkpoint is not resumed", async () => {
    // Attempt 1 fails reading noncommercial (a source shard out of reach), after commercial is finished.
    const failedAttempt = async (target: string): Promise<ExportProgress> => {
      const env = new MockActivityEnvironment({ attempt: 1 }, { logger: quiet });
      let last: ExportProgress | undefined;
      env.on('heartbeat', (d: ExportProgress) => (last = structuredClone(d)));
      hide(['noncommercial/000001'], true);
      try {
        await assert.rejects(env.run(exportSubsetActivity, input(target)), /ENOENT/);
      } finally {
        hide(['noncommercial/000001'], false);
      }
      assert.ok(
        fs.existsSync(path.join(dataDir, `${target}.partial-export`, 'webdataset', 'commercial', 'index.json')),
        'the partial folder is kept',
      );
      assert.equal(last!.checkpoint.subset, 1);
      return last!;
    };
    const last = await failedAttempt('exports/c');
    hide(sourceShards.slice(0, 4), true);
    try {
      assertSameAsClean((await retry('exports/c', last)).result, 'exports/c');
    } finally {
      hide(sourceShards.slice(0, 4), false);
    }

    // The checkpoint of another export (another release, filter or limits) is not resumed: the export starts over.
    const stale = await failedAttempt('exports/d');
    const other = await retry('exports/d', { ...stale, checkpoint: { ...stale.checkpoint, spec: 'f'.repeat(64) } });
    assert.equal(new Set(other.heartbeats.map((h) => h.sourceShard)).size, sourceShards.length);
    assertSameAsClean(other.result, 'exports/d');

    // Cancelled (the workflow gave up on it): nothing is left behind.
    const cancelled = new MockActivityEnvironment({ attempt: 1 }, { logger: quiet });
    cancelled.on('heartbeat', (d: ExportProgress) => d.checkpoint.shards === 2 && cancelled.cancel());
    await assert.rejects(cancelled.run(exportSubsetActivity, input('exports/e')));
    assert.deepEqual(besideTarget('exports/e'), []);

    // A sample larger than a whole shard may hold: not retried, nothing left behind.
    const tooBig = new MockActivityEnvironment({ attempt: 1 }, { logger: quiet });
    await assert.rejects(
      tooBig.run(exportSubsetActivity, input('exports/f', { maxBytesPerShard: 10_240 })),
      (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable && err.type === 'ExportConfigError',
    );
    assert.deepEqual(besideTarget('exports/f'), []);
  });
});

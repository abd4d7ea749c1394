/**
 * A release resumed on a newer engine: a unit whose shard stage the older engine wrote has sample rows without the
 * newer columns. The parquet stage refuses them at once, without retries (a retry would meet the same rows), and
 * drops the shard stage's manifest, so that starting the release again runs the shard stage anew and then gives the
 * same parquet bytes as a unit the newer engine made from the start.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { writeParquet } from '../activities/parquet/activity';
import { writeShard } from '../activities/shard/activity';
import { buildReleaseInProcess, type InProcessRelease } from './support/in-process-release';

describe('a unit whose shard stage an older engine wrote', function () {
  this.timeout(180_000);
  let rel: InProcessRelease;
  before(async () => {
    rel = await buildReleaseInProcess({ releaseId: 'upgrade' });
  });
  after(() => rel?.cleanup());

  it('is refused by the parquet stage without retries, and redone from its shard stage when the release starts again', async () => {
    const unitFile = (unitId: string, ...p: string[]) => path.join(rel.root, 'units', unitId, ...p);
    const unit = rel.units.find((u) => fs.statSync(unitFile(u.task.unitId, 'samples.ndjson')).size > 0);
    assert.ok(unit, 'a unit with samples');
    const { task, pmidBatches } = unit;
    const rowsFile = unitFile(task.unitId, 'samples.ndjson');
    const shardManifest = unitFile(task.unitId, 'manifests', 'shard.json');
    const parquetManifest = unitFile(task.unitId, 'manifests', 'parquet.json');
    const made = JSON.parse(fs.readFileSync(parquetManifest, 'utf8')) as { result: { files: { sha256: string }[] } };
    const want = made.result.files.map((f) => f.sha256);

    stripNewerColumns(rowsFile);
    fs.rmSync(parquetManifest);

    await assert.rejects(
      writeParquet(task),
      (e: unknown) =>
        e instanceof ApplicationFailure &&
        e.type === 'SamplesOutdated' &&
        e.nonRetryable === true &&
        /older engine's shard stage \(its rows lack article_authors, article_chemicals, caption_mathml, figure_role\)/.test(
          e.message,
        ) &&
        /release -- start/.test(e.message),
    );
    assert.ok(!fs.existsSync(shardManifest), "the shard stage's manifest is gone, so the stage runs again");
    assert.ok(!fs.existsSync(parquetManifest), 'the parquet stage did not commit');

    // The release started again: the unit's shard stage runs anew, then its parquet stage.
    await writeShard(task, pmidBatches);
    const again = await writeParquet(task);
    assert.deepEqual(
      again.files.map((f) => f.sha256),
      want,
      'the same parquet bytes as when the newer engine made the unit',
    );
  });

  it("with a store, drops the store's shard manifest (the commit), and the redone stages commit there", async () => {
    // The release's tree in a folder store (keys: paths under the data dir), and a worker folder of its own.
    const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upgrade-store-'));
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upgrade-work-'));
    try {
      fs.cpSync(rel.dataDir, storeDir, { recursive: true });
      const unit = rel.units.find(
        (u) => fs.statSync(path.join(rel.root, 'units', u.task.unitId, 'samples.ndjson')).size > 0,
      )!;
      const inStore = (...p: string[]) =>
        path.join(storeDir, path.relative(rel.dataDir, rel.root), 'units', unit.task.unitId, ...p);
      const want = (
        JSON.parse(fs.readFileSync(inStore('manifests', 'parquet.json'), 'utf8')) as {
          result: { files: { sha256: string }[] };
        }
      ).result.files.map((f) => f.sha256);
      stripNewerColumns(inStore('samples.ndjson'));
      fs.rmSync(inStore('manifests', 'parquet.json'));
      const task = { ...unit.task, release: { ...unit.task.release, dataDir: workDir, store: `file://${storeDir}` } };

      await assert.rejects(
        writeParquet(task),
        (e: unknown) => e instanceof ApplicationFailure && e.type === 'SamplesOutdated' && e.nonRetryable === true,
      );
      assert.ok(!fs.existsSync(inStore('manifests', 'shard.json')), "the store's shard manifest is gone");

      await writeShard(task, unit.pmidBatches);
      assert.ok(fs.existsSync(inStore('manifests', 'shard.json')), 'the redone shard stage committed to the store');
      const again = await writeParquet(task);
      assert.deepEqual(
        again.files.map((f) => f.sha256),
        want,
      );
      assert.ok(fs.existsSync(inStore('manifests', 'parquet.json')), 'and so did the parquet stage');
    } finally {
      fs.rmSync(storeDir, { recursive: true, force: true });
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  });
});

/** An older engine's rows: the same samples, without the columns added since. */
function stripNewerColumns(rowsFile: string): void {
  const old = fs
    .readFileSync(rowsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const row = JSON.parse(line) as Record<string, unknown>;
      for (const k of ['article_authors', 'article_chemicals', 'caption_mathml', 'figure_role']) delete row[k];
      return JSON.stringify(row) + '\n';
    });
  fs.writeFileSync(rowsFile, old.join(''));
}

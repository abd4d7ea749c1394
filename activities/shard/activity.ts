import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { ReleaseInput, Subset } from '../../config/release';
import type { FigureLabel } from '../annotate/activity';
import { parseTaxonomyModel, labelFor } from '../annotate/taxonomy';
import { ndjson, readJson, readNdjson, writeFileAtomic } from '../common/files';
import { shardName } from '../common/layout';
import { heartbeat, runUnitStage, type Staged, type UnitTask } from '../common/stage';
import { loadPubmedRecords } from '../enrich/activity';
import { stagedImagePath, type PreparedImage } from '../images/activity';
import { sampleRowOf, type SampleRow } from '../parquet/writer';
import type { ParsedArticleLine } from '../parse/activity';
import { pyJsonDumps } from './pyjson';
import { buildSampleJson } from './sample-json';
import { DEFAULT_SHARD_MAX_BYTES, DEFAULT_SHARD_MAX_SAMPLES, ShardLimitError, TarShardWriter, tarArchiveBytes, tarSampleBytes } from './tar-writer';

export interface ShardResult {
  subset: Subset;
  shard: string;
  samples: number;
  articles: number;
  bytes: number;
  sha256: string;
}

/**
 * The shard limits of a release: `shard.maxBytes` / `shard.maxSamples` when the release input carries them,
 * else about 1 GB and the published 10,000 samples.
 */
export function shardLimitsOf(release: ReleaseInput): { maxBytes: number; maxSamples: number } {
  const shard = (release as ReleaseInput & { shard?: { maxBytes?: number; maxSamples?: number } }).shard;
  return { maxBytes: shard?.maxBytes ?? DEFAULT_SHARD_MAX_BYTES, maxSamples: shard?.maxSamples ?? DEFAULT_SHARD_MAX_SAMPLES };
}

/**
 * A unit is exactly one shard (units are cut at plan time by article and image counts, and shard numbers are
 * unit numbers), so a unit whose samples do not fit the byte limit cannot be split here without renumbering
 * every later shard. It fails the unit, without retries, and says what to change.
 */
function shardTooLarge(task: UnitTask, limit: { kind: 'bytes' | 'samples'; max: number; wouldBe: number }): ApplicationFailure {
  const what = limit.kind === 'bytes' ? `${limit.wouldBe} bytes or more, over the shard limit of ${limit.max} bytes (shard.maxBytes)` : `${limit.wouldBe} samples or more, over the shard limit of ${limit.max} samples (shard.maxSamples)`;
  return ApplicationFailure.create({
    type: 'ShardTooLarge',
    nonRetryable: true,
    message:
      `unit ${task.unitId}: its shard would be ${what}. One unit is one shard, so lower units.maxImages ` +
      `(now ${task.release.units.maxImages}) or units.maxArticles (now ${task.release.units.maxArticles}) and plan the release again ` +
      `(a new release id): at about 1.1 MB per published sample, 1 GB shards need units.maxImages of about 800.`,
    details: [{ unitId: task.unitId, ...limit }],
  });
}

/** Writes the unit's WebDataset shard (jpg/json/txt per sample, fixed member metadata) and the rows parquet needs. */
export async function writeShard(task: UnitTask, pubmedBatches: number): Promise<Staged<ShardResult>> {
  return runUnitStage(task, 'shard', async ({ layout, unit }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const lines = await readNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'));
    const images = new Map((await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'))).map((i) => [i.key, i]));
    const labels = new Map((await readNdjson<FigureLabel>(path.join(unitDir, 'labels.ndjson'))).map((l) => [l.key, l]));
    const taxonomy = parseTaxonomyModel(await readJson(layout.resolveData(task.release.annotate.taxonomyPath)));
    const pubmed = await loadPubmedRecords(unitDir, pubmedBatches);
    const imageHashes = new Map([...images.values()].map((i) => [i.key, i.sha256]));

    const shard = `${unit.subset}/${shardName(unit.index)}.tar`;
    const shardPath = layout.shardFile(unit.subset, unit.index);
    const limits = shardLimitsOf(task.release);
    // Fail before writing anything when the staged images alone cannot fit (the writer checks the exact size).
    let samples = 0;
    let imageBytes = 0;
    for (const line of lines) {
      for (const figure of line.figures) {
        const image = images.get(figure.key);
        if (figure.rejected || !image || !labels.has(figure.key)) continue;
        samples++;
        imageBytes += tarSampleBytes([image.bytes]);
      }
    }
    if (samples > limits.maxSamples) throw shardTooLarge(task, { kind: 'samples', max: limits.maxSamples, wouldBe: samples });
    if (tarArchiveBytes(imageBytes) > limits.maxBytes) throw shardTooLarge(task, { kind: 'bytes', max: limits.maxBytes, wouldBe: tarArchiveBytes(imageBytes) });
    const writer = await TarShardWriter.create(shardPath, limits);
    const rows: SampleRow[] = [];
    const articles = new Set<string>();
    try {
      for (const line of lines) {
        const pmid = line.planned.pmid ?? line.record.pmid;
        const pm = pmid ? (pubmed.get(pmid) ?? null) : null;
        for (const figure of line.figures) {
          const image = images.get(figure.key);
          const label = labels.get(figure.key);
          if (figure.rejected || !image || !label) continue; // each of these was quarantined by its stage
          const clusterLabels = labelFor(taxonomy, label.clusterId);
          const json = buildSampleJson({ planned: line.planned, record: line.record, figures: line.figures, figure, image, imageHashes, label: { clusterId: label.clusterId, labels: clusterLabels }, pubmed: pm });
          const jpeg = await fs.readFile(stagedImagePath(unitDir, figure.key));
          await writer.addSample(figure.key, [
            { ext: 'jpg', data: jpeg },
            { ext: 'json', data: Buffer.from(pyJsonDumps(json), 'utf8') },
            { ext: 'txt', data: Buffer.from(figure.caption, 'utf8') },
          ]);
          articles.add(line.article);
          rows.push(sampleRowOf(json, {
            key: figure.key,
            shard,
            subset: unit.subset,
            caption: figure.caption,
            image_width: image.width,
            image_height: image.height,
            image_bytes_size: image.bytes,
            image_sha256: image.sha256,
            article_pmid: pmid ?? null,
            article_doi: line.planned.doi ?? line.record.doi ?? null,
          }));
          heartbeat({ samples: rows.length });
        }
      }
    } catch (err) {
      await writer.abort();
      if (err instanceof ShardLimitError) throw shardTooLarge(task, { kind: err.limit, max: err.max, wouldBe: err.wouldBe });
      throw err;
    }
    const closed = await writer.close();
    const rowsFile = path.join(unitDir, 'samples.ndjson');
    await writeFileAtomic(rowsFile, ndjson(rows));
    return {
      result: { subset: unit.subset, shard, samples: closed.samples, articles: articles.size, bytes: closed.bytes, sha256: closed.sha256 },
      outputs: [shardPath, rowsFile],
    };
  });
}

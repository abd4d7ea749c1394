import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { ReleaseInput, Subset } from '../../config/release';
import type { FigureLabel } from '../annotate/activity';
import { parseTaxonomyModel, labelFor } from '../annotate/taxonomy';
import { exists, iterateNdjson, NdjsonWriter, readJson, readNdjson } from '../common/files';
import { quarantine } from '../common/quarantine';
import { shardStem } from '../common/layout';
import { releaseDataFile } from '../common/sync';
import { cancellationSignal, heartbeat, runUnitStage, type Staged, type UnitTask } from '../common/stage';
import { readTaskFile } from '../common/threads';
import { loadPubmedRecords } from '../enrich/activity';
import { pubmedColumnsOf } from '../enrich/reconcile';
import { stagedImagePath, type PreparedImage } from '../images/activity';
import { sampleRowOf } from '../parquet/writer';
import type { ParsedArticleLine } from '../parse/activity';
import { pyJsonDumps } from './pyjson';
import type { PublishedSampleJson } from './sample-json';
import { buildSampleJson } from './sample-json';
import {
  DEFAULT_SHARD_MAX_BYTES,
  DEFAULT_SHARD_MAX_SAMPLES,
  ShardLimitError,
  TarShardWriter,
  tarArchiveBytes,
  tarSampleBytes,
} from './tar-writer';

/** One tar file of a unit's output. */
export interface ShardFile {
  /** `{subset}/NNNNNN.tar`, or `{subset}/NNNNNN_PPP.tar` for a unit's later parts. */
  shard: string;
  samples: number;
  articles: number;
  bytes: number;
  sha256: string;
}

export interface ShardResult {
  subset: Subset;
  /** Over all of the unit's shard files. */
  samples: number;
  articles: number;
  bytes: number;
  /** The unit's shard files in order: one, unless its samples pass shard.maxSamples or shard.maxBytes. */
  shards: ShardFile[];
}

/**
 * The shard limits of a release: `shard.maxBytes` / `shard.maxSamples` when the release input carries them,
 * else about 1 GB and the published 10,000 samples.
 */
export function shardLimitsOf(release: ReleaseInput): { maxBytes: number; maxSamples: number } {
  const shard = (release as ReleaseInput & { shard?: { maxBytes?: number; maxSamples?: number } }).shard;
  return {
    maxBytes: shard?.maxBytes ?? DEFAULT_SHARD_MAX_BYTES,
    maxSamples: shard?.maxSamples ?? DEFAULT_SHARD_MAX_SAMPLES,
  };
}

interface PendingSample {
  figure: ParsedArticleLine['figures'][number];
  image: PreparedImage;
  /** The json member, kept while the article's pending members stay under pendingJsonBytes; else rebuilt. */
  built: { json: PublishedSampleJson; jsonBytes: Buffer } | null;
}

/**
 * The most json bytes one article's samples keep between sizing them and writing them. Every sample's json holds
 * the article's text and its whole image_set, so an article of thousands of figures would hold gigabytes; past
 * this its samples' json is built again when written (the same bytes: it is a function of the inputs).
 */
export const PENDING_JSON_BYTES = 32 << 20;

/**
 * Writes the unit's WebDataset shard (jpg/json/txt per sample, fixed member metadata) and the rows parquet needs.
 *
 * A unit's samples go, article by article in plan order, into part 0 (`NNNNNN.tar`) and, when the next article
 * would take a part past shard.maxSamples or shard.maxBytes, into further parts (`NNNNNN_001.tar`...). An article
 * is never split across parts: one whose samples alone cannot fit a shard is quarantined (`too-large`, one record)
 * and the rest of the unit goes through. The same inputs give the same parts, byte for byte.
 */
export async function writeShard(
  task: UnitTask,
  pubmedBatches: number,
  /** Tests only: a smaller budget, to take the path that builds the json again. */
  pendingJsonBytes = PENDING_JSON_BYTES,
): Promise<Staged<ShardResult>> {
  return runUnitStage(task, 'shard', async ({ layout, unit, quarantine: q }) => {
    const unitDir = layout.unitDir(unit.unitId);
    const images = new Map(
      (await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'))).map((i) => [i.key, i]),
    );
    const labels = new Map((await readNdjson<FigureLabel>(path.join(unitDir, 'labels.ndjson'))).map((l) => [l.key, l]));
    const taxonomy = parseTaxonomyModel(
      await readJson(await releaseDataFile(task.release, task.release.annotate.taxonomyPath)),
    );
    const pubmed = await loadPubmedRecords(unitDir, pubmedBatches);
    const imageHashes = new Map([...images.values()].map((i) => [i.key, i.sha256]));
    const limits = shardLimitsOf(task.release);

    const parts: ShardFile[] = [];
    const outputs: string[] = [];
    // Memory stays bounded whatever the unit's size: articles are read one at a time, a sample's image when it is
    // written, and its row goes to samples.ndjson at once (docs/architecture.md, "Memory of the shard stage").
    const rowsFile = path.join(unitDir, 'samples.ndjson');
    const rows = await NdjsonWriter.create(rowsFile);
    let rowCount = 0;
    const allArticles = new Set<string>();
    let writer: TarShardWriter | null = null;
    let open = { shard: '', samples: 0, bytes: 0, articles: new Set<string>() };
    const openPart = async () => {
      const part = parts.length;
      writer = await TarShardWriter.create(layout.shardFile(unit.subset, unit.index, part), limits);
      open = { shard: `${unit.subset}/${shardStem(unit.index, part)}.tar`, samples: 0, bytes: 0, articles: new Set() };
    };
    const closePart = async () => {
      const closed = await writer!.close();
      writer = null;
      parts.push({
        shard: open.shard,
        samples: closed.samples,
        articles: open.articles.size,
        bytes: closed.bytes,
        sha256: closed.sha256,
      });
      outputs.push(closed.path);
    };
    const signal = cancellationSignal();
    try {
      for await (const line of iterateNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'))) {
        signal?.throwIfAborted();
        const pmid = line.planned.pmid ?? line.record.pmid;
        const pm = pmid ? (pubmed.get(pmid) ?? null) : null;
        const articleColumns = pubmedColumnsOf(line.record, pm);
        const candidates = line.figures.filter((f) => !f.rejected && images.has(f.key) && labels.has(f.key));
        if (candidates.length === 0) continue; // each figure left out was quarantined by its stage
        const tooLarge = (what: string) =>
          q.push(
            quarantine({
              article: line.article,
              stage: 'shard',
              reason: 'too-large',
              detail:
                `${what} as a shard of its own: over the shard limit of ` +
                `${limits.maxSamples} samples and ${limits.maxBytes} bytes (shard.maxSamples, shard.maxBytes); an article is never split across shards`,
            }),
          );
        if (candidates.length > limits.maxSamples) {
          tooLarge(`${candidates.length} samples`);
          continue;
        }
        // Sized one by one; the article's samples are held only while the article can still fit a shard.
        const sampleJson = (figure: (typeof candidates)[number], image: PreparedImage) => {
          const label = labels.get(figure.key)!;
          const json = buildSampleJson({
            planned: line.planned,
            record: line.record,
            figures: line.figures,
            figure,
            image,
            imageHashes,
            label: { clusterId: label.clusterId, labels: labelFor(taxonomy, label.clusterId) },
            pubmed: pm,
          });
          return { json, jsonBytes: Buffer.from(pyJsonDumps(json), 'utf8') };
        };
        const pending: PendingSample[] = [];
        let bytes = 0;
        let held = 0;
        for (const figure of candidates) {
          const image = images.get(figure.key)!;
          const built = sampleJson(figure, image);
          bytes += tarSampleBytes([image.bytes, built.jsonBytes.length, Buffer.byteLength(figure.caption, 'utf8')]);
          if (tarArchiveBytes(bytes) > limits.maxBytes) break;
          held += built.jsonBytes.length;
          pending.push({ figure, image, built: held <= pendingJsonBytes ? built : null });
        }
        if (tarArchiveBytes(bytes) > limits.maxBytes) {
          tooLarge(
            `${candidates.length} samples, ${pending.length < candidates.length - 1 ? 'at least ' : ''}${tarArchiveBytes(bytes)} bytes`,
          );
          continue;
        }
        if (
          writer &&
          (open.samples + pending.length > limits.maxSamples || tarArchiveBytes(open.bytes + bytes) > limits.maxBytes)
        )
          await closePart();
        if (!writer) await openPart();
        for (const p of pending) {
          const { json, jsonBytes } = p.built ?? sampleJson(p.figure, p.image);
          p.built = null;
          const jpeg = await readTaskFile(stagedImagePath(unitDir, p.figure.key));
          await writer!.addSample(p.figure.key, [
            { ext: 'jpg', data: jpeg },
            { ext: 'json', data: jsonBytes },
            { ext: 'txt', data: Buffer.from(p.figure.caption, 'utf8') },
          ]);
          await rows.write(
            sampleRowOf(json, {
              key: p.figure.key,
              shard: open.shard,
              subset: unit.subset,
              caption: p.figure.caption,
              image_width: p.image.width,
              image_height: p.image.height,
              image_bytes_size: p.image.bytes,
              image_sha256: p.image.sha256,
              article_pmid: pmid ?? null,
              article_doi: line.planned.doi ?? line.record.doi ?? null,
              ...articleColumns,
              // records written before MathML markup was kept have none
              caption_mathml: line.record.figures[p.figure.index]?.mathml ?? [],
              article_mathml: line.record.mathml ?? [],
              // records written before roles were kept had only figures
              figure_role: line.record.figures[p.figure.index]?.role ?? 'figure',
            }),
          );
          heartbeat({ samples: ++rowCount });
        }
        open.samples += pending.length;
        open.bytes += bytes;
        open.articles.add(line.article);
        allArticles.add(line.article);
      }
      // A unit without samples still writes its (empty) first shard, so shard numbers stay contiguous.
      if (!writer && parts.length === 0) await openPart();
      if (writer) await closePart();
      await rows.close();
    } catch (err) {
      await (writer as TarShardWriter | null)?.abort();
      await rows.abort();
      if (err instanceof ShardLimitError) {
        // Sizes are checked above with the writer's own arithmetic, so this is a bug, not the input's fault.
        throw ApplicationFailure.create({
          type: 'ShardLimit',
          nonRetryable: true,
          message: `unit ${task.unitId}: ${err.message}`,
        });
      }
      throw err;
    }
    // Parts an earlier attempt wrote beyond these (a release planned again with other limits) go.
    for (let part = parts.length; ; part++) {
      const stale = layout.shardFile(unit.subset, unit.index, part);
      if (!(await exists(stale))) break;
      await fs.rm(stale, { force: true });
    }
    const samples = parts.reduce((n, p) => n + p.samples, 0);
    const totalBytes = parts.reduce((n, p) => n + p.bytes, 0);
    return {
      result: { subset: unit.subset, samples, articles: allArticles.size, bytes: totalBytes, shards: parts },
      outputs: [...outputs, rowsFile],
    };
  });
}

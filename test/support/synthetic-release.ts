import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { sha256Hex, writeJsonAtomic } from '../../activities/common/files';
import { shardName } from '../../activities/common/layout';
import {
  emptyParquetOnlyColumns,
  writeSamplesParquet,
  publishedJsonOf,
  type SampleRow,
} from '../../activities/parquet/writer';
import type { ShardIndexEntry } from '../../activities/publish/finalize';
import { pyJsonDumps } from '../../activities/shard/pyjson';
import { publishedArticleDate } from '../../activities/shard/sample-json';
import { TarShardWriter } from '../../activities/shard/tar-writer';
import { fixturePaths } from '../../config/paths';
import type { Subset } from '../../config/release';

export interface SyntheticSample {
  row: SampleRow;
  jpg: Buffer;
}

const JOURNALS = ['PLoS One', 'eLife', 'Nat Commun'];
const LABELS: [string[], string[]][] = [
  [['Microscopy'], ['light microscopy']],
  [['Plots and Charts'], ['line chart']],
  [['Clinical Imaging'], ['x-ray', 'ct']],
  [['Microscopy', 'Illustrative Diagrams'], ['electron microscopy']],
];

/** A release folder written with the real writers from synthetic rows: shards, parquet, sizes.json, index.json. */
export async function writeSyntheticRelease(
  dataDir: string,
  releaseId: string,
  layout: Partial<Record<Subset, number[]>>,
): Promise<SyntheticSample[][]> {
  const root = path.join(dataDir, 'releases', releaseId);
  const realDir = path.join(fixturePaths.images(), 'PMC7159286');
  const real = fs
    .readdirSync(realDir)
    .filter((f) => f.endsWith('.jpg'))
    .sort()
    .map((f) => fs.readFileSync(path.join(realDir, f)));
  const shards: SyntheticSample[][] = [];
  let n = 0;
  for (const [subset, counts] of Object.entries(layout) as [Subset, number[]][]) {
    const index: ShardIndexEntry[] = [];
    const sizes: Record<string, number> = {};
    for (const [i, count] of counts.entries()) {
      const samples: SyntheticSample[] = [];
      for (let j = 0; j < count; j++, n++) {
        const jpg =
          n % 3 === 0
            ? real[n % real.length]!
            : await sharp({
                create: {
                  width: 40 + n,
                  height: 30 + (n % 7),
                  channels: 3,
                  background: { r: (n * 37) % 255, g: 90, b: 160 },
                },
              })
                .jpeg()
                .toBuffer();
        const { width = 0, height = 0 } = await sharp(jpg).metadata();
        const [primary, secondary] = LABELS[n % LABELS.length]!;
        const pmcid = `PMC${1000 + Math.floor(n / 2)}`;
        const row: SampleRow = {
          key: `${pmcid}_1_${n % 2}`,
          shard: `${subset}/${shardName(i)}.tar`,
          subset,
          caption: `Figure ${n}. ${n % 4 === 0 ? 'Confocal image of HeLa cells' : n % 4 === 1 ? 'Survival curve (Kaplan–Meier)' : 'Chest radiograph'} — é`,
          image_width: width,
          image_height: height,
          image_bytes_size: jpg.length,
          image_sha256: sha256Hex(jpg),
          image_file_name: `fig${n}.jpg`,
          image_cluster_id: `fig${n}`,
          image_hash: sha256Hex(jpg),
          image_label_id: String(n % LABELS.length),
          image_panel_type: 'single',
          image_panel_subtype: '',
          image_primary_label: primary,
          image_secondary_label: secondary,
          image_size: [width, height],
          image_set: [
            {
              image_id: `fig${n}`,
              image_file_name: `fig${n}.jpg`,
              image_path: `${pmcid}.1/fig${n}.jpg`,
              caption: `Figure ${n}.`,
              hash: sha256Hex(jpg),
            },
            {
              image_id: 'fig-x',
              image_file_name: 'fig-x.gif',
              image_path: `${pmcid}.1/fig-x.gif`,
              caption: '',
              hash: null,
            },
          ],
          image_context: n % 2 ? [] : [{ image_id: `fig${n}`, paragraphs: [`As Figure ${n} shows.`] }],
          article_accession_id: pmcid,
          article_title: `Article ${pmcid}`,
          article_journal: JOURNALS[n % JOURNALS.length]!,
          article_date: publishedArticleDate(`${2018 + (n % 4)}-0${1 + (n % 9)}-15`),
          article_abstract: 'Abstract.',
          article_mesh_terms: n % 2 ? ['Humans'] : [],
          article_keywords: n % 3 === 0 ? ['HeLa', 'confocal'] : ['survival'],
          article_reference_ids: ['123'],
          article_reference_count: 1,
          article_reference_list: [],
          article_subject: ['Research Article'],
          article_citation: `${JOURNALS[n % JOURNALS.length]}. 2020;1:e${n}.`,
          article_license: n % 2 ? 'CC BY' : 'CC0',
          article_text: `Body of ${pmcid}.`,
          article_pmid: n % 5 ? String(30000000 + n) : null,
          article_doi: null,
          ...emptyParquetOnlyColumns(),
          article_authors: [
            {
              name: `Author ${n}`,
              surname: `Surname${n}`,
              given_names: 'Author',
              group: false,
              orcid: null,
              corresponding: n % 2 === 0,
              affiliations: ['Institute of Tests, Testville'],
              source: 'jats',
            },
          ],
        };
        samples.push({ row, jpg });
      }
      const tarPath = path.join(root, 'webdataset', subset, `${shardName(i)}.tar`);
      const w = await TarShardWriter.create(tarPath);
      for (const s of samples) {
        await w.addSample(s.row.key, [
          { ext: 'jpg', data: s.jpg },
          { ext: 'json', data: Buffer.from(pyJsonDumps(publishedJsonOf(s.row)), 'utf8') },
          { ext: 'txt', data: Buffer.from(s.row.caption, 'utf8') },
        ]);
      }
      const closed = await w.close();
      const pq = await writeSamplesParquet(
        path.join(root, 'parquet', subset, `${shardName(i)}.parquet`),
        samples.map((s) => s.row),
      );
      index.push({
        shard: `${subset}/${shardName(i)}.tar`,
        unit: `${subset}-${shardName(i)}`,
        samples: closed.samples,
        articles: 0,
        bytes: closed.bytes,
        sha256: closed.sha256,
        parquet: `${subset}/${shardName(i)}.parquet`,
        parquetRows: pq.rows,
        parquetSha256: pq.sha256,
      });
      sizes[`${shardName(i)}.tar`] = closed.samples;
      shards.push(samples);
    }
    await writeJsonAtomic(path.join(root, 'webdataset', subset, 'sizes.json'), sizes);
    await writeJsonAtomic(path.join(root, 'webdataset', subset, 'index.json'), index);
  }
  return shards;
}

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loadEnv } from '../config/env';
import { fixturePaths } from '../config/paths';
import type { ReleaseInputArgs } from '../config/release';
import { readJsonIfExists, sha256Hex, writeJsonAtomic } from '../activities/common/files';
import { parseJats } from '../activities/parse/jats';
import { buildSampleMirror, type BuiltMirror } from '../sample/build-mirror';
import type { GeneratedPubmedArticle } from '../sample/eutils-standin';

export const SAMPLE_RELEASE_ID = '2026-sample';

export function samplePorts(): { mirror: number; eutils: number } {
  const env = loadEnv();
  return { mirror: env.BIOMEDICA_SAMPLE_MIRROR_PORT, eutils: env.BIOMEDICA_SAMPLE_EUTILS_PORT };
}

/** Builds the sample mirror unless one built from the same inputs is already there. */
export async function ensureSampleMirror(
  dataDir: string,
  opts: { nxmlDir?: string; imagesDir?: string; faults?: { corruptImages?: number; missingImages?: number } } = {},
): Promise<BuiltMirror> {
  const nxmlDir = opts.nxmlDir ?? loadEnv().BIOMEDICA_SAMPLE_NXML ?? fixturePaths.nxml();
  const imagesDir = opts.imagesDir ?? fixturePaths.images();
  const outDir = path.join(dataDir, 'sample-mirror');
  const files = (await fs.readdir(nxmlDir)).sort();
  const sizes = await Promise.all(files.map(async (f) => `${f}:${(await fs.stat(path.join(nxmlDir, f))).size}`));
  const stampFile = path.join(outDir, '.built-from.json');
  // builder 2: the project's own articles (sample/synthetic-articles.ts) are part of the sample
  const inputs = sha256Hex(JSON.stringify({ builder: 2, nxmlDir, imagesDir, sizes, faults: opts.faults ?? null }));
  const stamp = await readJsonIfExists<{ inputs: string; built: BuiltMirror }>(stampFile);
  if (stamp?.inputs === inputs) return stamp.built;
  const built = await buildSampleMirror({ nxmlDir, imagesDir, outDir, faults: opts.faults, synthetic: true });
  await writeJsonAtomic(stampFile, { inputs, built });
  return built;
}

/**
 * What the demo's E-utilities stand-in answers for the sample's PMIDs that no recording covers: each article's own
 * title, journal, date, DOI, keywords, authors and dates (the mirror's XML), so the demo shows enrichment working end to end.
 */
export async function sampleEnrichmentArticles(mirrorDir: string): Promise<GeneratedPubmedArticle[]> {
  const out: GeneratedPubmedArticle[] = [];
  const metaDir = path.join(mirrorDir, 'metadata');
  for (const name of (await fs.readdir(metaDir)).filter((f) => f.endsWith('.json')).sort()) {
    const meta = JSON.parse(await fs.readFile(path.join(metaDir, name), 'utf8')) as {
      pmcid: string;
      version: number;
      pmid: number | string | null;
    };
    const prefix = `${meta.pmcid}.${meta.version}`;
    const xml = await fs.readFile(path.join(mirrorDir, prefix, `${prefix}.xml`)).catch(() => null);
    if (!xml) continue;
    const record = parseJats(xml, { pmcidHint: meta.pmcid });
    const pmid = meta.pmid ? String(meta.pmid) : record.pmid;
    if (!pmid || !/^\d+$/.test(pmid)) continue;
    out.push({
      pmid,
      title: record.title,
      journal: record.journal.title,
      pubDate: record.pubDate,
      doi: record.doi,
      keywords: record.keywords,
      authors: record.authors,
      epubDate: record.epubDate,
      history: record.history,
    });
  }
  return out;
}

/** The sample release: small units so every subset gets several shards. */
export function sampleReleaseInput(
  dataDir: string,
  mirrorUrl: string,
  releaseId = SAMPLE_RELEASE_ID,
): ReleaseInputArgs {
  return {
    releaseId,
    dataDir,
    source: { kind: 'pmc-cloud-http', baseUrl: mirrorUrl },
    units: { maxArticles: 4, maxImages: 10000 },
    entrez: { enabled: true, batchSize: 3 },
    window: 4,
  };
}

import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { entrezRatePerSecond, readWorkerEnv } from '../../config/release';
import { readJsonIfExists, readNdjson, writeJsonAtomic } from '../common/files';

import { cancellationSignal, runUnitStage, type Staged, type UnitTask } from '../common/stage';
import { pmidBatchesOf, type ParsedArticleLine } from '../parse/activity';
import { efetchPubmed, EutilsError } from './eutils';
import { parsePubmedArticleSet, PubmedXmlError, type PubmedRecord } from './pubmed';

export interface EnrichBatchResult {
  batch: number;
  requested: number;
  returned: number;
  notReturned: string[];
  failed: string | null;
}

export interface PubmedBatchFile {
  batch: number;
  requested: string[];
  records: PubmedRecord[];
  notReturned: string[];
  failed: string | null;
}

// The task queue's server-side rate spaces dispatches across all workers; this keeps one busy process from sending
// two of them back to back when its event loop was held up (observed under load).
let nextRequestAt = 0;
async function paceRequests(perSecond: number): Promise<void> {
  const now = Date.now();
  const wait = Math.max(0, nextRequestAt - now);
  nextRequestAt = Math.max(now, nextRequestAt) + 1000 / perSecond;
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

export function pubmedBatchPath(unitDir: string, batch: number): string {
  return path.join(unitDir, 'pubmed', `${String(batch).padStart(4, '0')}.json`);
}

/**
 * One efetch request per activity, on the entrez task queue whose server-side rate keeps every worker
 * together under NCBI's limit. The key, tool and email come from this worker's environment only.
 */
export async function enrichBatch(task: UnitTask, batch: number): Promise<Staged<EnrichBatchResult>> {
  return runUnitStage(
    task,
    'enrich',
    async ({ layout, unit }) => {
      const env = readWorkerEnv();
      const unitDir = layout.unitDir(unit.unitId);
      const lines = await readNdjson<ParsedArticleLine>(path.join(unitDir, 'articles.ndjson'));
      const pmids = pmidBatchesOf(lines, task.release.entrez.batchSize)[batch] ?? [];
      const file: PubmedBatchFile = { batch, requested: pmids, records: [], notReturned: [], failed: null };
      if (pmids.length > 0) {
        try {
          await paceRequests(entrezRatePerSecond(env));
          const xml = await efetchPubmed({
            baseUrl: env.NCBI_EUTILS_URL,
            pmids,
            tool: env.NCBI_TOOL,
            email: env.NCBI_EMAIL,
            apiKey: env.NCBI_API_KEY,
            timeoutMs: 60_000,
            signal: cancellationSignal(),
          });
          const parsed = parsePubmedArticleSet(xml);
          // Keyed by PMID, never by position: a missing or reordered record cannot attach the wrong data.
          file.records = pmids.map((p) => parsed.records.get(p)).filter((r): r is PubmedRecord => !!r);
          file.notReturned = pmids.filter((p) => !parsed.records.has(p));
        } catch (err) {
          if (err instanceof EutilsError && err.retryable) {
            throw ApplicationFailure.retryable(
              `efetch batch ${batch} of ${unit.unitId}: ${err.message}`,
              `Eutils-${err.kind}`,
            );
          }
          if (!(err instanceof EutilsError) && !(err instanceof PubmedXmlError)) throw err;
          file.failed = `${err.kind}: ${err.message}`;
          file.notReturned = pmids;
        }
      }
      const out = pubmedBatchPath(unitDir, batch);
      await writeJsonAtomic(out, file);
      return {
        result: {
          batch,
          requested: pmids.length,
          returned: file.records.length,
          notReturned: file.notReturned,
          failed: file.failed,
        },
        outputs: [out],
      };
    },
    `enrich-${String(batch).padStart(4, '0')}`,
  );
}

/** Loads every PubMed record a unit's enrich activities wrote, keyed by PMID. */
export async function loadPubmedRecords(unitDir: string, batches: number): Promise<Map<string, PubmedRecord>> {
  const out = new Map<string, PubmedRecord>();
  for (let b = 0; b < batches; b++) {
    const file = await readJsonIfExists<PubmedBatchFile>(pubmedBatchPath(unitDir, b));
    for (const r of file?.records ?? []) out.set(r.pmid, r);
  }
  return out;
}

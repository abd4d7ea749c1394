import { proxyActivities } from '@temporalio/workflow';
import type { EntrezActivities } from '../../activities';
import type { ReleaseInput } from '../../config/release';
import { entrezOptions } from '../../workflows/options';

const entrez = proxyActivities<EntrezActivities>(entrezOptions);

/** Test load: every (unit, batch) efetch of several units at once, through the real entrez queue and its rate. */
export async function entrezLoadWorkflow(release: ReleaseInput, units: string[], batches: number): Promise<number> {
  const results = await Promise.all(
    units.flatMap((unitId) => Array.from({ length: batches }, (_, b) => entrez.enrichBatch({ release, unitId }, b))),
  );
  return results.reduce((n, r) => n + r.returned, 0);
}

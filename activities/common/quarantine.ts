import { z } from 'zod';

/** One rejected article or figure: never silent, always with the stage and a cause a person can act on. */
export const QuarantineRecordSchema = z.object({
  article: z.string().nullable(),
  figure: z.string().nullable().default(null),
  stage: z.enum(['plan', 'fetch', 'parse', 'enrich', 'media', 'images', 'annotate', 'shard', 'parquet', 'publish']),
  reason: z.string(),
  detail: z.string(),
});
export type QuarantineRecord = z.infer<typeof QuarantineRecordSchema>;

export function quarantine(r: Omit<QuarantineRecord, 'figure'> & { figure?: string | null }): QuarantineRecord {
  return {
    article: r.article,
    figure: r.figure ?? null,
    stage: r.stage,
    reason: r.reason,
    detail: r.detail.slice(0, 500),
  };
}

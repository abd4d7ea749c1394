/**
 * The subset-export predicate over parquet rows: pure, serialisable (it travels in workflow input), and
 * evaluated on the published values, so what you filter is what a reader of the json would see.
 *
 * Criteria are ANDed; the values inside one list criterion are ORed. Text comparisons of labels, journals,
 * licenses and keywords are exact but case-insensitive (trimmed, NFKC); the caption criteria match substrings
 * (case-insensitive) and a regular expression (JavaScript syntax, your flags). An empty filter selects every sample.
 */
import { z } from 'zod';
import { SubsetSchema } from '../../config/release';
import type { SampleRow } from '../parquet/writer';

const nonEmpty = z.string().trim().min(1);
const list = z.array(nonEmpty).min(1).optional();

export const ExportFilterSchema = z.strictObject({
  /** License groups (the release's subsets): commercial, noncommercial, other. */
  subsets: z.array(SubsetSchema).min(1).optional(),
  /** `article_license` codes, e.g. "CC BY", "CC BY-NC". */
  licenses: list,
  /** Any of these is one of `image_primary_label`. */
  primaryLabels: list,
  /** Any of these is one of `image_secondary_label`. */
  secondaryLabels: list,
  /** `image_label_id` (taxonomy cluster id) is one of these. */
  labelIds: z
    .array(z.union([nonEmpty, z.number().int().nonnegative()]).transform(String))
    .min(1)
    .optional(),
  /** `article_journal` is one of these. */
  journals: list,
  /** Publication year, from `article_date` (Unix seconds of local midnight in America/Los_Angeles); inclusive bounds. */
  years: z
    .strictObject({
      from: z.number().int().min(1000).max(9999).optional(),
      to: z.number().int().min(1000).max(9999).optional(),
    })
    .refine((y) => y.from !== undefined || y.to !== undefined, 'years needs from, to or both')
    .refine(
      (y) => y.from === undefined || y.to === undefined || y.from <= y.to,
      'years.from must not be after years.to',
    )
    .optional(),
  /** Any of these is one of `article_keywords`. */
  keywords: list,
  /** Every one of these occurs in the caption (case-insensitive). */
  captionContains: list,
  /** The caption matches this regular expression. */
  captionRegex: z
    .strictObject({
      source: z.string().min(1).max(1000),
      flags: z
        .string()
        .regex(/^[imsu]*$/, 'flags may only be i, m, s, u')
        .default(''),
    })
    .superRefine((r, ctx) => {
      try {
        new RegExp(r.source, r.flags);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `invalid regular expression: ${(err as Error).message}` });
      }
    })
    .optional(),
});
export type ExportFilter = z.infer<typeof ExportFilterSchema>;
export type ExportFilterArgs = z.input<typeof ExportFilterSchema>;

function norm(s: string): string {
  return s.normalize('NFKC').trim().toLowerCase();
}

const LA_YEAR = new Intl.DateTimeFormat('en-US', { timeZone: 'America/Los_Angeles', year: 'numeric' });

/** The publication year of a published `article_date` (Unix seconds of a local midnight in Los Angeles), or null. */
export function yearOfArticleDate(articleDate: string): number | null {
  if (!/^-?\d+$/.test(articleDate.trim())) return null;
  const ms = Number(articleDate) * 1000;
  if (!Number.isFinite(ms)) return null;
  return Number(LA_YEAR.format(new Date(ms)));
}

/** A compiled filter: true for the rows to export. */
export type RowPredicate = (row: SampleRow) => boolean;

/** Compiles a filter (validated here) into a predicate over parquet rows. */
export function compileFilter(args: ExportFilterArgs): RowPredicate {
  const f = ExportFilterSchema.parse(args);
  const tests: RowPredicate[] = [];
  const anyOf = (wanted: string[] | undefined, get: (row: SampleRow) => string | string[]) => {
    if (!wanted) return;
    const set = new Set(wanted.map(norm));
    tests.push((row) => {
      const v = get(row);
      return (Array.isArray(v) ? v : [v]).some((x) => set.has(norm(x)));
    });
  };
  if (f.subsets) {
    const set = new Set<string>(f.subsets);
    tests.push((row) => set.has(row.subset));
  }
  anyOf(f.licenses, (r) => r.article_license);
  anyOf(f.primaryLabels, (r) => r.image_primary_label);
  anyOf(f.secondaryLabels, (r) => r.image_secondary_label);
  if (f.labelIds) {
    const set = new Set(f.labelIds.map((s) => s.trim()));
    tests.push((row) => set.has(row.image_label_id));
  }
  anyOf(f.journals, (r) => r.article_journal);
  anyOf(f.keywords, (r) => r.article_keywords);
  if (f.years) {
    const { from = -Infinity, to = Infinity } = f.years;
    tests.push((row) => {
      const y = yearOfArticleDate(row.article_date);
      return y !== null && y >= from && y <= to;
    });
  }
  if (f.captionContains) {
    const needles = f.captionContains.map((s) => s.toLowerCase());
    tests.push((row) => {
      const caption = row.caption.toLowerCase();
      return needles.every((n) => caption.includes(n));
    });
  }
  if (f.captionRegex) {
    const re = new RegExp(f.captionRegex.source, f.captionRegex.flags.replace(/[gy]/g, ''));
    tests.push((row) => re.test(row.caption));
  }
  return (row) => tests.every((t) => t(row));
}

import { z } from 'zod';

/**
 * What one pass over a JATS article yields. Plain text everywhere: inline markup is flattened
 * in reading order and whitespace collapsed, so downstream code never sees XML.
 */

/** Normalised Creative Commons codes; anything else (public domain mark, publisher terms) is null. */
export const CC_LICENSE_CODES = [
  'CC0',
  'CC BY',
  'CC BY-SA',
  'CC BY-ND',
  'CC BY-NC',
  'CC BY-NC-SA',
  'CC BY-NC-ND',
] as const;
export const CcLicenseCodeSchema = z.enum(CC_LICENSE_CODES);
export type CcLicenseCode = z.infer<typeof CcLicenseCodeSchema>;

/** An ordinary figure, or the image of a graphical abstract (<fig> in <abstract abstract-type="graphical">). */
export const FIGURE_ROLES = ['figure', 'graphical-abstract'] as const;
export type FigureRole = (typeof FIGURE_ROLES)[number];

/** One image of one <fig>: a fig with two graphics gives two records that share label and caption. */
export const FigureRecordSchema = z.object({
  /** fig @id, the target of xref @rid */
  id: z.string().nullable(),
  /** <label> text, e.g. "Figure 1" */
  label: z.string().nullable(),
  /** caption/title text */
  captionTitle: z.string().nullable(),
  /** caption title then paragraphs, one space between blocks; '' when the fig has no caption */
  caption: z.string(),
  /** xlink:href of the chosen graphic, as written (often without extension) */
  graphicHref: z.string(),
  /** 0-based position among the chosen graphics of this fig */
  graphicIndex: z.number().int().nonnegative(),
  /**
   * Paragraphs that cite this fig (xref ref-type="fig", rid lists split, nested xrefs included), from the
   * body, sub-article bodies and appendices; captions and tables never count. Plain text in which each
   * citation of this fig is wrapped in [[...]] ("as shown in [[Fig. 2A]] and Fig. 3"). Deduplicated, in
   * document order.
   */
  mentions: z.array(z.string()),
  /** "graphical-abstract" for the image of a graphical abstract, whose caption is that abstract's text */
  role: z.enum(FIGURE_ROLES),
  /** the MathML markup of each formula in the label and caption, as written; their text is linear in caption */
  mathml: z.array(z.string()),
});
export type FigureRecord = z.infer<typeof FigureRecordSchema>;

export const AbstractSectionSchema = z.object({
  /** the section's <title>; null for an unstructured abstract */
  label: z.string().nullable(),
  text: z.string(),
});
export type AbstractSection = z.infer<typeof AbstractSectionSchema>;

export const AbstractRecordSchema = z.object({
  /** @abstract-type, e.g. "summary", "graphical"; null for the main abstract */
  type: z.string().nullable(),
  sections: z.array(AbstractSectionSchema),
});
export type AbstractRecord = z.infer<typeof AbstractRecordSchema>;

export const JournalRecordSchema = z.object({
  title: z.string().nullable(),
  isoAbbrev: z.string().nullable(),
  /** electronic ISSN when given, else print, else the first */
  issn: z.string().nullable(),
  publisher: z.string().nullable(),
});
export type JournalRecord = z.infer<typeof JournalRecordSchema>;

export const LicenseRecordSchema = z.object({
  url: z.string().nullable(),
  code: CcLicenseCodeSchema.nullable(),
  /** license-p text, or the copyright statement when there is no <license> */
  text: z.string().nullable(),
});
export type LicenseRecord = z.infer<typeof LicenseRecordSchema>;

export const GraphicCountsSchema = z.object({
  /** <fig> elements that yielded at least one FigureRecord */
  figures: z.number().int().nonnegative(),
  /** every <graphic> element, wherever it sits (thumbnails included) */
  graphics: z.number().int().nonnegative(),
  /** <graphic>s whose nearest container is a <table-wrap> */
  tableGraphics: z.number().int().nonnegative(),
  /** <graphic>s whose nearest container is a <disp-formula> or <inline-formula> */
  formulaGraphics: z.number().int().nonnegative(),
  /** <inline-graphic> elements (never figures) */
  inlineGraphics: z.number().int().nonnegative(),
  /** <supplementary-material> elements */
  supplementary: z.number().int().nonnegative(),
});
export type GraphicCounts = z.infer<typeof GraphicCountsSchema>;

// ---- contributors (issue 15): the article's authors from <contrib-group>, see contributors.ts

/** An ORCID iD without its URL prefix, e.g. "0000-0002-1825-0097". */
export const OrcidSchema = z.string().regex(/^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$/);

/** One author of the article, in byline order. */
export const AuthorRecordSchema = z.object({
  /** as printed: "Given Surname" (surname first for name-style="eastern"), or a group's name */
  name: z.string().min(1),
  surname: z.string().nullable(),
  givenNames: z.string().nullable(),
  /** a group author (<collab>, PubMed's CollectiveName) rather than a person */
  group: z.boolean(),
  orcid: OrcidSchema.nullable(),
  /** corresp="yes", or a link to a <corresp> / corresponding-author note */
  corresponding: z.boolean(),
  /** affiliation texts in the order the author's links give them; deduplicated */
  affiliations: z.array(z.string()),
});
export type AuthorRecord = z.infer<typeof AuthorRecordSchema>;

/** A <history> date of the article: @date-type (received, rev-recd, accepted...) and its ISO date. */
export const HistoryDateSchema = z.object({
  type: z.string().min(1),
  date: z.string().regex(/^\d{4}(-\d{2}(-\d{2})?)?$/),
});
export type HistoryDate = z.infer<typeof HistoryDateSchema>;

export const ArticleRecordSchema = z.object({
  /** "PMC1234567" from article-id "pmc"/"pmcid", else the caller's hint */
  pmcid: z
    .string()
    .regex(/^PMC\d+$/)
    .nullable(),
  /** N of pmcid-ver "PMC1234567.N" (2026 cloud XML) */
  version: z.number().int().positive().nullable(),
  pmid: z.string().nullable(),
  doi: z.string().nullable(),
  title: z.string().nullable(),
  /** every <abstract> of the article, kept apart */
  abstracts: z.array(AbstractRecordSchema),
  /** the first abstract without @abstract-type (else the first), "LABEL: text" sections joined by spaces */
  abstract: z.string().nullable(),
  keywords: z.array(z.string()),
  subjects: z.array(z.string()),
  journal: JournalRecordSchema,
  /** ISO 8601 with the precision the XML gives: "2020", "2020-06" or "2020-06-12" */
  pubDate: z
    .string()
    .regex(/^\d{4}(-\d{2}(-\d{2})?)?$/)
    .nullable(),
  license: LicenseRecordSchema,
  /** main body section titles, paragraphs and display formulas outside paragraphs, "\n\n" between blocks */
  fullText: z.string(),
  /** the MathML markup of each formula outside captions (title, abstracts, body), as written, in document order */
  mathml: z.array(z.string()),
  figures: z.array(FigureRecordSchema),
  counts: GraphicCountsSchema,
  /** authors from the main article's <contrib-group>s (editors and reviewers left out), in byline order */
  authors: z.array(AuthorRecordSchema),
  /** <history> dates in document order */
  history: z.array(HistoryDateSchema),
  /** the electronic publication date (pub-date epub, or date-type="pub" publication-format="electronic") */
  epubDate: z
    .string()
    .regex(/^\d{4}(-\d{2}(-\d{2})?)?$/)
    .nullable(),
  /** why this record is degraded (invalid UTF-8 replaced, no front matter); empty for a clean article */
  warnings: z.array(z.string()),
});
export type ArticleRecord = z.infer<typeof ArticleRecordSchema>;

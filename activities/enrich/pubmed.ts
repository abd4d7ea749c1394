/**
 * Parser for E-utilities `efetch db=pubmed retmode=xml` responses (PubmedArticleSet).
 *
 * Records are keyed by the PMID found in MedlineCitation/PMID (BookDocument/PMID for books), never by
 * position: the seed pipeline zipped efetch results to its request by index, which silently attached
 * the wrong article's data whenever NCBI dropped, reordered or duplicated a record.
 * Pure code: no I/O, no Temporal imports.
 */
import { SaxesParser } from 'saxes';
import { linearMath, mathName, type MathNode } from '../parse/mathml';
import { z } from 'zod';
import { normaliseOrcid } from '../parse/contributors';

const MeshHeadingSchema = z.object({
  descriptor: z.string().min(1),
  ui: z.string().nullable(),
  majorTopic: z.boolean(),
  qualifiers: z.array(z.object({ name: z.string().min(1), majorTopic: z.boolean() })),
});

const IsoDateSchema = z.string().regex(/^\d{4}(-\d{2}(-\d{2})?)?$/);

/** One AuthorList/Author of type "authors" (a person or a CollectiveName); ValidYN="N" entries are left out. */
export const PubmedAuthorSchema = z.object({
  lastName: z.string().nullable(),
  foreName: z.string().nullable(),
  initials: z.string().nullable(),
  suffix: z.string().nullable(),
  /** CollectiveName: a group author */
  collectiveName: z.string().nullable(),
  /** Identifier Source="ORCID", without its URL prefix */
  orcid: z.string().nullable(),
  affiliations: z.array(z.string()),
});
export type PubmedAuthor = z.infer<typeof PubmedAuthorSchema>;

/** ChemicalList/Chemical: RegistryNumber "0" (none assigned) is null. */
export const PubmedChemicalSchema = z.object({
  registryNumber: z.string().nullable(),
  name: z.string().min(1),
  /** NameOfSubstance/@UI, the MeSH id */
  ui: z.string().nullable(),
});
export type PubmedChemical = z.infer<typeof PubmedChemicalSchema>;

/** PubmedData/History/PubMedPubDate: @PubStatus (received, accepted, pubmed, entrez, medline...) and its day. */
export const PubmedHistoryDateSchema = z.object({ status: z.string().min(1), date: IsoDateSchema });
export type PubmedHistoryDate = z.infer<typeof PubmedHistoryDateSchema>;

export const PubmedRecordSchema = z.object({
  pmid: z.string().regex(/^[1-9][0-9]*$/),
  title: z.string().nullable(),
  abstract: z.string().nullable(),
  abstractSections: z.array(z.object({ label: z.string().nullable(), text: z.string() })),
  meshTerms: z.array(MeshHeadingSchema),
  keywords: z.array(z.string()),
  publicationTypes: z.array(z.string()),
  journal: z.object({ title: z.string().nullable(), isoAbbrev: z.string().nullable(), issn: z.string().nullable() }),
  pubDate: z
    .string()
    .regex(/^\d{4}(-\d{2}(-\d{2})?)?$/)
    .nullable(),
  articleIds: z.array(z.object({ type: z.string(), id: z.string() })),
  referenceIds: z.array(z.string()),
  referenceCount: z.number().int().nonnegative(),
  notices: z.array(z.object({ type: z.string(), refSource: z.string().nullable(), pmid: z.string().nullable() })),
  kind: z.enum(['article', 'book']),
  authors: z.array(PubmedAuthorSchema),
  chemicals: z.array(PubmedChemicalSchema),
  /** Article/ArticleDate (DateType="Electronic"): the electronic publication date */
  articleDate: IsoDateSchema.nullable(),
  history: z.array(PubmedHistoryDateSchema),
});
export type PubmedRecord = z.infer<typeof PubmedRecordSchema>;

export interface PubmedParseResult {
  records: Map<string, PubmedRecord>;
}

/**
 * Why a body could not be read as a PubmedArticleSet. None of these get better by asking again with the
 * same ids (a cut-off transfer is caught by the HTTP client before parsing), so retryable is always false.
 */
export class PubmedXmlError extends Error {
  override readonly name = 'PubmedXmlError';
  readonly retryable = false;
  constructor(
    readonly kind: 'ncbi-error' | 'malformed' | 'unexpected-root',
    message: string,
  ) {
    super(message);
  }
}

/**
 * CommentsCorrections RefTypes (PubMed DTD) that mark a retraction, correction or expression of concern.
 * "Cites", "CommentIn", "UpdateIn" etc. are ordinary links and are left out.
 */
const NOTICE_REF_TYPES = new Set([
  'RetractionIn',
  'RetractionOf',
  'RetractedandRepublishedIn',
  'RetractedandRepublishedFrom',
  'ErratumIn',
  'ErratumFor',
  'CorrectedandRepublishedIn',
  'CorrectedandRepublishedFrom',
  'ExpressionOfConcernIn',
  'ExpressionOfConcernFor',
]);

const MONTHS: Record<string, string> = {
  jan: '01',
  feb: '02',
  mar: '03',
  apr: '04',
  may: '05',
  jun: '06',
  jul: '07',
  aug: '08',
  sep: '09',
  oct: '10',
  nov: '11',
  dec: '12',
};

// ---- a minimal element tree: the records are small, and paths read far clearer than SAX state machines

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
}
type XmlNode = XmlElement | string;

function readTree(xml: string): XmlElement {
  const parser = new SaxesParser({ xmlns: false });
  const root: XmlElement = { name: '#document', attrs: {}, children: [] };
  const stack: XmlElement[] = [root];
  parser.on('opentag', (tag) => {
    const el: XmlElement = { name: tag.name, attrs: { ...tag.attributes }, children: [] };
    stack[stack.length - 1].children.push(el);
    stack.push(el);
  });
  parser.on('closetag', () => void stack.pop());
  parser.on('text', (t) => void stack[stack.length - 1].children.push(t));
  parser.on('cdata', (t) => void stack[stack.length - 1].children.push(t));
  try {
    parser.write(xml).close();
  } catch (err) {
    throw new PubmedXmlError('malformed', `PubMed XML is not well-formed: ${(err as Error).message.slice(0, 200)}`);
  }
  const top = root.children.find((c): c is XmlElement => typeof c !== 'string');
  if (!top) throw new PubmedXmlError('malformed', 'PubMed XML has no root element');
  return top;
}

function kids(el: XmlElement | undefined, name: string): XmlElement[] {
  if (!el) return [];
  return el.children.filter((c): c is XmlElement => typeof c !== 'string' && c.name === name);
}

/** Follows a slash path of child names, taking the first match at each step. */
function at(el: XmlElement | undefined, path: string): XmlElement | undefined {
  let cur = el;
  for (const step of path.split('/')) cur = kids(cur, step)[0];
  return cur;
}

/** All elements at the end of a slash path (every match at the last step). */
function all(el: XmlElement | undefined, path: string): XmlElement[] {
  const steps = path.split('/');
  const last = steps.pop() as string;
  return kids(steps.length ? at(el, steps.join('/')) : el, last);
}

/**
 * Text content in reading order with inline markup (<i>, <sub>, <sup>, <b>, <u>) dropped and
 * whitespace collapsed. MathML is read as the article parser reads it (activities/parse/mathml.ts): linear
 * text, its pretty-printing whitespace skipped, but a thin or no-break space inside <mtext> kept as a space
 * ("Xe^129 MRI", where trimming with String.trim, which strips U+2009, gave "Xe129MRI").
 */
function flatText(el: XmlElement | undefined): string {
  if (!el) return '';
  const parts: string[] = [];
  const walk = (node: XmlElement): void => {
    for (const c of node.children) {
      if (typeof c === 'string') parts.push(c);
      else if (c.name === 'math' || c.name.endsWith(':math')) parts.push(linearMath(mathNodeOf(c)));
      else walk(c);
    }
  };
  walk(el);
  return parts.join('').replace(/\s+/g, ' ').trim();
}

function mathNodeOf(el: XmlElement): MathNode {
  return {
    name: mathName(el.name),
    qname: el.name,
    attrs: el.attrs,
    children: el.children.map((c) => (typeof c === 'string' ? c : mathNodeOf(c))),
  };
}

function textOrNull(el: XmlElement | undefined): string | null {
  const t = flatText(el);
  return t === '' ? null : t;
}

// ---- field readers

function pubDateOf(pubDate: XmlElement | undefined): string | null {
  if (!pubDate) return null;
  const year = flatText(at(pubDate, 'Year'));
  if (!/^\d{4}$/.test(year)) {
    // MedlineDate is free text such as "1998 Dec-1999 Jan"; only its first year is dependable.
    const m = /\b(\d{4})\b/.exec(flatText(at(pubDate, 'MedlineDate')));
    return m ? m[1] : null;
  }
  const rawMonth = flatText(at(pubDate, 'Month'));
  const month =
    /^\d{1,2}$/.test(rawMonth) && +rawMonth >= 1 && +rawMonth <= 12
      ? rawMonth.padStart(2, '0')
      : MONTHS[rawMonth.slice(0, 3).toLowerCase()];
  // A Season (Spring, Winter...) has no month, so the date stays at year precision.
  if (!month) return year;
  const rawDay = flatText(at(pubDate, 'Day'));
  if (!/^\d{1,2}$/.test(rawDay) || +rawDay < 1 || +rawDay > 31) return `${year}-${month}`;
  return `${year}-${month}-${rawDay.padStart(2, '0')}`;
}

function abstractOf(abstractEl: XmlElement | undefined): {
  abstract: string | null;
  sections: PubmedRecord['abstractSections'];
} {
  // CopyrightInformation sits beside AbstractText inside <Abstract>; it is not abstract text.
  const sections = all(abstractEl, 'AbstractText')
    .map((s) => ({ label: s.attrs.Label?.trim() || null, text: flatText(s) }))
    .filter((s) => s.text !== '');
  if (sections.length === 0) return { abstract: null, sections };
  const abstract = sections.map((s) => (s.label ? `${s.label}: ${s.text}` : s.text)).join(' ');
  return { abstract, sections };
}

function meshOf(citation: XmlElement | undefined): PubmedRecord['meshTerms'] {
  return all(citation, 'MeshHeadingList/MeshHeading').flatMap((h) => {
    const d = at(h, 'DescriptorName');
    const descriptor = flatText(d);
    if (!d || descriptor === '') return [];
    return [
      {
        descriptor,
        ui: d.attrs.UI ?? null,
        majorTopic: d.attrs.MajorTopicYN === 'Y',
        qualifiers: kids(h, 'QualifierName')
          .map((q) => ({ name: flatText(q), majorTopic: q.attrs.MajorTopicYN === 'Y' }))
          .filter((q) => q.name !== ''),
      },
    ];
  });
}

function keywordsOf(owner: XmlElement | undefined): string[] {
  return kids(owner, 'KeywordList')
    .flatMap((list) => kids(list, 'Keyword').map(flatText))
    .filter((k) => k !== '');
}

function articleIdsOf(...lists: (XmlElement | undefined)[]): PubmedRecord['articleIds'] {
  const seen = new Set<string>();
  const ids: PubmedRecord['articleIds'] = [];
  for (const list of lists) {
    for (const a of kids(list, 'ArticleId')) {
      const id = flatText(a);
      const type = a.attrs.IdType ?? 'pubmed';
      if (id === '' || seen.has(`${type}\u0000${id}`)) continue;
      seen.add(`${type}\u0000${id}`);
      ids.push({ type, id });
    }
  }
  return ids;
}

/** References, including those in nested ReferenceLists (titled sub-lists exist since the 2019 DTD). */
function referencesOf(owner: XmlElement | undefined): XmlElement[] {
  const refs: XmlElement[] = [];
  const walkList = (list: XmlElement): void => {
    refs.push(...kids(list, 'Reference'));
    kids(list, 'ReferenceList').forEach(walkList);
  };
  kids(owner, 'ReferenceList').forEach(walkList);
  return refs;
}

function referenceIdOf(ref: XmlElement): string | null {
  const ids = kids(at(ref, 'ArticleIdList'), 'ArticleId');
  for (const type of ['pubmed', 'doi', 'pmc']) {
    const hit = ids.find((a) => a.attrs.IdType === type && flatText(a) !== '');
    if (hit) return flatText(hit);
  }
  return textOrNull(at(ref, 'Citation'));
}

function noticesOf(citation: XmlElement | undefined): PubmedRecord['notices'] {
  return all(citation, 'CommentsCorrectionsList/CommentsCorrections')
    .filter((c) => NOTICE_REF_TYPES.has(c.attrs.RefType ?? ''))
    .map((c) => ({
      type: c.attrs.RefType as string,
      refSource: textOrNull(at(c, 'RefSource')),
      pmid: textOrNull(at(c, 'PMID')),
    }));
}

// ---- authors, chemicals and dates (issue 15)

function authorsOf(list: XmlElement | undefined): PubmedRecord['authors'] {
  // A book's AuthorList Type="editors" lists editors, not authors.
  if (!list || (list.attrs.Type ?? 'authors') !== 'authors') return [];
  return kids(list, 'Author')
    .filter((a) => a.attrs.ValidYN !== 'N')
    .map((a) => ({
      lastName: textOrNull(at(a, 'LastName')),
      foreName: textOrNull(at(a, 'ForeName')),
      initials: textOrNull(at(a, 'Initials')),
      suffix: textOrNull(at(a, 'Suffix')),
      collectiveName: textOrNull(at(a, 'CollectiveName')),
      orcid: normaliseOrcid(flatText(kids(a, 'Identifier').find((i) => i.attrs.Source === 'ORCID'))),
      affiliations: [
        ...new Set(
          kids(a, 'AffiliationInfo')
            .map((i) => flatText(at(i, 'Affiliation')))
            .filter((t) => t !== ''),
        ),
      ],
    }))
    .filter((a) => a.lastName !== null || a.collectiveName !== null);
}

function chemicalsOf(citation: XmlElement | undefined): PubmedRecord['chemicals'] {
  return all(citation, 'ChemicalList/Chemical').flatMap((c) => {
    const substance = at(c, 'NameOfSubstance');
    const name = flatText(substance);
    if (name === '') return [];
    const registry = flatText(at(c, 'RegistryNumber'));
    return [
      { registryNumber: registry === '' || registry === '0' ? null : registry, name, ui: substance?.attrs.UI ?? null },
    ];
  });
}

function historyOf(pubmedData: XmlElement | undefined): PubmedRecord['history'] {
  return all(pubmedData, 'History/PubMedPubDate').flatMap((d) => {
    const date = pubDateOf(d);
    return d.attrs.PubStatus && date ? [{ status: d.attrs.PubStatus, date }] : [];
  });
}

// ---- records

function articleRecord(el: XmlElement): PubmedRecord | null {
  const citation = at(el, 'MedlineCitation');
  const pmid = flatText(at(citation, 'PMID'));
  if (pmid === '') return null;
  const article = at(citation, 'Article');
  const journal = at(article, 'Journal');
  const { abstract, sections } = abstractOf(at(article, 'Abstract'));
  const refs = referencesOf(at(el, 'PubmedData'));
  return {
    pmid,
    title: textOrNull(at(article, 'ArticleTitle')),
    abstract,
    abstractSections: sections,
    meshTerms: meshOf(citation),
    keywords: keywordsOf(citation),
    publicationTypes: all(article, 'PublicationTypeList/PublicationType')
      .map(flatText)
      .filter((t) => t !== ''),
    journal: {
      title: textOrNull(at(journal, 'Title')),
      isoAbbrev: textOrNull(at(journal, 'ISOAbbreviation')),
      issn: textOrNull(at(journal, 'ISSN')) ?? textOrNull(at(citation, 'MedlineJournalInfo/ISSNLinking')),
    },
    pubDate: pubDateOf(at(journal, 'JournalIssue/PubDate')),
    // Only the article's own list: each Reference carries an ArticleIdList too, and mixing those in
    // gives the article its citations' DOIs and PMC ids.
    articleIds: articleIdsOf(at(el, 'PubmedData/ArticleIdList')),
    referenceIds: refs.map(referenceIdOf).filter((r): r is string => r !== null),
    referenceCount: refs.length,
    notices: noticesOf(citation),
    kind: 'article',
    authors: authorsOf(at(article, 'AuthorList')),
    chemicals: chemicalsOf(citation),
    articleDate: pubDateOf(
      kids(article, 'ArticleDate').find((d) => (d.attrs.DateType ?? 'Electronic') === 'Electronic'),
    ),
    history: historyOf(at(el, 'PubmedData')),
  };
}

function bookRecord(el: XmlElement): PubmedRecord | null {
  const doc = at(el, 'BookDocument');
  const pmid = flatText(at(doc, 'PMID'));
  if (pmid === '') return null;
  const book = at(doc, 'Book');
  const { abstract, sections } = abstractOf(at(doc, 'Abstract'));
  const refs = referencesOf(doc);
  return {
    pmid,
    // A whole-book record has no ArticleTitle; a chapter has both, and the chapter title is the record's.
    title: textOrNull(at(doc, 'ArticleTitle')) ?? textOrNull(at(book, 'BookTitle')),
    abstract,
    abstractSections: sections,
    meshTerms: [],
    keywords: keywordsOf(doc),
    publicationTypes: kids(doc, 'PublicationType')
      .map(flatText)
      .filter((t) => t !== ''),
    journal: { title: null, isoAbbrev: null, issn: null },
    pubDate: pubDateOf(at(book, 'PubDate')),
    articleIds: articleIdsOf(at(el, 'PubmedBookData/ArticleIdList'), at(doc, 'ArticleIdList')),
    referenceIds: refs.map(referenceIdOf).filter((r): r is string => r !== null),
    referenceCount: refs.length,
    notices: [],
    kind: 'book',
    authors: authorsOf(kids(doc, 'AuthorList').find((l) => (l.attrs.Type ?? 'authors') === 'authors')),
    chemicals: [],
    articleDate: null,
    history: historyOf(at(el, 'PubmedBookData')),
  };
}

/**
 * Parses an efetch db=pubmed XML body. Unknown or deleted PMIDs are simply absent from the map; a
 * PMID that appears twice keeps its first record. An NCBI <ERROR> body throws PubmedXmlError('ncbi-error') naming
 * every <ERROR> it holds.
 */
export function parsePubmedArticleSet(xml: string): PubmedParseResult {
  const root = readTree(xml);
  // Every <ERROR>, not the first only: a reply may carry one per bad id or parameter.
  const errors = root.name === 'ERROR' ? [root] : kids(root, 'ERROR');
  if (errors.length > 0) {
    const texts = errors.map((e) => flatText(e) || '(empty)');
    throw new PubmedXmlError(
      'ncbi-error',
      `E-utilities returned ${errorCount(texts)}: ${texts.join('; ').slice(0, 600)}`,
    );
  }
  if (root.name !== 'PubmedArticleSet') {
    throw new PubmedXmlError('unexpected-root', `expected <PubmedArticleSet>, got <${root.name}>`);
  }
  const records = new Map<string, PubmedRecord>();
  for (const child of root.children) {
    if (typeof child === 'string') continue;
    const record =
      child.name === 'PubmedArticle'
        ? articleRecord(child)
        : child.name === 'PubmedBookArticle'
          ? bookRecord(child)
          : null; // DeleteCitation and anything newer than this parser: nothing to enrich with
    if (record && !records.has(record.pmid)) records.set(record.pmid, PubmedRecordSchema.parse(record));
  }
  return { records };
}

/** "an error" or "2 errors". */
export function errorCount(texts: readonly string[]): string {
  return texts.length === 1 ? 'an error' : `${texts.length} errors`;
}

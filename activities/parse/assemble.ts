import {
  ccCodeFromText, ccCodeFromType, ccCodeFromUrl, isoDate, normalisePmcid, pmcidVersion, pubDateRank,
} from './metadata';
import type { AbstractRecord, ArticleRecord, CcLicenseCode, FigureRecord, GraphicCounts, LicenseRecord } from './records';

/** Text of one element region, flattened in reading order; whitespace is collapsed once at the end. */
export class TextSink {
  private readonly parts: string[] = [];

  add(text: string): void {
    this.parts.push(text);
  }

  /** word boundary between blocks (title | paragraph); collapses to one space */
  gap(): void {
    this.parts.push(' ');
  }

  text(): string {
    return this.parts.join('').replace(/\s+/g, ' ').trim();
  }
}

export interface FigureState {
  id: string | null;
  label: TextSink;
  captionTitle: TextSink;
  caption: TextSink;
  /** chosen graphics in document order (one per <alternatives> group) */
  hrefs: string[];
}

export interface Paragraph {
  text: TextSink;
  /** every fig id cited by an xref ref-type="fig" anywhere inside (rid lists split) */
  figRids: Set<string>;
  /** in the main article body, so part of fullText */
  main: boolean;
}

export interface PubDateState {
  pubType: string | null;
  dateType: string | null;
  format: string | null;
  year: string | null;
  month: string | null;
  day: string | null;
}

export interface AbstractState {
  type: string | null;
  sections: { label: TextSink | null; text: TextSink }[];
  /** the open unlabelled section collecting loose paragraphs */
  loose: TextSink | null;
}

/** Everything the streaming pass gathers; turned into an ArticleRecord once the document ends. */
export interface Collected {
  articleIds: { type: string; text: string }[];
  title: string | null;
  keywords: string[];
  subjects: string[];
  journal: {
    title: string | null;
    publisher: string | null;
    ids: { type: string; text: string }[];
    abbrevTitles: { type: string; text: string }[];
    issns: { type: string; text: string }[];
  };
  pubDates: PubDateState[];
  license: { seen: boolean; hrefs: string[]; types: string[]; refs: string[]; links: string[]; text: TextSink; copyright: string | null };
  abstracts: AbstractState[];
  bodyBlocks: string[];
  mentionsByFigId: Map<string, string[]>;
  figures: FigureState[];
  counts: Omit<GraphicCounts, 'figures'>;
}

export function emptyCollected(): Collected {
  return {
    articleIds: [],
    title: null,
    keywords: [],
    subjects: [],
    journal: { title: null, publisher: null, ids: [], abbrevTitles: [], issns: [] },
    pubDates: [],
    license: { seen: false, hrefs: [], types: [], refs: [], links: [], text: new TextSink(), copyright: null },
    abstracts: [],
    bodyBlocks: [],
    mentionsByFigId: new Map(),
    figures: [],
    counts: { graphics: 0, tableGraphics: 0, formulaGraphics: 0, inlineGraphics: 0, supplementary: 0 },
  };
}

export function addBodyBlock(c: Collected, text: string): void {
  if (text) c.bodyBlocks.push(text);
}

export function closeParagraph(c: Collected, paragraph: Paragraph): void {
  const text = paragraph.text.text();
  if (!text) return;
  if (paragraph.main) c.bodyBlocks.push(text);
  for (const rid of paragraph.figRids) {
    const list = c.mentionsByFigId.get(rid);
    if (!list) c.mentionsByFigId.set(rid, [text]);
    else if (!list.includes(text)) list.push(text);
  }
}

const orNull = (s: string | null | undefined): string | null => (s ? s : null);

export function assembleArticle(c: Collected, pmcidHint: string | null): ArticleRecord {
  const idOf = (...types: string[]): string | null =>
    orNull(c.articleIds.find((id) => types.includes(id.type.toLowerCase()) && id.text)?.text);
  const versioned = idOf('pmcid-ver');
  const abstracts = c.abstracts.map(toAbstractRecord).filter((a) => a.sections.length > 0);
  const mainAbstract = abstracts.find((a) => a.type === null) ?? abstracts[0];
  const figures = toFigureRecords(c);
  return {
    pmcid: normalisePmcid(idOf('pmc', 'pmcid')) ?? normalisePmcid(versioned) ?? normalisePmcid(pmcidHint),
    version: versioned ? pmcidVersion(versioned) : null,
    pmid: idOf('pmid'),
    doi: idOf('doi'),
    title: orNull(c.title),
    abstracts,
    abstract: mainAbstract ? orNull(abstractText(mainAbstract)) : null,
    keywords: [...new Set(c.keywords.filter(Boolean))],
    subjects: [...new Set(c.subjects.filter(Boolean))],
    journal: {
      title: c.journal.title,
      isoAbbrev: firstOf(c.journal.ids, 'iso-abbrev') ?? firstOf(c.journal.abbrevTitles, 'iso-abbrev') ??
        firstOf(c.journal.ids, 'nlm-ta') ?? orNull(c.journal.abbrevTitles[0]?.text),
      issn: firstOf(c.journal.issns, 'epub') ?? firstOf(c.journal.issns, 'electronic') ?? firstOf(c.journal.issns, 'ppub') ??
        firstOf(c.journal.issns, 'print') ?? orNull(c.journal.issns[0]?.text),
      publisher: c.journal.publisher,
    },
    pubDate: bestPubDate(c.pubDates),
    license: toLicense(c.license),
    fullText: c.bodyBlocks.join('\n\n'),
    figures,
    counts: { figures: c.figures.filter((f) => f.hrefs.length > 0).length, ...c.counts },
  };
}

function firstOf(entries: { type: string; text: string }[], type: string): string | null {
  return orNull(entries.find((e) => e.type.toLowerCase() === type && e.text)?.text);
}

function toAbstractRecord(a: AbstractState): AbstractRecord {
  const sections = a.sections
    .map((s) => ({ label: orNull(s.label?.text()), text: s.text.text() }))
    .filter((s) => s.label !== null || s.text !== '');
  return { type: a.type, sections };
}

/** "Background: … Methods: …"; a label's own trailing colon is not doubled. */
function abstractText(a: AbstractRecord): string {
  return a.sections
    .map((s) => (s.label ? `${s.label.replace(/[:.]\s*$/, '')}: ${s.text}` : s.text).trim())
    .filter(Boolean)
    .join(' ');
}

function bestPubDate(dates: PubDateState[]): string | null {
  let best: { rank: number; iso: string } | null = null;
  for (const d of dates) {
    const iso = isoDate(d.year, d.month, d.day);
    if (!iso) continue; // e.g. an empty <pub-date pub-type="epub"/>
    const rank = pubDateRank(d.pubType, d.dateType, d.format);
    if (!best || rank < best.rank) best = { rank, iso };
  }
  return best?.iso ?? null;
}

function toLicense(l: Collected['license']): LicenseRecord {
  const text = orNull(l.text.text()) ?? orNull(l.copyright);
  if (!l.seen) return { url: null, code: null, text };
  const url = orNull(l.hrefs.find(Boolean)) ?? orNull(l.refs.find(Boolean)) ?? orNull(l.links.find(Boolean));
  // The URL is the most precise statement; a type or the prose is used only when it says nothing.
  let code: CcLicenseCode | null | undefined = url ? ccCodeFromUrl(url) : undefined;
  for (const type of l.types) if (code === undefined && type) code = ccCodeFromType(type);
  if (code === undefined) code = ccCodeFromText(l.text.text());
  return { url, code: code ?? null, text };
}

function toFigureRecords(c: Collected): FigureRecord[] {
  const records: FigureRecord[] = [];
  for (const f of c.figures) {
    const captionTitle = orNull(f.captionTitle.text());
    const caption = [captionTitle, f.caption.text()].filter(Boolean).join(' ');
    const mentions = f.id ? c.mentionsByFigId.get(f.id) ?? [] : [];
    f.hrefs.forEach((graphicHref, graphicIndex) => {
      records.push({ id: f.id, label: orNull(f.label.text()), captionTitle, caption, graphicHref, graphicIndex, mentions: [...mentions] });
    });
  }
  return records;
}

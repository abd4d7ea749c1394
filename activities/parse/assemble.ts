import {
  ccCodeFromText,
  ccCodeFromType,
  ccCodeFromUrl,
  isoDate,
  normalisePmcid,
  pmcidVersion,
  pubDateRank,
} from './metadata';
import { assembleAuthors, emptyContributors, type ContributorsState } from './contributors';
import { assembleHistory, emptyHistory, type HistoryState } from './history';
import type {
  AbstractRecord,
  ArticleRecord,
  CcLicenseCode,
  FigureRecord,
  FigureRole,
  GraphicCounts,
  LicenseRecord,
} from './records';

// What JavaScript's \s matches (no-break, thin and hair spaces included).
function isSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  return (
    c >= 0xa0 &&
    (c === 0xa0 ||
      c === 0x1680 ||
      (c >= 0x2000 && c <= 0x200a) ||
      c === 0x2028 ||
      c === 0x2029 ||
      c === 0x202f ||
      c === 0x205f ||
      c === 0x3000 ||
      c === 0xfeff)
  );
}

/** Whitespace runs that collapsing changes: one that is not a plain space, or two or more characters. */
const CHANGED_RUN = /[^\S ]\s*|\s{2,}/g;

/**
 * s.replace(/\s+/g, ' ').trim(), copying nothing when nothing changes: flattening is the parser's largest cost
 * after saxes itself on text-heavy articles. The regular expression hops from one run to change to the next (a
 * single space between words is left where it is), three times faster than a loop over the characters in
 * JavaScript on text with non-Latin-1 characters.
 */
export function collapseWhitespace(s: string): string {
  const n = s.length;
  // A single space at either end is no run the expression finds, but is trimmed all the same.
  let copied = s.charCodeAt(0) === 32 && !(n > 1 && isSpace(s.charCodeAt(1))) ? 1 : 0;
  const last = n > 1 && s.charCodeAt(n - 1) === 32 && !isSpace(s.charCodeAt(n - 2)) ? n - 1 : n;
  let out = '';
  CHANGED_RUN.lastIndex = 0;
  for (let run = CHANGED_RUN.exec(s); run !== null; run = CHANGED_RUN.exec(s)) {
    const end = run.index + run[0].length;
    out += s.slice(copied, run.index);
    if (run.index > 0 && end < n && out.length > 0) out += ' ';
    copied = end;
  }
  return copied === 0 && last === n ? s : out + s.slice(copied, last);
}

/** Text of one element region, flattened in reading order; whitespace is collapsed once at the end. */
export class TextSink {
  protected readonly parts: string[] = [];

  add(text: string): void {
    this.parts.push(text);
  }

  /** word boundary between blocks (title | paragraph); collapses to one space */
  gap(): void {
    this.parts.push(' ');
  }

  text(): string {
    return collapseWhitespace(this.parts.join(''));
  }
}

/** One <xref ref-type="fig"> inside a paragraph: where its text starts and ends among the parts. */
interface Citation {
  readonly start: number;
  end: number;
  readonly rids: string[];
}

/** "Figs 1–3" written as two citations with a dash (or "to") between them. */
export interface CitationRange {
  readonly first: Citation;
  readonly second: Citation;
}
const RANGE_DASH = /^\s*(?:[\u2013\u2014\u2012\u2010-]|to)\s*$/;
/** A character RANGE_DASH never matches: a part holding one rules the range out without joining the parts. */
const NOT_RANGE_DASH = /[^\s\u2013\u2014\u2012\u2010\-to]/;

// Stand-ins for [[ and ]] while whitespace is collapsed; never left in output (stripped from input text).
const OPEN = '\u0001';
const CLOSE = '\u0002';
const STAND_INS = /[\u0001\u0002]/g;

/**
 * A body paragraph that remembers where its figure citations are, so each figure's mention can mark
 * its own citations: "as shown in [[Fig. 2A]] and Fig. 3" for fig2. Stripping the brackets gives text().
 */
export class CitingText extends TextSink {
  private readonly citations: Citation[] = [];
  private open: Citation | null = null;
  /** two citations joined by a dash ("Figs <xref>1</xref>–<xref>3</xref>"): the figures between are cited too */
  readonly ranges: CitationRange[] = [];

  /** An xref inside another xref is part of the outer citation. */
  openCitation(rids: string[]): Citation | null {
    if (this.open) {
      this.open.rids.push(...rids);
      return null;
    }
    const previous = this.citations[this.citations.length - 1];
    this.open = { start: this.parts.length, end: -1, rids };
    if (previous && previous.end >= 0 && this.dashSince(previous.end)) {
      this.ranges.push({ first: previous, second: this.open });
    }
    this.citations.push(this.open);
    return this.open;
  }

  /** The text after part `from` is only a dash or "to" between spaces (most often a comma or words rule it out). */
  private dashSince(from: number): boolean {
    for (let i = from; i < this.parts.length; i++) if (NOT_RANGE_DASH.test(this.parts[i] as string)) return false;
    return RANGE_DASH.test(this.parts.slice(from).join(''));
  }

  closeCitation(citation: Citation | null): void {
    if (!citation) return;
    citation.end = this.parts.length;
    this.open = null;
  }

  /** The paragraph with every citation of `rid` wrapped in [[...]]; empty citations are not marked. */
  citing(rid: string): string {
    const marks: { at: number; mark: string }[] = [];
    for (const c of this.citations) {
      if (c.end >= 0 && c.rids.includes(rid)) marks.push({ at: c.start, mark: OPEN }, { at: c.end, mark: CLOSE });
    }
    return this.marked(marks);
  }

  /** The paragraph with a whole range wrapped in [[...]], for a figure the range covers but does not name. */
  citingRange(range: CitationRange): string {
    if (range.second.end < 0) return this.text();
    return this.marked([
      { at: range.first.start, mark: OPEN },
      { at: range.second.end, mark: CLOSE },
    ]);
  }

  private marked(marks: { at: number; mark: string }[]): string {
    if (marks.length === 0) return this.text();
    const out: string[] = [];
    let next = 0;
    for (let i = 0; i <= this.parts.length; i++) {
      for (; next < marks.length && (marks[next] as { at: number }).at === i; next++)
        out.push((marks[next] as { mark: string }).mark);
      const part = this.parts[i];
      if (part !== undefined)
        out.push(part.includes(OPEN) || part.includes(CLOSE) ? part.replace(STAND_INS, '') : part);
    }
    // Spaces at a citation's edges move outside it ("x [[Fig. 1]] y"); an empty citation is dropped. A space is
    // already outside when it is the only one, so only a space inside calls for a replacement.
    let text = collapseWhitespace(out.join(''));
    if (text.includes('\u0001 ')) text = text.replace(/ ?\u0001 /g, ' \u0001');
    if (text.includes(' \u0002')) text = text.replace(/ \u0002 ?/g, '\u0002 ');
    if (text.includes('\u0001\u0002')) text = collapseWhitespace(text.replace(/\u0001\u0002/g, ''));
    else if (text.charCodeAt(0) === 32 || text.charCodeAt(text.length - 1) === 32) text = text.trim();
    // Literal brackets never touch each other or a mark ("[[39], …]" → "[ [39], …]"), so every [[ opens a
    // citation and every ]] closes one.
    if (text.includes('[[') || text.includes('[\u0001') || text.includes('\u0001['))
      text = text.replace(/\[(?=[[\u0001])/g, '[ ').replace(/\u0001\[/g, '\u0001 [');
    if (text.includes(']]') || text.includes(']\u0002') || text.includes('\u0002]'))
      text = text.replace(/(?<=[\]\u0002])\]/g, ' ]').replace(/\](?=\u0002)/g, '] ');
    return text.replace(/\u0001/g, '[[').replace(/\u0002/g, ']]');
  }
}

export interface FigureState {
  id: string | null;
  label: TextSink;
  captionTitle: TextSink;
  caption: TextSink;
  /** chosen graphics in document order (one per <alternatives> group) */
  hrefs: string[];
  /** inside another <fig> (an eLife figure supplement): never part of a numbered range */
  nested: boolean;
  /** a graphical abstract's image, or an ordinary figure */
  role: FigureRole;
  /** the markup of each MathML formula in the label and caption */
  mathml: string[];
}

export interface Paragraph {
  text: CitingText;
  /** every fig id cited by an xref ref-type="fig" anywhere inside (rid lists split) */
  figRids: Set<string>;
  /** in the main article body, so part of fullText */
  main: boolean;
  /** a table cell read for its citations only (release option) */
  tableCell?: boolean;
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
  license: {
    seen: boolean;
    hrefs: string[];
    types: string[];
    refs: string[];
    links: string[];
    text: TextSink;
    copyright: string | null;
  };
  abstracts: AbstractState[];
  bodyBlocks: string[];
  /** per cited fig id: its mention paragraphs (citations marked), deduplicated with `seen` */
  mentionsByFigId: Map<string, { texts: string[]; seen: Set<string> }>;
  /** an <article-meta> was read in the main article */
  sawArticleMeta: boolean;
  /** why the record is degraded (set by the caller for decoding repairs) */
  warnings: string[];
  figures: FigureState[];
  counts: Omit<GraphicCounts, 'figures'>;
  /** authors, affiliations and corresponding-author notes (contributors.ts) */
  contributors: ContributorsState;
  /** <history> dates (history.ts) */
  history: HistoryState;
  /** the markup of each MathML formula read outside captions (title, abstracts, body), in document order */
  mathml: string[];
  /** figure ranges written as two citations ("Figs 1–3"): resolved once every figure id is known */
  ranges: { text: CitingText; range: CitationRange }[];
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
    sawArticleMeta: false,
    warnings: [],
    figures: [],
    counts: { graphics: 0, tableGraphics: 0, formulaGraphics: 0, inlineGraphics: 0, supplementary: 0 },
    contributors: emptyContributors(),
    history: emptyHistory(),
    mathml: [],
    ranges: [],
  };
}

export function addBodyBlock(c: Collected, text: string): void {
  if (text) c.bodyBlocks.push(text);
}

export function closeParagraph(c: Collected, paragraph: Paragraph): void {
  const text = paragraph.text.text();
  if (!text) return;
  if (paragraph.main) c.bodyBlocks.push(text);
  for (const rid of paragraph.figRids) addMention(c, rid, paragraph.text.citing(rid));
  for (const range of paragraph.text.ranges) c.ranges.push({ text: paragraph.text, range });
}

function addMention(c: Collected, rid: string, marked: string): void {
  let mentions = c.mentionsByFigId.get(rid);
  if (!mentions) c.mentionsByFigId.set(rid, (mentions = { texts: [], seen: new Set() }));
  if (!mentions.seen.has(marked)) {
    mentions.seen.add(marked);
    mentions.texts.push(marked);
  }
}

/**
 * "Figs 1–3": the figures between the two cited ones, in document order among the article's own (not nested)
 * figures, get the paragraph as a mention with the whole range marked. Known only once every figure is read, so
 * these mentions follow the figure's direct ones.
 */
function resolveRanges(c: Collected): void {
  if (c.ranges.length === 0) return;
  const ids = [
    ...new Set(c.figures.filter((f) => !f.nested && f.role === 'figure' && f.id).map((f) => f.id as string)),
  ];
  for (const { text, range } of c.ranges) {
    const from = ids.indexOf(range.first.rids[range.first.rids.length - 1] ?? '');
    const to = ids.indexOf(range.second.rids[0] ?? '');
    if (from < 0 || to <= from + 1) continue;
    for (const rid of ids.slice(from + 1, to)) {
      if (!range.first.rids.includes(rid) && !range.second.rids.includes(rid))
        addMention(c, rid, text.citingRange(range));
    }
  }
}

const orNull = (s: string | null | undefined): string | null => (s ? s : null);

export function assembleArticle(c: Collected, pmcidHint: string | null): ArticleRecord {
  const idOf = (...types: string[]): string | null =>
    orNull(c.articleIds.find((id) => types.includes(id.type.toLowerCase()) && id.text)?.text);
  const versioned = idOf('pmcid-ver');
  const abstracts = c.abstracts.map(toAbstractRecord).filter((a) => a.sections.length > 0);
  const mainAbstract = abstracts.find((a) => a.type === null) ?? abstracts[0];
  const figures = toFigureRecords(c, abstracts);
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
      isoAbbrev:
        firstOf(c.journal.ids, 'iso-abbrev') ??
        firstOf(c.journal.abbrevTitles, 'iso-abbrev') ??
        firstOf(c.journal.ids, 'nlm-ta') ??
        orNull(c.journal.abbrevTitles[0]?.text),
      issn:
        firstOf(c.journal.issns, 'epub') ??
        firstOf(c.journal.issns, 'electronic') ??
        firstOf(c.journal.issns, 'ppub') ??
        firstOf(c.journal.issns, 'print') ??
        orNull(c.journal.issns[0]?.text),
      publisher: c.journal.publisher,
    },
    pubDate: bestPubDate(c.pubDates),
    license: toLicense(c.license),
    fullText: c.bodyBlocks.join('\n\n'),
    mathml: c.mathml,
    figures,
    counts: { figures: c.figures.filter((f) => f.hrefs.length > 0).length, ...c.counts },
    authors: assembleAuthors(c.contributors),
    history: assembleHistory(c.history),
    epubDate: epubDate(c.pubDates),
    warnings: [
      ...c.warnings,
      ...c.contributors.warnings,
      ...(c.sawArticleMeta
        ? []
        : ['no <article-meta>: ids, title, dates, keywords and licence are missing from the XML']),
    ],
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

function toFigureRecords(c: Collected, abstracts: AbstractRecord[]): FigureRecord[] {
  resolveRanges(c);
  const records: FigureRecord[] = [];
  // A graphical abstract's image rarely has a caption of its own; the abstract's text describes it.
  const graphical = abstracts.find((a) => a.type === 'graphical');
  for (const f of c.figures) {
    const captionTitle = orNull(f.captionTitle.text());
    let caption = [captionTitle, f.caption.text()].filter(Boolean).join(' ');
    if (!caption && f.role === 'graphical-abstract' && graphical) caption = abstractText(graphical);
    const mentions = (f.id ? c.mentionsByFigId.get(f.id)?.texts : undefined) ?? [];
    f.hrefs.forEach((graphicHref, graphicIndex) => {
      records.push({
        id: f.id,
        label: orNull(f.label.text()),
        captionTitle,
        caption,
        graphicHref,
        graphicIndex,
        mentions: [...mentions],
        role: f.role,
        mathml: [...f.mathml],
      });
    });
  }
  return records;
}

/** The electronic publication date: what PubMed's ArticleDate DateType="Electronic" gives. */
function epubDate(dates: PubDateState[]): string | null {
  for (const d of dates) {
    const electronic = d.pubType === 'epub' || (d.dateType === 'pub' && d.format === 'electronic');
    const iso = electronic ? isoDate(d.year, d.month, d.day) : null;
    if (iso) return iso;
  }
  return null;
}

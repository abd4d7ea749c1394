import type { Collected, TextSink } from './assemble';
import { openContributorElement } from './contributors';
import { openHistoryElement } from './history';

/** The element just opened inside the main article's <journal-meta> or <article-meta>. */
export interface FrontElement {
  readonly name: string;
  readonly attrs: Record<string, string>;
  readonly parentName: string;
  readonly grandparentName: string;
  /** inside a <license> */
  readonly inLicense: boolean;
  /** inside a floating object (a fig's own <permissions> is not the article's) */
  readonly detached: boolean;
  /** give this element its own text; `done` receives it flattened at the close tag */
  capture(done: (text: string) => void): TextSink;
  /** send this element's text into an existing sink, or drop it (null) */
  route(sink: TextSink | null): void;
  /** run `closer` at this element's close tag */
  onClose(closer: () => void): void;
}

/**
 * Front matter: ids, title, keywords, subjects, journal, publication dates and licence (authors: contributors.ts).
 * Returns false when the element is not front matter, so the body rules apply.
 */
export function openFrontMatter(c: Collected, el: FrontElement): boolean {
  if (openContributorElement(c.contributors, el) || openHistoryElement(c.history, el)) return true;
  const { name, attrs } = el;
  switch (name) {
    case 'article-id':
      if (el.parentName === 'article-meta')
        el.capture((text) => c.articleIds.push({ type: attrs['pub-id-type'] ?? '', text }));
      return true;
    case 'article-title':
      if (el.parentName === 'title-group' && el.grandparentName === 'article-meta' && c.title === null) {
        el.capture((text) => {
          c.title ??= text;
        });
      }
      return true;
    case 'kwd':
    case 'compound-kwd': // one keyword; its parts are spaced as blocks
      if (el.parentName === 'kwd-group') el.capture((text) => c.keywords.push(text));
      return true;
    case 'subject':
      if (el.parentName === 'subj-group') el.capture((text) => c.subjects.push(text));
      return true;
    case 'pub-date':
      if (el.parentName === 'article-meta') {
        c.pubDates.push({
          pubType: attrs['pub-type'] ?? null,
          dateType: attrs['date-type'] ?? null,
          format: attrs['publication-format'] ?? null,
          year: null,
          month: null,
          day: null,
        });
      }
      return true;
    case 'year':
    case 'month':
    case 'day': {
      const date = c.pubDates[c.pubDates.length - 1];
      if (date && el.parentName === 'pub-date' && el.grandparentName === 'article-meta')
        el.capture((text) => {
          date[name] = text;
        });
      return true;
    }
    case 'journal-title':
    case 'journal-id':
    case 'abbrev-journal-title':
    case 'issn':
    case 'publisher-name':
      openJournalField(c.journal, el);
      return true;
    case 'copyright-statement': // in <permissions>, or straight in article-meta (NLM 2.x)
    case 'license':
    case 'license_ref':
    case 'ext-link':
    case 'uri':
      if (!el.detached) openLicenseField(c.license, el);
      return name !== 'ext-link' && name !== 'uri';
    default:
      return false;
  }
}

function openJournalField(j: Collected['journal'], el: FrontElement): void {
  const type = (attribute: string): string => el.attrs[attribute] ?? '';
  switch (el.name) {
    case 'journal-title':
      if (j.title === null)
        el.capture((text) => {
          j.title ??= text;
        });
      return;
    case 'journal-id':
      el.capture((text) => j.ids.push({ type: type('journal-id-type'), text }));
      return;
    case 'abbrev-journal-title':
      el.capture((text) => j.abbrevTitles.push({ type: type('abbrev-type'), text }));
      return;
    case 'issn':
      el.capture((text) => j.issns.push({ type: el.attrs['pub-type'] ?? type('publication-format'), text }));
      return;
    case 'publisher-name':
      if (j.publisher === null)
        el.capture((text) => {
          j.publisher ??= text;
        });
      return;
  }
}

function openLicenseField(l: Collected['license'], el: FrontElement): void {
  switch (el.name) {
    case 'copyright-statement':
      el.capture((text) => {
        l.copyright ??= text;
      });
      return;
    case 'license':
      l.seen = true;
      l.hrefs.push(el.attrs['xlink:href'] ?? '');
      l.types.push(el.attrs['license-type'] ?? '');
      el.route(l.text);
      return;
    case 'license_ref': // ali:license_ref holds the URL as text
      l.types.push(el.attrs['content-type'] ?? '');
      el.capture((text) => l.refs.push(text));
      return;
    case 'ext-link':
    case 'uri':
      if (el.inLicense) l.links.push(el.attrs['xlink:href'] ?? '');
      return;
  }
}

import { isoDate } from './metadata';
import type { FrontElement } from './front';
import type { HistoryDate } from './records';

/**
 * The article's <history> dates (received, rev-recd, accepted...) from its <article-meta>: what PubMed's History
 * mirrors, kept in document order with the precision the XML gives.
 */
export interface HistoryState {
  dates: { type: string; year: string | null; month: string | null; day: string | null }[];
  open: HistoryState['dates'][number] | null;
}

export function emptyHistory(): HistoryState {
  return { dates: [], open: null };
}

/** Returns false when the element is not part of <history>. */
export function openHistoryElement(h: HistoryState, el: FrontElement): boolean {
  switch (el.name) {
    case 'date': {
      if (el.parentName !== 'history' || el.grandparentName !== 'article-meta') return false;
      const date = { type: el.attrs['date-type'] ?? '', year: null, month: null, day: null };
      h.dates.push(date);
      h.open = date;
      el.onClose(() => {
        h.open = null;
      });
      return true;
    }
    case 'year':
    case 'month':
    case 'day': {
      const date = h.open;
      if (!date || el.parentName !== 'date') return false;
      const field = el.name;
      el.capture((text) => {
        date[field] = text;
      });
      return true;
    }
    default:
      return false;
  }
}

export function assembleHistory(h: HistoryState): HistoryDate[] {
  return h.dates.flatMap((d) => {
    const date = isoDate(d.year, d.month, d.day);
    return d.type && date ? [{ type: d.type, date }] : [];
  });
}

import type { CcLicenseCode } from './records';

/** "PMC123", "pmc123", "123" or "PMC123.2" → "PMC123"; anything else → null. */
export function normalisePmcid(raw: string | null | undefined): string | null {
  const m = /^(?:PMC)?\s*(\d+)(?:\.\d+)?$/i.exec((raw ?? '').trim());
  return m ? `PMC${m[1]}` : null;
}

/** pmcid-ver "PMC13254695.1" → 1. */
export function pmcidVersion(raw: string): number | null {
  const m = /^(?:PMC)?\d+\.(\d+)$/i.exec(raw.trim());
  const version = m ? Number(m[1]) : NaN;
  return Number.isInteger(version) && version > 0 ? version : null;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

function monthNumber(raw: string): number | null {
  const s = raw.trim();
  if (/^\d{1,2}$/.test(s)) return Number(s);
  const byName = MONTHS.indexOf(s.slice(0, 3).toLowerCase());
  return byName >= 0 ? byName + 1 : null;
}

/** <year>/<month>/<day> → "YYYY", "YYYY-MM" or "YYYY-MM-DD", keeping only the precision actually given. */
export function isoDate(year: string | null, month: string | null, day: string | null): string | null {
  if (!year || !/^\d{4}$/.test(year.trim())) return null;
  const y = year.trim();
  const m = month ? monthNumber(month) : null;
  if (m === null || m < 1 || m > 12) return y;
  const mm = String(m).padStart(2, '0');
  const d = day && /^\d{1,2}$/.test(day.trim()) ? Number(day.trim()) : null;
  if (d === null || d < 1 || d > new Date(Date.UTC(Number(y), m, 0)).getUTCDate()) return `${y}-${mm}`;
  return `${y}-${mm}-${String(d).padStart(2, '0')}`;
}

/**
 * How much a <pub-date> is preferred (lower is better): electronic publication, then print,
 * then collection, then anything else (pmc-release, untyped). Handles both the old pub-type
 * and the JATS 1.2+ date-type + publication-format spellings.
 */
export function pubDateRank(pubType: string | null, dateType: string | null, format: string | null): number {
  const type = (pubType ?? '').toLowerCase();
  const kind = (dateType ?? '').toLowerCase();
  const medium = (format ?? '').toLowerCase();
  if (type === 'epub' || (kind === 'pub' && medium !== 'print')) return 0;
  if (type === 'ppub' || type === 'epub-ppub' || (kind === 'pub' && medium === 'print')) return 1;
  if (type === 'collection' || kind === 'collection') return 2;
  return 3;
}

function codeFromModifiers(nc: boolean, sa: boolean, nd: boolean): CcLicenseCode | null {
  if (sa && nd) return null; // no such licence
  if (nc) return sa ? 'CC BY-NC-SA' : nd ? 'CC BY-NC-ND' : 'CC BY-NC';
  return sa ? 'CC BY-SA' : nd ? 'CC BY-ND' : 'CC BY';
}

/**
 * From a licence URL. undefined means "this URL says nothing" (not Creative Commons), so the
 * caller may look further; null means it is known not to be a CC licence (public domain mark).
 */
export function ccCodeFromUrl(url: string): CcLicenseCode | null | undefined {
  const m = /creativecommons\.org\/(licenses|publicdomain)\/([a-z-]+)/i.exec(url);
  if (!m) return undefined;
  const kind = (m[1] as string).toLowerCase();
  const path = (m[2] as string).toLowerCase();
  if (kind === 'publicdomain') return path === 'zero' ? 'CC0' : null;
  const parts = path.split('-');
  if (parts[0] !== 'by') return undefined;
  return codeFromModifiers(parts.includes('nc'), parts.includes('sa'), parts.includes('nd'));
}

/** From @license-type or ali:license_ref @content-type: "cc-by", "CC BY-NC 4.0", "ccbyncndlicense", "cc0". */
export function ccCodeFromType(type: string): CcLicenseCode | null | undefined {
  const t = type.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (t.startsWith('cc0')) return 'CC0';
  if (t === 'publicdomain') return null;
  const m = /^ccby((?:nc|sa|nd)*)/.exec(t);
  if (!m) return undefined;
  const mods = m[1] as string;
  return codeFromModifiers(mods.includes('nc'), mods.includes('sa'), mods.includes('nd'));
}

/** From licence prose ("… Creative Commons Attribution-NonCommercial License …", "CC BY-NC-ND"). */
export function ccCodeFromText(text: string): CcLicenseCode | null | undefined {
  const token = /\bCC[\s-]BY((?:[\s-](?:NC|SA|ND))*)\b/i.exec(text);
  if (token) {
    const mods = (token[1] as string).toLowerCase();
    return codeFromModifiers(mods.includes('nc'), mods.includes('sa'), mods.includes('nd'));
  }
  // Only the words right after "Attribution" name the variant; later "non-commercial use" does not.
  const words = /creative\s+commons\s+attribution([^.()\d]{0,60}?)(?:licen[cs]e|\d|\(|\.|,|$)/i.exec(text);
  if (words) {
    const mods = (words[1] as string).toLowerCase().replace(/[^a-z]/g, '');
    return codeFromModifiers(mods.includes('noncommercial'), mods.includes('sharealike'), mods.includes('noderiv'));
  }
  if (/\bCC0\b/.test(text) || /creative\s+commons\s+public\s+domain\s+dedication/i.test(text)) return 'CC0';
  return undefined;
}

/** TeX from <tex-math>: PMC wraps it in a whole \documentclass preamble; keep the formula only. */
export function texFormula(tex: string): string {
  const body = /\\begin\{document\}([\s\S]*?)\\end\{document\}/.exec(tex);
  return (body ? (body[1] as string) : tex)
    .trim()
    .replace(/^\$+|\$+$/g, '')
    .trim();
}

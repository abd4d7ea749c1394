/**
 * The article's authors, chemicals and PubMed dates as the Parquet columns carry them: JATS authors first,
 * completed from PubMed's AuthorList, and PubMed's ChemicalList, ArticleDate and History.
 *
 * Rule (docs/dataset-format.md): the JATS byline is the list, in its order. Each JATS author is paired with the
 * first not yet paired PubMed author of the same name: folded surname (case, accents and punctuation ignored) and
 * the first letter of the given names, or the folded group name for a group author. A pair takes the ORCID iD from
 * PubMed when JATS has none, and PubMed's affiliations when JATS links none; JATS values are never replaced, and
 * the corresponding flag is JATS's alone (PubMed has none). PubMed authors left unpaired are not added. An article
 * whose XML names no author takes PubMed's list as it is. Pure and deterministic: same inputs, same columns.
 */
import type { ArticleRecord, AuthorRecord } from '../parse/records';
import type { AuthorColumn, PubmedColumns } from '../parquet/writer';
import type { PubmedAuthor, PubmedRecord } from './pubmed';

/** Lower case, no accents, letters and digits only: "Úbeda" and "UBEDA" and "Ubeda-" fold alike. */
function fold(s: string | null): string {
  return (s ?? '')
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]/gu, '');
}

function jatsKey(a: AuthorRecord): string | null {
  if (a.group) return `g:${fold(a.name)}`;
  return a.surname ? `p:${fold(a.surname)}:${fold(a.givenNames).slice(0, 1)}` : null;
}

function pubmedKey(a: PubmedAuthor): string | null {
  if (a.collectiveName) return `g:${fold(a.collectiveName)}`;
  return a.lastName ? `p:${fold(a.lastName)}:${fold(a.foreName ?? a.initials).slice(0, 1)}` : null;
}

function fromPubmed(a: PubmedAuthor): AuthorColumn {
  const person = [a.foreName, a.lastName, a.suffix].filter(Boolean).join(' ');
  return {
    name: a.collectiveName ?? person,
    surname: a.collectiveName ? null : a.lastName,
    given_names: a.collectiveName ? null : a.foreName,
    group: a.collectiveName !== null,
    orcid: a.orcid,
    corresponding: false,
    affiliations: a.affiliations,
    source: 'pubmed',
  };
}

/** The authors column: JATS's byline completed from PubMed by the rule above. */
export function reconcileAuthors(jats: readonly AuthorRecord[], pubmed: readonly PubmedAuthor[]): AuthorColumn[] {
  if (jats.length === 0) return pubmed.map(fromPubmed).filter((a) => a.name !== '');
  const used = new Set<number>();
  return jats.map((a) => {
    const key = jatsKey(a);
    const i = key === null ? -1 : pubmed.findIndex((p, j) => !used.has(j) && pubmedKey(p) === key);
    const pm = i >= 0 ? pubmed[i] : undefined;
    if (pm) used.add(i);
    const orcid = a.orcid ?? pm?.orcid ?? null;
    const fillAffiliations = a.affiliations.length === 0 && pm !== undefined && pm.affiliations.length > 0;
    const affiliations = fillAffiliations ? pm.affiliations : a.affiliations;
    const filled = orcid !== a.orcid || fillAffiliations;
    return {
      name: a.name,
      surname: a.surname,
      given_names: a.givenNames,
      group: a.group,
      orcid,
      corresponding: a.corresponding,
      affiliations: [...affiliations],
      source: filled ? 'jats+pubmed' : 'jats',
    };
  });
}

/**
 * The Parquet columns from the article record and its PubMed record (null when PubMed returned none). Records
 * written before these fields existed (a resumed release) read as empty lists.
 */
export function pubmedColumnsOf(record: ArticleRecord, pubmed: PubmedRecord | null): PubmedColumns {
  return {
    article_authors: reconcileAuthors(record.authors ?? [], pubmed?.authors ?? []),
    article_chemicals: (pubmed?.chemicals ?? []).map((c) => ({
      registry_number: c.registryNumber,
      name: c.name,
      ui: c.ui,
    })),
    article_pubmed_article_date: pubmed?.articleDate ?? null,
    article_pubmed_history: pubmed?.history ?? [],
  };
}

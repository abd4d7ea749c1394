import type { TextSink } from './assemble';
import type { FrontElement } from './front';
import type { AuthorRecord } from './records';

/**
 * Authors from the main article's <contrib-group>s: names, ORCID iDs, affiliations and the corresponding flag.
 *
 * JATS links authors to affiliations and notes by id (<xref ref-type="aff" rid="aff1 aff2">, <xref
 * ref-type="corresp">), and the targets may come before or after the contributor, so the pass only gathers
 * contributors, affiliations and corresponding-author note ids; assembleAuthors resolves the links at the end.
 */

interface ContributorState {
  /** @contrib-type, else the group's @content-type, else "author" */
  type: string;
  corresp: boolean;
  nameSeen: boolean;
  eastern: boolean;
  surname: string | null;
  givenNames: string | null;
  suffix: string | null;
  collab: string | null;
  stringName: string | null;
  orcid: string | null;
  /** xref ref-type="aff" targets, in order */
  affRids: string[];
  /** xref targets of notes (corresp, author-notes, fn) */
  noteRids: string[];
  /** an <xref ref-type="corresp">: only corresponding authors carry one */
  correspXref: boolean;
  /** <aff>s written inside the <contrib> itself */
  inlineAffs: string[];
}

export interface ContributorsState {
  list: ContributorState[];
  /** the top-level <contrib> being read */
  open: ContributorState | null;
  /** <contrib>s open inside it (members of a <collab>): not byline authors */
  nested: number;
  /** inside the open contributor's first <name> */
  inName: boolean;
  /** @content-type of the enclosing <contrib-group> */
  groupType: string | null;
  /** affiliations outside any contributor, in document order */
  affs: { id: string | null; text: string }[];
  /** the <aff> being read: address parts are separated in it */
  aff: TextSink | null;
  /** the open <aff-alternatives> */
  alternatives: { id: string | null; taken: boolean } | null;
  /** degraded author data (an ORCID that is none), for the record's warnings */
  warnings: string[];
  /** texts of the <corresp> notes, for bylines that link none ("Correspondence to: Irene H. Cheng, ...") */
  correspTexts: string[];
  /** ids of <corresp> elements and of corresponding-author notes in <author-notes> */
  correspIds: Set<string>;
}

export function emptyContributors(): ContributorsState {
  return {
    list: [],
    open: null,
    nested: 0,
    inName: false,
    groupType: null,
    affs: [],
    aff: null,
    alternatives: null,
    warnings: [],
    correspTexts: [],
    correspIds: new Set(),
  };
}

// Between two address parts of an <aff> (<institution>, <city>...): a comma unless the XML already punctuates.
// U+0003 is a character XML forbids, so the reader has stripped it from every text and it cannot collide.
const PART = '\u0003';
const ADDRESS_PARTS = new Set([
  'institution',
  'institution-wrap',
  'addr-line',
  'city',
  'state',
  'country',
  'postal-code',
  'named-content',
  'email',
]);

/** "Dept X" PART "Univ Y" PART "USA" → "Dept X, Univ Y, USA"; existing punctuation is kept, not doubled. */
export function joinAddressParts(text: string): string {
  let out = '';
  for (const raw of text.split(PART)) {
    const part = raw.trim();
    if (!part) continue;
    if (!out) {
      out = part;
      continue;
    }
    // the last character alone: a regular expression ending in $ scanned the whole address built so far
    const last = out[out.length - 1] as string;
    if (/^[,.;:)\]]/.test(part)) out += part;
    else if (last === '(' || last === '[') out += part;
    else if (last === ',' || last === ';' || last === ':' || last === '-') out += ` ${part}`;
    else out += `, ${part}`;
  }
  return out.replace(/\s+([,;])/g, '$1').replace(/[\s,;]+$/, '');
}

const ORCID = /(\d{4}-\d{4}-\d{4}-\d{3}[\dXx])\s*\/?$/;

/**
 * "https://orcid.org/0000-0002-1825-0097" or the bare iD → "0000-0002-1825-0097"; anything else, or an iD whose
 * check digit (ISO 7064 MOD 11-2, as ORCID computes it) is wrong, → null.
 */
export function normaliseOrcid(text: string | null | undefined): string | null {
  const m = ORCID.exec((text ?? '').trim());
  if (!m) return null;
  const id = (m[1] as string).toUpperCase();
  const digits = id.replace(/-/g, '');
  let total = 0;
  for (let i = 0; i < 15; i++) total = (total + Number(digits[i])) * 2;
  const check = (12 - (total % 11)) % 11;
  return digits[15] === (check === 10 ? 'X' : String(check)) ? id : null;
}

/** A note that says it is the corresponding author's ("* Corresponding author.", "Correspondence: ..."). */
const CORRESP_NOTE = /^\W*(corresponding author|correspondence|to whom correspondence|address correspondence)/i;

/**
 * The contributor rules of the front-matter pass. Returns false when the element is none of its business, so the
 * other front-matter rules apply.
 */
export function openContributorElement(s: ContributorsState, el: FrontElement): boolean {
  const { name, attrs } = el;
  const contributor = s.nested === 0 ? s.open : null;
  switch (name) {
    case 'contrib-group': {
      if (s.open) {
        el.route(null); // a <collab>'s own members
        return true;
      }
      const outer = s.groupType;
      s.groupType = attrs['content-type'] ?? null;
      el.onClose(() => {
        s.groupType = outer;
      });
      return true;
    }
    case 'contrib':
      openContributor(s, el);
      return true;
    case 'aff':
      openAff(s, el, contributor);
      return true;
    case 'aff-alternatives': {
      // versions of one affiliation (languages, scripts): the first is kept, under the wrapper's id
      const alternatives = { id: attrs['id'] ?? null, taken: false };
      s.alternatives = alternatives;
      el.onClose(() => {
        s.alternatives = null;
      });
      return true;
    }
    case 'corresp':
      if (el.parentName !== 'author-notes') return false;
      if (attrs['id']) s.correspIds.add(attrs['id']);
      el.capture((text) => {
        if (text) s.correspTexts.push(text);
      });
      return true;
    case 'fn':
      if (el.parentName === 'author-notes' && attrs['id']) {
        const id = attrs['id'];
        if (attrs['fn-type'] === 'corresp') s.correspIds.add(id);
        else
          el.capture((text) => {
            if (CORRESP_NOTE.test(text)) s.correspIds.add(id);
          });
        return true;
      }
      return false;
    default:
      break;
  }
  if (s.aff) return openAffPart(s, el);
  if (!contributor) return false;
  return openContributorPart(s, contributor, el);
}

function openContributor(s: ContributorsState, el: FrontElement): void {
  if (s.open) {
    s.nested++;
    el.onClose(() => s.nested--);
    return;
  }
  const contributor: ContributorState = {
    type: el.attrs['contrib-type'] ?? s.groupType ?? 'author',
    corresp: el.attrs['corresp'] === 'yes',
    nameSeen: false,
    eastern: false,
    surname: null,
    givenNames: null,
    suffix: null,
    collab: null,
    stringName: null,
    orcid: null,
    affRids: [],
    noteRids: [],
    correspXref: false,
    inlineAffs: [],
  };
  s.list.push(contributor);
  s.open = contributor;
  el.onClose(() => {
    s.open = null;
  });
}

function openAff(s: ContributorsState, el: FrontElement, contributor: ContributorState | null): void {
  if (s.aff || (s.open && !contributor)) {
    el.route(null); // an aff inside an aff, or a collab member's own
    return;
  }
  let id = el.attrs['id'] ?? null;
  if (el.parentName === 'aff-alternatives' && s.alternatives) {
    if (s.alternatives.taken) {
      el.route(null);
      return;
    }
    s.alternatives.taken = true;
    id = s.alternatives.id ?? id;
  }
  s.aff = el.capture((text) => {
    s.aff = null;
    const joined = joinAddressParts(text);
    if (!joined) return;
    if (contributor) contributor.inlineAffs.push(joined);
    else s.affs.push({ id, text: joined });
  });
}

function openAffPart(s: ContributorsState, el: FrontElement): boolean {
  const aff = s.aff as TextSink;
  switch (el.name) {
    case 'label': // "1", "a", "*": the key the byline's xref shows
    case 'institution-id': // ROR / Ringgold ids
    case 'xref':
      el.route(null);
      return true;
    case 'sup':
      if (el.parentName === 'aff' && !aff.text()) el.route(null); // a leading <sup>1</sup> is a label
      return true;
    default:
      if (ADDRESS_PARTS.has(el.name)) {
        aff.add(PART);
        el.onClose(() => aff.add(PART));
      }
      return true;
  }
}

function openContributorPart(s: ContributorsState, c: ContributorState, el: FrontElement): boolean {
  const { name, attrs } = el;
  switch (name) {
    case 'name':
    case 'string-name':
      if (c.nameSeen || c.collab !== null) return true;
      c.nameSeen = true;
      if (name === 'string-name') {
        el.capture((text) => {
          c.stringName = text || null;
        });
        return true;
      }
      c.eastern = attrs['name-style'] === 'eastern';
      s.inName = true;
      el.onClose(() => {
        s.inName = false;
      });
      return true;
    case 'surname':
    case 'given-names':
    case 'suffix':
      if (s.inName && el.parentName === 'name')
        el.capture((text) => {
          if (name === 'surname') c.surname = text || null;
          else if (name === 'given-names') c.givenNames = text || null;
          else c.suffix = text || null;
        });
      return true;
    case 'collab':
      if (c.collab === null && !c.nameSeen)
        el.capture((text) => {
          c.collab = text || null;
        });
      else el.route(null);
      return true;
    case 'contrib-id':
      if ((attrs['contrib-id-type'] ?? '').toLowerCase() === 'orcid' && c.orcid === null)
        el.capture((text) => {
          c.orcid = checkedOrcid(s, text);
        });
      return true;
    case 'uri':
    case 'ext-link': // older ORCID markup: <uri content-type="orcid">
      if (c.orcid === null && /orcid/i.test(`${attrs['content-type'] ?? ''} ${attrs['ext-link-type'] ?? ''}`))
        el.capture((text) => {
          c.orcid = normaliseOrcid(attrs['xlink:href']) ?? checkedOrcid(s, text);
        });
      return true;
    case 'xref': {
      const rids = (attrs['rid'] ?? '').split(/\s+/).filter(Boolean);
      const type = attrs['ref-type'] ?? '';
      if (type === 'aff') c.affRids.push(...rids);
      else if (type === 'corresp') {
        c.correspXref = true;
        c.noteRids.push(...rids);
      } else if (type === 'author-notes' || type === 'fn') c.noteRids.push(...rids);
      return true;
    }
    default:
      return false;
  }
}

/** An ORCID the XML gives that is no valid iD is left out, and said in the record's warnings. */
function checkedOrcid(s: ContributorsState, text: string): string | null {
  const orcid = normaliseOrcid(text);
  if (orcid === null && text)
    s.warnings.push(
      `author ORCID ${JSON.stringify(text.slice(0, 80))} is not a valid ORCID iD (form or check digit): left out`,
    );
  return orcid;
}

const orNull = (s: string | null): string | null => (s ? s : null);

/** The byline's authors with their links resolved; editors, reviewers and nameless entries are left out. */
export function assembleAuthors(s: ContributorsState): AuthorRecord[] {
  const affById = new Map<string, string>();
  for (const a of s.affs) if (a.id !== null && !affById.has(a.id)) affById.set(a.id, a.text);
  // One affiliation and no links at all: the usual layout of a single-institution article.
  const sole = s.affs.length === 1 && s.list.every((c) => c.affRids.length === 0) ? s.affs[0]!.text : null;
  const out: AuthorRecord[] = [];
  for (const c of s.list) {
    if (c.type.toLowerCase() !== 'author') continue;
    const person = [c.givenNames, c.surname].filter((p): p is string => !!p);
    const personName = (c.eastern ? person.reverse() : person).join(' ');
    const name = orNull(c.collab) ?? (personName ? [personName, c.suffix].filter(Boolean).join(' ') : c.stringName);
    if (!name) continue;
    const linked = c.affRids.map((rid) => affById.get(rid)).filter((t): t is string => t !== undefined);
    const affiliations = [...new Set([...c.inlineAffs, ...linked])];
    if (affiliations.length === 0 && sole !== null && c.affRids.length === 0) affiliations.push(sole);
    out.push({
      name,
      surname: c.collab ? null : c.surname,
      givenNames: c.collab ? null : c.givenNames,
      group: c.collab !== null,
      orcid: c.orcid,
      corresponding: c.corresp || c.correspXref || c.noteRids.some((rid) => s.correspIds.has(rid)),
      affiliations,
    });
  }
  // No author linked as corresponding: an author whose full name a <corresp> note spells out is.
  if (!out.some((a) => a.corresponding) && s.correspTexts.length > 0) {
    const notes = s.correspTexts.map(foldSpaces);
    for (const a of out) {
      if (a.group) continue;
      const name = foldSpaces(a.name); // once per author, not once per note
      if (notes.some((n) => n.includes(name))) a.corresponding = true;
    }
  }
  return out;
}

const foldSpaces = (s: string): string => s.toLowerCase().replace(/[\s.]+/g, ' ');

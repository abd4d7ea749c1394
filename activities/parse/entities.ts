/**
 * Named entities for JATS files whose DTD we never load. PMC writes numeric references, but
 * publisher XML leaks HTML names (&nbsp;) that only the external DTD defines: we map the common
 * ones and turn any other name into '' rather than fail the whole article.
 */

// Code points 160..255 in order: the HTML Latin-1 names.
const LATIN1 = (
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr ' +
  'deg plusmn sup2 sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest ' +
  'Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ' +
  'ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig ' +
  'agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml ' +
  'eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml'
).split(' ');

// Code points 913.. and 945.. in order; '' marks the unassigned 930.
const GREEK_UPPER =
  'Alpha Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho  Sigma Tau Upsilon Phi Chi Psi Omega'.split(
    ' ',
  );
const GREEK_LOWER =
  'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigmaf sigma tau upsilon phi chi psi omega'.split(
    ' ',
  );

const OTHERS: Record<string, number> = {
  OElig: 338,
  oelig: 339,
  Scaron: 352,
  scaron: 353,
  Yuml: 376,
  fnof: 402,
  circ: 710,
  tilde: 732,
  thetasym: 977,
  upsih: 978,
  piv: 982,
  ensp: 8194,
  emsp: 8195,
  thinsp: 8201,
  zwnj: 8204,
  zwj: 8205,
  lrm: 8206,
  rlm: 8207,
  ndash: 8211,
  mdash: 8212,
  lsquo: 8216,
  rsquo: 8217,
  sbquo: 8218,
  ldquo: 8220,
  rdquo: 8221,
  bdquo: 8222,
  dagger: 8224,
  Dagger: 8225,
  bull: 8226,
  hellip: 8230,
  permil: 8240,
  prime: 8242,
  Prime: 8243,
  lsaquo: 8249,
  rsaquo: 8250,
  euro: 8364,
  trade: 8482,
  larr: 8592,
  uarr: 8593,
  rarr: 8594,
  darr: 8595,
  harr: 8596,
  part: 8706,
  nabla: 8711,
  isin: 8712,
  prod: 8719,
  sum: 8721,
  minus: 8722,
  radic: 8730,
  infin: 8734,
  sim: 8764,
  asymp: 8776,
  ne: 8800,
  equiv: 8801,
  le: 8804,
  ge: 8805,
};

function buildHtmlEntities(): Map<string, string> {
  const table = new Map<string, string>();
  LATIN1.forEach((name, i) => table.set(name, String.fromCodePoint(160 + i)));
  GREEK_UPPER.forEach((name, i) => name && table.set(name, String.fromCodePoint(913 + i)));
  GREEK_LOWER.forEach((name, i) => table.set(name, String.fromCodePoint(945 + i)));
  for (const [name, cp] of Object.entries(OTHERS)) table.set(name, String.fromCodePoint(cp));
  return table;
}

export const HTML_ENTITIES: ReadonlyMap<string, string> = buildHtmlEntities();

const XML_BUILTINS: ReadonlyMap<string, string> = new Map([
  ['amp', '&'],
  ['lt', '<'],
  ['gt', '>'],
  ['quot', '"'],
  ['apos', "'"],
]);

/** Declared entities expand past the limits: a billion-laughs bomb, a reference cycle or a runaway chain. */
export class EntityExpansionError extends Error {}

export interface EntityLimits {
  /** nesting of entity references inside entity values (billion laughs needs about 10) */
  maxDepth: number;
  /** characters that declared entities may add to the whole document, repeated references included */
  maxChars: number;
}

/**
 * Internal general entities declared as literals in a DOCTYPE's internal subset, as written (their
 * references are expanded on use). SYSTEM/PUBLIC (external) and parameter entities are deliberately not
 * matched: nothing is fetched, nothing is read from disk.
 */
export function internalSubsetEntities(doctype: string): Map<string, string> {
  const declared = new Map<string, string>();
  const declaration = /<!ENTITY\s+([^\s%"'>]+)\s+(?:"([^"]*)"|'([^']*)')\s*>/g;
  for (let m = declaration.exec(doctype); m !== null; m = declaration.exec(doctype)) {
    const name = m[1] as string;
    if (!declared.has(name)) declared.set(name, m[2] ?? m[3] ?? '');
  }
  return declared;
}

const REFERENCE = /&(?:#x([0-9a-f]+)|#([0-9]+)|([^\s&;#]+));/gi;

function charRef(hex: string | undefined, dec: string | undefined): string {
  const cp = hex !== undefined ? parseInt(hex, 16) : parseInt(dec ?? '', 10);
  return Number.isInteger(cp) && cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : '';
}

/**
 * Expands declared entities the way XML does (references inside a value are expanded too), memoised,
 * within a budget: a value nested deeper than maxDepth, a cycle, or more than maxChars characters added
 * to the document in all throws EntityExpansionError instead of exhausting memory.
 */
class EntityExpander {
  private readonly expanded = new Map<string, string>();
  private readonly active = new Set<string>();
  private added = 0;

  constructor(
    private readonly declared: ReadonlyMap<string, string>,
    private readonly limits: EntityLimits,
  ) {}

  lookup(name: string): string {
    const builtin = XML_BUILTINS.get(name);
    if (builtin !== undefined) return builtin;
    if (this.declared.has(name)) {
      const value = this.expand(name, 1);
      this.added += value.length;
      if (this.added > this.limits.maxChars) {
        throw new EntityExpansionError(
          `entity expansion limit: declared entities add more than ${this.limits.maxChars} characters (at &${name};)`,
        );
      }
      return value;
    }
    return HTML_ENTITIES.get(name) ?? '';
  }

  private expand(name: string, depth: number): string {
    const done = this.expanded.get(name);
    if (done !== undefined) return done;
    if (depth > this.limits.maxDepth)
      throw new EntityExpansionError(
        `entity expansion limit: references nest deeper than ${this.limits.maxDepth} (at &${name};)`,
      );
    if (this.active.has(name)) throw new EntityExpansionError(`entity expansion limit: &${name}; refers to itself`);
    this.active.add(name);
    const raw = this.declared.get(name) ?? '';
    let out = '';
    let last = 0;
    for (const m of raw.matchAll(REFERENCE)) {
      out += raw.slice(last, m.index);
      last = (m.index as number) + m[0].length;
      const ref = m[3];
      if (ref === undefined) out += charRef(m[1], m[2]);
      else if (this.declared.has(ref) && !XML_BUILTINS.has(ref)) out += this.expand(ref, depth + 1);
      else out += XML_BUILTINS.get(ref) ?? HTML_ENTITIES.get(ref) ?? '';
      if (out.length > this.limits.maxChars) {
        throw new EntityExpansionError(
          `entity expansion limit: &${name}; expands past ${this.limits.maxChars} characters`,
        );
      }
    }
    out += raw.slice(last);
    this.active.delete(name);
    this.expanded.set(name, out);
    return out;
  }
}

/**
 * The object handed to saxes as ENTITIES: XML built-ins, then the DOCTYPE's own literals (expanded within
 * `limits`), then HTML names; any other name reads as '' so an undefined entity never aborts the parse.
 */
export function lenientEntityTable(
  declared: ReadonlyMap<string, string>,
  limits: EntityLimits,
): Record<string, string> {
  const expander = new EntityExpander(declared, limits);
  return new Proxy(Object.create(null) as Record<string, string>, {
    get(_target, name): string {
      return typeof name === 'string' ? expander.lookup(name) : '';
    },
  });
}

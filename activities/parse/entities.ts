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
const GREEK_UPPER = 'Alpha Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho  Sigma Tau Upsilon Phi Chi Psi Omega'.split(' ');
const GREEK_LOWER = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigmaf sigma tau upsilon phi chi psi omega'.split(' ');

const OTHERS: Record<string, number> = {
  OElig: 338, oelig: 339, Scaron: 352, scaron: 353, Yuml: 376, fnof: 402, circ: 710, tilde: 732,
  thetasym: 977, upsih: 978, piv: 982,
  ensp: 8194, emsp: 8195, thinsp: 8201, zwnj: 8204, zwj: 8205, lrm: 8206, rlm: 8207,
  ndash: 8211, mdash: 8212, lsquo: 8216, rsquo: 8217, sbquo: 8218, ldquo: 8220, rdquo: 8221, bdquo: 8222,
  dagger: 8224, Dagger: 8225, bull: 8226, hellip: 8230, permil: 8240, prime: 8242, Prime: 8243,
  lsaquo: 8249, rsaquo: 8250, euro: 8364, trade: 8482,
  larr: 8592, uarr: 8593, rarr: 8594, darr: 8595, harr: 8596,
  part: 8706, nabla: 8711, isin: 8712, prod: 8719, sum: 8721, minus: 8722, radic: 8730, infin: 8734,
  sim: 8764, asymp: 8776, ne: 8800, equiv: 8801, le: 8804, ge: 8805,
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

const XML_BUILTINS: ReadonlyMap<string, string> = new Map([['amp', '&'], ['lt', '<'], ['gt', '>'], ['quot', '"'], ['apos', "'"]]);

function decodeCharRefs(value: string): string {
  return value.replace(/&#x([0-9a-f]+);|&#([0-9]+);/gi, (ref, hex: string | undefined, dec: string | undefined) => {
    const cp = hex !== undefined ? parseInt(hex, 16) : parseInt(dec ?? '', 10);
    return Number.isInteger(cp) && cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : '';
  });
}

/**
 * Internal general entities declared as literals in a DOCTYPE's internal subset.
 * SYSTEM/PUBLIC (external) and parameter entities are deliberately not matched: nothing is fetched.
 */
export function internalSubsetEntities(doctype: string): Map<string, string> {
  const declared = new Map<string, string>();
  const declaration = /<!ENTITY\s+([^\s%"'>]+)\s+(?:"([^"]*)"|'([^']*)')\s*>/g;
  for (let m = declaration.exec(doctype); m !== null; m = declaration.exec(doctype)) {
    const name = m[1] as string;
    if (!declared.has(name)) declared.set(name, decodeCharRefs(m[2] ?? m[3] ?? ''));
  }
  return declared;
}

/**
 * The object handed to saxes as ENTITIES: XML built-ins, then the DOCTYPE's own literals, then HTML
 * names; any other name reads as '' so an undefined entity never aborts the parse.
 */
export function lenientEntityTable(declared: ReadonlyMap<string, string>): Record<string, string> {
  return new Proxy(Object.create(null) as Record<string, string>, {
    get(_target, name): string {
      if (typeof name !== 'string') return '';
      return XML_BUILTINS.get(name) ?? declared.get(name) ?? HTML_ENTITIES.get(name) ?? '';
    },
  });
}

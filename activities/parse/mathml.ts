/**
 * MathML as a readable line of text, and its markup kept as written.
 *
 * Flattening MathML to its tokens loses the structure a reader needs ("S=CM+AN" for S = C/M + A/N). The linear
 * form here follows the conventions of plain-text math (UnicodeMath, TeX without the backslashes):
 * - fractions a/b, with parentheses around an operand of more than one token: (a + b)/c;
 * - sub- and superscripts x_i, x^2, x_(i,j), under/over limits the same way (∑_(i = 1)^n); an accent over one
 *   letter becomes the combining mark (V̇);
 * - binary and relational operators spaced (a = b + c), a leading sign not (−0.5), a comma followed by a space;
 * - names longer than one letter (log, sin, CV) stand apart from their neighbours: "log CV", not "logCV";
 * - √x and √(x + 1); an n-th root (x)^(1/n); a table's cells separated by ", " and its rows by "; ";
 * - mtext keeps its own spaces (a thin space is a space), mspace is a space;
 * - annotations (TeX copies) and mphantom are not read.
 */

/** One element of a <math> subtree as parsed: the name without prefix, and the name as written for the markup. */
export interface MathNode {
  name: string;
  qname: string;
  attrs: Record<string, string>;
  children: (MathNode | string)[];
}

type Kind = 'atom' | 'word' | 'op' | 'sep' | 'open' | 'close' | 'script' | 'text';
interface Item {
  text: string;
  kind: Kind;
}

const BINARY = new Set(
  '= + − - × · ⋅ ∗ * ÷ ± ∓ < > ≤ ≥ ≦ ≧ ≠ ≈ ≃ ≅ ∼ ~ ≡ ∝ ≪ ≫ → ← ↔ ⇒ ⇐ ⇔ ↦ ∈ ∉ ∋ ⊂ ⊃ ⊆ ⊇ ∪ ∩ ∧ ∨ ⊕ ⊗ ∘ ∣ ≔ ⩽ ⩾ := ==  <= >='.split(
    ' ',
  ),
);
const OPEN = new Set(['(', '[', '{', '⟨', '〈', '⌊', '⌈']);
const CLOSE = new Set([')', ']', '}', '⟩', '〉', '⌋', '⌉']);
const SEPARATORS = new Set([',', ';']);
// Invisible times, separator and plus say nothing in text; function application is a space.
const INVISIBLE = /[\u2061-\u2064]/g;
const HAS_INVISIBLE = /[\u2061-\u2064]/;

/** Combining marks for accents written over a single letter. */
const ACCENTS: Record<string, string> = {
  '.': '\u0307',
  '˙': '\u0307',
  '\u0307': '\u0307',
  '¨': '\u0308',
  '..': '\u0308',
  '^': '\u0302',
  ˆ: '\u0302',
  '~': '\u0303',
  '˜': '\u0303',
  '¯': '\u0304',
  '‾': '\u0305',
  '―': '\u0305',
  _: '\u0305',
  '→': '\u20d7',
  '⃗': '\u20d7',
  '´': '\u0301',
  '`': '\u0300',
  ˇ: '\u030c',
};

const isXmlSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;

/** Trims markup whitespace only: a thin or no-break space inside a token is content. */
function trimMarkupSpace(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isXmlSpace(s.charCodeAt(a))) a++;
  while (b > a && isXmlSpace(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

function tokenText(node: MathNode): string {
  let s = '';
  const children = node.children;
  for (let i = 0; i < children.length; i++) {
    const c = children[i] as MathNode | string;
    s += typeof c === 'string' ? c : tokenText(c);
  }
  return s;
}

// Indexed loops rather than callbacks or for-of: a formula's code runs rarely, often before V8 optimises it, and the
// iterator protocol is slow until then.
function elements(node: MathNode): MathNode[] {
  const out: MathNode[] = [];
  const children = node.children;
  for (let i = 0; i < children.length; i++) {
    const c = children[i] as MathNode | string;
    if (typeof c !== 'string') out.push(c);
  }
  return out;
}

/** Each child's own linear text, trimmed. */
function childTexts(node: MathNode): string[] {
  const out: string[] = [];
  const children = node.children;
  for (let i = 0; i < children.length; i++) {
    const c = children[i] as MathNode | string;
    if (typeof c !== 'string') out.push(joinItems(itemsOf(c)).trim());
  }
  return out;
}

function tokenItem(node: MathNode): Item | null {
  const raw = tokenText(node);
  if (node.name === 'mtext' || node.name === 'ms') return raw ? { text: raw, kind: 'text' } : null;
  const text = trimMarkupSpace(raw);
  if (node.name === 'mo') {
    if (text === '\u2061') return { text: ' ', kind: 'text' };
    const op = HAS_INVISIBLE.test(text) ? text.replace(INVISIBLE, '') : text;
    if (!op) return null;
    if (BINARY.has(op)) return { text: op, kind: 'op' };
    if (SEPARATORS.has(op)) return { text: op, kind: 'sep' };
    if (OPEN.has(op)) return { text: op, kind: 'open' };
    if (CLOSE.has(op)) return { text: op, kind: 'close' };
    return { text: op, kind: moreThanOneChar(op) && /^\p{L}+$/u.test(op) ? 'word' : 'atom' };
  }
  if (!text) return null;
  // A name of several letters ("log", "CV") reads as a word; a number or a single letter does not.
  return { text, kind: node.name === 'mi' && moreThanOneChar(text) ? 'word' : 'atom' };
}

/** More than one character (a surrogate pair is one). */
function moreThanOneChar(s: string): boolean {
  if (s.length <= 1) return false;
  return s.length > 2 || (s.charCodeAt(0) & 0xfc00) !== 0xd800;
}

const SIMPLE = /^[\p{L}\p{N}\p{M}.′″'∞∂∇∑∏∫∮]+$/u;

/** Letters, digits, marks, a decimal point, primes from `from` on: ASCII checked by hand, the rest by SIMPLE. */
function isSimple(s: string, from: number): boolean {
  if (s.length <= from) return false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return SIMPLE.test(from ? s.slice(from) : s);
    if (!((c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || c === 0x2e || c === 0x27))
      return false;
  }
  return true;
}

/** One operand standing alone: no parentheses for one token (letters, digits, a decimal point, primes). */
function operand(items: Item[], scripts = false): string {
  const text = joinItems(items).trim();
  if (isSimple(text, text.charCodeAt(0) === 0x2212 || text.charCodeAt(0) === 0x2d ? 1 : 0)) return text; // x, 2max, −1
  // a fraction's numerator or denominator may be one scripted name: CM_t/N
  if (scripts && /^[\p{L}\p{N}\p{M}.′″'∞∂∇∑∏∫∮]+(?:[_^][\p{L}\p{N}\p{M}.′″'∞∂∇∑∏∫∮]+){1,2}$/u.test(text)) return text;
  if (items.length === 1 && items[0]!.kind === 'atom' && /^\(.*\)$/.test(text)) return text;
  return text ? `(${text})` : '()';
}

const textOf = (node: MathNode | undefined): Item[] => (node ? itemsOf(node) : []);

function scripted(base: Item[], sub: MathNode | undefined, sup: MathNode | undefined): Item {
  let text = operand(base);
  if (sub) text += `_${operand(textOf(sub))}`;
  if (sup) text += `^${operand(textOf(sup))}`;
  return { text, kind: 'script' };
}

// Each subtree is read once: reading the base again for the fallback would double the work at every level.
function overUnder(node: MathNode): Item {
  const [base, a, b] = elements(node);
  const over = node.name === 'mover' ? a : node.name === 'munderover' ? b : undefined;
  const under = node.name === 'munder' || node.name === 'munderover' ? a : undefined;
  const baseItems = textOf(base);
  if (over && !under && baseItems.length === 1) {
    const baseText = (baseItems[0] as Item).text.trim();
    const mark = ACCENTS[joinItems(textOf(over)).trim()];
    if (mark && baseText.length > 0 && !moreThanOneChar(baseText)) return { text: baseText + mark, kind: 'atom' };
  }
  return scripted(baseItems, under, over);
}

function itemsOf(node: MathNode): Item[] {
  const out: Item[] = [];
  addItems(node, out);
  return out;
}

/** Appends a node's items to `out`: one array per row, not one per token. */
function addItems(node: MathNode, out: Item[]): void {
  switch (node.name) {
    case 'mi':
    case 'mn':
    case 'mo':
    case 'mtext':
    case 'ms': {
      const item = tokenItem(node);
      if (item) out.push(item);
      return;
    }
    case 'mspace':
      out.push({ text: ' ', kind: 'text' });
      return;
    case 'annotation':
    case 'annotation-xml':
    case 'mphantom':
    case 'none':
    case 'mprescripts':
      return;
    case 'semantics': {
      const first = elements(node)[0];
      if (first) addItems(first, out);
      return;
    }
    case 'mfrac': {
      const [num, den] = elements(node);
      out.push({ text: `${operand(textOf(num), true)}/${operand(textOf(den), true)}`, kind: 'atom' });
      return;
    }
    case 'msub':
    case 'msup':
    case 'msubsup': {
      const [base, a, b] = elements(node);
      out.push(
        scripted(
          textOf(base),
          node.name === 'msup' ? undefined : a,
          node.name === 'msub' ? undefined : node.name === 'msup' ? a : b,
        ),
      );
      return;
    }
    case 'munder':
    case 'mover':
    case 'munderover':
      out.push(overUnder(node));
      return;
    case 'msqrt':
      out.push({ text: `√${operand(childItems(node))}`, kind: 'atom' });
      return;
    case 'mroot': {
      const [base, index] = elements(node);
      out.push({ text: `${operand(textOf(base))}^(1/${joinItems(textOf(index)).trim()})`, kind: 'script' });
      return;
    }
    case 'mfenced': {
      const open = node.attrs['open'] ?? '(';
      const close = node.attrs['close'] ?? ')';
      const seps = (node.attrs['separators'] ?? ',').replace(/\s/g, '');
      const parts = childTexts(node);
      let inner = '';
      for (let i = 0; i < parts.length; i++) {
        if (i > 0) {
          const sep = seps ? (seps[Math.min(i - 1, seps.length - 1)] as string) : '';
          inner += sep === ',' || sep === ';' ? `${sep} ` : sep;
        }
        inner += parts[i] as string;
      }
      out.push({ text: `${open}${inner}${close}`, kind: 'atom' });
      return;
    }
    case 'mtable': {
      const rows: string[] = [];
      for (const row of elements(node)) {
        const cells = childTexts(row);
        // an mlabeledtr's first cell is the equation's label
        if (row.name === 'mlabeledtr') cells.shift();
        const text = cells.filter(Boolean).join(', ');
        if (text) rows.push(text);
      }
      out.push({ text: rows.join('; '), kind: 'atom' });
      return;
    }
    case 'mmultiscripts': {
      const [base, ...scripts] = elements(node);
      const pre = scripts.findIndex((s) => s.name === 'mprescripts');
      const post = pre >= 0 ? scripts.slice(0, pre) : scripts;
      const before = pre >= 0 ? scripts.slice(pre + 1) : [];
      const attach = (list: MathNode[]): string => {
        let text = '';
        for (let i = 0; i + 1 < list.length + 1; i += 2) {
          const sub = list[i];
          const sup = list[i + 1];
          if (sub && sub.name !== 'none') text += `_${operand(itemsOf(sub))}`;
          if (sup && sup.name !== 'none') text += `^${operand(itemsOf(sup))}`;
        }
        return text;
      };
      const prefix = attach(before);
      out.push({ text: `${prefix ? `{}${prefix}` : ''}${operand(textOf(base))}${attach(post)}`, kind: 'script' });
      return;
    }
    default:
      // mrow, mstyle, mpadded, menclose, merror, maction, math: their children in a row
      addChildren(node, out);
  }
}

function childItems(node: MathNode): Item[] {
  const out: Item[] = [];
  addChildren(node, out);
  return out;
}

function addChildren(node: MathNode, out: Item[]): void {
  const children = node.children;
  for (let i = 0; i < children.length; i++) {
    const c = children[i] as MathNode | string;
    if (typeof c !== 'string') addItems(c, out);
  }
}

/** Is an operator in this position a sign (−0.5, +x) rather than a binary operator? */
const isUnaryAfter = (prev: Item | null): boolean =>
  prev === null || prev.kind === 'op' || prev.kind === 'open' || prev.kind === 'sep';

/** An operator with no operand after it is a postfix sign (a charge: 3−, Fe^(2+)); it stands unspaced. */
const endsOperand = (next: Item | undefined): boolean =>
  next === undefined || next.kind === 'sep' || next.kind === 'close' || next.text === '/';

function joinItems(items: Item[]): string {
  let out = '';
  let prev: Item | null = null;
  let prevUnary = false;
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as Item;
    const unary = item.kind === 'op' && (isUnaryAfter(prev) || endsOperand(items[i + 1]));
    if (prev !== null && item.kind !== 'text' && prev.kind !== 'text' && spaced(prev, prevUnary, item, unary))
      out += ' ';
    out += item.text;
    prev = item;
    prevUnary = unary;
  }
  return out;
}

function spaced(prev: Item, prevUnary: boolean, cur: Item, curUnary: boolean): boolean {
  if (cur.kind === 'op') return !curUnary || (prev.kind === 'op' && !prevUnary) || prev.kind === 'sep';
  if (prev.kind === 'op') return !prevUnary;
  if (prev.kind === 'sep') return true;
  if (cur.kind === 'sep' || cur.kind === 'close' || prev.kind === 'open') return false;
  if (prev.kind === 'word') return cur.kind === 'atom' || cur.kind === 'word' || cur.kind === 'script';
  if (cur.kind === 'word') return prev.kind === 'atom' || prev.kind === 'close' || prev.kind === 'script';
  // after x^2 a following letter or number starts a new factor: x^2 y
  return prev.kind === 'script' && (cur.kind === 'atom' || cur.kind === 'script') && startsAlnum(cur.text);
}

function startsAlnum(s: string): boolean {
  const c = s.charCodeAt(0);
  if (c < 0x80) return (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a);
  return /^[\p{L}\p{N}]/u.test(s);
}

/** The linear text of a <math> element (or any MathML subtree). */
export function linearMath(node: MathNode): string {
  return joinItems(itemsOf(node)).replace(/ {2,}/g, ' ').trim();
}

const NEEDS_ESCAPE = /[&<>"]/;
const escapeText = (s: string): string =>
  NEEDS_ESCAPE.test(s) ? s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;') : s;
const escapeAttr = (s: string): string => (NEEDS_ESCAPE.test(s) ? escapeText(s).replace(/"/g, '&quot;') : s);

/** The markup of a MathML subtree, with element names and attributes as written (entities resolved). */
export function mathMarkup(node: MathNode): string {
  const out: string[] = [];
  writeMarkup(node, out);
  return out.join('');
}

function writeMarkup(node: MathNode, out: string[]): void {
  out.push('<', node.qname);
  for (const name in node.attrs) out.push(' ', name, '="', escapeAttr(node.attrs[name] as string), '"');
  if (node.children.length === 0) {
    out.push('/>');
    return;
  }
  out.push('>');
  for (const c of node.children) {
    if (typeof c === 'string') out.push(escapeText(c));
    else writeMarkup(c, out);
  }
  out.push('</', node.qname, '>');
}

// The element names this file compares against, as the literals themselves: a name sliced from a tag is a new
// string, and comparing it with every case of a switch costs a character-by-character compare each time.
const KNOWN_NAMES: ReadonlyMap<string, string> = new Map(
  [
    'math',
    'mi',
    'mn',
    'mo',
    'mtext',
    'ms',
    'mspace',
    'annotation',
    'annotation-xml',
    'mphantom',
    'none',
    'mprescripts',
    'semantics',
    'mfrac',
    'msub',
    'msup',
    'msubsup',
    'munder',
    'mover',
    'munderover',
    'msqrt',
    'mroot',
    'mfenced',
    'mtable',
    'mtr',
    'mtd',
    'mlabeledtr',
    'mmultiscripts',
    'mrow',
    'mstyle',
  ].map((n) => [n, n]),
);

/** A MathML element's name without its prefix, shared with the literals above where it is one of them. */
export function mathName(qname: string): string {
  const colon = qname.indexOf(':');
  const local = colon < 0 ? qname : qname.slice(colon + 1);
  return KNOWN_NAMES.get(local) ?? local;
}

/** Builds a MathML subtree from the parser's events; the reader hands over every event inside a <math>. */
export class MathBuilder {
  readonly root: MathNode;
  private readonly stack: MathNode[];

  constructor(qname: string, attrs: Record<string, string>) {
    this.root = { name: 'math', qname, attrs, children: [] };
    this.stack = [this.root];
  }

  get depth(): number {
    return this.stack.length;
  }

  open(qname: string, attrs: Record<string, string>): void {
    const node: MathNode = { name: mathName(qname), qname, attrs, children: [] };
    this.stack[this.stack.length - 1]!.children.push(node);
    this.stack.push(node);
  }

  /** Closes the innermost element; true when that was the <math> itself. */
  close(): boolean {
    this.stack.pop();
    return this.stack.length === 0;
  }

  text(t: string): void {
    this.stack[this.stack.length - 1]!.children.push(t);
  }
}

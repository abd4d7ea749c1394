import { SaxesParser, type SaxesTagPlain } from 'saxes';
import {
  addBodyBlock,
  CitingText,
  closeParagraph,
  emptyCollected,
  type Collected,
  type FigureState,
  type Paragraph,
  TextSink,
} from './assemble';
import { stripXmlForbidden } from '../common/keys';
import { EntityExpansionError, internalSubsetEntities, lenientEntityTable, type EntityLimits } from './entities';
import { openFrontMatter, type FrontElement } from './front';
import { chooseFigureGraphic, type GraphicCandidate } from './media';
import { MathBuilder, linearMath, mathMarkup } from './mathml';
import { texFormula } from './metadata';

/** What kind of fault: a well-formedness error, a non-JATS root, or a limit that protects the worker. */
export type XmlFaultKind = 'invalid-xml' | 'not-jats' | 'entity-limit' | 'too-deep';

/** Why the XML could not be read, and where (UTF-16 offset into the text); jats.ts adds line numbers. */
export class XmlFault extends Error {
  constructor(
    message: string,
    readonly offset: number,
    readonly kind: XmlFaultKind = 'invalid-xml',
  ) {
    super(message);
  }
}

export interface ReaderLimits {
  /** element nesting; real JATS stays under 50 (MathML included) */
  maxElementDepth: number;
  entities: EntityLimits;
}

/** What the reader collects beyond the default record. */
export interface ReaderOptions {
  /** figure citations inside table cells count as mentions (the row's text is the mention) */
  tableCellMentions?: boolean;
}

/** Elements that separate words: a space is inserted into flattened text before and after them. */
const BLOCKS = new Set([
  'p',
  'title',
  'label',
  'caption',
  'sec',
  'list',
  'list-item',
  'def-list',
  'def-item',
  'term',
  'def',
  'disp-formula',
  'disp-quote',
  'statement',
  'table',
  'tr',
  'td',
  'th',
  'break',
  'license-p',
  'kwd',
  'compound-kwd-part',
  'fig',
  'fig-group',
  'table-wrap',
  'boxed-text',
  'supplementary-material',
  'attrib',
  'verse-line',
  'ref',
  'mixed-citation',
  'element-citation',
  'alt-text',
  'long-desc',
]);

/** Floating objects: their text never belongs to the paragraph, caption or abstract around them. */
const DETACHED = new Set([
  'fig',
  'fig-group',
  'table-wrap',
  'table-wrap-group',
  'supplementary-material',
  'alt-text',
  'long-desc',
]);

/** What a <graphic> belongs to is its nearest ancestor among these. */
const GRAPHIC_CONTAINERS = new Set([
  'fig',
  'table-wrap',
  'disp-formula',
  'inline-formula',
  'supplementary-material',
  'chem-struct-wrap',
]);

/** Character-level faults saxes reads past (a stray control character, &#0;): not worth losing an article. */
const RECOVERABLE: ReadonlySet<string> = new Set(['disallowed character.', 'malformed character entity.']);

/** A cheap first test for stripXmlForbidden (one character class, no look-around). */
const MAYBE_FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff\ud800-\udfff]/;

/** Ancestors whose presence decides where text goes; only these are counted, to keep the pass cheap. */
// An object literal of constants, so `this.inside('body')` compiles to a load of a fixed slot (Object.fromEntries
// gave an object whose lookups V8 did not fold, and every open tag asks up to four of them).
const T = {
  body: 0,
  app: 1,
  'sub-article': 2,
  response: 3,
  'article-meta': 4,
  'journal-meta': 5,
  license: 6,
  'article-title': 7,
} as const;
type Tracked = keyof typeof T;
const TRACKED = Object.keys(T) as Tracked[];
const TRACKED_INDEX: ReadonlyMap<string, number> = new Map(TRACKED.map((name) => [name, T[name]]));

/** What onOpen needs to know of an element's local name, found with one lookup instead of three. */
interface ElementKind {
  readonly block: boolean;
  readonly detached: boolean;
  /** index into the tracked depths, or -1 */
  readonly tracked: number;
}
const PLAIN_ELEMENT: ElementKind = { block: false, detached: false, tracked: -1 };
const ELEMENT_KINDS: ReadonlyMap<string, ElementKind> = new Map(
  [...BLOCKS, ...DETACHED, ...TRACKED].map((name) => [
    name,
    { block: BLOCKS.has(name), detached: DETACHED.has(name), tracked: TRACKED_INDEX.get(name) ?? -1 },
  ]),
);

interface Frame {
  readonly name: string;
  /** index into the tracked depths, or -1 */
  readonly tracked: number;
  readonly block: boolean;
  /** a floating object: its text is dropped here (fig, table-wrap...) */
  readonly detached: boolean;
  /** where text inside this element goes; null = dropped */
  sink: TextSink | null;
  closers: (() => void)[] | null;
  /** set on <alternatives>: its children are versions of one thing; one text and one graphic are kept */
  alternatives: { texts: { name: string; text: string }[]; graphics: GraphicCandidate[] } | null;
  /** set on an abstract <sec>: its <title> becomes the section label */
  abstractSection: { label: TextSink } | null;
}

/**
 * Every element inside the front matter is offered to openFrontMatter: a class, not an object literal with two
 * closures, since most of those elements (authors, affiliations) are never captured.
 */
class FrontElementOf implements FrontElement {
  constructor(
    readonly name: string,
    readonly attrs: Record<string, string>,
    readonly parentName: string,
    readonly grandparentName: string,
    readonly inLicense: boolean,
    readonly detached: boolean,
    private readonly frame: Frame,
    private readonly captureInto: (frame: Frame, done: (text: string) => void) => TextSink,
  ) {}

  capture(done: (text: string) => void): TextSink {
    return this.captureInto(this.frame, done);
  }

  route(sink: TextSink | null): void {
    this.frame.sink = sink;
  }

  onClose(closer: () => void): void {
    (this.frame.closers ??= []).push(closer);
  }
}

/** saxes's read position: the chunk it is reading and the index just past the tag it has reported. */
interface ParserCursor {
  chunk: string;
  i: number;
}

/** The streaming state machine: routes each text node to the one place it belongs. */
export class JatsReader {
  readonly collected: Collected = emptyCollected();
  // Line tracking is off for speed; a fault carries the offset and the caller derives the line.
  private readonly parser = new SaxesParser({ xmlns: false, position: false });
  private readonly stack: Frame[] = [
    {
      name: '#document',
      tracked: -1,
      block: false,
      detached: false,
      sink: null,
      closers: null,
      alternatives: null,
      abstractSection: null,
    },
  ];
  private readonly depths = new Int32Array(TRACKED.length);
  private readonly figures: FigureState[] = [];
  private articlesOpened = 0;
  private detachedDepth = 0;
  private paragraph: Paragraph | null = null;
  private lastClosed = '';
  private rootName: string | null = null;
  /** set inside a <math> that is read: its events build a MathML tree instead of frames */
  private math: MathBuilder | null = null;
  private graphicalAbstract = false;

  /** `source` gives the whole text, read only to describe a fault (the pass itself streams). */
  constructor(
    private readonly source: () => string,
    private readonly limits: ReaderLimits,
    private readonly options: ReaderOptions = {},
  ) {
    const p = this.parser;
    p.on('doctype', (doctype) => {
      p.ENTITIES = lenientEntityTable(internalSubsetEntities(doctype), this.limits.entities);
    });
    p.on('opentag', (tag) => this.onOpen(tag));
    p.on('closetag', (tag) => this.onClose(tag));
    p.on('text', (t) => this.onText(t));
    p.on('cdata', (t) => this.onText(t));
    p.on('error', (err) => {
      if (!RECOVERABLE.has(err.message)) throw this.fault(err);
    });
    p.ENTITIES = lenientEntityTable(new Map(), this.limits.entities);
  }

  /** Characters XML forbids (saxes reports them and reads on) never reach a record: removed here, and counted. */
  forbiddenRemoved = 0;

  private onText(t: string): void {
    if (this.math) this.math.text(this.clean(t));
    else this.top.sink?.add(this.clean(t));
  }

  private clean(text: string): string {
    if (!MAYBE_FORBIDDEN.test(text)) return text;
    const { text: out, removed } = stripXmlForbidden(text);
    this.forbiddenRemoved += removed;
    return out;
  }

  /** The next piece of the document, in order; pieces may split anywhere. */
  write(chunk: string): void {
    this.guarded(() => this.parser.write(chunk));
  }

  /** The end of the document: unclosed elements and a missing <article> are faults. */
  end(): void {
    this.guarded(() => this.parser.close());
    if (this.articlesOpened === 0) {
      throw new XmlFault(
        `not a JATS article: expected an <article> element, found <${this.rootName ?? 'nothing'}> as the root`,
        0,
        'not-jats',
      );
    }
  }

  private guarded(step: () => void): void {
    try {
      step();
    } catch (err) {
      if (err instanceof EntityExpansionError) throw new XmlFault(err.message, this.parser.position, 'entity-limit');
      throw err;
    }
  }

  private get top(): Frame {
    return this.stack[this.stack.length - 1] as Frame;
  }

  private ancestor(generations: number): string {
    return this.stack[this.stack.length - 1 - generations]?.name ?? '';
  }

  private inside(name: Tracked): boolean {
    return (this.depths[T[name]] as number) > 0;
  }

  /** In the one article we describe, not a sub-article (eLife decision letters) or a second article. */
  private get inMainArticle(): boolean {
    // direct slots, not inside(): asked on every open tag, where V8 had run out of its budget for inlining calls
    const d = this.depths;
    return this.articlesOpened === 1 && d[T['sub-article']] === 0 && d[T.response] === 0;
  }

  private onOpen(tag: SaxesTagPlain): void {
    this.rootName ??= tag.name;
    if (this.math) {
      this.math.open(tag.name, tag.attributes);
      if (this.stack.length + this.math.depth > this.limits.maxElementDepth) this.tooDeep(tag.name);
      return;
    }
    // localName() written out: a call here was not inlined (see inMainArticle)
    const qname = tag.name;
    const colon = qname.indexOf(':');
    const name = colon < 0 ? qname : qname.slice(colon + 1);
    const attrs = tag.attributes;
    const parent = this.top;
    const { block, tracked, detached } = ELEMENT_KINDS.get(name) ?? PLAIN_ELEMENT;
    // every field set here, so that all frames share one shape
    const frame: Frame = {
      name,
      tracked,
      block,
      detached,
      sink: detached ? null : parent.sink,
      closers: null,
      alternatives: null,
      abstractSection: null,
    };
    if (block) parent.sink?.gap();
    if (parent.alternatives && !detached) this.enterAlternative(parent, frame);
    this.stack.push(frame);
    if (this.stack.length > this.limits.maxElementDepth) this.tooDeep(tag.name);
    if (tracked >= 0) (this.depths[tracked] as number)++;
    if (detached) this.detachedDepth++;
    this.openElement(name, attrs, frame, parent, tag.name);
  }

  private tooDeep(qname: string): never {
    throw new XmlFault(
      `elements nest deeper than ${this.limits.maxElementDepth} levels (at <${qname}>)`,
      this.parser.position,
      'too-deep',
    );
  }

  private onClose(tag: SaxesTagPlain): void {
    this.lastClosed = tag.name;
    // The <math> element itself has a frame; what is inside it only builds the tree.
    if (this.math && this.math.depth > 1) {
      this.math.close();
      return;
    }
    const frame = this.stack.pop() as Frame;
    if (frame.closers) for (let i = frame.closers.length - 1; i >= 0; i--) (frame.closers[i] as () => void)();
    if (frame.detached) this.detachedDepth--;
    if (frame.tracked >= 0) (this.depths[frame.tracked] as number)--;
    if (frame.block) this.top.sink?.gap();
  }

  private onClosing(frame: Frame, closer: () => void): void {
    (frame.closers ??= []).push(closer);
  }

  /** Capture this element's text on its own; `done` receives it flattened when the element closes. */
  private capture(frame: Frame, done: (text: string) => void): TextSink {
    const sink = new TextSink();
    frame.sink = sink;
    this.onClosing(frame, () => done(sink.text()));
    return sink;
  }

  // Each version inside <alternatives> is read apart; the group closes with the best one only.
  private enterAlternative(parent: Frame, frame: Frame): void {
    if (!frame.sink) return;
    const texts = (parent.alternatives as NonNullable<Frame['alternatives']>).texts;
    this.capture(frame, (text) => {
      if (text) texts.push({ name: frame.name, text });
    });
  }

  private openElement(name: string, attrs: Record<string, string>, frame: Frame, parent: Frame, qname: string): void {
    const c = this.collected;
    if (name === 'article') this.articlesOpened++;
    else if (name === 'article-meta' && this.inMainArticle) c.sawArticleMeta = true;
    const d = this.depths;
    const inFrontMatter =
      ((d[T['article-meta']] as number) > 0 || (d[T['journal-meta']] as number) > 0) && this.inMainArticle;
    if (inFrontMatter && openFrontMatter(c, this.frontElement(name, attrs, frame, parent))) return;
    switch (name) {
      case 'abstract':
        if (parent.name === 'article-meta' && this.inMainArticle) {
          c.abstracts.push({ type: attrs['abstract-type'] ?? null, sections: [], loose: null });
          if (attrs['abstract-type'] === 'graphical') {
            this.graphicalAbstract = true;
            this.onClosing(frame, () => {
              this.graphicalAbstract = false;
            });
          }
        }
        return;
      case 'math':
        return this.openMath(qname, attrs, frame);
      case 'disp-formula':
        if (this.inside('body') && this.inMainArticle && !this.detachedDepth && !this.paragraph && !frame.sink) {
          const block = new TextSink();
          frame.sink = block;
          this.onClosing(frame, () => addBodyBlock(c, block.text()));
          return;
        }
        return this.openAbstractChild(name, frame, parent);
      case 'tr': // the whole row, so the mention says what the cited figure shows ("Rate constants Fig. 3")
        if (this.options.tableCellMentions && this.inside('body') && !this.paragraph)
          return this.openParagraph(frame, true);
        return;
      case 'p':
        if ((this.inside('body') || this.inside('app')) && !this.detachedDepth && !this.paragraph)
          return this.openParagraph(frame);
        return this.openAbstractChild(name, frame, parent);
      case 'title':
        return this.openTitle(frame, parent);
      case 'xref':
      case 'fn':
        if (this.inside('article-title')) frame.sink = null;
        else if (
          name === 'xref' &&
          attrs['ref-type'] === 'fig' &&
          this.paragraph &&
          (!this.detachedDepth || this.paragraph.tableCell)
        ) {
          this.openCitation(attrs['rid'] ?? '', frame, this.paragraph);
        }
        return;
      case 'fig':
        return this.openFigure(attrs, frame);
      case 'label':
        if (parent.name === 'fig') frame.sink = this.currentFigure()?.label ?? null;
        return;
      case 'caption':
        if (parent.name === 'fig') frame.sink = this.currentFigure()?.caption ?? null;
        return;
      case 'alternatives':
        frame.alternatives = { texts: [], graphics: [] };
        this.onClosing(frame, () => this.closeAlternatives(frame));
        return;
      case 'graphic':
        return this.openGraphic(attrs, parent);
      case 'inline-graphic':
        c.counts.inlineGraphics++;
        return;
      case 'supplementary-material':
        c.counts.supplementary++;
        return;
      case 'tex-math':
        if (frame.sink) {
          const outer = frame.sink;
          this.capture(frame, (tex) => outer.add(texFormula(tex)));
        }
        return;
      case 'annotation':
      case 'annotation-xml':
        frame.sink = null; // TeX/MathML copies of the formula already read
        return;
      default:
        return this.openAbstractChild(name, frame, parent);
    }
  }

  // Abstract layout: a <sec> per structured section (its <title> is the label); loose paragraphs
  // form one unlabelled section; the abstract's own <title> ("Author Summary") is not text.
  private openAbstractChild(name: string, frame: Frame, parent: Frame): void {
    if (parent.name !== 'abstract' || !this.inMainArticle || this.ancestor(2) !== 'article-meta') return;
    const abstract = this.collected.abstracts[this.collected.abstracts.length - 1];
    if (!abstract) return;
    if (name === 'sec') {
      const section = { label: new TextSink(), text: new TextSink() };
      abstract.sections.push(section);
      abstract.loose = null;
      frame.sink = section.text;
      frame.abstractSection = section;
    } else if (name === 'p' || name === 'list' || name === 'disp-quote' || name === 'statement') {
      if (!abstract.loose) {
        abstract.loose = new TextSink();
        abstract.sections.push({ label: null, text: abstract.loose });
      }
      frame.sink = abstract.loose;
    } else if (!DETACHED.has(name)) {
      frame.sink = null;
    }
  }

  // The outermost <p> of a body is one paragraph: lists or formulas inside it stay part of it.
  private openParagraph(frame: Frame, tableCell = false): void {
    const paragraph: Paragraph = {
      text: new CitingText(),
      figRids: new Set(),
      main: this.inMainArticle && this.inside('body') && !tableCell,
      tableCell,
    };
    this.paragraph = paragraph;
    frame.sink = paragraph.text;
    this.onClosing(frame, () => {
      this.paragraph = null;
      closeParagraph(this.collected, paragraph);
    });
  }

  // The citation is marked only where the xref's text flows into the paragraph itself.
  private openCitation(ridList: string, frame: Frame, paragraph: Paragraph): void {
    const rids = ridList.split(/\s+/).filter(Boolean);
    for (const rid of rids) paragraph.figRids.add(rid);
    if (rids.length === 0 || frame.sink !== paragraph.text) return;
    const citation = paragraph.text.openCitation(rids);
    this.onClosing(frame, () => paragraph.text.closeCitation(citation));
  }

  private openTitle(frame: Frame, parent: Frame): void {
    if (parent.abstractSection) {
      frame.sink = parent.abstractSection.label;
    } else if (parent.name === 'caption' && this.ancestor(2) === 'fig') {
      frame.sink = this.currentFigure()?.captionTitle ?? null;
    } else if (parent.name === 'abstract') {
      frame.sink = null;
    } else if (
      (parent.name === 'sec' || parent.name === 'boxed-text') &&
      this.inside('body') &&
      this.inMainArticle &&
      !this.detachedDepth &&
      !this.paragraph
    ) {
      // A section title is read like a paragraph: its figure citations are mentions too.
      this.openParagraph(frame);
    }
  }

  private frontElement(name: string, attrs: Record<string, string>, frame: Frame, parent: Frame): FrontElement {
    return new FrontElementOf(
      name,
      attrs,
      parent.name,
      this.ancestor(2),
      this.inside('license'),
      this.detachedDepth > 0,
      frame,
      this.captureInto,
    );
  }

  private readonly captureInto = (frame: Frame, done: (text: string) => void): TextSink => this.capture(frame, done);

  private currentFigure(): FigureState | undefined {
    return this.figures[this.figures.length - 1];
  }

  // Figures nest (eLife child-fig inside its parent): a stack keeps each caption with its own fig,
  // and the record slot is taken at the open tag so the parent precedes its children.
  private openFigure(attrs: Record<string, string>, frame: Frame): void {
    const figure: FigureState = {
      id: attrs['id'] ?? null,
      label: new TextSink(),
      captionTitle: new TextSink(),
      caption: new TextSink(),
      hrefs: [],
      nested: this.figures.length > 0,
      role: this.graphicalAbstract ? 'graphical-abstract' : 'figure',
      mathml: [],
    };
    this.collected.figures.push(figure);
    this.figures.push(figure);
    this.onClosing(frame, () => {
      this.figures.pop();
    });
  }

  private openGraphic(attrs: Record<string, string>, parent: Frame): void {
    const counts = this.collected.counts;
    counts.graphics++;
    let container = '';
    for (let i = this.stack.length - 2; i > 0 && !container; i--) {
      const name = (this.stack[i] as Frame).name;
      if (GRAPHIC_CONTAINERS.has(name)) container = name;
    }
    if (container === 'table-wrap') counts.tableGraphics++;
    else if (container === 'disp-formula' || container === 'inline-formula') counts.formulaGraphics++;
    else if (container === 'fig') {
      const href = attrs['xlink:href'] ?? attrs['href'];
      if (!href) return;
      if (parent.alternatives) parent.alternatives.graphics.push({ href, attrs });
      else this.currentFigure()?.hrefs.push(href);
    }
  }

  // MathML reads better than its TeX copy, and TeX better than nothing; graphics compete apart.
  private closeAlternatives(frame: Frame): void {
    const alt = frame.alternatives as NonNullable<Frame['alternatives']>;
    const text =
      alt.texts.find((t) => t.name === 'math') ?? alt.texts.find((t) => t.name === 'tex-math') ?? alt.texts[0];
    if (text && frame.sink) frame.sink.add(text.text);
    const chosen = chooseFigureGraphic(alt.graphics);
    if (chosen) this.currentFigure()?.hrefs.push(chosen.href);
  }

  // MathML is read as a tree and written out as linear text; its markup is kept with the caption or the article.
  private openMath(qname: string, attrs: Record<string, string>, frame: Frame): void {
    const sink = frame.sink;
    if (!sink) return;
    const builder = new MathBuilder(qname, attrs);
    this.math = builder;
    const figure = this.currentFigure();
    const inCaption = figure && (sink === figure.caption || sink === figure.captionTitle);
    const opened = this.parser as unknown as ParserCursor;
    const chunk = opened.chunk;
    const start = chunk.lastIndexOf('<', opened.i - 1);
    this.onClosing(frame, () => {
      this.math = null;
      const text = linearMath(builder.root);
      if (text) sink.add(text);
      if (!inCaption && !this.inMainArticle) return;
      // The markup as written, sliced from the text saxes reads; rebuilt from the tree when it spans two chunks.
      const closed = this.parser as unknown as ParserCursor;
      const markup = closed.chunk === chunk && start >= 0 ? chunk.slice(start, closed.i) : mathMarkup(builder.root);
      if (inCaption) figure.mathml.push(markup);
      else this.collected.mathml.push(markup);
    });
  }

  private fault(err: Error): XmlFault {
    const offset = this.parser.position;
    const reason = err.message;
    const unclosed = /^unclosed tag: (.+)$/.exec(reason);
    if (unclosed) return new XmlFault(`truncated XML: expected </${unclosed[1]}> before the end of input`, offset);
    if (reason === 'unexpected close tag.') {
      // saxes has already popped the element it expected to close; the tag it met is in the text.
      const xml = this.source();
      const start = xml.lastIndexOf('</', offset - 1);
      const found = /^<\/([^\s>]+)/.exec(xml.slice(start, start + 200))?.[1] ?? '?';
      return new XmlFault(
        `mis-nested XML: expected </${this.lastClosed}> but found </${found}>`,
        start >= 0 ? start : offset,
      );
    }
    return new XmlFault(`malformed XML: ${reason}`, offset);
  }
}

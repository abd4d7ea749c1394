/**
 * npm run bench:parse [-- --mb 100]
 *
 * Article extraction throughput: this project's one streaming saxes pass (parseJats) against the original
 * BIOMEDICA pipeline's approach rebuilt in TypeScript on the same parser, side by side in one process on
 * one core (re-executed under `taskset -c 0` with single-threaded GC where taskset exists).
 *
 * The original (docs/dataset-format.md) builds an lxml tree of the article, then for each image
 * re-parses the whole nXML and takes the caption of the parent of the first //graphic[@xlink:href=<image>].
 * Here: a full DOM per article (saxes events into element/text nodes, like etree.fromstring), then per
 * figure graphic one more full DOM parse and a document-order search for the graphic, its parent and the
 * parent's first .//caption, whose descendant text is the caption. The original also parsed each article
 * twice more with ElementTree (context) and once with xmltodict; those are left out, so the ratio printed
 * is a lower bound.
 *
 * A third row is saxes alone on the same input (decoding included, no work in its handlers): the ceiling for
 * any pass built on it, so the share of it that parseJats reaches shows how much our own work costs.
 * `--original no` leaves the slow original out, for quick rounds.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SaxesParser } from 'saxes';
import { fixturePaths } from '../config/paths';
import { parseJats } from '../activities/parse/jats';
import { lenientEntityTable } from '../activities/parse/entities';
import { arg, nArg, stopwatch } from './common';

const MB = 1024 * 1024;

// ---- one core -------------------------------------------------------------------------------------------
if (
  process.env.BENCH_PARSE_PINNED !== '1' &&
  process.platform === 'linux' &&
  spawnSync('taskset', ['-c', '0', 'true']).status === 0
) {
  const args = [
    '-c',
    '0',
    process.execPath,
    '--single-threaded-gc',
    ...process.execArgv,
    __filename,
    ...process.argv.slice(2),
  ];
  const child = spawnSync('taskset', args, { stdio: 'inherit', env: { ...process.env, BENCH_PARSE_PINNED: '1' } });
  process.exit(child.status ?? 1);
}

// ---- the original approach: DOM, then one re-parse per image -----------------------------------------------
interface DomElement {
  name: string;
  attrs: Record<string, string>;
  children: (DomElement | string)[];
  parent: DomElement | null;
}

/** A whole-document tree, as etree.fromstring builds it. Unknown named entities read as '' (no DTD). */
function parseDom(xml: string): DomElement {
  const root: DomElement = { name: '#document', attrs: {}, children: [], parent: null };
  let current = root;
  const parser = new SaxesParser({ xmlns: false, position: false });
  parser.ENTITIES = new Proxy({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>, {
    get: (target, name) => (typeof name === 'string' ? (target[name] ?? '') : ''),
  });
  parser.on('opentag', (tag) => {
    const el: DomElement = {
      name: tag.name,
      attrs: tag.attributes as Record<string, string>,
      children: [],
      parent: current,
    };
    current.children.push(el);
    current = el;
  });
  parser.on('closetag', () => {
    current = current.parent ?? root;
  });
  parser.on('text', (t) => current.children.push(t));
  parser.on('cdata', (t) => current.children.push(t));
  parser.on('error', (err) => {
    if (!/disallowed character|malformed character entity/.test(err.message)) throw err;
  });
  parser.write(xml).close();
  return root;
}

function* descendants(el: DomElement): Generator<DomElement> {
  for (const child of el.children) {
    if (typeof child === 'string') continue;
    yield child;
    yield* descendants(child);
  }
}

function textOf(el: DomElement): string {
  let out = '';
  for (const child of el.children) out += typeof child === 'string' ? child : textOf(child);
  return out;
}

const localName = (qname: string): string => qname.slice(qname.indexOf(':') + 1);
const hrefOf = (el: DomElement): string | undefined => el.attrs['xlink:href'] ?? el.attrs['href'];

/** The images the original iterates: one per figure graphic (a lower bound on its per-package .jpg list). */
function figureImages(dom: DomElement): string[] {
  const hrefs: string[] = [];
  for (const el of descendants(dom)) {
    if (localName(el.name) !== 'graphic') continue;
    for (let up = el.parent; up; up = up.parent) {
      if (localName(up.name) === 'fig') {
        const href = hrefOf(el);
        if (href) hrefs.push(href);
        break;
      }
    }
  }
  return hrefs;
}

/** figure_set caption: re-parse, first //graphic[@xlink:href=href], its parent, the parent's first .//caption. */
function captionByReparse(xml: string, href: string): string {
  const dom = parseDom(xml);
  for (const el of descendants(dom)) {
    if (localName(el.name) !== 'graphic' || hrefOf(el) !== href) continue;
    const parent = el.parent;
    if (!parent) return '';
    for (const inner of descendants(parent)) if (localName(inner.name) === 'caption') return textOf(inner).trim();
    return 'No caption found';
  }
  return '';
}

function originalApproach(bytes: Buffer): { figures: number; captioned: number } {
  const xml = bytes.toString('utf8');
  const images = figureImages(parseDom(xml));
  let captioned = 0;
  for (const href of images) {
    const caption = captionByReparse(xml, href);
    if (caption && caption !== 'No caption found') captioned++;
  }
  return { figures: images.length, captioned };
}

// ---- this project -------------------------------------------------------------------------------------------
function streamingPass(bytes: Buffer): { figures: number; captioned: number } {
  const r = parseJats(bytes);
  return { figures: r.figures.length, captioned: r.figures.filter((f) => f.caption !== '').length };
}

// ---- the ceiling: saxes alone -------------------------------------------------------------------------------
/**
 * The tokenizer with nothing to do: the same decoding and the same saxes options as parseJats, an entity table,
 * and handlers that only count. What parseJats adds on top of this is the cost of our own work.
 */
function tokenizerAlone(bytes: Buffer): { figures: number; captioned: number } {
  const parser = new SaxesParser({ xmlns: false, position: false });
  parser.ENTITIES = lenientEntityTable(new Map(), { maxDepth: 16, maxChars: 1_000_000 });
  const ignore = (): void => undefined;
  parser.on('opentag', ignore);
  parser.on('closetag', ignore);
  parser.on('text', ignore);
  parser.on('cdata', ignore);
  parser.on('error', ignore);
  parser.write(bytes.toString('utf8')).close();
  return { figures: 0, captioned: 0 };
}

// ---- the run ------------------------------------------------------------------------------------------------
interface Measured {
  name: string;
  articles: number;
  bytes: number;
  seconds: number;
  /** CPU seconds of this process (user + system): what the parser costs, whatever else the machine runs */
  cpuSeconds: number;
  figures: number;
  captioned: number;
  slowestMs: number;
}

function measure(
  name: string,
  corpus: readonly Buffer[],
  run: (b: Buffer) => { figures: number; captioned: number },
): Measured {
  const m: Measured = {
    name,
    articles: 0,
    bytes: 0,
    seconds: 0,
    cpuSeconds: 0,
    figures: 0,
    captioned: 0,
    slowestMs: 0,
  };
  const elapsed = stopwatch();
  for (const article of corpus) {
    const t = process.hrtime.bigint();
    const r = run(article);
    m.slowestMs = Math.max(m.slowestMs, Number(process.hrtime.bigint() - t) / 1e6);
    m.articles++;
    m.bytes += article.length;
    m.figures += r.figures;
    m.captioned += r.captioned;
  }
  const { ms, cpuMs } = elapsed();
  m.seconds = ms / 1000;
  m.cpuSeconds = cpuMs / 1000;
  return m;
}

function main(): void {
  const targetMb = nArg('mb', 100);
  const dir = fixturePaths.nxml();
  const fixtures = fs
    .readdirSync(dir)
    .filter((f) => /\.(nxml|xml)$/.test(f))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f)));
  const corpus: Buffer[] = [];
  let bytes = 0;
  while (bytes < targetMb * MB) {
    for (const f of fixtures) {
      corpus.push(Buffer.from(f)); // its own copy: a corpus of distinct buffers, as read from disk
      bytes += f.length;
    }
  }
  console.log(
    `corpus: ${corpus.length} articles (${fixtures.length} real fixtures repeated), ${(bytes / MB).toFixed(1)} MiB, node ${process.version}, pinned to one core: ${process.env.BENCH_PARSE_PINNED === '1'}`,
  );
  // --original no: only the tokenizer and parseJats, for quick rounds while tuning.
  const withOriginal = arg('original', 'yes') !== 'no';
  for (const f of fixtures) {
    tokenizerAlone(f);
    streamingPass(f);
    if (withOriginal) originalApproach(f);
  }

  const tokenizer = measure('saxes alone (decode + tokenize)', corpus, tokenizerAlone);
  const ours = measure('parseJats (one streaming pass)', corpus, streamingPass);
  const original = withOriginal ? measure('original (DOM + re-parse per image)', corpus, originalApproach) : null;
  const row = (m: Measured): string =>
    `${m.name.padEnd(36)} ${(m.articles / m.seconds).toFixed(1).padStart(7)} articles/s ${(m.bytes / MB / m.seconds).toFixed(2).padStart(6)} MiB/s ` +
    `(${m.seconds.toFixed(1)} s wall, ${((m.seconds * 1000) / m.articles).toFixed(1)} ms/article, slowest ${m.slowestMs.toFixed(0)} ms; ` +
    `${(m.bytes / MB / m.cpuSeconds).toFixed(2)} MiB per CPU second)` +
    (m === tokenizer ? '' : `  ${m.figures} figure images, ${m.captioned} with a caption`);
  console.log(row(tokenizer));
  console.log(row(ours));
  if (original) console.log(row(original));
  console.log(
    `parseJats runs at ${((100 * tokenizer.cpuSeconds) / ours.cpuSeconds).toFixed(0)}% of the tokenizer's rate (by CPU time)`,
  );
  if (original) {
    console.log(
      `ratio: parseJats has ${(original.seconds / ours.seconds).toFixed(1)}x the original approach's throughput ` +
        `(${(original.cpuSeconds / ours.cpuSeconds).toFixed(1)}x by CPU time)`,
    );
  }
}

main();

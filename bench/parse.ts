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
 *
 * `--against REV` compares this checkout's parseJats with the one of git revision REV instead, in the same process
 * on the same input: REV's activities/ and config/ are extracted (`git archive`) into a temp dir with a node_modules
 * link to this checkout's, its parseJats is required through tsx, and the two run alternately on slices of the
 * corpus (`--rounds`, 10), so a change in the machine's load falls on both. Both must find the same figures.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
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

// ---- --against REV: this checkout's parseJats and another revision's, in one run ------------------------------
type Parse = typeof parseJats;

/** REV's parser, materialised from git into a temp dir and loaded in this process (tsx compiles it on require). */
function parserOf(rev: string): { parse: Parse; dir: string; commit: string } {
  const root = path.resolve(__dirname, '..');
  const git = (args: string[]): string => {
    const r = spawnSync('git', args, { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const commit = git(['rev-parse', '--verify', `${rev}^{commit}`]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-parse-${commit.slice(0, 7)}-`));
  const r = spawnSync('sh', ['-c', `git archive ${commit} activities config | tar -x -C "$1"`, 'sh', dir], {
    cwd: root,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`git archive ${commit} | tar -x: ${r.stderr}`);
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.join(dir, 'activities', 'parse', 'jats')) as { parseJats: Parse };
  return { parse: mod.parseJats, dir, commit };
}

function against(rev: string, corpus: readonly Buffer[], fixtures: readonly Buffer[]): void {
  const other = parserOf(rev);
  try {
    const theirs = (b: Buffer): { figures: number; captioned: number } => {
      const r = other.parse(b);
      return { figures: r.figures.length, captioned: r.figures.filter((f) => f.caption !== '').length };
    };
    // three warm-up passes each: V8 optimises both parsers before the clock starts
    for (let i = 0; i < 3; i++) {
      for (const f of fixtures) {
        streamingPass(f);
        theirs(f);
      }
    }
    const rounds = Math.max(1, nArg('rounds', 10));
    const per = Math.ceil(corpus.length / rounds);
    const total = { ours: [] as Measured[], theirs: [] as Measured[] };
    for (let i = 0; i < rounds; i++) {
      const slice = corpus.slice(i * per, (i + 1) * per);
      if (slice.length === 0) break;
      // alternate which runs first, so warm-up and a change in load do not favour one side
      const pair = [
        () => total.ours.push(measure('this checkout', slice, streamingPass)),
        () => total.theirs.push(measure(rev, slice, theirs)),
      ];
      if (i % 2) pair.reverse();
      for (const run of pair) run();
    }
    const sum = (ms: Measured[]): { bytes: number; cpu: number; figures: number; captioned: number } =>
      ms.reduce(
        (a, m) => ({
          bytes: a.bytes + m.bytes,
          cpu: a.cpu + m.cpuSeconds,
          figures: a.figures + m.figures,
          captioned: a.captioned + m.captioned,
        }),
        { bytes: 0, cpu: 0, figures: 0, captioned: 0 },
      );
    const a = sum(total.ours);
    const b = sum(total.theirs);
    const rate = (x: { bytes: number; cpu: number }): number => x.bytes / MB / x.cpu;
    const perRound = total.ours
      .map(
        (m, i) =>
          rate({ bytes: m.bytes, cpu: m.cpuSeconds }) /
          rate({ bytes: total.theirs[i]!.bytes, cpu: total.theirs[i]!.cpuSeconds }),
      )
      .sort((x, y) => x - y);
    const label = `${rev} (${other.commit.slice(0, 7)})`;
    console.log(
      `parseJats of this checkout: ${rate(a).toFixed(2)} MiB per CPU second  ${a.figures} figure images, ${a.captioned} with a caption`,
    );
    console.log(
      `parseJats of ${label}: ${rate(b).toFixed(2)} MiB per CPU second  ${b.figures} figure images, ${b.captioned} with a caption`,
    );
    console.log(
      `ratio this/${rev}: ${(rate(a) / rate(b)).toFixed(3)} over ${perRound.length} alternating rounds ` +
        `(per round: min ${perRound[0]!.toFixed(3)}, median ${perRound[Math.floor(perRound.length / 2)]!.toFixed(3)}, max ${perRound[perRound.length - 1]!.toFixed(3)})`,
    );
    if (a.figures !== b.figures) {
      console.error(`the two parsers found different figure counts: ${a.figures} here, ${b.figures} at ${label}`);
      process.exitCode = 1;
    }
  } finally {
    fs.rmSync(other.dir, { recursive: true, force: true });
  }
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
  const rev = arg('against');
  if (rev) return against(rev, corpus, fixtures);
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

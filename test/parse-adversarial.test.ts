import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fixturePaths, projectRoot } from '../config/paths';
import { collapseWhitespace } from '../activities/parse/assemble';
import { DEFAULT_JATS_LIMITS, JatsParseError, parseJats, type JatsFailure } from '../activities/parse/jats';

const nxmlDir = fixturePaths.nxml();

function fixture(pmcid: string): Buffer {
  const file = fs.readdirSync(nxmlDir).find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
  assert.ok(file, `no fixture for ${pmcid}`);
  return fs.readFileSync(path.join(nxmlDir, file));
}

/** Asserts that parsing fails with a JatsParseError of this reason (and message), and returns it. */
function rejects(
  input: string | Buffer,
  reason: JatsFailure,
  message?: RegExp,
  opts?: Parameters<typeof parseJats>[1],
): JatsParseError {
  let caught: unknown;
  try {
    parseJats(input, opts);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof JatsParseError, `expected a JatsParseError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

const article = (body: string, doctype = ''): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n${doctype}<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>` +
  `<article-id pub-id-type="pmc">7</article-id><title-group><article-title>T</article-title></title-group></article-meta></front>` +
  `<body>${body}</body></article>`;

describe('parseJats: empty, truncated, mis-nested and non-JATS input', () => {
  it('an empty file, a whitespace-only file and a lone byte-order mark are "empty"', () => {
    rejects('', 'empty', /^empty file$/);
    rejects(Buffer.alloc(0), 'empty', /^empty file$/);
    rejects(Buffer.from('  \n\t\r\n'), 'empty', /only whitespace/);
    rejects(Buffer.from([0xef, 0xbb, 0xbf]), 'empty');
    rejects('\ufeff \n', 'empty');
  });

  it('a real article cut at any point is "invalid-xml" with the line where the input ended', () => {
    const whole = fixture('PMC7417471');
    const text = whole.toString('utf8');
    // inside a tag name, an attribute value, an entity reference, a text node, a comment-free close tag
    const cuts = [
      text.indexOf('<journal-meta') + 5,
      text.indexOf('xlink:href="') + 15,
      text.indexOf('&#x') + 3,
      text.indexOf('<body>') + 500,
      text.lastIndexOf('</article>') + 4,
      whole.length - 1,
    ];
    for (const cut of cuts) {
      const piece = whole.subarray(0, Buffer.byteLength(text.slice(0, cut)));
      const err = rejects(
        piece,
        'invalid-xml',
        /^(truncated XML: expected <\/[\w:.-]+> before the end of input|malformed XML: .+) \(line \d+, column \d+\)$/,
      );
      assert.equal(err.line, piece.toString('utf8').split('\n').length, `cut at ${cut}`);
    }
  });

  it('mis-nested and unbalanced tags name what was expected and what was found', () => {
    rejects(
      article('<sec><p>One <italic>two</p></sec>'),
      'invalid-xml',
      /^mis-nested XML: expected <\/italic> but found <\/p> \(line 2, column \d+\)$/,
    );
    rejects(article('<sec><p>One</p></sec></sec>'), 'invalid-xml', /mis-nested XML|malformed XML/);
    rejects(`${article('')}<article/>`, 'invalid-xml', /malformed XML: /); // two roots
  });

  it('well-formed XML that is not a JATS article is "not-jats"; plain text is "invalid-xml"', () => {
    rejects(
      '<PubmedArticleSet><PubmedArticle/></PubmedArticleSet>',
      'not-jats',
      /found <PubmedArticleSet> as the root/,
    );
    rejects('<html><body><p>Not found</p></body></html>', 'not-jats', /found <html>/);
    rejects('404 Not Found', 'invalid-xml', /malformed XML: text data outside of root node/);
    rejects('<?xml version="1.0"?>', 'invalid-xml', /root element/);
    // efetch db=pmc wraps the article in <pmc-articleset>: the one article inside is read
    const efetch = parseJats(fs.readFileSync(path.join(fixturePaths.entrez(), 'biopython_efetch_pmc.xml')));
    assert.deepEqual(
      [efetch.pmcid, efetch.pubDate, efetch.license.code, efetch.warnings],
      ['PMC8435807', '2021-09-13', 'CC BY-NC', []],
    );
  });

  it('an article without front matter is a degraded record: body and figures read, a warning says what is missing', () => {
    const xml = Buffer.from(
      '<article xmlns:xlink="http://www.w3.org/1999/xlink"><body><sec><title>Results</title>' +
        '<p>As <xref ref-type="fig" rid="f1">Figure 1</xref> shows.</p>' +
        '<fig id="f1"><label>Figure 1</label><caption><p>A cat.</p></caption><graphic xlink:href="f1"/></fig></sec></body></article>',
    );
    const r = parseJats(xml, { pmcidHint: 'PMC123' });
    assert.equal(r.pmcid, 'PMC123');
    assert.deepEqual([r.title, r.pubDate, r.license.code, r.doi], [null, null, null, null]);
    assert.equal(r.fullText, 'Results\n\nAs Figure 1 shows.');
    assert.deepEqual(
      r.figures.map((f) => [f.label, f.caption, f.mentions]),
      [['Figure 1', 'A cat.', ['As [[Figure 1]] shows.']]],
    );
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] as string, /no <article-meta>/);
    // a real article keeps no warning
    assert.deepEqual(parseJats(fixture('PMC3574550')).warnings, []);
  });
});

describe('parseJats: DOCTYPE entities', () => {
  let server: http.Server;
  let requests = 0;
  let base = '';
  before(async () => {
    server = http.createServer((_req, res) => {
      requests++;
      res.end('<!ENTITY stolen "FETCHED">');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('external DTDs, SYSTEM and parameter entities are never fetched or read; undefined references read as nothing', async () => {
    const secret = path.join(nxmlDir, '..', 'PROVENANCE.md');
    const xml = article(
      '<sec><p>A&ext;B&file;C&stolen;D<ext-link xlink:href="x&ext;y">link</ext-link></p></sec>',
      `<!DOCTYPE article SYSTEM "${base}/article.dtd" [
  <!ENTITY % remote SYSTEM "${base}/remote.dtd">
  %remote;
  <!ENTITY ext SYSTEM "${base}/ext.xml">
  <!ENTITY file SYSTEM "file://${secret}">
  <!ENTITY % local "<!ENTITY inner 'X'>">
]>\n`,
    );
    const r = parseJats(xml);
    assert.equal(r.fullText, 'ABCDlink');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(requests, 0, 'the parser made an HTTP request');
  });

  it('internal entities expand, references inside them too, in text and attributes', () => {
    const r = parseJats(
      article(
        '<sec><p>&org; (&abbr;) &#x3b1;&amp;&lt;</p><fig id="f"><caption><p>&org;</p></caption><graphic xlink:href="&abbr;-1"/></fig></sec>',
        `<!DOCTYPE article [
  <!ENTITY abbr "WHO">
  <!ENTITY org "World Health Organization, &abbr;&#x2122;">
]>\n`,
      ),
    );
    assert.equal(r.fullText, 'World Health Organization, WHO\u2122 (WHO) \u03b1&<');
    assert.deepEqual(
      r.figures.map((f) => [f.caption, f.graphicHref]),
      [['World Health Organization, WHO\u2122', 'WHO-1']],
    );
  });

  it('billion laughs is refused in milliseconds, before it can grow: "entity-limit"', () => {
    const lol = ['<!ENTITY lol0 "lol">'];
    for (let i = 1; i <= 9; i++) lol.push(`<!ENTITY lol${i} "${`&lol${i - 1};`.repeat(10)}">`);
    const xml = article('<sec><p>&lol9;</p></sec>', `<!DOCTYPE article [\n${lol.join('\n')}\n]>\n`);
    const heap = process.memoryUsage().heapUsed;
    const start = performance.now();
    rejects(
      xml,
      'entity-limit',
      /^entity expansion limit: &lol\d; expands past 1000000 characters \(line \d+, column \d+\)$/,
    );
    assert.ok(performance.now() - start < 1000, 'took over a second');
    assert.ok(process.memoryUsage().heapUsed - heap < 64 * 1024 * 1024, 'heap grew by more than 64 MB');
  });

  it('many references to one large entity (quadratic blowup), a cycle and a runaway chain are refused too', () => {
    const big = 'x'.repeat(50_000);
    const quadratic = article(
      `<sec><p>${'&big;'.repeat(100)}</p></sec>`,
      `<!DOCTYPE article [<!ENTITY big "${big}">]>\n`,
    );
    rejects(quadratic, 'entity-limit', /declared entities add more than \d+ characters \(at &big;\)/);
    rejects(
      article('<sec><p>&a;</p></sec>', '<!DOCTYPE article [<!ENTITY a "1&b;"><!ENTITY b "2&a;">]>\n'),
      'entity-limit',
      /&a; refers to itself/,
    );
    const chain = ['<!ENTITY e0 "end">'];
    for (let i = 1; i <= 40; i++) chain.push(`<!ENTITY e${i} "&e${i - 1};">`);
    rejects(
      article('<sec><p>&e40;</p></sec>', `<!DOCTYPE article [${chain.join('')}]>\n`),
      'entity-limit',
      /nest deeper than 16/,
    );
    // the same chain within the depth limit expands
    assert.equal(
      parseJats(article('<sec><p>&e10;</p></sec>', `<!DOCTYPE article [${chain.slice(0, 11).join('')}]>\n`)).fullText,
      'end',
    );
    // the budget is configurable (and never below the document's own length)
    const twoThousand = article(
      '<sec><p>&big;</p></sec>',
      `<!DOCTYPE article [<!ENTITY y "${'y'.repeat(100)}"><!ENTITY big "${'&y;'.repeat(20)}">]>\n`,
    );
    assert.equal(parseJats(twoThousand).fullText.length, 2000);
    rejects(twoThousand, 'entity-limit', /&big; expands past \d+ characters/, { limits: { maxEntityChars: 100 } });
  });
});

describe('parseJats: encodings', () => {
  it('invalid UTF-8 inside a real article: U+FFFD in place of each bad sequence and a warning (a degraded record)', () => {
    const original = fixture('PMC3357053'); // raw UTF-8: "≤" is E2 89 A4
    const corrupt = Buffer.from(original);
    const le = original.indexOf(Buffer.from('(\u2264\u22121 or', 'utf8')) + 1;
    corrupt[le + 2] = 0x41; // E2 89 41: a truncated sequence, then "A"
    corrupt[original.indexOf('Venn-diagram')] = 0xff; // a byte that is never UTF-8
    const r = parseJats(corrupt);
    assert.deepEqual(r.warnings, ['invalid UTF-8: 2 byte sequences replaced by U+FFFD']);
    const f5 = r.figures.find((f) => f.id === 'PLS011F5');
    assert.ok(f5?.caption.includes('(A) \ufffdenn-diagram presentation'), f5?.caption.slice(0, 150));
    assert.ok(f5?.caption.includes('(\ufffdA\u22121 or \u2265+1)'), f5?.caption.slice(-150));
    assert.equal(r.figures.length, 5);
    assert.equal(r.title, parseJats(original).title);
  });

  it('bytes that are not UTF-8 text at all are "invalid-encoding"; UTF-16 without a byte-order mark is not XML', () => {
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 256;
    garbage.write('<article>', 0, 'latin1');
    rejects(garbage, 'invalid-encoding', /^not UTF-8 text: \d+ invalid byte sequences in 4096 bytes$/);
    rejects(Buffer.from(article('<sec><p>x</p></sec>'), 'utf16le'), 'invalid-xml');
  });

  it('UTF-8 is decoded in 1 MiB pieces: a character of 2, 3 or 4 bytes across a piece boundary reads whole', () => {
    const unit = 'Zamb\u00e9zia \u2264 \ud835\udefc;'; // é: 2 bytes, ≤: 3, 𝛼: 4
    const text = unit.repeat(Math.ceil((1.1 * 1024 * 1024) / Buffer.byteLength(unit)));
    // every padding of a 19-byte unit puts the boundary at each byte of the unit once: inside each character too
    for (let pad = 0; pad < Buffer.byteLength(unit); pad++) {
      const xml = Buffer.from(article(`<sec><p>${'x'.repeat(pad)} ${text}</p></sec>`));
      const r = parseJats(xml);
      assert.deepEqual(r.warnings, []);
      assert.equal(r.fullText, `${'x'.repeat(pad)} ${text}`.trim(), `padding ${pad}`);
    }
  });

  it('UTF-16 with a byte-order mark and a declared Latin-1 file read like their UTF-8 original', () => {
    const xml = article('<sec><p>Zamb\u00e9zia \u2264 5</p></sec>');
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(xml, 'utf16le')]);
    assert.equal(parseJats(utf16).fullText, 'Zamb\u00e9zia \u2264 5');
    const latin1 = Buffer.from(
      article('<sec><p>Zamb\u00e9zia</p></sec>').replace('encoding="UTF-8"', 'encoding="ISO-8859-1"'),
      'latin1',
    );
    assert.equal(parseJats(latin1).fullText, 'Zamb\u00e9zia');
  });
});

describe('parseJats: size and depth limits', () => {
  it('input over maxBytes is refused before it is read: "too-large"', () => {
    const xml = fixture('PMC7159286');
    rejects(xml, 'too-large', new RegExp(`^article too large: ${xml.length} bytes, over the limit of 1000$`), {
      limits: { maxBytes: 1000 },
    });
    assert.equal(DEFAULT_JATS_LIMITS.maxBytes, 128 * 1024 * 1024);
  });

  it('elements nested deeper than maxElementDepth are "too-deep" (no stack or memory blowup)', () => {
    const deep = article(`<sec><p>${'<italic>'.repeat(100_000)}x${'</italic>'.repeat(100_000)}</p></sec>`);
    rejects(deep, 'too-deep', /^elements nest deeper than 1024 levels \(at <italic>\)/);
    const fine = article(`<sec><p>${'<italic>'.repeat(500)}x${'</italic>'.repeat(500)}</p></sec>`);
    assert.equal(parseJats(fine).fullText, 'x');
  });

  it("a 50 MB article made of a real article's repeated body paragraphs parses in bounded time and memory", function () {
    this.timeout(60_000);
    // In a child process whose old space is capped at 512 MB: running out of it would kill the child.
    const script = `
      const fs = require('node:fs'), path = require('node:path');
      const { parseJats } = require(${JSON.stringify(path.join(projectRoot, 'activities/parse/jats'))});
      const src = fs.readFileSync(${JSON.stringify(path.join(nxmlDir, 'PMC7302504_pone.0234687.nxml'))}, 'utf8');
      const bodyEnd = src.indexOf('</body>');
      const paragraphs = src.slice(src.indexOf('<body>'), bodyEnd).match(/<p>[\\s\\S]*?<\\/p>/g);
      const block = Buffer.from(paragraphs.join('\\n'));
      const parts = [Buffer.from(src.slice(0, bodyEnd) + '<sec><title>Repeated</title>')];
      const tail = Buffer.from('</sec>' + src.slice(bodyEnd));
      let size = parts[0].length + tail.length;
      while (size < 50 * 1024 * 1024) { parts.push(block); size += block.length; }
      parts.push(tail);
      const xml = Buffer.concat(parts);
      parseJats(fs.readFileSync(${JSON.stringify(path.join(nxmlDir, 'PMC3574550_mds526.nxml'))})); // warm-up
      const heap = process.memoryUsage().heapUsed, cpu = process.cpuUsage(), wall = performance.now();
      const r = parseJats(xml);
      const used = process.cpuUsage(cpu);
      console.log(JSON.stringify({
        bytes: xml.length, paragraphs: paragraphs.length, copies: parts.length - 2,
        cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - wall,
        heapGrowth: process.memoryUsage().heapUsed - heap,
        figures: r.figures.map((f) => [f.id, f.mentions.length]), fullText: r.fullText.length, blocks: r.fullText.split('\\n\\n').length,
      }));`;
    const child = spawnSync(process.execPath, ['--max-old-space-size=512', '-r', 'tsx/cjs', '-e', script], {
      cwd: projectRoot,
      encoding: 'utf8',
    });
    assert.equal(child.status, 0, child.stderr);
    const m = JSON.parse(child.stdout.trim().split('\n').pop() as string) as {
      bytes: number;
      paragraphs: number;
      copies: number;
      cpuMs: number;
      wallMs: number;
      heapGrowth: number;
      figures: [string, number][];
      fullText: number;
      blocks: number;
    };
    assert.ok(m.bytes >= 50 * 1024 * 1024);
    // CPU time, not wall time: the bound is on the parser, not on what else the machine runs
    assert.ok(m.cpuMs < 10_000, `took ${m.cpuMs.toFixed(0)} ms of CPU (${m.wallMs.toFixed(0)} ms wall)`);
    assert.ok(m.heapGrowth < 4 * m.bytes, `heap grew by ${(m.heapGrowth / 1048576).toFixed(0)} MB`);
    // every copy of every paragraph is read; identical mention paragraphs count once
    assert.ok(m.blocks > m.copies * m.paragraphs, `${m.blocks} blocks`);
    assert.deepEqual(m.figures, [
      ['pone.0234687.g001', 1],
      ['pone.0234687.g002', 3],
      ['pone.0234687.g003', 1],
      ['pone.0234687.g004', 2],
    ]);
  });
});

describe('collapseWhitespace', () => {
  it('equals replace(/\\s+/g, " ").trim() on every kind of whitespace JavaScript knows', () => {
    const spaces = [
      ' ',
      '\t',
      '\n',
      '\r',
      '\v',
      '\f',
      '\u00a0',
      '\u1680',
      '\u2000',
      '\u2009',
      '\u200a',
      '\u2028',
      '\u2029',
      '\u202f',
      '\u205f',
      '\u3000',
      '\ufeff',
    ];
    const alphabet = ['a', 'b', '\u00e9', '\u200b', 'x y', ...spaces];
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    for (let n = 0; n < 3000; n++) {
      let s = '';
      for (let k = next() % 12; k > 0; k--) s += alphabet[next() % alphabet.length];
      assert.equal(collapseWhitespace(s), s.replace(/\s+/g, ' ').trim(), JSON.stringify(s));
    }
  });
});

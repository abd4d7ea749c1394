import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureSampleMirror, sampleEnrichmentArticles } from '../cli/sample';
import { fixturePaths } from '../config/paths';
import { EutilsError, efetchPubmed } from '../activities/enrich/eutils';
import { PubmedXmlError, parsePubmedArticleSet } from '../activities/enrich/pubmed';
import { type EutilsStandin, startEutilsStandin } from '../sample/eutils-standin';

const entrez = (name: string): string => fs.readFileSync(path.join(fixturePaths.entrez(), name), 'utf8');
const identity = { tool: 'biomedica-release-test', email: 'dev@example.org' };

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

describe('parsePubmedArticleSet on recorded efetch responses', () => {
  it('pubmed4: PMID 27797938 with flattened title, MeSH, ids only from PubmedData', () => {
    const { records } = parsePubmedArticleSet(entrez('biopython_pubmed4.xml'));
    assert.deepEqual([...records.keys()], ['27797938']);
    const r = records.get('27797938')!;
    assert.equal(r.kind, 'article');
    // <i>TERT</i> in the recorded ArticleTitle
    assert.equal(
      r.title,
      'Leucocyte telomere length, genetic variants at the TERT gene region and risk of pancreatic cancer.',
    );
    const adeno = r.meshTerms.find((m) => m.descriptor === 'Adenocarcinoma');
    assert.deepEqual(adeno, {
      descriptor: 'Adenocarcinoma',
      ui: 'D000230',
      majorTopic: false,
      qualifiers: [
        { name: 'epidemiology', majorTopic: true },
        { name: 'genetics', majorTopic: true },
      ],
    });
    assert.equal(r.meshTerms.find((m) => m.descriptor === 'Telomere Shortening')?.majorTopic, true);
    assert.equal(r.meshTerms.length, 21);
    assert.deepEqual(r.publicationTypes, [
      'Journal Article',
      'Observational Study',
      'Research Support, N.I.H., Extramural',
      "Research Support, U.S. Gov't, Non-P.H.S.",
      "Research Support, Non-U.S. Gov't",
    ]);
    assert.deepEqual(r.keywords, ['PANCREATIC CANCER']);
    assert.deepEqual(r.journal, { title: 'Gut', isoAbbrev: 'Gut', issn: '1468-3288' });
    assert.equal(r.pubDate, '2017-06');
    assert.deepEqual(r.articleIds, [
      { type: 'pubmed', id: '27797938' },
      { type: 'pii', id: 'gutjnl-2016-312510' },
      { type: 'doi', id: '10.1136/gutjnl-2016-312510' },
      { type: 'pmc', id: 'PMC5442267' },
      { type: 'mid', id: 'NIHMS857349' },
    ]);
    // This record has no PubmedData/ReferenceList (0 <Reference> elements); its citations are 48
    // CommentsCorrections RefType="Cites" + 1 CommentIn, none of which may leak into articleIds or notices.
    assert.equal(r.referenceCount, 0);
    assert.deepEqual(r.referenceIds, []);
    const ownIds = new Set(r.articleIds.map((a) => a.id));
    for (const cited of ['27920200', '2657958', '25658358', '20101243']) assert.ok(!ownIds.has(cited), cited);
    assert.deepEqual(r.notices, []);
    // Structured abstract: four labelled sections, inline markup flattened, CopyrightInformation left out.
    assert.deepEqual(
      r.abstractSections.map((s) => s.label),
      ['OBJECTIVE', 'DESIGN', 'RESULTS', 'CONCLUSIONS'],
    );
    assert.ok(r.abstract!.startsWith('OBJECTIVE: Telomere shortening occurs as an early event'));
    assert.ok(r.abstract!.includes(' DESIGN: We measured prediagnostic'));
    assert.ok(
      r.abstract!.includes(
        '(comparing extreme quintiles of telomere length, OR 1.72; 95% CI 1.07 to 2.78; ptrend=0.048)',
      ),
    );
    assert.ok(r.abstract!.includes('disequilibrium r2<0.25)'));
    assert.ok(r.abstract!.endsWith('associated with risk of pancreatic cancer.'));
    assert.ok(!r.abstract!.includes('BMJ Publishing Group'));
  });

  it('pubmed1: two records keyed by PMID; no <Abstract> gives null; Season date keeps the year', () => {
    const { records } = parsePubmedArticleSet(entrez('biopython_pubmed1.xml'));
    assert.deepEqual([...records.keys()], ['12091962', '9997']);
    const aids = records.get('12091962')!;
    assert.equal(aids.title, 'The treatment of AIDS behind the walls of correctional facilities.');
    assert.equal(aids.abstract, null);
    assert.deepEqual(aids.abstractSections, []);
    assert.equal(aids.pubDate, '1990'); // <Year>1990</Year><Season>Spring</Season>
    assert.deepEqual(aids.keywords, ['Health Care and Public Health', 'Legal Approach']);
    assert.deepEqual(aids.publicationTypes, ['Journal Article', 'Review']);
    assert.equal(aids.meshTerms.length, 19);
    assert.deepEqual(aids.articleIds, [{ type: 'pubmed', id: '12091962' }]);

    const flavo = records.get('9997')!;
    assert.equal(flavo.pubDate, '1976-09-28'); // <Month>Sep</Month><Day>28</Day>
    assert.ok(flavo.abstract!.startsWith('Electron paramagnetic resonance and magnetic susceptibility studies'));
    assert.deepEqual(
      flavo.abstractSections.map((s) => s.label),
      [null],
    );
    assert.deepEqual(flavo.meshTerms.find((m) => m.descriptor === 'Chromatium')?.qualifiers, [
      { name: 'enzymology', majorTopic: true },
    ]);
    assert.deepEqual(flavo.journal, {
      title: 'Biochimica et biophysica acta',
      isoAbbrev: 'Biochim Biophys Acta',
      issn: '0006-3002',
    });
    assert.ok(flavo.articleIds.some((a) => a.type === 'doi' && a.id === '10.1016/0005-2795(76)90109-4'));
  });

  it('pubmed6: non-ASCII kept, markup and MathML flattened, unlabelled abstract', () => {
    const r = parsePubmedArticleSet(entrez('biopython_pubmed6.xml')).records.get('30108519')!;
    // Recorded: A &quot;<i>Blood Relationship&quot;</i> Between ...
    assert.equal(
      r.title,
      'A "Blood Relationship" Between the Overlooked Minimum Lactate Equivalent and Maximal Lactate Steady State in Trained Runners. Back to the Old Days?',
    );
    assert.ok(
      r.abstract!.includes(
        '[VMLSS 15.0 ± 1.1 km·h-1; maximal oxygen uptake ( V\u0307O_2max ) 67.6 ± 4.1 ml·kg-1·min-1]',
      ),
    );
    // MathML read as linear text (the dot over V an accent, 2max a subscript), as in the article parser
    assert.ok(r.abstract!.includes('running test for V\u0307O_2max determination'));
    assert.ok(r.abstract!.includes('(coefficient of variation: ≈7%)'));
    assert.ok(r.abstract!.includes('(P < 0.001; ES: 3.54)'));
    assert.ok(!/\s{2}/.test(r.abstract!));
    assert.deepEqual(
      r.abstractSections.map((s) => s.label),
      [null],
    );
    assert.equal(r.keywords[0], "Owles' point");
    assert.equal(r.keywords.length, 8);
    assert.deepEqual(r.meshTerms, []); // PubMed-not-MEDLINE: no MeshHeadingList
    assert.equal(r.pubDate, '2018');
    assert.deepEqual(r.journal, { title: 'Frontiers in physiology', isoAbbrev: 'Front Physiol', issn: '1664-042X' });
    assert.deepEqual(
      r.articleIds.find((a) => a.type === 'pmc'),
      { type: 'pmc', id: 'PMC6079548' },
    );
  });

  it('the recorded <ERROR> response throws PubmedXmlError ncbi-error', () => {
    assert.throws(
      () => parsePubmedArticleSet(entrez('biopython_esummary8_error.xml')),
      (err: unknown) => {
        assert.ok(err instanceof PubmedXmlError);
        assert.equal(err.kind, 'ncbi-error');
        assert.equal(err.retryable, false);
        assert.match(err.message, /Neither query_key nor id specified/);
        return true;
      },
    );
    assert.throws(
      () => parsePubmedArticleSet('<PubmedArticleSet><PubmedArticle>'),
      (e: unknown) => e instanceof PubmedXmlError && e.kind === 'malformed',
    );
    assert.equal(
      parsePubmedArticleSet('<?xml version="1.0" ?>\n<PubmedArticleSet>\n</PubmedArticleSet>\n').records.size,
      0,
    );
  });

  it('a thin space inside mml:mtext is a space, not dropped by trimming ("Xe129 MRI"; hand-built)', () => {
    const xml = `<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version="1">7</PMID><Article><ArticleTitle>T</ArticleTitle>
<Abstract><AbstractText>Using <mml:math xmlns:mml="http://www.w3.org/1998/Math/MathML">
  <mml:msup><mml:mi>Xe</mml:mi><mml:mn>129</mml:mn></mml:msup>
  <mml:mtext>\u2009MRI</mml:mtext>
</mml:math> we measured <mml:math><mml:mi>S</mml:mi><mml:mo>=</mml:mo><mml:mfrac><mml:mi>C</mml:mi><mml:mi>M</mml:mi></mml:mfrac></mml:math>.</AbstractText></Abstract>
</Article></MedlineCitation></PubmedArticle></PubmedArticleSet>`;
    assert.equal(parsePubmedArticleSet(xml).records.get('7')?.abstract, 'Using Xe^129 MRI we measured S = C/M.');
  });

  it('ReferenceList, notices and PubmedBookArticle (hand-built: no recorded fixture has them)', () => {
    // Structure per the PubMed DTD; none of the recorded responses carries these elements.
    const xml = `<PubmedArticleSet>
<PubmedArticle><MedlineCitation><PMID Version="1">111</PMID><Article><Journal><JournalIssue><PubDate><MedlineDate>1998 Dec-1999 Jan</MedlineDate></PubDate></JournalIssue></Journal><ArticleTitle>T</ArticleTitle></Article>
<CommentsCorrectionsList><CommentsCorrections RefType="Cites"><RefSource>X</RefSource><PMID Version="1">5</PMID></CommentsCorrections>
<CommentsCorrections RefType="RetractionIn"><RefSource>J. 2020;1:2</RefSource><PMID Version="1">222</PMID></CommentsCorrections>
<CommentsCorrections RefType="ErratumIn"><RefSource>J. 2019;3:4</RefSource></CommentsCorrections></CommentsCorrectionsList></MedlineCitation>
<PubmedData><ArticleIdList><ArticleId IdType="pubmed">111</ArticleId><ArticleId IdType="doi">10.1/own</ArticleId></ArticleIdList>
<ReferenceList><Reference><Citation>A cited.</Citation><ArticleIdList><ArticleId IdType="doi">10.1/ref</ArticleId><ArticleId IdType="pubmed">333</ArticleId></ArticleIdList></Reference>
<Reference><Citation>B cited.</Citation><ArticleIdList><ArticleId IdType="pmc">PMC9</ArticleId></ArticleIdList></Reference>
<Reference><Citation>C   cited, no ids.</Citation></Reference></ReferenceList></PubmedData></PubmedArticle>
<PubmedBookArticle><BookDocument><PMID Version="1">444</PMID><ArticleIdList><ArticleId IdType="bookaccession">NBK1</ArticleId></ArticleIdList>
<Book><BookTitle>GeneReviews<sup>®</sup></BookTitle><PubDate><Year>1993</Year></PubDate></Book><ArticleTitle>Chapter</ArticleTitle><PublicationType UI="D016454">Review</PublicationType></BookDocument>
<PubmedBookData><ArticleIdList><ArticleId IdType="pubmed">444</ArticleId></ArticleIdList></PubmedBookData></PubmedBookArticle>
</PubmedArticleSet>`;
    const { records } = parsePubmedArticleSet(xml);
    const art = records.get('111')!;
    assert.equal(art.pubDate, '1998');
    assert.equal(art.referenceCount, 3);
    assert.deepEqual(art.referenceIds, ['333', 'PMC9', 'C cited, no ids.']);
    assert.deepEqual(art.articleIds, [
      { type: 'pubmed', id: '111' },
      { type: 'doi', id: '10.1/own' },
    ]);
    assert.deepEqual(art.notices, [
      { type: 'RetractionIn', refSource: 'J. 2020;1:2', pmid: '222' },
      { type: 'ErratumIn', refSource: 'J. 2019;3:4', pmid: null },
    ]);
    const book = records.get('444')!;
    assert.equal(book.kind, 'book');
    assert.equal(book.title, 'Chapter');
    assert.equal(book.pubDate, '1993');
    assert.deepEqual(book.publicationTypes, ['Review']);
    assert.deepEqual(book.articleIds, [
      { type: 'pubmed', id: '444' },
      { type: 'bookaccession', id: 'NBK1' },
    ]);
  });
});

describe('efetchPubmed against the E-utilities stand-in', () => {
  let standin: EutilsStandin;
  // Echoes whatever it is sent, and NCBI's 429 JSON with the key in "api-key": a worst-case upstream.
  let echo: http.Server;
  let echoUrl: string;

  before(async () => {
    standin = await startEutilsStandin({ fixturesDir: fixturePaths.entrez(), maxPerSecond: 1000 });
    echo = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const key = new URLSearchParams(body).get('api_key') ?? '';
        if (req.url!.startsWith('/r429/')) {
          res.writeHead(429, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'API rate limit exceeded', 'api-key': key, count: '11', limit: '10' }));
        } else if (req.url!.startsWith('/error/')) {
          res.writeHead(200, { 'content-type': 'text/xml' });
          res.end(
            `<?xml version="1.0" encoding="UTF-8" ?>\n<eFetchResult>\n\t<ERROR>Invalid request ${body}</ERROR>\n</eFetchResult>\n`,
          );
        } else {
          res.writeHead(400, { 'content-type': 'text/plain' });
          res.end(`bad request: ${req.url} ${body}`);
        }
      });
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
  });

  after(async () => {
    await standin.close();
    echo.closeAllConnections();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  it('POSTs the form and gets exactly the known records back, keyed by PMID', async () => {
    const xml = await efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['27797938', '99999999', '9997'], ...identity });
    assert.ok(xml.startsWith('<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle'));
    const { records } = parsePubmedArticleSet(xml);
    assert.deepEqual([...records.keys()].sort(), ['27797938', '9997']);
    assert.equal(records.get('9997')!.pubDate, '1976-09-28');
    const last = standin.stats.log.at(-1)!;
    assert.deepEqual(last, {
      t: last.t,
      ids: ['27797938', '99999999', '9997'],
      status: 200,
      method: 'POST',
      tool: identity.tool,
      email: identity.email,
      apiKeyPresent: false,
    });
  });

  it('maps 429 to rate-limited and 502 to server, both retryable', async () => {
    standin.inject({ rateLimitBurst: 1 });
    const limited = await rejection(efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['9997'], ...identity }));
    assert.ok(limited instanceof EutilsError);
    assert.equal(limited.kind, 'rate-limited');
    assert.equal(limited.status, 429);
    assert.equal(limited.retryable, true);
    assert.match(limited.message, /count \d+, limit \d+/);

    standin.inject({ status502: 1 });
    const bad = await rejection(efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['9997'], ...identity }));
    assert.ok(bad instanceof EutilsError);
    assert.deepEqual([bad.kind, bad.status, bad.retryable], ['server', 502, true]);
  });

  it('maps a slow answer to timeout and a cut-off transfer to network, both retryable', async () => {
    standin.inject({ slowMs: 400 });
    const slow = await rejection(
      efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['9997'], ...identity, timeoutMs: 100 }),
    );
    standin.inject({ slowMs: 0 });
    assert.ok(slow instanceof EutilsError);
    assert.deepEqual([slow.kind, slow.retryable], ['timeout', true]);

    standin.inject({ truncate: 1 });
    const cut = await rejection(efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['27797938'], ...identity }));
    assert.ok(cut instanceof EutilsError);
    assert.deepEqual([cut.kind, cut.retryable], ['network', true]);
  });

  it('maps a 200 <ERROR> body to ncbi-error and other 4xx to bad-request, not retryable', async () => {
    const ncbi = await rejection(efetchPubmed({ baseUrl: `${echoUrl}/error`, pmids: ['1'], ...identity }));
    assert.ok(ncbi instanceof EutilsError);
    assert.deepEqual([ncbi.kind, ncbi.retryable], ['ncbi-error', false]);
    const rejected = await rejection(efetchPubmed({ baseUrl: `${echoUrl}/other`, pmids: ['1'], ...identity }));
    assert.ok(rejected instanceof EutilsError);
    assert.deepEqual([rejected.kind, rejected.status, rejected.retryable], ['bad-request', 400, false]);
    const none = await rejection(efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['None'], ...identity }));
    assert.ok(none instanceof EutilsError && none.kind === 'bad-request');
  });

  it('never lets the api_key into an error, even when upstream echoes it', async () => {
    const apiKey = 'SECRET123';
    const errors: unknown[] = [];
    standin.inject({ rateLimitBurst: 1 });
    errors.push(await rejection(efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['9997'], ...identity, apiKey })));
    standin.inject({ status502: 1 });
    errors.push(await rejection(efetchPubmed({ baseUrl: standin.baseUrl, pmids: ['9997'], ...identity, apiKey })));
    for (const route of ['r429', 'error', 'other']) {
      errors.push(await rejection(efetchPubmed({ baseUrl: `${echoUrl}/${route}`, pmids: ['1'], ...identity, apiKey })));
    }
    // A port that was just free: connection refused, a real socket error (fetch blocks port 1 itself).
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const refusedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const refused = await rejection(
      efetchPubmed({ baseUrl: `http://127.0.0.1:${refusedPort}/entrez/eutils`, pmids: ['1'], ...identity, apiKey }),
    );
    assert.match((refused as Error).message, /ECONNREFUSED/);
    errors.push(refused);
    assert.deepEqual(
      errors.map((e) => (e as EutilsError).kind),
      ['rate-limited', 'server', 'rate-limited', 'ncbi-error', 'bad-request', 'network'],
    );
    for (const err of errors) {
      assert.ok(err instanceof EutilsError);
      const seen = [
        err.message,
        err.stack ?? '',
        String(err),
        JSON.stringify(err),
        JSON.stringify(Object.entries(err)),
      ].join('\n');
      assert.ok(!seen.includes(apiKey), seen);
    }
    // The keyed requests reached the stand-in, which logged only that a key was present.
    assert.ok(standin.stats.log.some((e) => e.apiKeyPresent));
    assert.ok(!JSON.stringify(standin.stats).includes(apiKey));
  });
});

describe('E-utilities stand-in rate limit', () => {
  const opened: EutilsStandin[] = [];
  after(async () => {
    await Promise.all(opened.map((s) => s.close()));
  });

  const burst = (s: EutilsStandin, extra: string): Promise<Response[]> =>
    Promise.all(
      Array.from({ length: 6 }, () =>
        fetch(`${s.baseUrl}/efetch.fcgi`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: `db=pubmed&retmode=xml&id=9997&tool=t&email=e%40x.org${extra}`,
        }),
      ),
    );

  it('answers 429 with NCBI JSON beyond 3 requests per second without a key', async () => {
    const s = await startEutilsStandin({ fixturesDir: fixturePaths.entrez() });
    opened.push(s);
    const responses = await burst(s, '');
    const limited = responses.filter((r) => r.status === 429);
    assert.ok(limited.length >= 3, `only ${limited.length} of 6 were limited`);
    assert.equal(limited[0].headers.get('content-type'), 'application/json');
    const body = (await limited[0].json()) as Record<string, string>;
    assert.equal(body.error, 'API rate limit exceeded');
    assert.equal(body.limit, '3');
    await Promise.all(responses.map((r) => (r.bodyUsed ? undefined : r.body?.cancel())));
    assert.equal(s.stats.rejected429, limited.length);
    assert.equal(s.stats.perSecondMax, 6);
  });

  it('allows 10 per second when an api_key is sent, and never logs it', async () => {
    const s = await startEutilsStandin({ fixturesDir: fixturePaths.entrez() });
    opened.push(s);
    const responses = await burst(s, '&api_key=SECRET123');
    assert.deepEqual(
      responses.map((r) => r.status),
      [200, 200, 200, 200, 200, 200],
    );
    await Promise.all(responses.map((r) => (r.bodyUsed ? undefined : r.body?.cancel())));
    assert.ok(!JSON.stringify(s.stats).includes('SECRET123'));
  });
});

describe("the demo's E-utilities stand-in answers for every sample PMID", function () {
  this.timeout(120_000);
  it("recorded records where the fixtures have them, generated well-formed ones from the article's XML elsewhere", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-demo-eutils-'));
    let s: EutilsStandin | null = null;
    try {
      const mirror = await ensureSampleMirror(tmp);
      const articles = await sampleEnrichmentArticles(mirror.outDir);
      assert.ok(articles.length >= 15, `${articles.length} sample articles with a PMID`);
      const recordedOnly = await startEutilsStandin({ fixturesDir: fixturePaths.entrez(), maxPerSecond: 1000 });
      const before = parsePubmedArticleSet(
        await efetchPubmed({ baseUrl: recordedOnly.baseUrl, pmids: articles.map((a) => a.pmid), ...identity }),
      ).records;
      await recordedOnly.close();
      s = await startEutilsStandin({ fixturesDir: fixturePaths.entrez(), maxPerSecond: 1000, generated: articles });
      const { records } = parsePubmedArticleSet(
        await efetchPubmed({ baseUrl: s.baseUrl, pmids: articles.map((a) => a.pmid), ...identity }),
      );
      assert.deepEqual([...records.keys()].sort(), articles.map((a) => a.pmid).sort(), 'every PMID answered');
      // the project's own articles (sample/synthetic-articles.ts) are part of the demo sample and answered too
      for (const pmid of ['99000001', '99000002']) assert.ok(records.has(pmid) && !before.has(pmid), pmid);
      assert.equal(
        records.get('99000001')?.title,
        'Synthetic growth curves with fractions, ranges and a graphical abstract',
      );
      for (const a of articles) {
        const r = records.get(a.pmid)!;
        if (before.has(a.pmid)) {
          assert.deepEqual(r, before.get(a.pmid), `${a.pmid}: the recording wins`);
          continue;
        }
        assert.equal(r.title, a.title ?? null);
        assert.deepEqual(
          r.meshTerms.map((m) => m.descriptor),
          a.keywords.slice(0, 8),
        );
      }
      assert.ok(
        articles.some((a) => !before.has(a.pmid) && a.keywords.length > 0),
        'some generated record carries MeSH headings',
      );
    } finally {
      await s?.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

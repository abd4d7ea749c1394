import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureSampleMirror, sampleEnrichmentArticles } from '../cli/sample';
import { fixturePaths } from '../config/paths';
import { EutilsError, efetchPubmed } from '../activities/enrich/eutils';
import { PubmedXmlError, parsePubmedArticleSet, type PubmedAuthor } from '../activities/enrich/pubmed';
import { pubmedColumnsOf, reconcileAuthors } from '../activities/enrich/reconcile';
import { parseJats } from '../activities/parse/jats';
import type { AuthorRecord } from '../activities/parse/records';
import { startEutilsStandin } from '../sample/eutils-standin';

const entrez = (name: string): string => fs.readFileSync(path.join(fixturePaths.entrez(), name), 'utf8');
const identity = { tool: 'biomedica-release-test', email: 'dev@example.org' };

describe('PubMed AuthorList, ChemicalList, ArticleDate and History (recorded efetch responses)', () => {
  it('pubmed4 (PMID 27797938): 22 authors with their affiliations, 2 chemicals, ArticleDate and 7 History dates', () => {
    const r = parsePubmedArticleSet(entrez('biopython_pubmed4.xml')).records.get('27797938')!;
    assert.equal(r.authors.length, 22);
    assert.deepEqual(r.authors[0], {
      lastName: 'Bao',
      foreName: 'Ying',
      initials: 'Y',
      suffix: null,
      collectiveName: null,
      orcid: null,
      affiliations: [
        "Channing Division of Network Medicine, Department of Medicine, Brigham and Women's Hospital, and Harvard Medical School, Boston, Massachusetts, USA.",
      ],
    });
    // Two AffiliationInfo elements, in order.
    assert.deepEqual(r.authors.find((a) => a.lastName === 'Yuan')!.affiliations, [
      'Department of Epidemiology, Harvard T.H. Chan School of Public Health, Boston, Massachusetts, USA.',
      'Department of Medical Oncology, Dana-Farber Cancer Institute, Boston, Massachusetts, USA.',
    ]);
    assert.deepEqual([r.authors[21]!.foreName, r.authors[21]!.lastName], ['Brian M', 'Wolpin']);
    assert.deepEqual(r.chemicals, [
      { registryNumber: 'EC 2.7.7.49', name: 'TERT protein, human', ui: 'C509186' },
      { registryNumber: 'EC 2.7.7.49', name: 'Telomerase', ui: 'D019098' },
    ]);
    assert.equal(r.articleDate, '2016-10-21');
    assert.deepEqual(r.history, [
      { status: 'received', date: '2016-06-27' },
      { status: 'revised', date: '2016-08-22' },
      { status: 'accepted', date: '2016-10-01' },
      { status: 'pmc-release', date: '2018-06-01' },
      { status: 'pubmed', date: '2016-11-01' }, // <Day>1</Day><Hour>6</Hour>: the day, padded; the hour dropped
      { status: 'medline', date: '2017-08-05' },
      { status: 'entrez', date: '2016-11-01' },
    ]);
  });

  it('pubmed1: RegistryNumber "0" is no number; a 1976 record without ArticleDate', () => {
    const { records } = parsePubmedArticleSet(entrez('biopython_pubmed1.xml'));
    const flavo = records.get('9997')!;
    assert.deepEqual(
      flavo.authors.map((a) => [a.lastName, a.foreName]),
      [['Strekas', 'T C']],
    );
    assert.deepEqual(flavo.chemicals, [
      { registryNumber: null, name: 'Cytochrome c Group', ui: 'D003574' },
      { registryNumber: null, name: 'Flavins', ui: 'D005415' },
      { registryNumber: '42VZT0U6YR', name: 'Heme', ui: 'D006418' },
      { registryNumber: 'E1UOL152H7', name: 'Iron', ui: 'D007501' },
    ]);
    assert.equal(flavo.articleDate, null);
    assert.deepEqual(
      flavo.history.map((h) => h.status),
      ['pubmed', 'medline', 'entrez'],
    );
    assert.deepEqual(records.get('12091962')!.chemicals, []);
  });

  it('pubmed6 (Frontiers, not MEDLINE): two authors, no ChemicalList, electronic ArticleDate', () => {
    const r = parsePubmedArticleSet(entrez('biopython_pubmed6.xml')).records.get('30108519')!;
    assert.deepEqual(
      r.authors.map((a) => `${a.foreName} ${a.lastName}`),
      ['Ibai Garcia-Tabar', 'Esteban M Gorostiaga'],
    );
    assert.deepEqual(r.chemicals, []);
    assert.equal(r.articleDate, '2018-07-31');
    assert.deepEqual(r.history[0], { status: 'received', date: '2018-05-22' });
  });
});

describe('an E-utilities reply with two <ERROR> elements keeps both', () => {
  // NCBI's eFetchResult layout around two causes: the recorded esummary error's text and a second one. No recorded
  // reply holds two <ERROR>s (PROVENANCE.md), so the second is written here, in the recorded one's markup.
  const recorded = entrez('biopython_esummary8_error.xml');
  const twoErrors = recorded.replace(
    /(<ERROR>[^<]*<\/ERROR>)/,
    '$1\n\t<ERROR>Invalid uid 99999999999 at position=1</ERROR>',
  );
  const causes = [/Neither query_key nor id specified/, /Invalid uid 99999999999 at position=1/];

  it('is built from the recorded reply (sanity: two ERRORs, the first recorded verbatim)', () => {
    assert.equal(twoErrors.match(/<ERROR>/g)!.length, 2);
    assert.ok(twoErrors.includes('<ERROR>Neither query_key nor id specified</ERROR>'));
  });

  it('parsePubmedArticleSet names both causes', () => {
    assert.throws(
      () => parsePubmedArticleSet(twoErrors),
      (err: unknown) => {
        assert.ok(err instanceof PubmedXmlError);
        assert.equal(err.kind, 'ncbi-error');
        for (const c of causes) assert.match(err.message, c);
        assert.match(err.message, /returned 2 errors: /);
        return true;
      },
    );
  });

  it('efetchPubmed over loopback names both causes, not retryable', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/xml; charset=UTF-8' });
        res.end(twoErrors);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/entrez/eutils`;
      const err = await efetchPubmed({ baseUrl, pmids: ['9997'], ...identity }).then(
        () => assert.fail('expected an error'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof EutilsError);
      assert.deepEqual([err.kind, err.retryable], ['ncbi-error', false]);
      for (const c of causes) assert.match(err.message, c);
      assert.match(err.message, /2 errors: /);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('authors reconciled: JATS first, PubMed fills what JATS lacks', () => {
  const pubmed4 = parsePubmedArticleSet(entrez('biopython_pubmed4.xml')).records.get('27797938')!;
  // A JATS byline of the same article as a publisher might write it: accents, no affiliation links for some, one
  // ORCID. (No fixture pairs a JATS article with its PubMed record; the PubMed side is the real recording.)
  const jats: AuthorRecord[] = [
    {
      name: 'Ying Bao',
      surname: 'Bao',
      givenNames: 'Ying',
      group: false,
      orcid: null,
      corresponding: true,
      affiliations: [],
    },
    {
      name: 'Jennifer Prescott',
      surname: 'Prescott',
      givenNames: 'Jennifer',
      group: false,
      orcid: '0000-0002-1825-0097',
      corresponding: false,
      affiliations: ['Brigham and Women’s Hospital, Boston, USA'],
    },
    {
      name: 'Chén Yuán',
      surname: 'Yuán',
      givenNames: 'Chén',
      group: false,
      orcid: null,
      corresponding: false,
      affiliations: [],
    },
    {
      name: 'Not In Pubmed',
      surname: 'Nobody',
      givenNames: 'Not',
      group: false,
      orcid: null,
      corresponding: false,
      affiliations: [],
    },
  ];

  it('pairs by folded surname and first initial; JATS values are kept, gaps filled, unpaired kept as JATS', () => {
    const out = reconcileAuthors(jats, pubmed4.authors);
    assert.deepEqual(
      out.map((a) => [a.name, a.source, a.corresponding, a.orcid, a.affiliations.length]),
      [
        ['Ying Bao', 'jats+pubmed', true, null, 1],
        ['Jennifer Prescott', 'jats', false, '0000-0002-1825-0097', 1],
        ['Chén Yuán', 'jats+pubmed', false, null, 2],
        ['Not In Pubmed', 'jats', false, null, 0],
      ],
    );
    assert.deepEqual(out[2]!.affiliations, pubmed4.authors.find((a) => a.lastName === 'Yuan')!.affiliations);
    assert.deepEqual(out[1]!.affiliations, ['Brigham and Women’s Hospital, Boston, USA']);
  });

  it("PubMed's ORCID fills a JATS author without one; a PubMed author is paired once", () => {
    const withOrcid: PubmedAuthor[] = pubmed4.authors.map((a, i) =>
      i === 0 ? { ...a, orcid: '0000-0001-5109-3700' } : a,
    );
    const twice = [jats[0]!, { ...jats[0]!, name: 'Y. Bao' }];
    const out = reconcileAuthors(twice, withOrcid);
    assert.deepEqual(
      out.map((a) => [a.orcid, a.source]),
      [
        ['0000-0001-5109-3700', 'jats+pubmed'],
        [null, 'jats'],
      ],
    );
  });

  it("no JATS authors: PubMed's list as it is; real articles: JATS alone without a PubMed record", () => {
    const out = reconcileAuthors([], pubmed4.authors);
    assert.equal(out.length, 22);
    assert.ok(out.every((a) => a.source === 'pubmed' && !a.corresponding));
    assert.equal(out[0]!.name, 'Ying Bao');
    const elife = parseJats(fs.readFileSync(path.join(fixturePaths.nxml(), 'PMC7289599_elife-56337.nxml')));
    const columns = pubmedColumnsOf(elife, null);
    assert.equal(columns.article_authors.length, 10);
    assert.ok(columns.article_authors.every((a) => a.source === 'jats'));
    assert.deepEqual(
      [columns.article_chemicals, columns.article_pubmed_article_date, columns.article_pubmed_history],
      [[], null, []],
    );
    // The same inputs give the same columns.
    assert.deepEqual(pubmedColumnsOf(elife, pubmed4), pubmedColumnsOf(elife, pubmed4));
    assert.equal(pubmedColumnsOf(elife, pubmed4).article_chemicals[1]!.name, 'Telomerase');
  });
});

describe("the demo's E-utilities stand-in: generated records match the article's byline and dates", function () {
  this.timeout(120_000);
  it('AuthorList, ArticleDate and History of every generated record agree with the article XML', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-standin-authors-'));
    const s = await startEutilsStandin({
      fixturesDir: fixturePaths.entrez(),
      maxPerSecond: 1000,
      generated: await sampleEnrichmentArticles((await ensureSampleMirror(tmp)).outDir),
    });
    try {
      const articles = await sampleEnrichmentArticles(path.join(tmp, 'sample-mirror'));
      const { records } = parsePubmedArticleSet(
        await efetchPubmed({ baseUrl: s.baseUrl, pmids: articles.map((a) => a.pmid), ...identity }),
      );
      let withAuthors = 0;
      let withHistory = 0;
      for (const a of articles) {
        const r = records.get(a.pmid)!;
        if (r.authors.length === 0 && a.authors!.length > 0) continue; // a recorded response (it wins)
        assert.deepEqual(
          r.authors.map((p) => [p.collectiveName ?? `${p.foreName} ${p.lastName}`, p.orcid, p.affiliations]),
          a.authors!.map((j) => [j.name, j.orcid, j.affiliations]),
          a.pmid,
        );
        // Reconciling an article with its own PubMed record changes nothing.
        assert.ok(reconcileAuthors(a.authors!, r.authors).every((x) => x.source === 'jats'));
        assert.equal(r.articleDate, /^\d{4}-\d{2}-\d{2}$/.test(a.epubDate ?? '') ? a.epubDate : null, a.pmid);
        const status: Record<string, string> = { received: 'received', 'rev-recd': 'revised', accepted: 'accepted' };
        assert.deepEqual(
          r.history,
          a
            .history!.filter((h) => status[h.type] && h.date.length === 10)
            .map((h) => ({ status: status[h.type], date: h.date })),
          a.pmid,
        );
        if (r.authors.length > 0) withAuthors++;
        if (r.history.length > 0) withHistory++;
      }
      assert.ok(withAuthors >= 15, `${withAuthors} generated records with an AuthorList`);
      assert.ok(withHistory >= 10, `${withHistory} generated records with History dates`);
    } finally {
      await s.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

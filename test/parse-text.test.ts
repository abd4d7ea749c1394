import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixturePaths } from '../config/paths';
import { parseJats } from '../activities/parse/jats';
import type { ArticleRecord } from '../activities/parse/records';

/** Issue 15, the text half: MathML as linear text, formulas outside paragraphs, title citations, ranges. */

function real(pmcid: string): ArticleRecord {
  const file = fs.readdirSync(fixturePaths.nxml()).find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
  assert.ok(file, `fixture ${pmcid}`);
  return parseJats(fs.readFileSync(path.join(fixturePaths.nxml(), file)), { pmcidHint: pmcid });
}

const MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"';
function jats(body: string, abstract = ''): string {
  return `<article xmlns:xlink="http://www.w3.org/1999/xlink" ${MML}><front><article-meta><article-id pub-id-type="pmc">1</article-id>${abstract}</article-meta></front><body>${body}</body></article>`;
}
const fig = (id: string): string =>
  `<fig id="${id}"><label>Figure ${id}</label><caption><p>Caption ${id}.</p></caption><graphic xlink:href="${id}"/></fig>`;
const mentionsOf = (r: ArticleRecord, id: string): string[] => r.figures.find((f) => f.id === id)?.mentions ?? [];

describe('MathML as linear text', () => {
  const math = (inner: string): string =>
    parseJats(jats(`<sec><p>Then <inline-formula><mml:math>${inner}</mml:math></inline-formula> holds.</p></sec>`))
      .fullText;

  it("fractions, operators spaced, names of several letters apart: the issue's two examples", () => {
    assert.equal(
      math(
        '<mml:mi>S</mml:mi><mml:mo>=</mml:mo><mml:mfrac><mml:mi>C</mml:mi><mml:mi>M</mml:mi></mml:mfrac><mml:mo>+</mml:mo><mml:mfrac><mml:mi>A</mml:mi><mml:mi>N</mml:mi></mml:mfrac>',
      ),
      'Then S = C/M + A/N holds.',
    );
    assert.equal(
      math(
        '<mml:mrow><mml:mi>log</mml:mi><mml:mi>CV</mml:mi><mml:mo>=</mml:mo><mml:mo>−</mml:mo><mml:mn>0.5</mml:mn><mml:mi>log</mml:mi><mml:mi>Frequency</mml:mi><mml:mo>+</mml:mo><mml:mn>2</mml:mn></mml:mrow>',
      ),
      'Then log CV = −0.5 log Frequency + 2 holds.',
    );
  });

  it('sub- and superscripts, grouped operands in parentheses, accents, charges, roots and thin spaces', () => {
    assert.equal(
      math('<mml:msubsup><mml:mi>x</mml:mi><mml:mi>i</mml:mi><mml:mn>2</mml:mn></mml:msubsup>'),
      'Then x_i^2 holds.',
    );
    assert.equal(
      math(
        '<mml:mfrac><mml:mrow><mml:mi>a</mml:mi><mml:mo>+</mml:mo><mml:mi>b</mml:mi></mml:mrow><mml:mi>c</mml:mi></mml:mfrac>',
      ),
      'Then (a + b)/c holds.',
    );
    assert.equal(
      math('<mml:mover accent="true"><mml:mi>V</mml:mi><mml:mo>˙</mml:mo></mml:mover>'),
      'Then V\u0307 holds.',
    );
    assert.equal(
      math('<mml:msup><mml:mtext>Fe</mml:mtext><mml:mrow><mml:mn>2</mml:mn><mml:mo>+</mml:mo></mml:mrow></mml:msup>'),
      'Then Fe^(2+) holds.',
    );
    assert.equal(
      math('<mml:msqrt><mml:mi>x</mml:mi><mml:mo>+</mml:mo><mml:mn>1</mml:mn></mml:msqrt>'),
      'Then √(x + 1) holds.',
    );
    // A thin space inside mtext is content, not markup whitespace: "Xe129 MRI", not "Xe129MRI".
    assert.equal(
      math('<mml:msup><mml:mi>Xe</mml:mi><mml:mn>129</mml:mn></mml:msup><mml:mtext>\u2009MRI</mml:mtext>'),
      'Then Xe^129 MRI holds.',
    );
    // TeX annotations are copies, not text.
    assert.equal(
      math(
        '<mml:semantics><mml:mi>y</mml:mi><mml:annotation encoding="application/x-tex">y</mml:annotation></mml:semantics>',
      ),
      'Then y holds.',
    );
  });

  it('PMC6398430: display formulas outside any <p> are article text, read as linear math, markup kept', () => {
    const r = real('PMC6398430');
    const blocks = r.fullText.split('\n\n');
    assert.ok(blocks.includes('CF = (CM_t − CM_ind)/CM_t (1)'), 'formula (1) is its own block');
    assert.ok(blocks.includes('FS_e = CM_ind + (CU − CU ∗ CF)/T (2)'), 'formula (2) is its own block');
    assert.equal(r.mathml.length, 2);
    assert.ok(
      r.mathml[0]?.startsWith(
        '<mml:math id="M1"><mml:mrow><mml:mi>C</mml:mi><mml:mi>F</mml:mi><mml:mo>=</mml:mo><mml:mfrac>',
      ),
    );
  });

  it('PMC13254695: a fraction inside a paragraph; PMC2775679: mentions carry linear math too', () => {
    assert.ok(real('PMC13254695').fullText.includes('Survival Yield (%) = I_fi/(I_p + ΣI_f)'));
    const mentions = real('PMC2775679').figures.find((f) => f.id === 'fig1')?.mentions ?? [];
    assert.ok(mentions.some((m) => m.includes('f(j; k, t + 1) = ∑_i f(i; k, t) p_ij.')));
  });

  it("abstracts read MathML the same way; the abstract's own formulas are kept in mathml", () => {
    const r = parseJats(
      jats(
        '<sec><p>Body.</p></sec>',
        `<abstract><p>We fit <mml:math><mml:mi>y</mml:mi><mml:mo>=</mml:mo><mml:mfrac><mml:mn>1</mml:mn><mml:mi>x</mml:mi></mml:mfrac></mml:math> to the data.</p></abstract>`,
      ),
    );
    assert.equal(r.abstract, 'We fit y = 1/x to the data.');
    assert.deepEqual(r.mathml, [
      '<mml:math><mml:mi>y</mml:mi><mml:mo>=</mml:mo><mml:mfrac><mml:mn>1</mml:mn><mml:mi>x</mml:mi></mml:mfrac></mml:math>',
    ]);
  });
});

describe("MathML markup across the reader's 1 MiB pieces", () => {
  it('a formula that straddles two pieces of a large article keeps its markup (rebuilt from the tree)', () => {
    const head = jats('<sec><p>', '').split('<sec><p>')[0] + '<sec><p>';
    const formula =
      '<mml:math><mml:mi>y</mml:mi><mml:mo>=</mml:mo><mml:msup><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math>';
    for (const cut of [3, 15, 60]) {
      // the reader decodes 1 MiB (1 << 20 bytes) at a time: the boundary falls `cut` characters into the formula
      const padding = 'a'.repeat((1 << 20) - Buffer.byteLength(head) - cut);
      const xml = `${head}${padding}${formula}.</p></sec></body></article>`;
      const r = parseJats(Buffer.from(xml));
      assert.deepEqual(r.mathml, [formula]);
      assert.ok(r.fullText.endsWith('ay = x^2.'));
    }
  });
});

describe('mentions from section titles, figure ranges and (opt-in) table cells', () => {
  it('a figure cited only in a section title gets the title as its mention', () => {
    const r = parseJats(
      jats(
        `<sec><title>Results of <xref ref-type="fig" rid="f2">Figure 2</xref></title><p>See <xref ref-type="fig" rid="f1">Figure 1</xref>.</p></sec>${fig('f1')}${fig('f2')}`,
      ),
    );
    assert.deepEqual(mentionsOf(r, 'f2'), ['Results of [[Figure 2]]']);
    assert.ok(r.fullText.startsWith('Results of Figure 2\n\nSee Figure 1.'));
  });

  it('"Figs 1–3" written as two citations gives figure 2 the paragraph, with the whole range marked', () => {
    const r = parseJats(
      jats(
        `<sec><p>As <xref ref-type="fig" rid="f1">Figs 1</xref>–<xref ref-type="fig" rid="f3">3</xref> show, and <xref ref-type="fig" rid="f4">Fig 4</xref>.</p></sec>${['f1', 'f2', 'f3', 'f4'].map(fig).join('')}`,
      ),
    );
    assert.deepEqual(mentionsOf(r, 'f1'), ['As [[Figs 1]]–3 show, and Fig 4.']);
    assert.deepEqual(mentionsOf(r, 'f2'), ['As [[Figs 1–3]] show, and Fig 4.']);
    assert.deepEqual(mentionsOf(r, 'f3'), ['As Figs 1–[[3]] show, and Fig 4.']);
    // "and" is no range: figure 4's neighbours get nothing from it
    assert.deepEqual(mentionsOf(r, 'f4'), ['As Figs 1–3 show, and [[Fig 4]].']);
  });

  it('citations inside table cells are mentions only when asked for, and never article text', () => {
    const xml = jats(
      `<sec><p>Text.</p><table-wrap id="t1"><table><tr><td>Shown in <xref ref-type="fig" rid="f1">Fig 1</xref></td></tr></table></table-wrap></sec>${fig('f1')}`,
    );
    assert.deepEqual(mentionsOf(parseJats(xml), 'f1'), []);
    const opted = parseJats(xml, { tableCellMentions: true });
    assert.deepEqual(mentionsOf(opted, 'f1'), ['Shown in [[Fig 1]]']);
    assert.equal(opted.fullText, 'Text.');
  });
});

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixturePaths } from '../config/paths';
import { parseJats } from '../activities/parse/jats';
import { resolveMediaFile } from '../activities/parse/media';
import type { ArticleRecord, CcLicenseCode } from '../activities/parse/records';

/**
 * Expected output for every real fixture, written from the XML itself (read with grep/sed and a separate
 * stdlib-ElementTree viewer, never from this parser's output): figures in document order, labels, graphic
 * hrefs, the media file each href resolves to in a package listing, mention paragraphs and marked citations
 * per figure, one caption per article, title, publication date and licence code.
 *
 * Reading rules that decide the expected values (docs/dataset-format.md, "Extraction rules"):
 * - whitespace, no-break and thin spaces included, collapses to one space; sub/sup/italic add no space;
 * - caption = caption <title> then paragraphs, one space between blocks;
 * - mentions = outermost body/appendix <p> citing the fig with <xref ref-type="fig">, captions and tables
 *   excluded; citations = those xrefs, each wrapped in [[...]] in the figure's own copy of the paragraph;
 * - pubDate: epub, then ppub, then collection, then any other, with the precision given.
 */

/** [fig id, label, graphic href, media file it resolves to, mention paragraphs, marked citations] */
type Fig = [id: string | null, label: string | null, href: string, file: string, paragraphs: number, citations: number];

interface Expected {
  pmcid: string;
  title: string;
  pubDate: string;
  license: CcLicenseCode | null;
  figures: Fig[];
  /** one caption read from the XML: exact text, or its exact start and end */
  caption?: { id: string; title?: string | null } & ({ exact: string } | { start: string; end: string });
}

const jpg = (href: string, id: string, label: string, paragraphs: number, citations: number): Fig => [
  id,
  label,
  href,
  `${href}.jpg`,
  paragraphs,
  citations,
];

const EXPECTED: Expected[] = [
  {
    pmcid: 'PMC12491691',
    title: 'Metallic nanomedicine in cancer immunotherapy',
    pubDate: '2025-07-14', // epub; ppub is 2025-09
    license: 'CC BY', // ali:license_ref
    figures: [
      ['undfig1', null, 'ga1', 'ga1.jpg', 0, 0], // graphical abstract: alt-text only
      jpg('gr1', 'fig1', 'Figure 1', 1, 1),
      jpg('gr2', 'fig2', 'Figure 2', 2, 2),
      jpg('gr3', 'fig3', 'Figure 3', 1, 1),
      jpg('gr4', 'fig4', 'Figure 4', 2, 2),
      jpg('gr5', 'fig5', 'Figure 5', 2, 2),
      jpg('gr6', 'fig6', 'Figure 6', 2, 2),
    ],
    caption: {
      id: 'fig3',
      exact:
        'Metal components modulate the antitumor function of DC, macrophage, and CD8+ T cells through various immune signaling pathways.',
    },
  },
  {
    pmcid: 'PMC12505609',
    title: 'Immunometabolism: crosstalk with tumor metabolism and implications for cancer immunotherapy',
    pubDate: '2025-10-08',
    license: 'CC BY-NC-ND',
    figures: [
      jpg('12943_2025_2460_Fig1_HTML', 'Fig1', 'Fig. 1', 3, 3),
      jpg('12943_2025_2460_Fig2_HTML', 'Fig2', 'Fig. 2', 3, 3),
      jpg('12943_2025_2460_Fig3_HTML', 'Fig3', 'Fig. 3', 1, 1),
      jpg('12943_2025_2460_Fig4_HTML', 'Fig4', 'Fig. 4', 1, 1),
      jpg('12943_2025_2460_Fig5_HTML', 'Fig5', 'Fig. 5', 1, 1),
      jpg('12943_2025_2460_Fig6_HTML', 'Fig6', 'Fig. 6', 1, 1),
    ],
    caption: {
      id: 'Fig6',
      exact:
        'Innovative technologies revitalizing immunometabolism research. MALDI-MSI: Matrix-assisted laser desorption/ionisation mass spectrometry imaging',
    },
  },
  {
    pmcid: 'PMC12561574',
    title: 'Dendritic Cell-Derived Exosomes: Next Generation of Cancer Immunotherapy',
    pubDate: '2025-10-14',
    license: 'CC BY',
    figures: [1, 2, 3, 4, 5].map((n) =>
      jpg(`biomedicines-13-02497-g00${n}`, `biomedicines-13-02497-f00${n}`, `Figure ${n}`, 1, 1),
    ),
    caption: {
      id: 'biomedicines-13-02497-f003',
      exact: 'Tumor-derived exosomes (TDXs) role in cancer (created with biorender.com).',
    },
  },
  {
    pmcid: 'PMC12602441',
    title: 'Non-coding RNAs in gastric cancer immunotherapy: mechanisms and clinical implications',
    pubDate: '2025-10-28',
    license: 'CC BY',
    figures: [
      jpg('fimmu-16-1688181-g001', 'f1', 'Figure 1', 1, 5), // Figure 1A..1E all cited in one paragraph
      jpg('fimmu-16-1688181-g002', 'f2', 'Figure 2', 3, 3),
      jpg('fimmu-16-1688181-g003', 'f3', 'Figure 3', 5, 8),
      jpg('fimmu-16-1688181-g004', 'f4', 'Figure 4', 3, 3),
    ],
    caption: {
      id: 'f1',
      start:
        'Classification of ncRNAs. (A) miRNAs are ncRNAs with a length of 20\u201325 nt, generated through Dicer, TRBP, and AGO-mediated cleavage of pre-miRNA.',
      end: 'methylated at the 3\u2032-end. (D) LncRNAs are transcripts over 200 nt in length, typically synthesized by RNA polymerase II. (E) CircRNAs are covalently closed circular RNA molecules, generally 200-2000nt in length.',
    },
  },
  {
    pmcid: 'PMC13125388',
    title:
      'Resolving Isomeric Structures in Natural Complex Carbohydrates: A Comparative Study of SLIM and Cyclic Ion Mobility Platforms',
    pubDate: '2026-04-28', // the only, untyped, pub-date
    license: 'CC BY-NC-ND', // URL only in a license-p ext-link
    figures: [
      // <alternatives>: the content-type="image" .jpg, not the .gif thumb
      ['rcm70073-fig-0001', 'FIGURE 1', 'RCM-40-e70073-g003.jpg', 'RCM-40-e70073-g003.jpg', 2, 2],
      ['rcm70073-fig-0002', 'FIGURE 2', 'RCM-40-e70073-g001.jpg', 'RCM-40-e70073-g001.jpg', 5, 5],
      ['rcm70073-fig-0003', 'FIGURE 3', 'RCM-40-e70073-g002.jpg', 'RCM-40-e70073-g002.jpg', 1, 1],
      ['rcm70073-fig-0004', 'FIGURE 4', 'RCM-40-e70073-g004.jpg', 'RCM-40-e70073-g004.jpg', 1, 1],
      ['rcm70073-fig-0005', 'FIGURE 5', 'RCM-40-e70073-g005.jpg', 'RCM-40-e70073-g005.jpg', 1, 1],
    ],
    caption: {
      id: 'rcm70073-fig-0003',
      exact: 'Nature of the OS identified on both instruments depending on their DP and their DM.',
    },
  },
  {
    pmcid: 'PMC13254695',
    title: 'A Combined MS/MS and IMS Study Into the Fragmentation Pathway of Nifedipine',
    pubDate: '2026-06-11',
    license: 'CC BY',
    figures: (
      [
        ['0001', 'FIGURE 1', '006', 1, 1],
        ['0002', 'FIGURE 2', '001', 4, 4],
        ['0003', 'FIGURE 3', '016', 1, 1],
        ['0004', 'FIGURE 4', '010', 1, 1],
        ['0005', 'FIGURE 5', '012', 2, 2],
        ['0006', 'FIGURE 6', '015', 2, 2],
        ['0007', 'FIGURE 7', '013', 1, 2],
        ['0008', 'FIGURE 8', '004', 2, 3],
        ['0009', 'FIGURE 9', '008', 1, 2],
        ['0010', 'FIGURE 10', '011', 1, 1],
        ['0011', 'FIGURE 11', '009', 1, 1],
        ['0015', 'SCHEME 1', '007', 2, 2],
        ['0012', 'FIGURE 12', '014', 1, 1],
        ['0013', 'FIGURE 13', '002', 1, 1],
        ['0014', 'FIGURE 14', '005', 1, 1],
        ['0016', 'SCHEME 2', '003', 2, 2],
      ] as const
    ).map(([id, label, g, paragraphs, citations]): Fig => [
      `jms70071-fig-${id}`,
      label,
      `JMS-61-e70071-g${g}.jpg`,
      `JMS-61-e70071-g${g}.jpg`,
      paragraphs,
      citations,
    ]),
    caption: { id: 'jms70071-fig-0015', exact: 'proposed fragmentation pathway of protonated nifedipine.' },
  },
  {
    pmcid: 'PMC13320716',
    title: 'On the origin of PRDM9-guided recombination hotspots',
    pubDate: '2026-06-25', // date-type="pub" publication-format="electronic"
    license: 'CC BY',
    figures: [
      jpg('pnas.2535682123fig01', 'fig01', 'Fig. 1.', 4, 9),
      jpg('pnas.2535682123fig02', 'fig02', 'Fig. 2.', 3, 6),
      jpg('pnas.2535682123fig03', 'fig03', 'Fig. 3.', 5, 11), // a 12th xref sits in another figure's caption
      jpg('pnas.2535682123fig04', 'fig04', 'Fig. 4.', 6, 20),
      jpg('pnas.2535682123fig05', 'fig05', 'Fig. 5.', 4, 9),
    ],
    caption: {
      id: 'fig02',
      exact:
        'Phylogenetic distribution of PRDM9 recombination hotspots. For each clade we present the number of species that have been researched and ' +
        'the percentage of them where there is evidence of PRDM9 recombination hotspots (adapted from ref. 13 with additional data from refs. 24 and ' +
        '31\u201333). We use green to represent a gain of PRDM9 recombination hotspots in the ancestor of vertebrates, and red to represent some ' +
        'examples of the multiple losses of PRDM9 recombination hotspots, for example, in the ancestor of birds and crocodiles, the ancestor of ' +
        'canids, or the ancestor of platypus.',
    },
  },
  {
    pmcid: 'PMC1790863',
    title: 'Quantifying Organismal Complexity using a Population Genetic Approach',
    pubDate: '2007-02-14',
    license: null, // no <license>; CC BY only in the copyright statement
    figures: [
      jpg('pone.0000217.g001', 'pone-0000217-g001', 'Figure 1', 2, 2),
      jpg('pone.0000217.g002', 'pone-0000217-g002', 'Figure 2', 1, 1),
      jpg('pone.0000217.g003', 'pone-0000217-g003', 'Figure 3', 2, 2),
    ],
    caption: {
      id: 'pone-0000217-g002',
      title: 'Predicted equilibrium fitness as a function of phenotypic complexity (ne).',
      exact:
        'Predicted equilibrium fitness as a function of phenotypic complexity (ne). Results are shown for populations of size 100 (black), ten ' +
        '(grey), and three (white). An exponential fitness decline in which Q = 1 was used (yielding a fitness function of f(d) = exp(\u2212d)). ' +
        'Circles indicate the average fitness reached in the simulation model; curves indicate the analytical results.',
    },
  },
  {
    pmcid: 'PMC2329613',
    title:
      'The Dutch version of the Oral Health Impact Profile (OHIP-NL): Translation, reliability and construct validity',
    pubDate: '2008-04-11',
    license: 'CC BY',
    figures: [], // tables only
  },
  {
    pmcid: 'PMC2599765',
    title:
      'Dietary Exposure to 2,2\u2032,4,4\u2032-Tetrabromodiphenyl Ether (PBDE-47) Alters Thyroid Status and Thyroid Hormone\u2013Regulated Gene ' +
      'Transcription in the Pituitary and Brain',
    pubDate: '2008-08-01',
    license: null, // public domain mark: not a CC licence
    figures: [
      jpg('ehp-116-1694f1', 'f1-ehp-116-1694', 'Figure 1', 2, 2),
      jpg('ehp-116-1694f2', 'f2-ehp-116-1694', 'Figure 2', 1, 1),
      jpg('ehp-116-1694f3', 'f3-ehp-116-1694', 'Figure 3', 2, 3),
    ],
    caption: {
      id: 'f1-ehp-116-1694',
      exact:
        'Exposure to PBDE-47 depressed circulating concentrations of total T4 in males and females (A), but had no effect on total T3 in males (B). *p < 0.05 compared with control.',
    },
  },
  {
    pmcid: 'PMC2775679',
    title: 'A Tutorial of the Poisson Random Field Model in Population Genetics',
    pubDate: '2008-07-02',
    license: 'CC BY',
    figures: [
      // ".001" is not an image extension: the whole href is the stem
      jpg('ABI2008-257864.001', 'fig1', 'Figure 1', 2, 2),
      jpg('ABI2008-257864.002', 'fig2', 'Figure 2', 1, 1),
      jpg('ABI2008-257864.003', 'fig3', 'Figure 3', 1, 1),
      jpg('ABI2008-257864.004', 'fig4', 'Figure 4', 2, 3),
    ],
    caption: {
      id: 'fig1',
      exact:
        'Pictorial representation of the Wright-Fisher process and its diffusion approximation: (a) basic Wright-Fisher model assuming selection, ' +
        'but no dominance or recurrent mutation and (b) diffusion approximation to the basic Wright-Fisher model.',
    },
  },
  {
    pmcid: 'PMC3062852',
    title: 'Distribution of transport injury and related risk behaviours in a large national cohort of Thai adults',
    pubDate: '2011-05', // ppub, month only
    license: null, // Elsevier author-manuscript terms
    figures: [1, 2, 3, 4, 5, 6, 7].map((n) =>
      jpg(`gr${n}`, `fig00${String(n * 5).padStart(2, '0')}`, `Fig. ${n}`, 1, 1),
    ),
    caption: { id: 'fig0010', exact: 'Role when injured, by sex and age.' },
  },
  {
    pmcid: 'PMC3166277',
    title: 'Factors influencing lysis time stochasticity in bacteriophage \u03bb',
    pubDate: '2011-08-02',
    license: 'CC BY',
    figures: [
      jpg('1471-2180-11-174-1', 'F1', 'Figure 1', 3, 4),
      jpg('1471-2180-11-174-2', 'F2', 'Figure 2', 1, 2),
      jpg('1471-2180-11-174-3', 'F3', 'Figure 3', 4, 8),
      jpg('1471-2180-11-174-4', 'F4', 'Figure 4', 4, 4),
    ],
    caption: {
      id: 'F2',
      exact:
        'Samples of a lysis recording and frequency distributions of various experimental treatments. (A) Sample recordings from strain IN63. ' +
        'It takes about 5 sec for the upper left cell to disappear from view. (B) Sample frequency distributions of lysis times from strains IN56, ' +
        'IN67, IN68, SYP028, IN56 with KCN added at 55 min after thermal induction, and IN56 grown in glycerol minimal salts medium. The bin size ' +
        'was 2 min. Additional data are shown in Tables 1 and 2.',
    },
  },
  {
    pmcid: 'PMC3357053',
    title: 'Transcription factor OsHsfC1b regulates salt tolerance and development in Oryza sativa ssp. japonica',
    pubDate: '2012-05-21',
    license: 'CC BY-NC',
    figures: [
      jpg('pls01101', 'PLS011F1', 'Fig. 1', 3, 4),
      jpg('pls01102', 'PLS011F2', 'Fig. 2', 7, 11),
      jpg('pls01103', 'PLS011F3', 'Fig. 3', 3, 7),
      jpg('pls01104', 'PLS011F4', 'Fig. 4', 7, 15),
      jpg('pls01105', 'PLS011F5', 'Fig. 5', 4, 5),
    ],
    caption: {
      id: 'PLS011F5',
      start:
        'Expressional response of salt stress-responsive genes in the different genotypes. (A) Venn-diagram presentation of the overlap of differentially expressed genes in hsfc1b, ami-13.3 and corresponding controls under salt stress.',
      end: "The values that are significantly different (\u2264\u22121 or \u2265+1) from the respective control by Student's t-test (P \u2264 0.05) are marked with a star (*).",
    },
  },
  {
    pmcid: 'PMC3460867',
    title:
      'MmPPOX Inhibits Mycobacterium tuberculosis Lipolytic Enzymes Belonging to the Hormone-Sensitive Lipase Family and Alters Mycobacterial Growth',
    pubDate: '2012-09-28',
    license: 'CC BY', // licence prose only
    figures: [
      jpg('pone.0046493.g001', 'pone-0046493-g001', 'Figure 1', 1, 2),
      jpg('pone.0046493.g002', 'pone-0046493-g002', 'Figure 2', 2, 3),
      jpg('pone.0046493.g003', 'pone-0046493-g003', 'Figure 3', 3, 4),
      jpg('pone.0046493.g004', 'pone-0046493-g004', 'Figure 4', 1, 1),
    ],
    caption: {
      id: 'pone-0046493-g001',
      title: 'Chemical structure of inhibitors.',
      exact:
        'Chemical structure of inhibitors. Chemical structures of A, THL and B, MmPPOX. The proposed mechanism of action involves the opening of ' +
        'the cycle in each molecule. Nucleophilic sites attacked by catalytic serine are indicated by an arrow. Theoretical exact masses were ' +
        'calculated using the online calculator provided by SIS, Inc. (http://www.sisweb.com/referenc/tools/exactmass.htm).',
    },
  },
  {
    pmcid: 'PMC3574550',
    title:
      'Socio-demographic inequalities in stage of cancer diagnosis: evidence from patients with female breast, lung, colon, rectal, prostate, ' +
      'renal, bladder, melanoma, ovarian and endometrial cancer',
    pubDate: '2012-11-12',
    license: 'CC BY-NC',
    figures: [jpg('mds52601', 'MDS526F1', 'Figure 1.', 1, 1), jpg('mds52602', 'MDS526F2', 'Figure 2.', 1, 1)],
    caption: {
      id: 'MDS526F1',
      exact:
        'Deprivation inequalities in advanced stage at diagnosis by cancer (odds ratios and 95% confidence intervals for diagnosis in stage III/ IV versus I/II).',
    },
  },
  {
    pmcid: 'PMC3585041',
    title:
      'Serological Evidence of Rift Valley Fever Virus Circulation in Sheep and Goats in Zamb\u00e9zia Province, Mozambique',
    pubDate: '2013-02-28',
    license: 'CC BY',
    figures: [jpg('pntd.0002065.g001', 'pntd-0002065-g001', 'Figure 1', 1, 1)], // a second xref is inside its own caption
    caption: {
      id: 'pntd-0002065-g001',
      title: 'Location of the study areas.',
      start:
        'Location of the study areas. Figure 1 shows the map of the Zamb\u00e9zia Province, Mozambique indicating the location of the study areas.',
      end: 'Three perennial rivers that drain the Mopeia district namely Zambeze, Cuacua and Chire Rivers are highlighted in blue.',
    },
  },
  {
    pmcid: 'PMC4222443',
    title: 'A p-Median approach for predicting drug response in tumour cells',
    pubDate: '2014-10-29',
    license: 'CC BY',
    figures: [
      [1, 1, 1],
      [2, 1, 1],
      [3, 1, 1],
      [4, 1, 1],
      [5, 1, 2],
      [6, 1, 2],
      [7, 2, 2],
      [8, 2, 2],
      [9, 1, 2],
    ].map(([n, p, c]) => jpg(`12859_2014_353_Fig${n}_HTML`, `Fig${n}`, `Figure ${n}`, p as number, c as number)),
    caption: {
      id: 'Fig7',
      exact:
        'Comparison of BNs accuracy on Liu dataset. The BNs have been trained according to the selection of genes by means of IG policy.',
    },
  },
  {
    pmcid: 'PMC5828200',
    title:
      'Curcuminoid submicron particle ameliorates cognitive deficits and decreases amyloid pathology in Alzheimer\u2019s disease mouse model',
    pubDate: '2018-01-31', // epub; the collection date is 2018-02-13
    license: 'CC BY',
    figures: [
      [1, 1, 1],
      [2, 1, 1],
      [3, 1, 2],
      [4, 1, 3],
      [5, 1, 5],
      [6, 1, 1],
      [7, 1, 4],
      [8, 1, 2],
      [9, 1, 3],
      [10, 1, 2],
      [11, 2, 2],
    ].map(([n, p, c]) =>
      jpg(`oncotarget-09-10681-g${String(n).padStart(3, '0')}`, `F${n}`, `Figure ${n}`, p as number, c as number),
    ),
    caption: {
      id: 'F3',
      title: 'Body weight and water intake of WT and APP mice during CSP treatment',
      exact:
        'Body weight and water intake of WT and APP mice during CSP treatment APP and wildtype littermate control (WT) mice received 0 or 0.75 ' +
        'mg/mL/day of CSP for 2 months. (A) Body weight and (B) water intake were recorded weekly during CSP administration. N = 12-17 ' +
        'mice/group. Results were analyzed by one-way ANOVA.',
    },
  },
  {
    pmcid: 'PMC6398430',
    title: 'Counting crows: population structure and group size variation in an urban population of crows',
    pubDate: '2018-12-08',
    license: 'CC BY',
    figures: [
      jpg('ary15701', 'F1', 'Figure 1', 2, 2),
      jpg('ary15702', 'F2', 'Figure 2', 2, 2),
      jpg('ary15703', 'F3', 'Figure 3', 2, 2),
      jpg('ary15704', 'F4', 'Figure 4', 1, 1),
    ],
    caption: { id: 'F3', exact: 'Relative proportions of presence categories per season.' },
  },
  {
    pmcid: 'PMC7159286',
    title:
      'A familial cluster of pneumonia associated with the 2019 novel coronavirus indicating person-to-person transmission: a study of a family cluster',
    pubDate: '2020-01-24',
    license: null, // Elsevier COVID-19 permission
    figures: [
      // the real package: gr1_lrg.gif sits beside gr1_lrg.jpg
      jpg('gr1_lrg', 'fig1', 'Figure 1', 1, 1),
      jpg('gr2_lrg', 'fig2', 'Figure 2', 1, 1),
      jpg('gr3a_lrg', 'fig3', 'Figure 3', 1, 1),
      jpg('gr3b_lrg', 'fig3', 'Figure 3', 1, 1),
      jpg('gr4_lrg', 'fig4', 'Figure 4', 1, 2),
    ],
    caption: {
      id: 'fig2',
      exact:
        'Representative images of the thoracic CT scans showing multifocal ground-glass changes in the lungs of patient 1 (A), patient 2 (B), patient 3 (C), and patient 5 (D)',
    },
  },
  {
    pmcid: 'PMC7289444',
    title:
      'Risk factors associated with failing pre-transmission assessment surveys (pre-TAS) in lymphatic filariasis elimination programs: ' +
      'Results of a multi-country analysis',
    pubDate: '2020-06-01',
    license: 'CC0',
    figures: [1, 2, 3, 4, 5].map((n) => jpg(`pntd.0008301.g00${n}`, `pntd.0008301.g00${n}`, `Fig ${n}`, 1, 1)),
    caption: {
      id: 'pntd.0008301.g001',
      title: 'Number of pre-TAS by country.',
      exact: 'Number of pre-TAS by country.',
    },
  },
  {
    pmcid: 'PMC7289599',
    title: 'KRAB-zinc finger protein gene expansion in response to active retrotransposons in the murine lineage',
    pubDate: '2020-06-01',
    license: 'CC0',
    figures: [
      // child-figs are nested in their parent fig; each keeps its own graphic, parent first
      jpg('elife-56337-fig1', 'fig1', 'Figure 1.', 3, 6),
      jpg('elife-56337-fig1-figsupp1', 'fig1s1', 'Figure 1\u2014figure supplement 1.', 2, 4),
      jpg('elife-56337-fig1-figsupp2', 'fig1s2', 'Figure 1\u2014figure supplement 2.', 2, 3),
      jpg('elife-56337-fig1-figsupp3', 'fig1s3', 'Figure 1\u2014figure supplement 3.', 2, 3),
      jpg('elife-56337-fig2', 'fig2', 'Figure 2.', 1, 5),
      jpg('elife-56337-fig2-figsupp1', 'fig2s1', 'Figure 2\u2014figure supplement 1.', 2, 2),
      jpg('elife-56337-fig3', 'fig3', 'Figure 3.', 2, 5),
      jpg('elife-56337-fig4', 'fig4', 'Figure 4.', 3, 7),
      jpg('elife-56337-fig4-figsupp1', 'fig4s1', 'Figure 4\u2014figure supplement 1.', 2, 3),
      jpg('elife-56337-fig4-figsupp2', 'fig4s2', 'Figure 4\u2014figure supplement 2.', 1, 1),
      jpg('elife-56337-fig4-figsupp3', 'fig4s3', 'Figure 4\u2014figure supplement 3.', 2, 5),
    ],
    caption: {
      id: 'fig4s1',
      title: 'Birth statistics of KRAB-ZFP cluster KO mice and TE reactivation in adult tissues.',
      exact:
        'Birth statistics of KRAB-ZFP cluster KO mice and TE reactivation in adult tissues. (A) Birth statistics of Chr4- and Chr2-cl mice derived ' +
        'from KO/WT x KO/WT matings in different strain backgrounds. (B) RNA-seq analysis of TE expression in Chr2- (left) and Chr4-cl (right) KO ' +
        'tissues. TE groups with the highest reactivation phenotype in ES cells are shown separately. Significantly up- and downregulated elements ' +
        '(adjusted p-value<0.05) are highlighted in red and green, respectively. Experiments were performed in at least two biological replicates.',
    },
  },
  {
    pmcid: 'PMC7302504',
    title: 'Potential to reduce greenhouse gas emissions through different dairy cattle systems in subtropical regions',
    pubDate: '2020-06-18',
    license: 'CC0',
    figures: [
      jpg('pone.0234687.g001', 'pone.0234687.g001', 'Fig 1', 1, 1),
      jpg('pone.0234687.g002', 'pone.0234687.g002', 'Fig 2', 3, 6),
      jpg('pone.0234687.g003', 'pone.0234687.g003', 'Fig 3', 1, 1),
      jpg('pone.0234687.g004', 'pone.0234687.g004', 'Fig 4', 2, 5),
    ],
    caption: {
      id: 'pone.0234687.g001',
      title: 'Overview of the milk production system boundary considered in the study.',
      exact: 'Overview of the milk production system boundary considered in the study.',
    },
  },
  {
    pmcid: 'PMC7417471',
    title:
      'Graphene impregnated electrospun nanofiber sensing materials: a comprehensive overview on bridging laboratory set-up to industry',
    pubDate: '2020-08-10',
    license: 'CC BY', // URL in a license-p ext-link
    figures: [
      [1, 2, 2],
      [2, 1, 2],
      [3, 1, 1],
      [4, 1, 2],
      [5, 1, 1],
      [6, 1, 3],
    ].map(([n, p, c]) => jpg(`40580_2020_237_Fig${n}_HTML`, `Fig${n}`, `Fig. ${n}`, p as number, c as number)),
    caption: {
      id: 'Fig2',
      exact:
        '(1): Pristine and GO-SnO2 NTs preparation and gas sensor mechanism and (2) SEM images of (a) as-prepared Sn + poly (vinyl pyrrolidone) ' +
        '(PVP) nanofibers (b, c) pristine SnO2, and (d, e) GO incorporate SnO2 NTs, (f) Histogram of GO-SnO2 NT diameters Reproduced with ' +
        'permission from [181] Copyright 2019 Elsevier',
    },
  },
];

const nxmlDir = fixturePaths.nxml();
const fixtureFiles = fs.readdirSync(nxmlDir).filter((f) => /\.(nxml|xml)$/.test(f));

const bare = (text: string): string => text.replace(/\s+/g, '');

function parseFixture(pmcid: string): ArticleRecord {
  const file = fixtureFiles.find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
  assert.ok(file, `no fixture for ${pmcid}`);
  return parseJats(fs.readFileSync(path.join(nxmlDir, file)), { pmcidHint: pmcid });
}

/**
 * The files a package would hold for these hrefs: the full image, its .gif thumbnail and a .tif original
 * for every figure, plus the article's own files. PMC7159286 uses its real package folder.
 */
function packageListing(e: Expected): string[] {
  if (e.pmcid === 'PMC7159286') return fs.readdirSync(path.join(fixturePaths.images(), e.pmcid));
  const names = new Set([`${e.pmcid}.1.xml`, `${e.pmcid}.1.json`, `${e.pmcid}.1.txt`, 'main.pdf']);
  for (const [, , href] of e.figures) {
    const stem = href.replace(/\.(jpe?g|gif|tiff?|png)$/i, '');
    for (const ext of ['.gif', '.tif', '.jpg']) names.add(`${stem}${ext}`);
    names.add(`${stem}_thumb.jpg`); // a near-miss name must never match
  }
  return [...names];
}

describe('parseJats: expected output of the real fixtures, read from the XML by hand', () => {
  it('covers at least 20 of the 25 fixtures', () => {
    assert.equal(new Set(EXPECTED.map((e) => e.pmcid)).size, EXPECTED.length);
    assert.ok(EXPECTED.length >= 20, `${EXPECTED.length} articles`);
    assert.equal(EXPECTED.length, fixtureFiles.length);
  });

  for (const e of EXPECTED) {
    describe(e.pmcid, () => {
      let r: ArticleRecord;
      before(() => {
        r = parseFixture(e.pmcid);
      });

      it('title, publication date, licence code and no warnings', () => {
        assert.equal(r.pmcid, e.pmcid);
        assert.equal(r.title, e.title);
        assert.equal(r.pubDate, e.pubDate);
        assert.equal(r.license.code, e.license);
        assert.deepEqual(r.warnings, []);
      });

      it(`${e.figures.length} figure records: ids, labels and graphic hrefs in document order`, () => {
        assert.deepEqual(
          r.figures.map((f) => [f.id, f.label, f.graphicHref]),
          e.figures.map(([id, label, href]) => [id, label, href]),
        );
      });

      it('each graphic resolves to its media file in the package listing', () => {
        const listing = packageListing(e);
        assert.deepEqual(
          r.figures.map((f) => resolveMediaFile(f.graphicHref, listing)),
          e.figures.map(([, , , file]) => file),
        );
      });

      it('mention paragraphs and marked citations per figure', () => {
        const counted = r.figures.map((f) => [
          f.id,
          f.mentions.length,
          f.mentions.reduce((n, m) => n + (m.match(/\[\[/g)?.length ?? 0), 0),
        ]);
        assert.deepEqual(
          counted,
          e.figures.map(([id, , , , paragraphs, citations]) => [id, paragraphs, citations]),
        );
        for (const f of r.figures) {
          for (const m of f.mentions) {
            assert.ok(/\[\[[^\]]+\]\]/.test(m), `${f.id}: a mention without a marked citation: ${m.slice(0, 80)}`);
            // the marks (and spacing between literal brackets) are the only difference from the paragraph in fullText
            assert.ok(
              bare(r.fullText).includes(bare(m.replace(/\[\[|\]\]/g, ''))),
              `${f.id}: mention is not a body paragraph`,
            );
          }
        }
      });

      if (e.caption) {
        const c = e.caption;
        it(`caption of ${c.id}`, () => {
          const f = r.figures.find((x) => x.id === c.id);
          assert.ok(f, `no figure ${c.id}`);
          if ('exact' in c) assert.equal(f.caption, c.exact);
          else {
            assert.ok(f.caption.startsWith(c.start), `starts with: ${f.caption.slice(0, c.start.length + 20)}`);
            assert.ok(f.caption.endsWith(c.end), `ends with: ${f.caption.slice(-c.end.length - 20)}`);
          }
          if (c.title !== undefined) assert.equal(f.captionTitle, c.title);
        });
      }
    });
  }
});

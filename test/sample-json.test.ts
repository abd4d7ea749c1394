import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixturePaths } from '../config/paths';
import { parsePubmedArticleSet } from '../activities/enrich/pubmed';
import { parseJats } from '../activities/parse/jats';
import type { UnitFigure } from '../activities/parse/activity';
import type { PlannedArticle } from '../activities/plan/plan';
import { buildSampleJson, PUBLISHED_KEYS } from '../activities/shard/sample-json';

const label = {
  panel_type: 'single',
  panel_subtype: 'single panel',
  global_class: ['Microscopy'],
  local_class: ['light microscopy'],
};

function inputsFor(file: string, pmcid: string) {
  const record = parseJats(fs.readFileSync(path.join(fixturePaths.nxml(), file)), { pmcidHint: pmcid });
  const planned: PlannedArticle = {
    pmcid,
    version: 1,
    pmid: record.pmid,
    doi: record.doi,
    citation: 'Cit. 2011',
    licenseCode: 'CC BY',
    xml: { key: 'k', md5: null },
    media: [],
    etag: 'e',
  };
  const figures: UnitFigure[] = record.figures.map((f, index) => ({
    key: `${pmcid}_1_${String(index).padStart(3, '0')}`,
    index,
    href: f.graphicHref,
    mediaFile: `${f.graphicHref}.jpg`,
    mediaKey: `${pmcid}.1/${f.graphicHref}.jpg`,
    mediaMd5: null,
    caption: f.caption,
    rejected: null,
  }));
  return { record, planned, figures };
}

describe('the published sample json', () => {
  it('fills article_mesh_terms, article_abstract, reference ids and count from the PubMed record', () => {
    const { record, planned, figures } = inputsFor('PMC3166277_1471-2180-11-174.nxml', 'PMC3166277');
    const pubmed = parsePubmedArticleSet(
      fs.readFileSync(path.join(fixturePaths.entrez(), 'biopython_pubmed4.xml'), 'utf8'),
    ).records.get('27797938')!;
    const json = buildSampleJson({
      planned,
      record,
      figures,
      figure: figures[0]!,
      image: { width: 640, height: 480, sha256: 'ab' },
      imageHashes: new Map(),
      label: { clusterId: 7, labels: label },
      pubmed,
    });
    assert.deepEqual(Object.keys(json), PUBLISHED_KEYS);
    assert.equal(json.article_mesh_terms.length, 21);
    assert.ok(json.article_mesh_terms.includes('Adenocarcinoma'));
    assert.ok(json.article_mesh_terms.includes('Telomere Shortening'));
    assert.equal(json.article_abstract, pubmed.abstract);
    assert.match(json.article_abstract, /^[A-Z ]+: /, 'structured abstract as "LABEL: text", not a Python repr');
    assert.deepEqual(json.article_reference_ids, pubmed.referenceIds);
    assert.equal(json.article_reference_count, pubmed.referenceCount);
    assert.equal(json.image_label_id, '7');
    assert.deepEqual(json.image_primary_label, ['Microscopy']);
    assert.deepEqual(json.image_size, [640, 480]);
  });

  it('without a PubMed record keeps the article own abstract and empty enrichment lists, never "None"', () => {
    const { record, planned, figures } = inputsFor('PMC3166277_1471-2180-11-174.nxml', 'PMC3166277');
    const json = buildSampleJson({
      planned,
      record,
      figures,
      figure: figures[0]!,
      image: { width: 1, height: 1, sha256: 'ab' },
      imageHashes: new Map(),
      label: { clusterId: 0, labels: label },
      pubmed: null,
    });
    assert.equal(json.article_abstract, record.abstract);
    assert.deepEqual(json.article_mesh_terms, []);
    assert.deepEqual(json.article_reference_ids, []);
    assert.equal(json.article_reference_count, 0);
    for (const [k, v] of Object.entries(json)) assert.notEqual(v, 'None', `${k} is not the string "None"`);
  });

  it('lists every figure of the article in image_set and maps figure ids to their mentions in image_context', () => {
    const { record, planned, figures } = inputsFor('PMC7159286_main.nxml', 'PMC7159286');
    const json = buildSampleJson({
      planned,
      record,
      figures,
      figure: figures[2]!,
      image: { width: 1, height: 1, sha256: 'ab' },
      imageHashes: new Map([[figures[0]!.key, 'h0']]),
      label: { clusterId: 0, labels: label },
      pubmed: null,
    });
    assert.deepEqual(
      json.image_set.map((i) => i.image_id),
      ['gr1_lrg', 'gr2_lrg', 'gr3a_lrg', 'gr3b_lrg', 'gr4_lrg'],
    );
    assert.equal(json.image_set[0]!.hash, 'h0');
    assert.equal(json.image_set[1]!.hash, null);
    assert.equal(json.image_cluster_id, 'gr3a_lrg');
    assert.equal(json.image_file_name, 'gr3a_lrg.jpg');
    for (const [id, paragraphs] of Object.entries(json.image_context)) {
      assert.ok(json.image_set.some((i) => i.image_id === id));
      assert.ok(paragraphs.length > 0);
    }
  });
});

/**
 * The published outputs of a real release (the sample built from the real fixtures, activities called in the
 * release workflow's order in this process) read by the Python ecosystem's own readers: webdataset, pyarrow and
 * Hugging Face datasets. Also: tar and parquet agree sample by sample, a recompute is byte-identical, and a unit
 * too big for one shard is split into parts by article (an article too big for any shard is quarantined).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readNdjson } from '../activities/common/files';
import type { QuarantineRecord } from '../activities/common/quarantine';
import type { PreparedImage } from '../activities/images/activity';
import { stagedImagePath } from '../activities/images/activity';
import { writeParquet } from '../activities/parquet/activity';
import { publishRelease } from '../activities/publish/activity';
import { SAMPLE_FEATURES } from '../activities/publish/card';
import {
  DEFAULT_ROW_GROUP_BYTES,
  DEFAULT_ROW_GROUP_SIZE,
  planRowGroups,
  publishedJsonOf,
  readSamplesParquet,
  rowValueBytes,
  writeSamplesParquet,
  type SampleRow,
} from '../activities/parquet/writer';
import type { ShardIndexEntry } from '../activities/publish/finalize';
import { writeShard } from '../activities/shard/activity';
import { pyJsonDumps } from '../activities/shard/pyjson';
import { PUBLISHED_KEYS } from '../activities/shard/sample-json';
import { readTarEntries, splitMemberName } from '../activities/shard/tar-reader';
import { tarArchiveBytes, tarSampleBytes } from '../activities/shard/tar-writer';
import { fixturePaths, testPython } from '../config/paths';
import { parseJats } from '../activities/parse/jats';
import { SUBSETS, type ReleaseInput } from '../config/release';
import { buildReleaseInProcess, type InProcessRelease } from './support/in-process-release';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function python(script: string, args: string[], env: NodeJS.ProcessEnv = {}): unknown {
  const r = spawnSync(testPython(), ['-c', script, ...args], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    env: { ...process.env, ...env },
  });
  if (r.status !== 0) throw new Error(`${testPython()} failed (${r.status}): ${r.stderr.slice(-4000)}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

/** The datasets Features of a sample, as docs/dataset-format.md gives them for load_dataset("webdataset"). */
const PY_FEATURES = `
from datasets import Features, Value, List, Image, Json
S = Value("string"); SL = List(S)
JSON_FEATURES = {
    "image_file_name": S, "image_cluster_id": S, "image_hash": S, "image_label_id": S,
    "image_panel_type": S, "image_panel_subtype": S, "image_primary_label": SL, "image_secondary_label": SL,
    "image_size": List(Value("int64")),
    "image_set": List({"image_id": S, "image_file_name": S, "image_path": S, "caption": S, "hash": S}),
    "image_context": Json(),
    "article_accession_id": S, "article_title": S, "article_journal": S, "article_date": S, "article_abstract": S,
    "article_mesh_terms": SL, "article_keywords": SL, "article_reference_ids": SL,
    "article_reference_count": Value("int64"), "article_reference_list": SL, "article_subject": SL,
    "article_citation": S, "article_license": S, "article_text": S,
}
FEATURES = Features({"jpg": Image(), "json": JSON_FEATURES, "txt": S, "__key__": S, "__url__": S})
`;

const EXPECTED_ARROW: Record<string, string> = {
  key: 'string',
  shard: 'string',
  subset: 'string',
  caption: 'string',
  image_width: 'int64',
  image_height: 'int64',
  image_bytes_size: 'int64',
  image_sha256: 'string',
  image_file_name: 'string',
  image_cluster_id: 'string',
  image_hash: 'string',
  image_label_id: 'string',
  image_panel_type: 'string',
  image_panel_subtype: 'string',
  image_primary_label: 'list<image_primary_label: string not null>',
  image_secondary_label: 'list<image_secondary_label: string not null>',
  image_size: 'list<image_size: int64 not null>',
  image_set:
    'list<image_set: struct<image_id: string not null, image_file_name: string not null, image_path: string not null, caption: string not null, hash: string> not null>',
  image_context:
    'list<image_context: struct<image_id: string not null, paragraphs: list<paragraphs: string not null> not null> not null>',
  article_accession_id: 'string',
  article_title: 'string',
  article_journal: 'string',
  article_date: 'string',
  article_abstract: 'string',
  article_mesh_terms: 'list<article_mesh_terms: string not null>',
  article_keywords: 'list<article_keywords: string not null>',
  article_reference_ids: 'list<article_reference_ids: string not null>',
  article_reference_count: 'int64',
  article_reference_list: 'list<article_reference_list: string not null>',
  article_subject: 'list<article_subject: string not null>',
  article_citation: 'string',
  article_license: 'string',
  article_text: 'string',
  article_pmid: 'string',
  article_doi: 'string',
  article_authors:
    'list<article_authors: struct<name: string not null, surname: string, given_names: string, group: bool not null, orcid: string, corresponding: bool not null, affiliations: list<affiliations: string not null> not null, source: string not null> not null>',
  article_chemicals:
    'list<article_chemicals: struct<registry_number: string, name: string not null, ui: string> not null>',
  article_pubmed_article_date: 'string',
  article_pubmed_history:
    'list<article_pubmed_history: struct<status: string not null, date: string not null> not null>',
  caption_mathml: 'list<caption_mathml: string not null>',
  article_mathml: 'list<article_mathml: string not null>',
  figure_role: 'string',
};

describe('published format read by webdataset, pyarrow and datasets (real sample release)', function () {
  this.timeout(120_000);
  let rel: InProcessRelease;
  let tmp: string;
  let tars: string[];
  let parquets: string[];
  /** One parquet per shard with the image bytes column, from the same rows. */
  let imageParquets: string[];
  let sizes: Record<string, number>;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'format-readers-'));
    rel = await buildReleaseInProcess({ dataDir: path.join(tmp, 'data') });
    tars = [];
    parquets = [];
    imageParquets = [];
    sizes = {};
    for (const subset of SUBSETS) {
      const dir = path.join(rel.root, 'webdataset', subset);
      const s = JSON.parse(fs.readFileSync(path.join(dir, 'sizes.json'), 'utf8')) as Record<string, number>;
      for (const [name, n] of Object.entries(s)) {
        tars.push(path.join(dir, name));
        parquets.push(path.join(rel.root, 'parquet', subset, name.replace('.tar', '.parquet')));
        sizes[`${subset}/${name}`] = n;
      }
    }
    for (const { task } of rel.units) {
      const unitDir = path.join(rel.root, 'units', task.unitId);
      const rows = await readNdjson<SampleRow>(path.join(unitDir, 'samples.ndjson'));
      const withImages = rows.map((r) => ({ ...r, image: fs.readFileSync(stagedImagePath(unitDir, r.key)) }));
      const [subset, index] = task.unitId.split('-') as [string, string];
      const out = path.join(tmp, 'pq-images', subset, `${index}.parquet`);
      await writeSamplesParquet(out, withImages, { includeImageBytes: true });
      imageParquets.push(out);
    }
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('has samples in every subset, with contiguous shards', () => {
    assert.equal(tars.length, rel.units.length);
    assert.ok(rel.summary.samples > 100, `${rel.summary.samples} samples`);
    for (const subset of SUBSETS) {
      const names = Object.keys(sizes).filter((k) => k.startsWith(`${subset}/`));
      assert.ok(names.length > 0, subset);
      assert.deepEqual(
        names,
        names.map((_, i) => `${subset}/${String(i).padStart(6, '0')}.tar`),
      );
    }
  });

  it("Python's webdataset iterates every shard and decodes every sample", () => {
    const got = python(
      `import json, sys, webdataset as wds
keys = json.loads(sys.argv[1])
counts = {}
for tar in sys.argv[2:]:
    n = 0
    for s in wds.WebDataset([tar], shardshuffle=False, empty_check=False).decode("pil"):
        assert set(s) >= {"__key__", "jpg", "json", "txt"}, sorted(s)
        assert "." not in s["__key__"]
        s["jpg"].load()
        assert list(s["jpg"].size) == s["json"]["image_size"], (s["__key__"], s["jpg"].size, s["json"]["image_size"])
        assert list(s["json"]) == keys, list(s["json"])
        assert isinstance(s["txt"], str) and s["txt"]
        n += 1
    counts[tar] = n
print(json.dumps(counts))`,
      [JSON.stringify(PUBLISHED_KEYS), ...tars],
    ) as Record<string, number>;
    assert.deepEqual(Object.values(got), Object.values(sizes));
    assert.equal(
      Object.values(got).reduce((a, b) => a + b, 0),
      rel.summary.samples,
    );
  });

  it('pyarrow reads every parquet file with the expected schema, one row per sample', () => {
    const got = python(
      `import json, sys, pyarrow.parquet as pq
out = []
for f in sys.argv[1:]:
    pf = pq.ParquetFile(f)
    t = pf.read()
    out.append({"schema": {x.name: str(x.type) for x in t.schema}, "rows": t.num_rows, "keys": t.column("key").to_pylist()})
print(json.dumps(out))`,
      [...parquets, ...imageParquets],
    ) as { schema: Record<string, string>; rows: number; keys: string[] }[];
    const entries = Object.entries(EXPECTED_ARROW);
    const at = entries.findIndex(([k]) => k === 'image_sha256') + 1;
    const expectedWithImage = Object.fromEntries([...entries.slice(0, at), ['image', 'binary'], ...entries.slice(at)]);
    got.forEach((g, i) => {
      const isImage = i >= parquets.length;
      assert.deepEqual(Object.entries(g.schema), Object.entries(isImage ? expectedWithImage : EXPECTED_ARROW), `${i}`);
      assert.equal(g.rows, Object.values(sizes)[i % parquets.length]);
    });
  });

  it("by default PMC12491691's graphical abstract is quarantined, and every published row has figure_role 'figure'", async () => {
    const records = await readNdjson<QuarantineRecord>(path.join(rel.root, 'report', 'quarantine.ndjson'));
    assert.ok(records.some((r) => r.reason === 'graphical-abstract' && r.article === 'PMC12491691.1'));
    const roles = python(
      `import json, sys, pyarrow.parquet as pq
print(json.dumps(sorted({r for f in sys.argv[1:] for r in pq.read_table(f, columns=["figure_role"]).column(0).to_pylist()})))`,
      parquets,
    );
    assert.deepEqual(roles, ['figure']);
  });

  it('authors, chemicals and PubMed dates: pyarrow and datasets read the struct lists of the real release', () => {
    const hf = path.join(tmp, 'hf-authors');
    const got = python(
      `import json, sys, datasets, pyarrow.parquet as pq
rows = [r for f in sys.argv[1:] for r in pq.read_table(f, columns=["key", "article_accession_id", "article_authors", "article_chemicals", "article_pubmed_article_date", "article_pubmed_history"]).to_pylist()]
ds = datasets.load_dataset("parquet", data_files={"train": sys.argv[1:]}, split="train", cache_dir="${hf}/cache")
assert [r["article_authors"] for r in rows] == ds["article_authors"]
assert [r["article_pubmed_history"] for r in rows] == ds["article_pubmed_history"]
by_article = {}
for r in rows: by_article.setdefault(r["article_accession_id"], r)
print(json.dumps({"features": str(ds.features["article_authors"]), "articles": by_article}))`,
      parquets,
      {
        HF_DATASETS_OFFLINE: '1',
        HF_HUB_OFFLINE: '1',
        HF_HOME: hf,
        HF_DATASETS_CACHE: path.join(hf, 'cache'),
        HF_HUB_DISABLE_PROGRESS_BARS: '1',
      },
    ) as {
      features: string;
      articles: Record<
        string,
        Pick<
          SampleRow,
          'article_authors' | 'article_pubmed_history' | 'article_pubmed_article_date' | 'article_chemicals'
        >
      >;
    };
    assert.match(got.features, /^List\(\{'name': Value\('string'\), 'surname': Value\('string'\)/);
    assert.match(got.features, /'group': Value\('bool'\)/);
    // Every published article carries its byline, as the parser read it from the article's XML.
    const articles = Object.entries(got.articles);
    let withHistory = 0;
    assert.ok(articles.length >= 10, `${articles.length} articles`);
    for (const [pmcid, row] of articles) {
      const file = fs
        .readdirSync(fixturePaths.nxml())
        .find((f) => f.startsWith(`${pmcid}_`) || f.startsWith(`${pmcid}.`));
      if (!file) continue; // a generated demo article
      const record = parseJats(fs.readFileSync(path.join(fixturePaths.nxml(), file)));
      assert.deepEqual(
        row.article_authors.map((a) => [a.name, a.orcid, a.corresponding, a.affiliations]),
        record.authors.map((a) => [a.name, a.orcid, a.corresponding, a.affiliations]),
        pmcid,
      );
      // The stand-in's record of the article (articles with a PMID) carries the XML's received / revised / accepted.
      if (row.article_pubmed_history.length === 0) continue;
      const status: Record<string, string> = { received: 'received', 'rev-recd': 'revised', accepted: 'accepted' };
      assert.deepEqual(
        row.article_pubmed_history,
        record.history.filter((h) => status[h.type]).map((h) => ({ status: status[h.type], date: h.date })),
        pmcid,
      );
      withHistory++;
    }
    assert.ok(withHistory >= 10, `${withHistory} articles with PubMed History dates`);
    const elife = got.articles['PMC7289599'];
    assert.ok(elife, 'the eLife article is published');
    assert.deepEqual(elife.article_authors.at(-1), {
      name: 'Todd S Macfarlan',
      surname: 'Macfarlan',
      given_names: 'Todd S',
      group: false,
      orcid: '0000-0003-2495-9809',
      corresponding: true,
      affiliations: [
        'The Eunice Kennedy Shriver National Institute of Child Health and Human Development, The National Institutes of Health, Bethesda, United States',
      ],
      source: 'jats',
    });
    assert.equal(elife.article_pubmed_article_date, '2020-06-01');
  });

  it('the card declares the features datasets itself writes for a sample (DatasetInfo YAML)', () => {
    const got = python(
      `${PY_FEATURES}
import json, datasets
print(json.dumps(datasets.DatasetInfo(features=FEATURES)._to_yaml_dict()["features"]))`,
      [],
    );
    assert.deepEqual(SAMPLE_FEATURES, got);
  });

  it('datasets.load_dataset reads the WebDataset and the parquet files offline', () => {
    const hf = path.join(tmp, 'hf');
    const got = python(
      `${PY_FEATURES}
import json, sys, datasets, PIL.Image
n = int(sys.argv[1]); tars = sys.argv[2:2 + n]; pqs = sys.argv[2 + n:]
wds = datasets.load_dataset("webdataset", data_files={"train": tars}, split="train", features=FEATURES, cache_dir="${hf}/cache")
pq = datasets.load_dataset("parquet", data_files={"train": pqs}, split="train", cache_dir="${hf}/cache")
assert wds["__key__"] == pq["key"]
for i, (a, b) in enumerate(zip(wds, pq)):
    assert isinstance(a["jpg"], PIL.Image.Image) and list(a["jpg"].size) == a["json"]["image_size"] == b["image_size"]
    assert a["txt"] == b["caption"]
    assert a["json"]["image_context"] == {e["image_id"]: e["paragraphs"] for e in b["image_context"]}
    assert a["json"]["image_set"] == b["image_set"]
    for k, v in a["json"].items():
        if k != "image_context": assert v == b[k], (k, v, b[k])
print(json.dumps({"wds": wds.num_rows, "pq": pq.num_rows, "pq_features": sorted(pq.features), "image_set": str(pq.features["image_set"])}))`,
      [String(tars.length), ...tars, ...imageParquets],
      {
        HF_DATASETS_OFFLINE: '1',
        HF_HUB_OFFLINE: '1',
        HF_HOME: hf,
        HF_DATASETS_CACHE: path.join(hf, 'cache'),
        HF_HUB_DISABLE_PROGRESS_BARS: '1',
      },
    ) as { wds: number; pq: number; pq_features: string[]; image_set: string };
    assert.equal(got.wds, rel.summary.samples);
    assert.equal(got.pq, rel.summary.samples);
    assert.deepEqual(got.pq_features, [...Object.keys(EXPECTED_ARROW), 'image'].sort());
    assert.match(got.image_set, /^List\(\{'image_id': Value\('string'\)/);
  });

  it('load_dataset(<published folder>, config) loads every config of the card, with its declared features, as the rows of the parquet files', async () => {
    const published = await publishRelease(rel.release);
    const hf = path.join(tmp, 'hf-card');
    const got = python(
      `import json, sys, datasets, PIL.Image, pyarrow.parquet as pq, glob, os
folder = sys.argv[1]
names = datasets.get_dataset_config_names(folder)
out = {"configs": names, "rows": {}}
for name in names:
    ds = datasets.load_dataset(folder, name, split="train", cache_dir="${hf}/cache")
    rows = [r for f in sorted(glob.glob(os.path.join(folder, "parquet", name, "*.parquet"))) for r in pq.read_table(f).to_pylist()]
    assert ds.num_rows == len(rows), (name, ds.num_rows, len(rows))
    assert ds.features["json"]["article_mesh_terms"] == datasets.List(datasets.Value("string")), ds.features["json"]
    for a, b in zip(ds, rows):
        assert a["__key__"] == b["key"] and a["txt"] == b["caption"], (a["__key__"], b["key"])
        assert isinstance(a["jpg"], PIL.Image.Image) and list(a["jpg"].size) == b["image_size"]
        for k, v in a["json"].items():
            if k == "image_context": assert v == {e["image_id"]: e["paragraphs"] for e in b[k]}, k
            else: assert v == b[k], (k, v, b[k])
    out["rows"][name] = ds.num_rows
print(json.dumps(out))`,
      [published.target],
      {
        HF_DATASETS_OFFLINE: '1',
        HF_HUB_OFFLINE: '1',
        HF_HOME: hf,
        HF_DATASETS_CACHE: path.join(hf, 'cache'),
        HF_HUB_DISABLE_PROGRESS_BARS: '1',
      },
    ) as { configs: string[]; rows: Record<string, number> };
    const present = SUBSETS.filter((s) => rel.summary.subsets[s].shards > 0);
    assert.deepEqual(got.configs, present);
    for (const s of present) assert.equal(got.rows[s], rel.summary.subsets[s].samples, s);
  });

  it('json, txt and jpg are equal between each tar and its parquet file (Python readers)', () => {
    const got = python(
      `import json, sys, tarfile, pyarrow.parquet as pq
n = int(sys.argv[1]); tars = sys.argv[2:2 + n]; plain = sys.argv[2 + n:2 + 2 * n]; images = sys.argv[2 + 2 * n:]
checked = 0
for tar, p, pi in zip(tars, plain, images):
    members = {}
    order = []
    with tarfile.open(tar) as tf:
        for m in tf:
            key, ext = m.name.split(".", 1)
            if key not in members: order.append(key); members[key] = {}
            members[key][ext] = tf.extractfile(m).read()
    rows = pq.read_table(pi).to_pylist()
    plain_rows = pq.read_table(p).to_pylist()
    assert [r["key"] for r in rows] == order == [r["key"] for r in plain_rows]
    for r, pr in zip(rows, plain_rows):
        m = members[r["key"]]
        assert sorted(m) == ["jpg", "json", "txt"]
        assert m["jpg"] == r["image"], r["key"]
        assert len(m["jpg"]) == r["image_bytes_size"]
        assert m["txt"].decode("utf-8") == r["caption"]
        doc = json.loads(m["json"])
        for k, v in doc.items():
            want = {e["image_id"]: e["paragraphs"] for e in r[k]} if k == "image_context" else r[k]
            assert v == want, (r["key"], k, v, want)
        assert {k: v for k, v in pr.items()} == {k: v for k, v in r.items() if k != "image"}
        checked += 1
print(json.dumps(checked))`,
      [String(tars.length), ...tars, ...parquets, ...imageParquets],
    );
    assert.equal(got, rel.summary.samples);
  });

  it('the parquet row rebuilds the json member byte for byte (and the sha256 and size of the jpg)', async () => {
    for (const [i, tar] of tars.entries()) {
      const rows = new Map((await readSamplesParquet(imageParquets[i]!)).map((r) => [r.key, r]));
      for await (const e of readTarEntries(tar)) {
        const { key, ext } = splitMemberName(e.name)!;
        const row = rows.get(key)!;
        const data = await e.read();
        if (ext === 'json') assert.equal(data.toString('utf8'), pyJsonDumps(publishedJsonOf(row)), key);
        if (ext === 'jpg')
          assert.deepEqual(
            [sha256(data), data.length, data.equals(row.image!)],
            [row.image_sha256, row.image_bytes_size, true],
          );
      }
    }
  });

  it('a recomputed release gives byte-identical shards and parquet files', async () => {
    const data2 = path.join(tmp, 'data2');
    const root2 = path.join(data2, 'releases', rel.release.releaseId);
    fs.cpSync(path.join(rel.dataDir, 'models'), path.join(data2, 'models'), { recursive: true });
    fs.cpSync(path.join(rel.root, 'plan'), path.join(root2, 'plan'), { recursive: true });
    fs.cpSync(path.join(rel.root, 'units'), path.join(root2, 'units'), { recursive: true });
    const release2: ReleaseInput = { ...rel.release, dataDir: data2 };
    for (const { task, pmidBatches } of rel.units) {
      const unitDir = path.join(root2, 'units', task.unitId);
      for (const f of ['manifests/shard.json', 'manifests/parquet.json', 'samples.ndjson'])
        fs.rmSync(path.join(unitDir, f));
      await writeShard({ release: release2, unitId: task.unitId }, pmidBatches);
      await writeParquet({ release: release2, unitId: task.unitId });
    }
    const digest = (root: string, dir: string) =>
      fs
        .readdirSync(path.join(root, dir), { recursive: true })
        .map(String)
        .filter((f) => /\.(tar|parquet)$/.test(f))
        .sort()
        .map((f) => [f, sha256(fs.readFileSync(path.join(root, dir, f)))]);
    // The json of an article's samples built again when written (past the shard stage's budget): the same bytes.
    for (const { task, pmidBatches } of rel.units) {
      const unitDir = path.join(root2, 'units', task.unitId);
      const rowsBefore = fs.readFileSync(path.join(unitDir, 'samples.ndjson'));
      for (const f of ['manifests/shard.json', 'samples.ndjson']) fs.rmSync(path.join(unitDir, f));
      await writeShard({ release: release2, unitId: task.unitId }, pmidBatches, 0);
      assert.ok(fs.readFileSync(path.join(unitDir, 'samples.ndjson')).equals(rowsBefore), task.unitId);
    }
    for (const dir of ['webdataset', 'parquet']) {
      const a = digest(rel.root, dir);
      assert.equal(a.length, rel.units.length);
      assert.deepEqual(digest(root2, dir), a, dir);
    }
    for (const subset of SUBSETS) {
      const index = JSON.parse(
        fs.readFileSync(path.join(rel.root, 'webdataset', subset, 'index.json'), 'utf8'),
      ) as ShardIndexEntry[];
      for (const e of index) {
        assert.equal(sha256(fs.readFileSync(path.join(root2, 'webdataset', e.shard))), e.sha256);
        assert.equal(sha256(fs.readFileSync(path.join(root2, 'parquet', e.parquet))), e.parquetSha256);
      }
    }
    // The image-bytes variant is reproducible too.
    const rows = await readSamplesParquet(imageParquets[0]!);
    const again = await writeSamplesParquet(path.join(tmp, 'again.parquet'), rows, { includeImageBytes: true });
    assert.equal(again.sha256, sha256(fs.readFileSync(imageParquets[0]!)));
  });

  it('the parquet stage streams a unit larger than a row group into bounded row groups, read by pyarrow', async () => {
    const data4 = path.join(tmp, 'data4');
    const root4 = path.join(data4, 'releases', rel.release.releaseId);
    fs.cpSync(path.join(rel.root, 'plan'), path.join(root4, 'plan'), { recursive: true });
    fs.cpSync(path.join(rel.root, 'units'), path.join(root4, 'units'), { recursive: true });
    const { task } = rel.units[0]!;
    const unitDir = path.join(root4, 'units', task.unitId);
    // The unit's real rows repeated under new keys: 2,100 rows of its one shard, as a large unit's shard stage leaves them.
    const real = await readNdjson<SampleRow>(path.join(unitDir, 'samples.ndjson'));
    const rows = Array.from({ length: 2100 }, (_, i) => ({
      ...real[i % real.length]!,
      key: `${real[i % real.length]!.key}x${i}`,
    }));
    fs.writeFileSync(path.join(unitDir, 'samples.ndjson'), rows.map((r) => JSON.stringify(r) + '\n').join(''));
    fs.rmSync(path.join(unitDir, 'manifests', 'parquet.json'));
    const pq = await writeParquet({ release: { ...rel.release, dataDir: data4 }, unitId: task.unitId });
    assert.deepEqual(
      pq.files.map((f) => f.rows),
      [2100],
    );
    const got = python(
      `import pyarrow.parquet as pq, sys, json
f = pq.ParquetFile(sys.argv[1]); m = f.metadata
print(json.dumps([[m.row_group(i).num_rows for i in range(m.num_row_groups)], f.read(columns=["key"]).column("key").to_pylist()]))`,
      [path.join(root4, 'parquet', pq.files[0]!.file)],
    ) as [number[], string[]];
    // Groups end at 1,000 rows or 32 MiB of values, whichever comes first: these rows (real full texts, about 70 KB
    // each) fill 32 MiB first, so every group is under both bounds and the unit takes several.
    assert.deepEqual(
      got[0],
      planRowGroups(
        rows.map((r) => rowValueBytes(r, false)),
        DEFAULT_ROW_GROUP_SIZE,
        DEFAULT_ROW_GROUP_BYTES,
      ),
    );
    assert.ok(got[0].length > 2 && got[0].every((n) => n < DEFAULT_ROW_GROUP_SIZE), JSON.stringify(got[0]));
    assert.deepEqual(
      got[1],
      rows.map((r) => r.key),
    );
    // A row of no part of the shard stage (or out of its parts' order) is a bug: the stage fails, without retries.
    const stray = { ...real[0]!, key: 'stray', shard: 'commercial/999999.tar' };
    fs.writeFileSync(
      path.join(unitDir, 'samples.ndjson'),
      [...real, stray].map((r) => JSON.stringify(r) + '\n').join(''),
    );
    fs.rmSync(path.join(unitDir, 'manifests', 'parquet.json'));
    await assert.rejects(writeParquet({ release: { ...rel.release, dataDir: data4 }, unitId: task.unitId }), (err) => {
      assert.match(String(err), /row stray of commercial\/999999\.tar after the rows of the shard stage's parts/);
      assert.equal((err as { nonRetryable?: boolean }).nonRetryable, true);
      return true;
    });
    assert.ok(!fs.existsSync(path.join(unitDir, 'manifests', 'parquet.json')));
  });

  it('a unit too big for one shard splits into parts by article; an article too big for any shard is quarantined', async () => {
    const data3 = path.join(tmp, 'data3');
    const root3 = path.join(data3, 'releases', rel.release.releaseId);
    fs.cpSync(path.join(rel.dataDir, 'models'), path.join(data3, 'models'), { recursive: true });
    fs.cpSync(path.join(rel.root, 'plan'), path.join(root3, 'plan'), { recursive: true });
    fs.cpSync(path.join(rel.root, 'units'), path.join(root3, 'units'), { recursive: true });
    const { task, pmidBatches } = rel.units.find((u) => sizes[`${u.task.unitId.replace('-', '/')}.tar`]! >= 10)!;
    const [subset, number] = task.unitId.split('-') as [string, string];
    const unitDir = path.join(root3, 'units', task.unitId);
    const rowsOf = async () => readNdjson<SampleRow>(path.join(unitDir, 'samples.ndjson'));
    const full = await (async () => {
      const r = await writeShard({ release: { ...rel.release, dataDir: data3 }, unitId: task.unitId }, pmidBatches);
      assert.equal(r.shards.length, 1, 'with the default limits the unit is one shard');
      assert.equal(r.samples, sizes[`${subset}/${number}.tar`]);
      return rowsOf();
    })();
    const perArticle = new Map<string, number>();
    for (const row of full)
      perArticle.set(row.article_accession_id, (perArticle.get(row.article_accession_id) ?? 0) + 1);
    const images = await readNdjson<PreparedImage>(path.join(unitDir, 'images.ndjson'));
    const imagesOnly = tarArchiveBytes(images.reduce((n, i) => n + tarSampleBytes([i.bytes]), 0));
    const maxPerArticle = Math.max(...perArticle.values());
    const limitsToTry = [
      { maxBytes: 1_000_000_000, maxSamples: Math.max(1, maxPerArticle - 1) }, // the largest article cannot fit; others split
      { maxBytes: imagesOnly, maxSamples: 10000 }, // the images fit, with json and txt the unit does not
      { maxBytes: 20_480, maxSamples: 10000 }, // no article fits: one empty shard, every article quarantined
    ];
    for (const shard of limitsToTry) {
      for (const f of ['manifests/shard.json', 'manifests/parquet.json', 'samples.ndjson'])
        fs.rmSync(path.join(unitDir, f), { force: true });
      const release = { ...rel.release, dataDir: data3, shard } as ReleaseInput;
      const r = await writeShard({ release, unitId: task.unitId }, pmidBatches);
      const pq = await writeParquet({ release, unitId: task.unitId });
      const tooLarge = await readNdjson<{ article: string; stage: string; reason: string; detail: string }>(
        path.join(unitDir, 'quarantine', 'shard.ndjson'),
      );
      assert.equal(r.quarantined, tooLarge.length);
      const rows = await rowsOf();
      // Every article is either published whole in one part or quarantined once, as too-large.
      for (const [article, n] of perArticle) {
        const published = rows.filter((x) => x.article_accession_id === article);
        const records = tooLarge.filter((q) => q.article === `${article}.1` || q.article?.startsWith(`${article}.`));
        if (published.length === 0) {
          assert.equal(records.length, 1, `${article}: one too-large record`);
          assert.equal(records[0]!.reason, 'too-large');
          assert.match(records[0]!.detail, /over the shard limit of \d+ samples and \d+ bytes/);
        } else {
          assert.equal(published.length, n, `${article} published whole`);
          assert.equal(new Set(published.map((x) => x.shard)).size, 1, `${article} in one part`);
          assert.equal(records.length, 0);
        }
      }
      assert.ok(r.shards.length >= 1);
      assert.deepEqual(
        r.shards.map((p) => p.shard),
        r.shards.map((_, k) => `${subset}/${number}${k === 0 ? '' : `_${String(k).padStart(3, '0')}`}.tar`),
      );
      assert.deepEqual(
        pq.files.map((f) => f.shard),
        r.shards.map((p) => p.shard),
        'one parquet file per shard part',
      );
      for (const [k, part] of r.shards.entries()) {
        const file = path.join(root3, 'webdataset', part.shard);
        const bytes = fs.readFileSync(file);
        assert.ok(bytes.length <= shard.maxBytes, `${part.shard}: ${bytes.length} bytes`);
        assert.ok(part.samples <= shard.maxSamples);
        assert.equal(sha256(bytes), part.sha256);
        const keys: string[] = [];
        for await (const e of readTarEntries(file)) {
          const k = splitMemberName(e.name)!.key;
          if (keys[keys.length - 1] !== k) keys.push(k);
        }
        assert.deepEqual(
          keys,
          rows.filter((x) => x.shard === part.shard).map((x) => x.key),
          `${part.shard}: tar and rows agree`,
        );
        const parquetRows = await readSamplesParquet(path.join(root3, 'parquet', pq.files[k]!.file));
        assert.deepEqual(
          parquetRows.map((x) => x.key),
          keys,
          `${pq.files[k]!.file} has the part's rows in order`,
        );
      }
      assert.equal(
        r.samples +
          full.filter((x) => tooLarge.some((q) => q.article?.startsWith(`${x.article_accession_id}.`))).length,
        full.length,
      );
      const onDisk = fs
        .readdirSync(path.join(root3, 'webdataset', subset))
        .filter((f) => f.startsWith(number))
        .sort();
      assert.deepEqual(
        onDisk,
        r.shards.map((p) => path.posix.basename(p.shard)).sort(),
        'no stale part of an earlier attempt, no partial file',
      );
    }
  });
});

describe('figure_role: a graphical abstract published on request is told apart from a figure (real fixture)', function () {
  this.timeout(300_000);
  const file = 'PMC12491691_epmc_10_1016_j_apsb_2025_07_017.xml';
  let tmp: string;
  let rel: InProcessRelease;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'figure-role-'));
    // The one real article with a graphical abstract, linked in place (with the sample's own articles).
    const nxmlDir = path.join(tmp, 'nxml');
    fs.mkdirSync(nxmlDir);
    fs.symlinkSync(path.join(fixturePaths.nxml(), file), path.join(nxmlDir, file));
    rel = await buildReleaseInProcess({
      dataDir: path.join(tmp, 'data'),
      nxmlDir,
      figures: { graphicalAbstracts: true },
    });
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("pyarrow reads figure_role 'graphical-abstract' on its published row, 'figure' on the others", () => {
    const record = parseJats(fs.readFileSync(path.join(fixturePaths.nxml(), file)));
    const roles = record.figures.map((f) => f.role);
    assert.deepEqual(roles, ['graphical-abstract', ...Array<string>(6).fill('figure')]);
    const parquets = SUBSETS.flatMap((s) => {
      const dir = path.join(rel.root, 'parquet', s);
      return fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => path.join(dir, f)) : [];
    });
    const rows = python(
      `import json, sys, pyarrow.parquet as pq
out = []
for f in sys.argv[1:]:
    t = pq.read_table(f, columns=["article_accession_id", "image_file_name", "caption", "figure_role"])
    out += t.to_pylist()
print(json.dumps(out))`,
      parquets,
    ) as { article_accession_id: string; caption: string; figure_role: string }[];
    const ours = rows.filter((r) => r.article_accession_id.startsWith('PMC12491691'));
    assert.deepEqual(
      ours.map((r) => r.figure_role),
      roles,
      'every figure of the article published, in document order, each with its role',
    );
    // captioned by the abstract's text (the fig has no caption of its own)
    assert.match(ours[0]!.caption, /^This review delineates how metal elements modulate/);
    // elsewhere, only the project's own two articles (sample/synthetic-articles.ts) have one each
    assert.deepEqual(
      rows
        .filter((r) => r.figure_role !== 'figure' && !r.article_accession_id.startsWith('PMC12491691'))
        .map((r) => [r.article_accession_id, r.figure_role]),
      [
        ['PMC90000001', 'graphical-abstract'],
        ['PMC90000002', 'graphical-abstract'],
      ],
    );
    // not a json key: the published json keeps its 25
    assert.ok(!(PUBLISHED_KEYS as readonly string[]).includes('figure_role'));
  });

  it('with the option it is not quarantined', async () => {
    const records = await readNdjson<QuarantineRecord>(path.join(rel.root, 'report', 'quarantine.ndjson'));
    assert.ok(!records.some((r) => r.reason === 'graphical-abstract'));
  });
});

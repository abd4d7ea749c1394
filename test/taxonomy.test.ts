import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { annotateUnit, ensureAnnotationModels, releaseEmbedders } from '../activities/annotate/activity';
import { fitMiniBatchKMeans, fitPca, pcaTransform, symmetricEigen, type Matrix } from '../activities/annotate/fit';
import {
  assignCluster,
  isLabelled,
  labelsTemplate,
  loadClusterLabels,
  nextTaxonomyVersion,
  parseTaxonomyModel,
  validateFilledLabels,
  type ClusterLabels,
  type TaxonomyModel,
} from '../activities/annotate/taxonomy';
import {
  fitTaxonomyModel,
  importTaxonomyLabels,
  sampleTaxonomyEmbeddings,
  type FitTaxonomyInputArgs,
} from '../activities/annotate/taxonomy-activity';
import { mulberry32 } from '../activities/annotate/tiny-vit';
import { fixturePaths } from '../config/paths';
import { buildSyntheticRelease, type SyntheticRelease } from './taxonomy-fixture';

/** Standard normal-ish draws (Irwin-Hall: sum of 12 uniforms - 6), seeded. */
function gaussian(seed: number): () => number {
  const rand = mulberry32(seed);
  return () => {
    let s = 0;
    for (let i = 0; i < 12; i++) s += rand();
    return s - 6;
  };
}

function unit(v: number[]): number[] {
  const n = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  return v.map((x) => x / n);
}

/** Gram-Schmidt: `k` random orthonormal directions in `d` dims. */
function orthonormal(k: number, d: number, g: () => number): number[][] {
  const out: number[][] = [];
  while (out.length < k) {
    let v = Array.from({ length: d }, g);
    for (const u of out) {
      const dot = v.reduce((a, x, i) => a + x * u[i]!, 0);
      v = v.map((x, i) => x - dot * u[i]!);
    }
    out.push(unit(v));
  }
  return out;
}

/** `blobs` Gaussian blobs (unit variance) in `d` dims, centres `spread` apart on average. */
function blobs(opts: { blobs: number; perBlob: number; d: number; spread: number; seed: number }): {
  x: Matrix;
  truth: Int32Array;
} {
  const g = gaussian(opts.seed);
  const centres = Array.from({ length: opts.blobs }, () => Array.from({ length: opts.d }, () => g() * opts.spread));
  const n = opts.blobs * opts.perBlob;
  const data = new Float32Array(n * opts.d);
  const truth = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const b = i % opts.blobs;
    truth[i] = b;
    for (let j = 0; j < opts.d; j++) data[i * opts.d + j] = centres[b]![j]! + g();
  }
  return { x: { rows: n, cols: opts.d, data }, truth };
}

function purity(labels: Int32Array, truth: Int32Array, k: number): number {
  let sum = 0;
  for (let c = 0; c < k; c++) {
    const counts = new Map<number, number>();
    labels.forEach((l, i) => l === c && counts.set(truth[i]!, (counts.get(truth[i]!) ?? 0) + 1));
    sum += Math.max(0, ...counts.values());
  }
  return sum / labels.length;
}

describe('taxonomy fit: PCA, mini-batch k-means, artifact, label import', function () {
  this.timeout(60_000);
  let clusterLabels: ClusterLabels;
  before(async () => {
    clusterLabels = await loadClusterLabels(fixturePaths.clusterLabels());
  });

  describe('symmetric eigendecomposition', () => {
    it('A v = lambda v and V orthonormal, for random symmetric matrices', () => {
      const g = gaussian(3);
      for (const n of [1, 2, 5, 33]) {
        const a = new Float64Array(n * n);
        for (let i = 0; i < n; i++) for (let j = i; j < n; j++) a[i * n + j] = a[j * n + i] = g();
        const { values, vectors } = symmetricEigen(a, n);
        for (let k = 0; k < n; k++) {
          if (k > 0) assert.ok(values[k - 1]! <= values[k]!, 'ascending');
          for (let i = 0; i < n; i++) {
            let s = 0;
            for (let j = 0; j < n; j++) s += a[i * n + j]! * vectors[k * n + j]!;
            assert.ok(Math.abs(s - values[k]! * vectors[k * n + i]!) < 1e-10);
          }
          for (let l = 0; l < n; l++) {
            let s = 0;
            for (let j = 0; j < n; j++) s += vectors[k * n + j]! * vectors[l * n + j]!;
            assert.ok(Math.abs(s - (k === l ? 1 : 0)) < 1e-10);
          }
        }
      }
    });

    it('a known matrix: [[2,1],[1,2]] has eigenvalues 1 and 3', () => {
      const { values, vectors } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2);
      assert.ok(Math.abs(values[0]! - 1) < 1e-12 && Math.abs(values[1]! - 3) < 1e-12);
      assert.ok(Math.abs(Math.abs(vectors[2]!) - Math.SQRT1_2) < 1e-12 && Math.abs(vectors[2]! - vectors[3]!) < 1e-12);
    });
  });

  describe('PCA', () => {
    it('recovers planted directions in order of their variance (explained variance descending, close to planted)', () => {
      const d = 64;
      const n = 4000;
      const g = gaussian(7);
      const dirs = orthonormal(4, d, g);
      const sd = [6, 4, 3, 2]; // variances 36, 16, 9, 4 over unit isotropic noise
      const data = new Float32Array(n * d);
      for (let i = 0; i < n; i++) {
        const z = sd.map((s) => s * g());
        for (let j = 0; j < d; j++) data[i * d + j] = 5 + g() * 0.5 + z.reduce((a, zz, k) => a + zz * dirs[k]![j]!, 0);
      }
      const pca = fitPca({ rows: n, cols: d, data }, 6);
      const ev = pca.explainedVariance;
      for (let k = 1; k < ev.length; k++) assert.ok(ev[k - 1]! >= ev[k]!, `explained variance descending: ${ev}`);
      sd.forEach((s, k) =>
        assert.ok(Math.abs(ev[k]! - (s * s + 0.25)) / (s * s) < 0.1, `component ${k}: ${ev[k]} vs ${s * s}`),
      );
      assert.ok(ev[4]! < 0.4 && ev[5]! < 0.4, 'the rest is noise');
      dirs.forEach((u, k) => {
        const cos = Math.abs(u.reduce((a, x, j) => a + x * pca.components[k]![j]!, 0));
        assert.ok(cos > 0.98, `component ${k} aligned with planted direction ${k}: |cos| ${cos}`);
      });
      assert.ok(pca.mean.every((m) => Math.abs(m - 5) < 0.5));
      // Total variance 36 + 16 + 9 + 4 + 64 * 0.25 = 81, of which the planted directions hold 66.
      const top4 = pca.explainedVarianceRatio.slice(0, 4).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(top4 - 66 / 81) < 0.03, `top-4 explained variance ratio ${top4}`);
      // Sign convention: the largest |entry| of every component is positive.
      for (const c of pca.components) assert.ok(c.reduce((m, x) => (Math.abs(x) > Math.abs(m) ? x : m), 0) > 0);
      // Deterministic to the bit.
      assert.deepEqual(fitPca({ rows: n, cols: d, data }, 6), pca);
    });
  });

  describe('mini-batch k-means', () => {
    it('recovers 5 Gaussian blobs in 64-d after PCA: purity > 0.95, same seed -> same model', () => {
      const { x, truth } = blobs({ blobs: 5, perBlob: 300, d: 64, spread: 0.5, seed: 21 });
      const pca = fitPca(x, 8);
      const y = pcaTransform(pca, x);
      const km = fitMiniBatchKMeans(y, { k: 5, seed: 4, batchSize: 256 });
      const p = purity(km.labels, truth, 5);
      assert.ok(p > 0.95, `purity ${p}`);
      assert.deepEqual(
        km.sizes.reduce((a, b) => a + b, 0),
        1500,
      );
      assert.ok(
        km.sizes.every((s) => s > 200),
        `sizes ${km.sizes}`,
      );
      const again = fitMiniBatchKMeans(y, { k: 5, seed: 4, batchSize: 256 });
      assert.deepEqual(again.centroids, km.centroids);
      assert.deepEqual(again.labels, km.labels);
      // Another seed may permute the ids but finds the same partition.
      const other = fitMiniBatchKMeans(y, { k: 5, seed: 99, batchSize: 256 });
      assert.ok(purity(other.labels, truth, 5) > 0.95);
    });

    it('refuses more clusters than rows', () => {
      assert.throws(
        () => fitMiniBatchKMeans({ rows: 3, cols: 2, data: new Float64Array(6) }, { k: 4 }),
        /3 rows cannot make 4 clusters/,
      );
    });
  });

  describe('on a release: sample -> fit -> artifact -> label import', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'taxonomy-fit-'));
    let rel: SyntheticRelease;
    let input: FitTaxonomyInputArgs;
    let artifactPath: string;
    let model: TaxonomyModel;

    before(async () => {
      rel = await buildSyntheticRelease({ dataDir: path.join(tmp, 'data'), units: 3, figuresPerUnit: 16 });
      await ensureAnnotationModels(rel.release);
      for (const unitId of rel.units) await annotateUnit({ release: rel.release, unitId });
      input = {
        release: rel.release,
        version: 'synthetic-k4',
        clusters: 4,
        pcaComponents: 8,
        maxSamples: 40,
        seed: 3,
        kmeansBatchSize: 16,
      };
    });
    after(async () => {
      await releaseEmbedders();
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('samples stored embeddings across units by a seeded hash of the key; without stored ones it embeds the sampled images, to the same vectors', async () => {
      const s = await sampleTaxonomyEmbeddings(input);
      assert.deepEqual([s.samples, s.dim, s.units, s.fromStored, s.embeddedNow], [40, 64, 3, 40, 0]);
      const rows = fs
        .readFileSync(path.join(rel.release.dataDir, s.sampleDir, 'sample.ndjson'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.equal(new Set(rows.map((r) => r.key)).size, 40);
      assert.deepEqual(new Set(rows.map((r) => r.unit)), new Set(rel.units), 'all units sampled');
      // Units annotated without stored embeddings: their sampled images are embedded now, to the same vectors.
      const bytes = fs.readFileSync(path.join(rel.release.dataDir, s.sampleDir, 'sample.f32'));
      const again = { ...input, version: 'synthetic-k4-recomputed' };
      for (const u of rel.units) fs.rmSync(path.join(rel.layout.unitDir(u), 'embeddings.json'));
      const s2 = await sampleTaxonomyEmbeddings(again);
      assert.deepEqual([s2.samples, s2.fromStored, s2.embeddedNow], [40, 0, 40]);
      const bytes2 = fs.readFileSync(path.join(rel.release.dataDir, s2.sampleDir, 'sample.f32'));
      const a = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      const b = new Float32Array(bytes2.buffer, bytes2.byteOffset, bytes2.length / 4);
      a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-5));
      for (const unitId of rel.units) {
        fs.rmSync(rel.layout.stageManifest(unitId, 'annotate'));
        await annotateUnit({ release: rel.release, unitId }); // restore them for the next tests
      }
    });

    it('fits a versioned artifact with empty labels; a rerun reuses it; another fit of the same input is identical', async () => {
      const r = await fitTaxonomyModel(input);
      artifactPath = r.taxonomyPath;
      assert.equal(artifactPath, path.join(rel.release.dataDir, 'models', 'taxonomy-synthetic-k4.json'));
      assert.deepEqual(
        [r.version, r.clusters, r.samples, r.pcaComponents, r.reused],
        ['synthetic-k4', 4, 40, 8, false],
      );
      assert.ok(r.explainedVariance > 0 && r.explainedVariance <= 1);
      model = parseTaxonomyModel(JSON.parse(fs.readFileSync(artifactPath, 'utf8')));
      assert.deepEqual(model.clusterIds, [0, 1, 2, 3]);
      assert.equal(model.pca!.components.length, 8);
      assert.equal(model.pca!.explainedVariance!.length, 8);
      assert.equal(isLabelled(model), false);
      assert.deepEqual(model.labels['0'], { panel_type: '', panel_subtype: '', global_class: [], local_class: [] });
      assert.match(model.createdFrom, /^fit:release=synthetic;samples=40;.*seed=3;pca=8;k=4/);
      assert.equal(
        model.fit!.sizes.reduce((a, b) => a + b, 0),
        40,
      );
      assert.equal((await fitTaxonomyModel(input)).reused, true);
      // The same fit into another file: bit-identical geometry.
      const twin = await fitTaxonomyModel({ ...input, outPath: 'models/twin.json' });
      const twinModel = parseTaxonomyModel(JSON.parse(fs.readFileSync(twin.taxonomyPath, 'utf8')));
      assert.deepEqual([twinModel.pca, twinModel.centroids], [model.pca, model.centroids]);
      // Another input under an existing version is refused: versions are immutable.
      await assert.rejects(fitTaxonomyModel({ ...input, seed: 4 }), /versions are immutable/);
    });

    it('round-trips through JSON: same assignments for every stored embedding', () => {
      const reread = parseTaxonomyModel(JSON.parse(JSON.stringify(model)));
      for (const unitId of rel.units) {
        const buf = fs.readFileSync(path.join(rel.layout.unitDir(unitId), 'embeddings.f32'));
        const rows = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
        for (let i = 0; i < rows.length / 64; i++) {
          const e = rows.subarray(i * 64, (i + 1) * 64);
          assert.deepEqual(assignCluster(reread, e), assignCluster(model, e));
        }
      }
    });

    it('imports filled labels as the next version: validated, same geometry, new labels, never overwriting', async () => {
      const template = labelsTemplate(model);
      assert.deepEqual(Object.keys(template), ['0', '1', '2', '3']);
      const filled = Object.fromEntries(Object.keys(template).map((k) => [k, clusterLabels[String(Number(k) * 100)]!]));
      const file = path.join(tmp, 'filled.json');

      // Every problem is reported, with its cluster.
      const bad = {
        ...filled,
        '1': { ...filled['1'], panel_type: 'several' },
        '2': { ...filled['2'], global_class: [] },
      } as Record<string, unknown>;
      delete bad['3'];
      bad['7'] = filled['0'];
      fs.writeFileSync(file, JSON.stringify(bad));
      await assert.rejects(importTaxonomyLabels({ taxonomyPath: artifactPath, labelsPath: file }), (err: Error) => {
        assert.match(err.message, /cluster "1" panel_type: /);
        assert.match(err.message, /cluster "2" global_class: needs at least one global class/);
        assert.match(err.message, /1 clusters missing: 3/);
        assert.match(err.message, /not in taxonomy synthetic-k4: 7/);
        return true;
      });
      assert.throws(
        () => validateFilledLabels(model, { ...filled, '0': { ...filled['0'], panel_typ: 'single' } }),
        /panel_typ/,
      );
      fs.writeFileSync(file, '{"0": ');
      await assert.rejects(importTaxonomyLabels({ taxonomyPath: artifactPath, labelsPath: file }), /is not JSON/);

      fs.writeFileSync(file, JSON.stringify(filled, null, 2));
      const r = await importTaxonomyLabels({ taxonomyPath: artifactPath, labelsPath: file });
      assert.deepEqual([r.version, r.parent, r.clusters, r.reused], ['synthetic-k4-r1', 'synthetic-k4', 4, false]);
      assert.equal(r.taxonomyPath, path.join(path.dirname(artifactPath), 'taxonomy-synthetic-k4-r1.json'));
      const next = parseTaxonomyModel(JSON.parse(fs.readFileSync(r.taxonomyPath, 'utf8')));
      assert.deepEqual(
        [next.pca, next.centroids, next.clusterIds, next.fit],
        [model.pca, model.centroids, model.clusterIds, model.fit],
      );
      assert.deepEqual(next.labels, filled);
      assert.equal(next.parent, 'synthetic-k4');
      assert.ok(isLabelled(next));
      assert.match(next.createdFrom, /labels=filled\.json sha256=[0-9a-f]{64} onto synthetic-k4$/);
      // The parent is untouched; the same import again is a no-op; different labels under that version are refused.
      assert.equal(isLabelled(parseTaxonomyModel(JSON.parse(fs.readFileSync(artifactPath, 'utf8')))), false);
      assert.equal((await importTaxonomyLabels({ taxonomyPath: artifactPath, labelsPath: file })).reused, true);
      fs.writeFileSync(file, JSON.stringify({ ...filled, '0': filled['1'] }));
      await assert.rejects(
        importTaxonomyLabels({ taxonomyPath: artifactPath, labelsPath: file }),
        /versions are immutable/,
      );
      // A re-labelling of r1 becomes r2.
      const r2 = await importTaxonomyLabels({ taxonomyPath: r.taxonomyPath, labelsPath: file });
      assert.equal(r2.version, 'synthetic-k4-r2');
    });

    it('next versions: v -> v-r1 -> v-r2', () => {
      assert.equal(nextTaxonomyVersion('2026-k2000'), '2026-k2000-r1');
      assert.equal(nextTaxonomyVersion('2026-k2000-r1'), '2026-k2000-r2');
      assert.equal(nextTaxonomyVersion('a-r9'), 'a-r10');
    });
  });
});

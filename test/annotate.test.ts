import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { fixturePaths } from '../config/paths';
import { encodeModel, TensorDataType } from '../activities/annotate/onnx-proto';
import { buildTinyVitModel } from '../activities/annotate/tiny-vit';
import {
  createEmbedder,
  preprocessImage,
  preprocessSidecarPath,
  type Embedder,
  type TraceEvent,
} from '../activities/annotate/embedder';
import { float32ToHalfBits, halfBitsToFloat32, halfToFloat32Array } from '../activities/annotate/half';
import {
  assignCluster,
  buildBootstrapTaxonomy,
  labelFor,
  loadClusterLabels,
  parseTaxonomyModel,
  type ClusterLabels,
  type TaxonomyModel,
} from '../activities/annotate/taxonomy';

const PLANE = 224 * 224;

/** Solid colour image of any size, as PNG. */
function solid(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
}

/** Image from a per-pixel function, as PNG (or JPEG). */
function painted(
  width: number,
  height: number,
  f: (x: number, y: number) => [number, number, number],
  jpeg = false,
): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set(f(x, y), (y * width + x) * 3);
  const img = sharp(raw, { raw: { width, height, channels: 3 } });
  return (jpeg ? img.jpeg() : img.png()).toBuffer();
}

function channelMean(x: Float32Array, c: number, from = 0, to = PLANE): number {
  let s = 0;
  for (let i = from; i < to; i++) s += x[c * PLANE + i];
  return s / (to - from);
}

describe('annotate', function () {
  this.timeout(30_000);
  let tmp: string;
  let modelPath: string;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'annotate-test-'));
    modelPath = path.join(tmp, 'tiny-vit.onnx');
    fs.writeFileSync(modelPath, buildTinyVitModel({ seed: 7 }));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe('onnx-proto / tiny-vit', () => {
    it('is byte-identical for the same seed and differs for another seed', () => {
      const a = buildTinyVitModel({ seed: 7 });
      const b = buildTinyVitModel({ seed: 7 });
      const c = buildTinyVitModel({ seed: 8 });
      assert.ok(a.length > 10_000);
      assert.ok(a.equals(b));
      assert.equal(a.length, c.length); // same shapes, different weights
      assert.ok(!a.equals(c));
      assert.ok(a.equals(fs.readFileSync(modelPath)));
    });

    it("gives the bytes the hand-written encoder gave before it moved onto protobufjs's writer", () => {
      // sha256 of the models as the earlier, hand-written wire encoder wrote them.
      const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
      assert.equal(sha(buildTinyVitModel()), 'b76d3e6b7bb5b46e6c432001aeed822dffb486cb033a08f8615a7ea4916afa9f');
      assert.equal(
        sha(buildTinyVitModel({ dtype: 'float16' })),
        '77334852c0321316135afa48970e11e06e71353ee02ee172c7d221ba4338751b',
      );
      assert.equal(
        sha(buildTinyVitModel({ dim: 48 })),
        '13e2ace5c35fcff03ea8e162859c6b0f2e45c7d31f242f37f59c030f1b27bf34',
      );
    });

    it('encodes varints, negative int64 and raw_data as protobuf expects', () => {
      const bytes = encodeModel({
        irVersion: 7,
        producerName: 'p',
        opsetImports: [{ domain: '', version: 13 }],
        graph: {
          name: 'g',
          nodes: [],
          initializers: [{ name: 't', dims: [1], dataType: 'int64', data: BigInt64Array.of(-1n) }],
          inputs: [],
          outputs: [{ name: 'o', elemType: TensorDataType.FLOAT, shape: ['batch', 300] }],
        },
      });
      // ModelProto starts with field 1 (ir_version, varint) = 7, then field 2 (producer_name) = "p".
      assert.deepEqual([...bytes.subarray(0, 5)], [0x08, 0x07, 0x12, 0x01, 0x70]);
      // raw_data of int64 -1 is eight 0xff bytes, little-endian.
      assert.ok(bytes.includes(Buffer.from([0x4a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])));
      // dim_value 300 as a two-byte varint: 0xac 0x02.
      assert.ok(bytes.includes(Buffer.from([0x08, 0xac, 0x02])));
      // opset_import (field 8) carries version 13 and omits the empty domain.
      assert.ok(bytes.subarray(-4).equals(Buffer.from([0x42, 0x02, 0x10, 0x0d])));
    });

    it('loads in onnxruntime-node on cpu, with metadata from the graph', async () => {
      const e = await createEmbedder({ modelPath });
      try {
        assert.equal(e.provider, 'cpu');
        assert.equal(e.dim, 64);
        assert.equal(e.imageSize, 224);
        assert.deepEqual(e.fallbacks, []);
      } finally {
        await e.release();
      }
    });

    it("falls back from 'cuda' to 'cpu' when the CUDA provider is not installed", async () => {
      const e = await createEmbedder({ modelPath, executionProviders: ['cuda', 'cpu'] });
      try {
        assert.equal(e.provider, 'cpu');
        assert.deepEqual(
          e.fallbacks.map((f) => f.provider),
          ['cuda'],
        );
        assert.match(e.fallbacks[0].error, /\S/);
      } finally {
        await e.release();
      }
    });

    it('serves any float32 [batch,3,H,W] model, picking the named output among several', async () => {
      // Mean colour per image ("mean") and its negation ("neg"), on 8x8 inputs: also exercises the encoder on another graph.
      const multi = path.join(tmp, 'mean-colour.onnx');
      const info = (name: string, shape: Array<number | string>) => ({ name, elemType: TensorDataType.FLOAT, shape });
      fs.writeFileSync(
        multi,
        encodeModel({
          irVersion: 7,
          producerName: 'test',
          opsetImports: [{ domain: '', version: 13 }],
          graph: {
            name: 'mean_colour',
            nodes: [
              {
                opType: 'ReduceMean',
                inputs: ['pixel_values'],
                outputs: ['mean'],
                attributes: [
                  { name: 'axes', type: 'ints', value: [-2, -1] },
                  { name: 'keepdims', type: 'int', value: 0 },
                ],
              },
              { opType: 'Neg', inputs: ['mean'], outputs: ['neg'] },
            ],
            initializers: [],
            inputs: [info('pixel_values', ['batch', 3, 8, 8])],
            outputs: [info('mean', ['batch', 3]), info('neg', ['batch', 3])],
          },
        }),
      );
      await assert.rejects(createEmbedder({ modelPath: multi }), /cannot pick the output among \[mean, neg\]/);
      const e = await createEmbedder({ modelPath: multi, outputName: 'neg' });
      try {
        assert.equal(e.imageSize, 8);
        assert.equal(e.dim, 3);
        const [v] = await e.embed([await solid(20, 10, [255, 0, 255])]);
        assert.deepEqual(
          [...v].map((x) => Math.round(x * 1000) / 1000 + 0),
          [-1, 0, -1],
        ); // + 0 turns -0 into 0
      } finally {
        await e.release();
      }
    });

    it('fails clearly when no provider works', async () => {
      await assert.rejects(
        createEmbedder({ modelPath, executionProviders: ['cuda'] }),
        /no execution provider could load/,
      );
    });
  });

  describe('preprocessImage', () => {
    it('gives CHW floats in [0,1] of length 3*224*224; pure red stays red', async () => {
      const x = await preprocessImage(await solid(50, 30, [255, 0, 0]));
      assert.equal(x.length, 3 * PLANE);
      assert.ok(x.every((v) => v >= 0 && v <= 1));
      assert.ok(Math.abs(channelMean(x, 0) - 1) < 1e-6);
      assert.ok(channelMean(x, 1) < 1e-6);
      assert.ok(channelMean(x, 2) < 1e-6);
    });

    it('squashes a non-square image instead of cropping it', async () => {
      // 300x100: left third blue, the rest green. A centre crop would lose the blue band.
      const img = await painted(300, 100, (x) => (x < 100 ? [0, 0, 255] : [0, 255, 0]));
      const x = await preprocessImage(img);
      const blueCols = Array.from({ length: 224 }, (_, col) => x[2 * PLANE + 112 * 224 + col] > 0.5).filter(
        Boolean,
      ).length;
      // A third of 224 columns (~75) stay blue: the whole width was kept, only scaled.
      assert.ok(Math.abs(blueCols - 224 / 3) <= 2, `blue columns ${blueCols}`);
      // Rows are not shifted or cropped either: every row has the same split.
      assert.ok(x[2 * PLANE + 0 * 224 + 10] > 0.99 && x[2 * PLANE + 223 * 224 + 10] > 0.99);
    });

    it('flattens transparency onto white and honours the size option', async () => {
      const png = await sharp({
        create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
      })
        .png()
        .toBuffer();
      const x = await preprocessImage(png, { size: 32 });
      assert.equal(x.length, 3 * 32 * 32);
      assert.ok(x.every((v) => v === 1));
    });

    it('rejects bytes that are not an image', async () => {
      await assert.rejects(preprocessImage(Buffer.from('not an image')));
    });
  });

  describe('embed', () => {
    let embedder: Embedder;
    let images: Buffer[];

    before(async () => {
      embedder = await createEmbedder({ modelPath, batchSize: 2, intraOpNumThreads: 2 });
      images = await Promise.all([
        solid(64, 64, [255, 0, 0]),
        solid(120, 40, [20, 200, 60]),
        painted(224, 224, (x, y) => (((x >> 4) + (y >> 4)) % 2 ? [255, 255, 255] : [0, 0, 0])), // checkerboard
        painted(180, 90, (x) => [x % 256, 128, 255 - (x % 256)], true), // gradient JPEG
        painted(96, 96, (x, y) => (Math.hypot(x - 48, y - 48) < 30 ? [240, 220, 0] : [10, 10, 80])), // disc
      ]);
    });
    after(async () => embedder?.release());

    it('embeds 5 images in batches of 2: finite, deterministic, distinct', async () => {
      const progress: number[] = [];
      const a = await embedder.embed(images, (done) => progress.push(done));
      const b = await embedder.embed(images);
      assert.deepEqual(progress, [2, 4, 5]); // the last batch runs short, not padded
      assert.equal(a.length, 5);
      for (const v of a) {
        assert.equal(v.length, 64);
        assert.ok(v.every(Number.isFinite));
        assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-4, 'unit norm (L2 inside the graph)');
      }
      a.forEach((v, i) => assert.deepEqual(v, b[i]));
      // Every pair clearly differs (cosine well below 1).
      for (let i = 0; i < 5; i++)
        for (let j = i + 1; j < 5; j++) {
          const cos = a[i].reduce((s, x, k) => s + x * a[j][k], 0);
          assert.ok(cos < 0.99, `images ${i} and ${j}: cosine ${cos}`);
        }
    });

    it('gives the same embedding whatever the batch split', async () => {
      const single = await createEmbedder({ modelPath, batchSize: 1 });
      try {
        const one = await single.embed(images);
        const two = await embedder.embed(images);
        one.forEach((v, i) => v.forEach((x, k) => assert.ok(Math.abs(x - two[i][k]) < 1e-5)));
      } finally {
        await single.release();
      }
    });

    it('returns nothing for no images', async () => {
      assert.deepEqual(await embedder.embed([]), []);
    });

    it('embeds real PMC figures (JPEG), and two different figures stay apart', async () => {
      const figure = (name: string) => fs.readFileSync(path.join(fixturePaths.images(), 'PMC7159286', name));
      const [v, w] = await embedder.embed([figure('gr1_lrg.jpg'), figure('gr2_lrg.jpg')]);
      assert.equal(v.length, 64);
      assert.ok(v.every(Number.isFinite));
      assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-4);
      // Guards against the degenerate case where every white-background figure embeds alike.
      const cos = v.reduce((s, x, k) => s + x * w[k], 0);
      assert.ok(cos < 0.95, `gr1 vs gr2 cosine ${cos}`);
    });

    it('propagates a decode error from any batch', async () => {
      await assert.rejects(embedder.embed([...images, Buffer.from('garbage')]));
    });
  });

  describe('taxonomy', () => {
    let labels: ClusterLabels;
    before(async () => {
      labels = await loadClusterLabels(fixturePaths.clusterLabels());
    });

    it('loads the real cluster_labels.json (2000 clusters) with validation', () => {
      assert.equal(Object.keys(labels).length, 2000);
      for (let i = 0; i < 2000; i++) assert.ok(String(i) in labels);
    });

    it('rejects a malformed labels file', async () => {
      const bad = path.join(tmp, 'bad-labels.json');
      fs.writeFileSync(
        bad,
        JSON.stringify({ '0': { panel_type: 'single', panel_subtype: 'x', global_class: 'Maps' } }),
      );
      await assert.rejects(loadClusterLabels(bad), /invalid cluster labels/);
    });

    it('bootstrap is deterministic, evenly spread and labelled from the file', () => {
      const a = buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: 64, seed: 3 });
      const b = buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: 64, seed: 3 });
      const c = buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: 64, seed: 4 });
      assert.deepEqual(a, b);
      assert.notDeepEqual(a.centroids, c.centroids);
      assert.equal(a.centroids.length, 32);
      assert.deepEqual(a.clusterIds.slice(0, 4), [0, 62, 125, 187]); // floor(i * 2000 / 32)
      assert.equal(a.pca, null);
      for (const centroid of a.centroids) assert.ok(Math.abs(Math.hypot(...centroid) - 1) < 1e-9);
      for (const id of a.clusterIds) assert.deepEqual(labelFor(a, id), labels[String(id)]);
      // Survives a JSON round trip through the schema (the artifact is stored as JSON).
      assert.deepEqual(parseTaxonomyModel(JSON.parse(JSON.stringify(a))), a);
    });

    it('labelFor returns cluster 0 verbatim from the file', () => {
      const raw = JSON.parse(fs.readFileSync(fixturePaths.clusterLabels(), 'utf8')) as Record<string, unknown>;
      const model = buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: 8 });
      assert.equal(model.clusterIds[0], 0);
      assert.deepEqual(labelFor(model, 0), raw['0']);
      assert.throws(() => labelFor(model, 1), /no labels for cluster 1/);
    });

    const hand = (over: Partial<TaxonomyModel> = {}): TaxonomyModel =>
      parseTaxonomyModel({
        version: 't',
        embeddingDim: 2,
        pca: null,
        centroids: [
          [0, 0],
          [10, 0],
          [0, 10],
        ],
        clusterIds: [5, 6, 7],
        labels: Object.fromEntries(['5', '6', '7'].map((k) => [k, labels[k]])),
        createdFrom: 'test',
        ...over,
      });

    it('assigns the nearest centroid, ties to the lowest index', () => {
      const m = hand();
      assert.deepEqual(assignCluster(m, Float32Array.of(9, 1)), { clusterId: 6, distance: Math.SQRT2 });
      assert.equal(assignCluster(m, Float32Array.of(1, 8)).clusterId, 7);
      assert.deepEqual(assignCluster(m, Float32Array.of(0, 0)), { clusterId: 5, distance: 0 });
      assert.equal(assignCluster(m, Float32Array.of(6, 6)).clusterId, 6); // equidistant to 6 and 7 -> index 1
      assert.equal(assignCluster(m, Float32Array.of(5, 5)).clusterId, 5); // a three-way tie -> index 0
      assert.throws(() => assignCluster(m, Float32Array.of(1, 2, 3)), /expects 2/);
    });

    it('projects with PCA before the nearest-centroid search', () => {
      // 3-d embeddings -> 2 components (swap of the first two axes after centring on mean).
      const m = hand({
        embeddingDim: 3,
        pca: {
          mean: [1, 1, 1],
          components: [
            [0, 1, 0],
            [1, 0, 0],
          ],
        },
      });
      // x - mean = (9, -1, 4) -> y = (-1, 9): nearest is (0, 10), cluster 7 (raw x would be nearest to (10, 0)).
      const r = assignCluster(m, Float32Array.of(10, 0, 5));
      assert.equal(r.clusterId, 7);
      assert.ok(Math.abs(r.distance - Math.SQRT2) < 1e-12);
      assert.throws(
        () => hand({ embeddingDim: 3, pca: { mean: [0, 0], components: [[1, 0, 0]] } }),
        /pca.mean has 2 values/,
      );
    });

    it('puts embeddings from the tiny model through the bootstrap taxonomy', async () => {
      const model = buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: 64, clusters: 16 });
      const e = await createEmbedder({ modelPath });
      try {
        const [v] = await e.embed([await solid(40, 40, [0, 0, 255])]);
        const { clusterId, distance } = assignCluster(model, v);
        assert.ok(model.clusterIds.includes(clusterId));
        assert.ok(distance >= 0 && distance <= 2); // both sides are unit vectors
        assert.deepEqual(labelFor(model, clusterId), labels[String(clusterId)]);
      } finally {
        await e.release();
      }
    });
  });

  describe('float16 models', () => {
    it('converts float32 <-> half bits like numpy (round to nearest even, subnormals, overflow)', () => {
      // Expected bits from numpy: np.array(v, np.float32).astype(np.float16).view(np.uint16).
      const cases: Array<[number, number]> = [
        [1, 0x3c00],
        [-2, 0xc000],
        [0.1, 0x2e66],
        [1 / 3, 0x3555],
        [65504, 0x7bff],
        [65519.99, 0x7bff],
        [65520, 0x7c00],
        [2 ** -24, 0x0001],
        [2 ** -25, 0x0000],
        [3 * 2 ** -26, 0x0001],
        [6.1e-5, 0x03ff],
        [-0, 0x8000],
        [Infinity, 0x7c00],
        [1 + 2 ** -11, 0x3c00],
        [1 + 3 * 2 ** -11, 0x3c02],
      ];
      for (const [v, bits] of cases) assert.equal(float32ToHalfBits(v), bits, `${v}`);
      assert.ok(Number.isNaN(halfBitsToFloat32(float32ToHalfBits(NaN))));
      // Every finite half survives the round trip exactly.
      for (let h = 0; h < 0x10000; h++) {
        const v = halfBitsToFloat32(h);
        if (!Number.isNaN(v)) assert.equal(float32ToHalfBits(v), h);
      }
      assert.deepEqual([...halfToFloat32Array(Uint16Array.of(0x3c00, 0xc000, 0x0001), 1)], [-2, 2 ** -24]);
    });

    it('the generated fp16 model takes and returns float16 and embeds within 2e-3 of the fp32 one', async () => {
      const half = path.join(tmp, 'tiny-vit-fp16.onnx');
      const bytes = buildTinyVitModel({ seed: 7, dtype: 'float16' });
      assert.ok(bytes.equals(buildTinyVitModel({ seed: 7, dtype: 'float16' })));
      assert.ok(bytes.length < buildTinyVitModel({ seed: 7 }).length * 0.6, 'half the weights');
      fs.writeFileSync(half, bytes);
      const e16 = await createEmbedder({ modelPath: half, batchSize: 2 });
      const e32 = await createEmbedder({ modelPath, batchSize: 2 });
      try {
        assert.deepEqual([e16.inputType, e16.outputType, e16.dim], ['float16', 'float16', 64]);
        assert.equal(e32.inputType, 'float32');
        const imgs = await Promise.all([
          solid(30, 30, [10, 200, 30]),
          painted(90, 60, (x, y) => [(x * 3) % 256, (y * 5) % 256, 128]),
        ]);
        const a = await e16.embed(imgs);
        const b = await e32.embed(imgs);
        for (const [i, v] of a.entries()) {
          assert.ok(v instanceof Float32Array && v.length === 64);
          v.forEach((x, k) => assert.ok(Math.abs(x - b[i]![k]!) < 2e-3, `image ${i} value ${k}: ${x} vs ${b[i]![k]}`));
        }
        assert.deepEqual(await e16.embed(imgs), a); // deterministic
      } finally {
        await e16.release();
        await e32.release();
      }
    });
  });

  describe('preprocessing config', () => {
    it('applies mean/std normalisation when configured (the original applies none)', async () => {
      const img = await solid(10, 10, [255, 0, 51]);
      const x = await preprocessImage(img, { size: 8, mean: [0.5, 0.5, 0.5], std: [0.5, 0.25, 0.2] });
      assert.ok(Math.abs(x[0]! - 1) < 1e-6 && Math.abs(x[64]! + 2) < 1e-6 && Math.abs(x[128]! + 1.5) < 1e-6);
      await assert.rejects(preprocessImage(img, { std: [0, 1, 1] } as never), /std must be positive/);
    });

    it("'center-crop' keeps the middle of a wide image; 'squash' keeps it all", async () => {
      const img = await painted(300, 100, (x) => (x < 100 ? [0, 0, 255] : [0, 255, 0]));
      const crop = await preprocessImage(img, { size: 32, resize: 'center-crop' });
      const blue = (t: Float32Array) =>
        Array.from({ length: 32 }, (_, c) => t[2 * 1024 + 16 * 32 + c]! > 0.5).filter(Boolean).length;
      assert.equal(blue(crop), 0); // the blue third lies outside the central square
      assert.ok(blue(await preprocessImage(img, { size: 32 })) > 8);
    });

    it("reads the model's sidecar <model>.preprocess.json, and refuses a size the model does not take", async () => {
      const m = path.join(tmp, 'sidecar-model.onnx');
      fs.writeFileSync(m, buildTinyVitModel({ seed: 7 }));
      assert.equal(preprocessSidecarPath(m), path.join(tmp, 'sidecar-model.preprocess.json'));
      fs.writeFileSync(
        preprocessSidecarPath(m),
        JSON.stringify({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }),
      );
      const e = await createEmbedder({ modelPath: m });
      const plain = await createEmbedder({ modelPath });
      try {
        assert.equal(e.preprocessSource, 'sidecar');
        assert.deepEqual(e.preprocess.mean, [0.485, 0.456, 0.406]);
        assert.equal(plain.preprocessSource, 'default');
        const img = await solid(20, 20, [200, 100, 50]);
        const [a] = await e.embed([img]);
        const [b] = await plain.embed([img]);
        assert.notDeepEqual(a, b);
      } finally {
        await e.release();
        await plain.release();
      }
      fs.writeFileSync(preprocessSidecarPath(m), JSON.stringify({ size: 112 }));
      await assert.rejects(createEmbedder({ modelPath: m }), /preprocess size 112 but the model takes 224x224/);
      fs.writeFileSync(preprocessSidecarPath(m), JSON.stringify({ sise: 224 }));
      await assert.rejects(createEmbedder({ modelPath: m }), /invalid .*preprocess\.json/);
    });
  });

  describe('pipeline', () => {
    it('issues the decode of batch n+1 before inference of batch n starts, in every batch', async () => {
      const e = await createEmbedder({ modelPath, batchSize: 2 });
      try {
        const imgs = await Promise.all(
          Array.from({ length: 9 }, (_, i) => solid(40 + i, 30, [i * 20, 100, 200 - i * 20])),
        );
        const batches = [0, 2, 4, 6, 8];
        const events: TraceEvent[] = [];
        const out: number[] = [];
        for await (const b of e.embedBatches(batches, async (i) => imgs.slice(i, i + 2), {
          trace: (ev) => events.push(ev),
        }))
          out.push(b.item);
        assert.deepEqual(out, batches);
        const at = (event: TraceEvent['event'], batch: number) =>
          events.findIndex((x) => x.event === event && x.batch === batch);
        for (let k = 0; k < batches.length; k++) {
          assert.ok(at('decoded', k) < at('run-start', k), `batch ${k} decoded before its run`);
          if (k + 1 < batches.length) {
            assert.ok(
              at('decode-issued', k + 1) < at('run-start', k),
              `decode of batch ${k + 1} issued before batch ${k} runs`,
            );
            assert.ok(at('load', k + 1) < at('run-start', k), `batch ${k + 1} read before batch ${k} runs`);
          }
        }
      } finally {
        await e.release();
      }
    });

    it('a bad image fails alone; its batch-mates embed as they would without it', async () => {
      const e = await createEmbedder({ modelPath, batchSize: 3 });
      try {
        const good = await Promise.all([solid(20, 20, [1, 2, 3]), solid(30, 20, [200, 10, 10])]);
        const items = [[good[0]!, Buffer.from('junk'), good[1]!, new Error('unreadable')]];
        const [b] = await (async () => {
          const r = [];
          for await (const x of e.embedBatches(items, async (i) => i)) r.push(x);
          return r;
        })();
        assert.deepEqual(
          b!.embeddings.map((v) => v !== null),
          [true, false, true, false],
        );
        assert.match(b!.errors[1]!, /decode failed/);
        assert.match(b!.errors[3]!, /unreadable/);
        const alone = await e.embed(good);
        assert.ok(b!.embeddings[0]!.every((x, k) => Math.abs(x - alone[0]![k]!) < 1e-5));
        assert.ok(b!.embeddings[2]!.every((x, k) => Math.abs(x - alone[1]![k]!) < 1e-5));
      } finally {
        await e.release();
      }
    });

    it('same images, same embeddings and the same clusters, run after run', async () => {
      const labels = await loadClusterLabels(fixturePaths.clusterLabels());
      const model = buildBootstrapTaxonomy({ clusterLabels: labels, embeddingDim: 64, clusters: 32 });
      const imgs = [
        fs.readFileSync(path.join(fixturePaths.images(), 'PMC7159286', 'gr1_lrg.jpg')),
        await solid(50, 50, [0, 128, 255]),
      ];
      const runs = [];
      for (let r = 0; r < 2; r++) {
        const e = await createEmbedder({ modelPath, batchSize: 2 });
        try {
          runs.push(await e.embed(imgs));
        } finally {
          await e.release();
        }
      }
      assert.deepEqual(runs[0], runs[1]);
      assert.deepEqual(
        runs[0]!.map((v) => assignCluster(model, v)),
        runs[1]!.map((v) => assignCluster(model, v)),
      );
    });
  });
});

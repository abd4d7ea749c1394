/**
 * One decode per figure: the images stage makes annotate's model input (activities/images/model-inputs.ts), and the
 * embeddings annotate computes from it are the bytes it computes from the published JPEG, on the real PMC figures
 * and on other formats made from them (which the images stage converts to JPEG first).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { annotateUnit } from '../activities/annotate/activity';
import { createEmbedder, type Embedder } from '../activities/annotate/embedder';
import { DecodedRgb, decodeRgb, parsePreprocessConfig, type DecodeConfig } from '../activities/annotate/preprocess';
import { buildTinyVitModel } from '../activities/annotate/tiny-vit';
import { unitEmbeddingPaths } from '../activities/annotate/unit-embeddings';
import { stagedImagePath, type PreparedImage } from '../activities/images/activity';
import { modelInputPaths, openModelInputs } from '../activities/images/model-inputs';
import { normalizeFigureImage } from '../activities/images/normalize';
import { fixturePaths } from '../config/paths';
import { buildReleaseInProcess, type InProcessRelease } from './support/in-process-release';

const realDir = path.join(fixturePaths.images(), 'PMC7159286');
const real = fs.readdirSync(realDir).map((f) => ({ name: f, bytes: fs.readFileSync(path.join(realDir, f)) }));

/** Other formats and codings of a real figure, as PMC packages carry them. */
async function variants(src: Buffer): Promise<{ name: string; bytes: Buffer }[]> {
  const s = () => sharp(src);
  return [
    { name: 'png', bytes: await s().png().toBuffer() },
    { name: 'png with alpha', bytes: await s().ensureAlpha(0.5).png().toBuffer() },
    { name: 'tiff', bytes: await s().tiff().toBuffer() },
    { name: 'webp', bytes: await s().webp({ lossless: true }).toBuffer() },
    { name: 'grey jpeg (passed through)', bytes: await s().greyscale().jpeg().toBuffer() },
    { name: 'progressive jpeg (passed through)', bytes: await s().jpeg({ progressive: true }).toBuffer() },
    { name: 'cmyk jpeg', bytes: await s().toColourspace('cmyk').jpeg().toBuffer() },
  ];
}

const configs: DecodeConfig[] = [
  parsePreprocessConfig({}),
  parsePreprocessConfig({ size: 112, resize: 'center-crop', kernel: 'lanczos3', background: [0, 0, 0] }),
];

async function embedOne(embedder: Embedder, image: Buffer | DecodedRgb): Promise<Buffer> {
  for await (const b of embedder.embedBatches([0], async () => [image])) {
    assert.equal(b.errors[0], null);
    const e = b.embeddings[0]!;
    return Buffer.from(e.buffer as ArrayBuffer, e.byteOffset, e.byteLength);
  }
  throw new Error('no batch');
}

describe('model inputs made by the images stage', function () {
  this.timeout(300_000);
  let tmp: string;
  const embedders: Embedder[] = [];

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'model-inputs-'));
    for (const [i, cfg] of configs.entries()) {
      const model = path.join(tmp, `m${i}.onnx`);
      fs.writeFileSync(model, buildTinyVitModel({ seed: 1, imageSize: cfg.size }));
      embedders.push(await createEmbedder({ modelPath: model, preprocess: parsePreprocessConfig(cfg), batchSize: 1 }));
    }
  });
  after(async () => {
    for (const e of embedders) await e.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('gives the embeddings of the published JPEG, byte for byte, for real figures and converted formats', async () => {
    const inputs: { name: string; bytes: Buffer }[] = [...real];
    for (const v of await variants(real.find((r) => r.name === 'gr2_lrg.jpg')!.bytes))
      inputs.push({ name: `gr2_lrg.jpg as ${v.name}`, bytes: v.bytes });
    let converted = 0;
    for (const [i, cfg] of configs.entries()) {
      for (const { name, bytes } of inputs) {
        const img = await normalizeFigureImage(bytes, { preprocess: cfg });
        assert.ok(img.ok, `${name}: ${!img.ok && img.detail}`);
        assert.ok(img.input, `${name}: no input made`);
        if (!img.passthrough) converted++;
        const fromJpeg = await decodeRgb(img.jpeg, cfg);
        assert.ok(
          img.input.equals(fromJpeg),
          `${name} (${cfg.resize} ${cfg.size}): input differs from the JPEG's decode`,
        );
        const a = await embedOne(embedders[i]!, new DecodedRgb(img.input));
        const b = await embedOne(embedders[i]!, img.jpeg);
        assert.ok(a.equals(b), `${name} (${cfg.resize} ${cfg.size}): embeddings differ`);
      }
    }
    assert.ok(converted >= 2 * 6, `converted images covered: ${converted}`);
  });

  it('still refuses a truncated JPEG when it makes the input, and publishes the same bytes as without it', async () => {
    for (const { name, bytes } of real.filter((r) => r.name.endsWith('.jpg'))) {
      const cut = await normalizeFigureImage(bytes.subarray(0, Math.floor(bytes.length * 0.7)), {
        preprocess: configs[0],
      });
      assert.equal(cut.ok, false, `${name} cut short was accepted`);
      assert.equal(!cut.ok && cut.reason, 'corrupt');
      const plain = await normalizeFigureImage(bytes);
      const withInput = await normalizeFigureImage(bytes, { preprocess: configs[0] });
      assert.ok(plain.ok && withInput.ok && plain.jpeg.equals(withInput.jpeg) && plain.passthrough);
    }
  });

  describe('a release', () => {
    let rel: InProcessRelease;
    before(async () => {
      rel = await buildReleaseInProcess({ releaseId: 'model-inputs', maxArticles: 2 });
    });
    after(() => rel?.cleanup());

    it("annotate embeds from the images stage's inputs without the JPEGs, to the same bytes as from the JPEGs", async () => {
      let figures = 0;
      for (const { task } of rel.units) {
        const unitDir = path.join(rel.root, 'units', task.unitId);
        const prepared = fs
          .readFileSync(path.join(unitDir, 'images.ndjson'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as PreparedImage);
        if (prepared.length === 0) continue;
        figures += prepared.length;
        const emb = unitEmbeddingPaths(unitDir);
        const built = fs.readFileSync(emb.file);
        const inputs = await openModelInputs(unitDir, configs[0]!);
        assert.ok(inputs, `${task.unitId}: no inputs`);
        for (const p of prepared) assert.ok(await inputs.get(p.key), `${task.unitId}/${p.key}: no input`);
        await inputs.close();
        const redo = async () => {
          fs.rmSync(path.join(unitDir, 'manifests', 'annotate.json'));
          fs.rmSync(emb.file);
          fs.rmSync(emb.meta);
          const r = await annotateUnit(task);
          assert.equal(r.failed, 0);
          return fs.readFileSync(emb.file);
        };
        // From the JPEGs alone (the inputs gone): the embeddings as annotate made them before the images stage
        // made inputs.
        const inputFiles = modelInputPaths(unitDir);
        const saved = fs.readFileSync(inputFiles.meta);
        fs.rmSync(inputFiles.meta);
        assert.ok((await redo()).equals(built), `${task.unitId}: embeddings from the JPEGs differ`);
        // From the inputs alone (the JPEGs gone).
        fs.writeFileSync(inputFiles.meta, saved);
        const jpegs = prepared.map((p) => stagedImagePath(unitDir, p.key));
        const kept = jpegs.map((f) => fs.readFileSync(f));
        jpegs.forEach((f) => fs.rmSync(f));
        assert.ok((await redo()).equals(built), `${task.unitId}: embeddings from the inputs differ`);
        jpegs.forEach((f, i) => fs.writeFileSync(f, kept[i]!));
      }
      assert.ok(figures > 20, `figures: ${figures}`);
    });
  });
});

import { strict as assert } from 'node:assert';
import { chooseFigureGraphic, IMAGE_EXTENSIONS, resolveMediaFile } from '../activities/parse/media';

// The real-package case (PMC7159286 hrefs against its image folder) lives in parse.test.ts.
describe('resolveMediaFile', () => {
  it('matches exactly first, then by stem with jpg > jpeg > png > tif > tiff > gif', () => {
    assert.deepEqual(IMAGE_EXTENSIONS, ['.jpg', '.jpeg', '.png', '.tif', '.tiff', '.gif']);
    assert.equal(resolveMediaFile('gr1_lrg.gif', ['gr1_lrg.jpg', 'gr1_lrg.gif']), 'gr1_lrg.gif');
    assert.equal(resolveMediaFile('gr1_lrg', ['gr1_lrg.gif', 'gr1_lrg.jpg']), 'gr1_lrg.jpg');
    assert.equal(resolveMediaFile('f1', ['f1.gif', 'f1.tiff', 'f1.tif', 'f1.png', 'f1.jpeg']), 'f1.jpeg');
    assert.equal(resolveMediaFile('f1', ['f1.gif', 'f1.tiff', 'f1.tif', 'f1.png']), 'f1.png');
    assert.equal(resolveMediaFile('f1', ['f1.gif', 'f1.tiff', 'f1.tif']), 'f1.tif');
    assert.equal(resolveMediaFile('f1', ['f1.gif']), 'f1.gif');
    assert.equal(resolveMediaFile('f1', ['f1.pdf', 'f1.mp4']), null);
  });

  it('handles dotted stems, extension case, converted TIFFs and near-miss names', () => {
    assert.equal(
      resolveMediaFile('pntd.0002065.g001', [
        'pntd.0002065.g001.tif',
        'pntd.0002065.g001.jpg',
        'pntd.0002065.g002.jpg',
      ]),
      'pntd.0002065.g001.jpg',
    );
    assert.equal(resolveMediaFile('image1.JPG', ['image1.gif', 'image1.jpg']), 'image1.jpg');
    assert.equal(resolveMediaFile('image1.jpg', ['image1.JPG']), 'image1.JPG');
    assert.equal(resolveMediaFile('fig2.tif', ['fig2.gif', 'fig2.jpg']), 'fig2.jpg'); // PMC ships TIFF figures as JPEG
    assert.equal(resolveMediaFile('gr1', ['gr10.jpg', 'gr1_lrg.jpg']), null);
    assert.equal(resolveMediaFile('Fig1', ['fig1.jpg', 'Fig1.png']), 'Fig1.png'); // same-case stem first
    assert.equal(resolveMediaFile('', ['a.jpg']), null);
  });

  it('chooseFigureGraphic skips thumbnails and gifs when a full image exists', () => {
    const g = (href: string, attrs: Record<string, string> = {}) => ({ href, attrs });
    assert.equal(
      chooseFigureGraphic([g('a.gif', { 'content-type': 'thumb' }), g('a.jpg', { 'content-type': 'image' })])?.href,
      'a.jpg',
    );
    assert.equal(chooseFigureGraphic([g('a.gif'), g('a.png')])?.href, 'a.png');
    assert.equal(chooseFigureGraphic([g('a.jpg', { 'specific-use': 'thumb' }), g('a.tif')])?.href, 'a.tif');
    assert.equal(chooseFigureGraphic([g('only.gif')])?.href, 'only.gif');
    assert.equal(chooseFigureGraphic([]), undefined);
  });
});

/**
 * The expert review pack: a static HTML gallery per cluster (thumbnails + captions of the sample figures nearest
 * to its centroid), an index, and the labels file to fill. Pure rendering: no I/O here (taxonomy-activity.ts
 * writes the files and thumbnails). Pages need no server and no network: open index.html from disk.
 *
 * Every page carries a small script that, once the page has loaded, counts the images that actually decoded
 * (naturalWidth > 0) and writes the count into #image-check: a reviewer sees broken thumbnails at a glance,
 * and the test reads it back from headless Chromium's DOM.
 */
import type { ClusterLabel, TaxonomyModel } from './taxonomy';

export interface ReviewFigure {
  key: string;
  caption: string;
  /** Thumbnail path relative to the pack's root (thumbs/<key>.jpg), or null when the staged image was missing. */
  thumb: string | null;
  distance: number;
}

export interface ReviewCluster {
  clusterId: number;
  /** Sample figures assigned to this cluster (all of them, not only those shown). */
  members: number;
  figures: ReviewFigure[];
  labels: ClusterLabel | null;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.1rem}
nav a{margin-right:1rem}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;vertical-align:top;text-align:left}
.strip img{height:64px;margin-right:4px;border:1px solid #ccc;background:#fff}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1rem}
figure{margin:0;padding:.5rem;background:#fff;border:1px solid #ddd}
figure img{max-width:100%;display:block;margin:0 auto .4rem}
figcaption{font-size:.8rem;line-height:1.3;max-height:12em;overflow:auto}
.key{font-family:monospace;font-size:.75rem;color:#666}
.labels{font-size:.85rem;background:#eef;padding:.4rem .6rem;display:inline-block}
#image-check{font-size:.8rem;color:#666}
`;

const IMAGE_CHECK = `<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var el = document.getElementById('image-check');
  el.setAttribute('data-loaded', String(ok));
  el.setAttribute('data-total', String(imgs.length));
  el.textContent = ok + ' of ' + imgs.length + ' images loaded';
});
</script>`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>
${body}
<p id="image-check" data-loaded="" data-total="">images not checked yet</p>
${IMAGE_CHECK}
</body></html>
`;
}

function labelsHtml(l: ClusterLabel | null): string {
  if (!l || (l.panel_type === '' && l.global_class.length === 0)) return '<span class="labels">not labelled yet</span>';
  return `<span class="labels">${escapeHtml(l.panel_type)} / ${escapeHtml(l.panel_subtype)}; global: ${escapeHtml(l.global_class.join(', '))}; local: ${escapeHtml(l.local_class.join(', '))}</span>`;
}

const clusterFile = (id: number) => `clusters/${id}.html`;
const src = (thumb: string, fromCluster: boolean) =>
  (fromCluster ? '../' : '') + thumb.split('/').map(encodeURIComponent).join('/');

export function renderIndex(
  model: TaxonomyModel,
  clusters: ReviewCluster[],
  info: { samples: number; labelsFile: string },
): string {
  const rows = clusters
    .map((c) => {
      const strip = c.figures
        .filter((f) => f.thumb)
        .slice(0, 4)
        .map((f) => `<img src="${escapeHtml(src(f.thumb!, false))}" alt="${escapeHtml(f.key)}">`)
        .join('');
      return `<tr><td><a href="${clusterFile(c.clusterId)}">cluster ${c.clusterId}</a></td><td>${c.members}</td><td class="strip">${strip}</td><td>${labelsHtml(c.labels)}</td></tr>`;
    })
    .join('\n');
  return page(
    `taxonomy ${model.version}: review`,
    `<h1>Taxonomy ${escapeHtml(model.version)}: expert review</h1>
<p>${clusters.length} clusters, ${info.samples} sample figures. Provenance: <span class="key">${escapeHtml(model.createdFrom)}</span></p>
<p>Fill <a href="${escapeHtml(info.labelsFile)}">${escapeHtml(info.labelsFile)}</a> (the format of cluster_labels.json: for every cluster,
panel_type <code>single</code> or <code>multiple</code>, a panel_subtype, one or more global_class and local_class values), then import it:
<code>taxonomy import-labels --taxonomy &lt;artifact&gt; --labels ${escapeHtml(info.labelsFile)}</code>.</p>
<table><thead><tr><th>cluster</th><th>sample figures</th><th>nearest to the centroid</th><th>labels</th></tr></thead>
<tbody>
${rows}
</tbody></table>`,
  );
}

export function renderCluster(
  model: TaxonomyModel,
  c: ReviewCluster,
  nav: { prev: number | null; next: number | null },
): string {
  const figures = c.figures
    .map((f) => {
      const img = f.thumb
        ? `<img src="${escapeHtml(src(f.thumb, true))}" alt="${escapeHtml(f.key)}" loading="eager">`
        : '<p>(image missing)</p>';
      return `<figure>${img}<div class="key">${escapeHtml(f.key)} · d=${f.distance.toFixed(3)}</div><figcaption>${escapeHtml(f.caption || '(no caption)')}</figcaption></figure>`;
    })
    .join('\n');
  const link = (id: number | null, text: string) => (id === null ? '' : `<a href="${id}.html">${text}</a>`);
  return page(
    `taxonomy ${model.version}: cluster ${c.clusterId}`,
    `<nav><a href="../index.html">all clusters</a>${link(nav.prev, '&larr; previous')}${link(nav.next, 'next &rarr;')}</nav>
<h1>Cluster ${c.clusterId}</h1>
<p>${c.members} sample figures in this cluster; the ${c.figures.length} nearest to its centroid are shown. Current labels: ${labelsHtml(c.labels)}</p>
<div class="grid">
${figures}
</div>`,
  );
}

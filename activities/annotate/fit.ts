/**
 * Fitting the taxonomy's geometry in plain TypeScript: PCA (covariance + symmetric eigendecomposition) and
 * mini-batch k-means with k-means++ initialisation, both seeded and deterministic.
 *
 * Upstream (docs/annotation.md) fits sklearn PCA(n_components=45; the paper says 25) on every DINOv2 feature,
 * then KMeans(2000). Here the fit runs on a seeded sample of a release's embeddings (taxonomy-activity.ts).
 *
 * Determinism: one JS thread, IEEE doubles, only +-*÷ and Math.sqrt (correctly rounded by the spec; no
 * Math.hypot/log/exp, whose last bits may differ between engines) and a fully specified PRNG (mulberry32), so the
 * same sample and seed give bit-identical models on every machine.
 */
import { mulberry32 } from './tiny-vit';

/** Row-major n x d matrix. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float32Array | Float64Array;
}

export interface PcaModel {
  mean: number[];
  /** [k][d], unit length, by decreasing explained variance; sign: the largest |entry| of each is positive. */
  components: number[][];
  /** Eigenvalues of the sample covariance (divided by n - 1, as sklearn's explained_variance_). */
  explainedVariance: number[];
  /** explainedVariance / total variance (trace of the covariance). */
  explainedVarianceRatio: number[];
}

export type Progress = (phase: string, done: number, of: number) => void;

/**
 * Eigendecomposition of a symmetric n x n matrix (row-major, not modified): Householder tridiagonalisation then
 * implicit QL (the EISPACK tred2/tql2 pair, as in JAMA). Returns eigenvalues ascending and the eigenvectors as rows.
 */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  if (a.length !== n * n) throw new Error(`symmetricEigen: ${a.length} values for ${n}x${n}`);
  const V = Float64Array.from(a); // row-major V[i][j] = V[i * n + j]
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 1) return { values: Float64Array.of(a[0]!), vectors: Float64Array.of(1) };

  // --- tred2: Householder reduction to tridiagonal form (d: diagonal, e: subdiagonal), V accumulates the transform.
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        V[j * n + i] = f;
        g = e[j]! + V[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j]! * d[k]!;
          e[k] = e[k]! + V[k * n + j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k * n + j] = V[k * n + j]! - (f * e[k]! + g * d[k]!);
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i]!;
    V[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1]! * V[k * n + j]!;
        for (let k = 0; k <= i; k++) V[k * n + j] = V[k * n + j]! - g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j]!;
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;

  // --- tql2: implicit QL on the tridiagonal matrix. W is V column-major, so column updates are contiguous.
  const W = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) W[c * n + r] = V[r * n + c]!;
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  const hyp = (x: number, y: number) => Math.sqrt(x * x + y * y);
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 200) throw new Error('symmetricEigen: QL did not converge');
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = hyp(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = hyp(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          const ci = i * n;
          const ci1 = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            const t = W[ci1 + k]!;
            W[ci1 + k] = s * W[ci + k]! + c * t;
            W[ci + k] = c * W[ci + k]! - s * t;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
  // Ascending, stable on ties (index order).
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[x]! - d[y]! || x - y);
  const values = Float64Array.from(order, (i) => d[i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => vectors.set(W.subarray(src * n, (src + 1) * n), dst * n));
  return { values, vectors };
}

/** PCA of the rows of `x`: mean, covariance (n - 1), top `components` eigenvectors. */
export function fitPca(x: Matrix, components: number, onProgress?: Progress): PcaModel {
  const { rows: n, cols: d, data } = x;
  if (n < 2) throw new Error(`fitPca: need at least 2 rows, got ${n}`);
  if (!Number.isInteger(components) || components < 1 || components > d)
    throw new Error(`fitPca: components must be 1..${d}, got ${components}`);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] = mean[j]! + data[i * d + j]!;
  for (let j = 0; j < d; j++) mean[j] = mean[j]! / n;
  // Upper triangle of (X - mean)^T (X - mean), accumulated row by row.
  const cov = new Float64Array(d * d);
  const c = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) c[j] = data[i * d + j]! - mean[j]!;
    for (let a = 0; a < d; a++) {
      const ca = c[a]!;
      if (ca === 0) continue;
      const row = a * d;
      for (let b = a; b < d; b++) cov[row + b] = cov[row + b]! + ca * c[b]!;
    }
    if (onProgress && (i + 1) % 2048 === 0) onProgress('pca-covariance', i + 1, n);
  }
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const v = cov[a * d + b]! / (n - 1);
      cov[a * d + b] = v;
      cov[b * d + a] = v;
    }
  }
  let total = 0;
  for (let a = 0; a < d; a++) total += cov[a * d + a]!;
  onProgress?.('pca-eigen', 0, 1);
  const { values, vectors } = symmetricEigen(cov, d);
  const comps: number[][] = [];
  const explainedVariance: number[] = [];
  for (let k = 0; k < components; k++) {
    const src = d - 1 - k; // descending
    const v = Array.from(vectors.subarray(src * d, (src + 1) * d));
    let big = 0;
    for (let j = 1; j < d; j++) if (Math.abs(v[j]!) > Math.abs(v[big]!)) big = j;
    comps.push(v[big]! < 0 ? v.map((t) => -t + 0) : v.map((t) => t + 0)); // + 0: no -0 in the artifact
    explainedVariance.push(Math.max(0, values[src]!));
  }
  return {
    mean: Array.from(mean),
    components: comps,
    explainedVariance,
    explainedVarianceRatio: explainedVariance.map((v) => (total > 0 ? v / total : 0)),
  };
}

/** y = components · (x - mean) for every row: n x k. */
export function pcaTransform(pca: Pick<PcaModel, 'mean' | 'components'>, x: Matrix): Matrix {
  const { rows: n, cols: d, data } = x;
  const k = pca.components.length;
  if (pca.mean.length !== d) throw new Error(`pcaTransform: model has ${pca.mean.length} dims, data ${d}`);
  const flat = new Float64Array(k * d);
  pca.components.forEach((row, i) => flat.set(row, i * d));
  const mean = Float64Array.from(pca.mean);
  const out = new Float64Array(n * k);
  const c = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) c[j] = data[i * d + j]! - mean[j]!;
    for (let a = 0; a < k; a++) {
      let s = 0;
      const row = a * d;
      for (let j = 0; j < d; j++) s += flat[row + j]! * c[j]!;
      out[i * k + a] = s;
    }
  }
  return { rows: n, cols: k, data: out };
}

export interface KMeansOptions {
  k: number;
  seed?: number;
  /** Points per mini-batch step (default 1024, as sklearn's MiniBatchKMeans). */
  batchSize?: number;
  /** Upper bound on steps, as full passes over the data (default 100 epochs). */
  maxEpochs?: number;
  /** Stop after this many steps without improving the smoothed batch inertia (default 10, as sklearn). */
  maxNoImprovement?: number;
  /** Points the k-means++ initialisation sees (default max(3 * batchSize, 3 * k), capped at n). */
  initSize?: number;
  onProgress?: Progress;
}

export interface KMeansModel {
  centroids: number[][];
  /** Nearest centroid of every input row, and the sum of squared distances to it. */
  labels: Int32Array;
  inertia: number;
  /** Rows per centroid after the final assignment. */
  sizes: number[];
  steps: number;
}

/** Index of the nearest of k centroids (flat, k x p, with squared norms `cn`) to row `off` of `x`; ties to the lowest. */
function nearest(
  x: Float64Array | Float32Array,
  off: number,
  p: number,
  c: Float64Array,
  cn: Float64Array,
  k: number,
): { index: number; d2: number } {
  let xn = 0;
  for (let j = 0; j < p; j++) xn += x[off + j]! * x[off + j]!;
  let best = 0;
  let bestD = Infinity;
  for (let a = 0; a < k; a++) {
    let dot = 0;
    const row = a * p;
    for (let j = 0; j < p; j++) dot += x[off + j]! * c[row + j]!;
    const d2 = cn[a]! - 2 * dot;
    if (d2 < bestD) {
      bestD = d2;
      best = a;
    }
  }
  return { index: best, d2: Math.max(0, bestD + xn) };
}

function sqDist(x: ArrayLike<number>, xo: number, y: ArrayLike<number>, yo: number, p: number): number {
  let s = 0;
  for (let j = 0; j < p; j++) {
    const t = x[xo + j]! - y[yo + j]!;
    s += t * t;
  }
  return s;
}

/** k-means++ (greedy, 2 + floor(ln k) candidates per centre, as sklearn) on the rows `idx` of x. */
function kmeansPlusPlus(x: Matrix, idx: Int32Array, k: number, rand: () => number): Float64Array {
  const p = x.cols;
  const m = idx.length;
  const centers = new Float64Array(k * p);
  let lnK = 0;
  for (let t = k; t >= 2.718281828459045; t /= 2.718281828459045) lnK++; // floor(ln k) without Math.log
  const trials = 2 + lnK;
  const first = idx[Math.floor(rand() * m)]!;
  for (let j = 0; j < p; j++) centers[j] = x.data[first * p + j]!;
  const closest = new Float64Array(m);
  for (let i = 0; i < m; i++) closest[i] = sqDist(x.data, idx[i]! * p, centers, 0, p);
  const cum = new Float64Array(m);
  const cand = new Float64Array(m);
  for (let c = 1; c < k; c++) {
    let total = 0;
    for (let i = 0; i < m; i++) cum[i] = total += closest[i]!;
    let bestPot = Infinity;
    let bestIdx = -1;
    let bestDist: Float64Array | null = null;
    for (let t = 0; t < trials; t++) {
      let pick: number;
      if (total > 0) {
        const r = rand() * total;
        let lo = 0;
        let hi = m - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (cum[mid]! > r) hi = mid;
          else lo = mid + 1;
        }
        pick = lo;
      } else pick = Math.floor(rand() * m); // every point sits on a centre already
      let pot = 0;
      for (let i = 0; i < m; i++) {
        const d2 = Math.min(closest[i]!, sqDist(x.data, idx[i]! * p, x.data, idx[pick]! * p, p));
        cand[i] = d2;
        pot += d2;
      }
      if (pot < bestPot) {
        bestPot = pot;
        bestIdx = pick;
        bestDist = Float64Array.from(cand);
      }
    }
    for (let j = 0; j < p; j++) centers[c * p + j] = x.data[idx[bestIdx]! * p + j]!;
    closest.set(bestDist!);
  }
  return centers;
}

/**
 * Mini-batch k-means (Sculley 2010, sklearn's MiniBatchKMeans update): seeded k-means++ on an init sample, then
 * steps that assign a random batch and move each centre to the running mean of the points it has been given.
 * Stops after `maxNoImprovement` steps without improving the smoothed batch inertia, or `maxEpochs`. A final
 * full pass assigns every row.
 */
export function fitMiniBatchKMeans(x: Matrix, opts: KMeansOptions): KMeansModel {
  const { rows: n, cols: p } = x;
  const k = opts.k;
  if (!Number.isInteger(k) || k < 1) throw new Error(`k-means: bad k ${k}`);
  if (n < k) throw new Error(`k-means: ${n} rows cannot make ${k} clusters`);
  const batch = Math.min(opts.batchSize ?? 1024, n);
  const rand = mulberry32(opts.seed ?? 0);
  const initSize = Math.min(n, opts.initSize ?? Math.max(3 * batch, 3 * k));
  // Seeded init sample without replacement (partial Fisher-Yates).
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < initSize; i++) {
    const j = i + Math.floor(rand() * (n - i));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  opts.onProgress?.('kmeans-init', 0, k);
  const centers = kmeansPlusPlus(x, perm.subarray(0, initSize), k, rand);
  const counts = new Float64Array(k);
  const cn = new Float64Array(k);
  const norms = () => {
    for (let a = 0; a < k; a++) {
      let s = 0;
      for (let j = 0; j < p; j++) s += centers[a * p + j]! * centers[a * p + j]!;
      cn[a] = s;
    }
  };
  const maxSteps = Math.max(1, Math.ceil(((opts.maxEpochs ?? 100) * n) / batch));
  const patience = opts.maxNoImprovement ?? 10;
  let ewa = -1;
  let ewaMin = Infinity;
  let noImprovement = 0;
  const alpha = Math.min(1, (2 * batch) / (n + 1)); // sklearn's smoothing
  const members = new Int32Array(batch);
  const assign = new Int32Array(batch);
  const sums = new Float64Array(k * p);
  const seen = new Float64Array(k);
  let step = 0;
  for (; step < maxSteps; step++) {
    norms();
    let inertia = 0;
    sums.fill(0);
    seen.fill(0);
    for (let b = 0; b < batch; b++) {
      const i = Math.floor(rand() * n);
      members[b] = i;
      const { index, d2 } = nearest(x.data, i * p, p, centers, cn, k);
      assign[b] = index;
      inertia += d2;
      seen[index] = seen[index]! + 1;
      for (let j = 0; j < p; j++) sums[index * p + j] = sums[index * p + j]! + x.data[i * p + j]!;
    }
    for (let a = 0; a < k; a++) {
      const m = seen[a]!;
      if (m === 0) continue;
      const total = counts[a]! + m;
      for (let j = 0; j < p; j++) centers[a * p + j] = (centers[a * p + j]! * counts[a]! + sums[a * p + j]!) / total;
      counts[a] = total;
    }
    inertia /= batch;
    ewa = ewa < 0 ? inertia : ewa * (1 - alpha) + inertia * alpha;
    if (ewa < ewaMin) {
      ewaMin = ewa;
      noImprovement = 0;
    } else if (++noImprovement >= patience) {
      step++;
      break;
    }
    if (opts.onProgress && step % 16 === 0) opts.onProgress('kmeans', step, maxSteps);
  }
  norms();
  const labels = new Int32Array(n);
  const sizes = new Array<number>(k).fill(0);
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    const { index, d2 } = nearest(x.data, i * p, p, centers, cn, k);
    labels[i] = index;
    sizes[index]!++;
    inertia += d2;
  }
  const centroids = Array.from({ length: k }, (_, a) => Array.from(centers.subarray(a * p, (a + 1) * p), (v) => v + 0));
  return { centroids, labels, inertia, sizes, steps: step };
}

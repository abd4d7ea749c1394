import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { exists, insideRoot, readJsonIfExists, sha256Hex, writeJsonAtomic } from '../common/files';
import { md5File, type ObjectCache } from '../fetch/cache';
import { downloadLimiter, withRetries } from '../fetch/retry';
import { SourceError, type ListedPrefixes, type PmcSource, type SourceObject, type GetOptions } from '../fetch/source';
import type { PlannedArticle } from '../plan/plan';
import { extractPackage, type PackageLimits, type RejectedEntry } from './package';
import type { LegacyTransport } from './transport';

/** What one package yielded: recorded beside the unit and in the shared cache, so a rerun needs no download. */
export interface PackageIndex {
  package: string;
  updated: string | null;
  xml: { name: string; md5: string; bytes: number } | null;
  images: { name: string; md5: string; bytes: number }[];
  rejected: RejectedEntry[];
}

export interface LegacyFetchContext {
  transport: LegacyTransport;
  cache: ObjectCache;
  /** <dataDir>/cache/packages: package indexes keyed by package path and Last Updated. */
  packageIndexDir: string;
  unitDir: string;
  limits: PackageLimits;
  signal?: AbortSignal;
}

function prefixOf(a: Pick<PlannedArticle, 'pmcid' | 'version'>): string {
  return `${a.pmcid}.${a.version}`;
}

export function legacyXmlPath(unitDir: string, a: Pick<PlannedArticle, 'pmcid' | 'version'>): string {
  return path.join(unitDir, 'articles', `${prefixOf(a)}.xml`);
}

export function legacyMediaPath(unitDir: string, a: Pick<PlannedArticle, 'pmcid' | 'version'>, name: string): string {
  return insideRoot(path.join(unitDir, 'media'), `${prefixOf(a)}/${name}`);
}

function sidecarPath(unitDir: string, a: PlannedArticle): string {
  return path.join(unitDir, 'packages', `${prefixOf(a)}.json`);
}

function indexPath(dir: string, pkg: { path: string; updated: string | null }): string {
  const h = sha256Hex(`${pkg.path}\n${pkg.updated ?? ''}`);
  return path.join(dir, h.slice(0, 2), `${h}.json`);
}

async function intact(file: string, md5: string): Promise<boolean> {
  if (!(await exists(file))) return false;
  return (await md5File(file)) === md5;
}

/** Every member the index lists is in place with its md5. */
async function placedIntact(ctx: LegacyFetchContext, a: PlannedArticle, index: PackageIndex): Promise<boolean> {
  if (index.xml && !(await intact(legacyXmlPath(ctx.unitDir, a), index.xml.md5))) return false;
  for (const img of index.images) if (!(await intact(legacyMediaPath(ctx.unitDir, a, img.name), img.md5))) return false;
  return true;
}

function pkgOf(a: PlannedArticle): { path: string; updated: string | null } {
  if (!a.package) throw new Error(`${prefixOf(a)} was not planned from the legacy list (no package)`);
  return a.package;
}

/**
 * Puts one article's nXML and images in place from its package: already there (a rerun) -> 'reused'; known to the
 * shared cache (same package path and Last Updated, every member's md5 cached) -> 'cached', no download;
 * otherwise downloaded, stream-extracted and verified -> 'fetched'. Retryable failures are retried here with
 * backoff, then escape; permanent ones (550/404, 403, a package still damaged after the retries) are SourceErrors.
 */
export async function fetchLegacyArticle(
  ctx: LegacyFetchContext,
  a: PlannedArticle,
): Promise<{ index: PackageIndex; outcome: 'fetched' | 'reused' | 'cached' }> {
  const pkg = pkgOf(a);
  const sidecar = sidecarPath(ctx.unitDir, a);
  const placed = await readJsonIfExists<PackageIndex>(sidecar);
  if (placed && placed.package === pkg.path && placed.updated === pkg.updated && (await placedIntact(ctx, a, placed)))
    return { index: placed, outcome: 'reused' };

  const cachedIndexFile = indexPath(ctx.packageIndexDir, pkg);
  const cached = await readJsonIfExists<PackageIndex>(cachedIndexFile);
  if (cached) {
    let all = true;
    if (cached.xml) all &&= await ctx.cache.restore(cached.xml.md5, legacyXmlPath(ctx.unitDir, a));
    for (const img of cached.images)
      all &&= await ctx.cache.restore(img.md5, legacyMediaPath(ctx.unitDir, a, img.name));
    if (all) {
      await writeJsonAtomic(sidecar, cached);
      return { index: cached, outcome: 'cached' };
    }
  }

  const stageDir = path.join(
    ctx.unitDir,
    '.staging',
    `${prefixOf(a)}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
  );
  try {
    const extracted = await withRetries(
      async () => {
        await fs.rm(stageDir, { recursive: true, force: true });
        return downloadLimiter().run(
          async () => extractPackage(await ctx.transport.open(pkg.path, ctx.signal), pkg.path, stageDir, ctx.limits),
          ctx.signal,
        );
      },
      { signal: ctx.signal },
    );
    // Whole and verified: only now does anything take its final name.
    const index: PackageIndex = {
      package: pkg.path,
      updated: pkg.updated,
      xml: extracted.xml ? { name: extracted.xml.name, md5: extracted.xml.md5, bytes: extracted.xml.bytes } : null,
      images: extracted.images
        .map((m) => ({ name: m.name, md5: m.md5, bytes: m.bytes }))
        .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)),
      rejected: extracted.rejected,
    };
    const moves: [string, string, string][] = [];
    if (extracted.xml) moves.push([extracted.xml.staged, legacyXmlPath(ctx.unitDir, a), extracted.xml.md5]);
    for (const m of extracted.images) moves.push([m.staged, legacyMediaPath(ctx.unitDir, a, m.name), m.md5]);
    for (const [from, to, md5] of moves) {
      await fs.mkdir(path.dirname(to), { recursive: true });
      await fs.rename(from, to);
      await ctx.cache.store(md5, to);
    }
    await writeJsonAtomic(cachedIndexFile, index);
    await writeJsonAtomic(sidecar, index);
    return { index, outcome: 'fetched' };
  } finally {
    await fs.rm(stageDir, { recursive: true, force: true });
  }
}

/**
 * The legacy tree as a PmcSource for the stages that fetch by key (the media stage, when an image extracted by the
 * fetch stage went missing): `PMC<id>.<v>/<name>` is read out of that article's package, `PMC<id>.<v>/PMC<id>.<v>.xml`
 * is its nXML. Listing is not possible on the legacy tree.
 */
export class LegacyPmcSource implements PmcSource {
  readonly description: string;
  private readonly byPrefix: Map<string, PlannedArticle>;
  constructor(
    private readonly transport: LegacyTransport,
    articles: readonly PlannedArticle[],
    private readonly limits: PackageLimits,
    private readonly stageRoot: string,
  ) {
    this.description = transport.description;
    this.byPrefix = new Map(articles.map((a) => [prefixOf(a), a]));
  }

  async get(key: string, opts: GetOptions = {}): Promise<SourceObject> {
    const slash = key.indexOf('/');
    const a = slash > 0 ? this.byPrefix.get(key.slice(0, slash)) : undefined;
    if (!a?.package) throw new SourceError(`${key}: no planned legacy package holds it`, 'not-found', false, key);
    const name = key.slice(slash + 1);
    const stageDir = path.join(this.stageRoot, `get-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    try {
      const extracted = await extractPackage(
        await this.transport.open(a.package.path, opts.signal),
        a.package.path,
        stageDir,
        this.limits,
      );
      const member = name === `${prefixOf(a)}.xml` ? extracted.xml : extracted.images.find((m) => m.name === name);
      if (!member) throw new SourceError(`${key}: not in package ${a.package.path}`, 'not-found', false, key);
      if (opts.expectedMd5 && member.md5 !== opts.expectedMd5.toLowerCase()) {
        throw new SourceError(
          `md5 mismatch for ${key}: expected ${opts.expectedMd5}, got ${member.md5} (the package changed?)`,
          'checksum',
          true,
          key,
        );
      }
      return { key, body: await fs.readFile(member.staged), etag: member.md5 };
    } finally {
      await fs.rm(stageDir, { recursive: true, force: true });
    }
  }

  async list(prefix: string): Promise<ListedPrefixes> {
    throw new SourceError(`the legacy tree cannot be listed (${prefix})`, 'not-found', false, prefix);
  }
}

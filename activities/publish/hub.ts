/**
 * Publishing a release to a Hugging Face Hub dataset repo with @huggingface/hub, without Temporal: planning (repo
 * created if missing, tree compared, commits cut) and one commit per planned batch. The Temporal adapters are in
 * hub-activity.ts; the token comes in through `HubSession` and is never written anywhere.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  commitIter,
  createRepo,
  datasetInfo,
  HubApiError,
  listFiles,
  pathsInfo,
  type CommitOperation,
} from '@huggingface/hub';
import type { HubPublishConfig, ReleaseInput } from '../../config/release';
import { readJson, writeFileAtomic, writeJsonAtomic } from '../common/files';
import { releaseTree } from '../common/sync';
import { layoutOf } from '../common/stage';
import { validateCard } from './card-rules';
import { collectReleaseFiles } from './files';
import { contentIdsOfFile, type ContentIds } from './hashes';
import { HubPublishError, type HubFetch } from './hub-http';
import {
  checkRepoLimits,
  cutBatches,
  sameContent,
  type PlannedBatch,
  type PlannedFile,
  type RemoteEntry,
} from './hub-plan';

export interface HubSession {
  /** From the worker's environment only. */
  token: string;
  endpoint: string;
  repoId: string;
  http: HubFetch;
  signal?: AbortSignal;
}

export type HubPhase = 'reading-repo' | 'hashing' | 'preuploading' | 'uploadingLargeFiles' | 'committing' | 'done';

export interface HubProgress {
  phase: HubPhase;
  files: number;
  bytes: number;
  /** Bytes hashed or uploaded so far in this phase (an estimate from the client's per-file progress). */
  bytesDone: number;
}

/** The plan as written to `<release>/publish/hub-plan-<planId>.json`; only its summary travels in history. */
export interface HubPlanFile {
  planId: string;
  releaseId: string;
  repoId: string;
  endpoint: string;
  /** The branch head the tree was compared at. */
  baseCommit: string;
  files: number;
  unchanged: number;
  batches: PlannedBatch[];
}

export interface HubPlanSummary {
  planId: string;
  repoId: string;
  /** The repo's web URL. */
  target: string;
  createdRepo: boolean;
  baseCommit: string;
  /** Files of the release (the card included). */
  files: number;
  unchanged: number;
  toUpload: number;
  bytesToUpload: number;
  batches: { files: number; bytes: number }[];
  /** Files in the repo that this release does not publish (left alone). */
  extraRemoteFiles: number;
}

export interface CommitBatchResult {
  batch: number;
  /** False when every file of the batch was already in the repo with the same content (e.g. a commit whose answer was lost). */
  committed: boolean;
  /** The new commit, or the head the batch was found complete at. */
  commitOid: string;
  files: number;
  bytes: number;
  alreadyPresent: number;
}

const BRANCH = 'main';

function hubConfig(release: ReleaseInput): HubPublishConfig {
  if (release.publish.kind !== 'hub')
    throw new HubPublishError('ConfigError', `publish.kind is ${release.publish.kind}, not hub`);
  return release.publish;
}

export function repoUrl(endpoint: string, repoId: string): string {
  return `${endpoint}/datasets/${repoId}`;
}

function creds(s: HubSession) {
  return { accessToken: s.token, hubUrl: s.endpoint, fetch: s.http.fetch };
}

/** The branch head, from `GET /api/datasets/{repo}/revision/main` (expand=sha). */
export async function headOf(s: HubSession): Promise<string> {
  const info = await datasetInfo({ name: s.repoId, revision: BRANCH, additionalFields: ['sha'], ...creds(s) });
  if (!info.sha) throw new HubPublishError('HubError', `the Hub gave no head commit for ${s.repoId}`);
  return info.sha;
}

/** Creates the dataset repo when it does not exist (409 from a concurrent creation is fine); returns its head. */
export async function ensureRepo(
  s: HubSession,
  visibility: 'private' | 'public',
): Promise<{ created: boolean; head: string }> {
  try {
    return { created: false, head: await headOf(s) };
  } catch (err) {
    if (!(err instanceof HubApiError && err.statusCode === 404)) throw err;
  }
  let created = true;
  try {
    await createRepo({ repo: { type: 'dataset', name: s.repoId }, visibility, ...creds(s) });
  } catch (err) {
    if (!(err instanceof HubApiError && err.statusCode === 409)) throw err;
    created = false;
  }
  return { created, head: await headOf(s) };
}

function toRemote(e: {
  path: string;
  type: string;
  size: number;
  oid?: string;
  lfs?: { oid: string; size: number };
}): RemoteEntry {
  return {
    path: e.path,
    type: e.type,
    size: e.size,
    oid: e.oid,
    lfs: e.lfs ? { oid: e.lfs.oid, size: e.lfs.size } : undefined,
  };
}

/** Every file of the repo at `revision` (the tree listing, followed page by page). */
export async function remoteTree(s: HubSession, revision: string): Promise<Map<string, RemoteEntry>> {
  const out = new Map<string, RemoteEntry>();
  for await (const e of listFiles({
    repo: { type: 'dataset', name: s.repoId },
    recursive: true,
    revision,
    ...creds(s),
  })) {
    if (e.type === 'file') out.set(e.path, toRemote({ ...e, oid: e.oid }));
  }
  return out;
}

/** Just these paths at `revision` (paths-info), for the re-check before each commit. */
export async function remotePaths(
  s: HubSession,
  paths: readonly string[],
  revision: string,
): Promise<Map<string, RemoteEntry>> {
  const out = new Map<string, RemoteEntry>();
  for (let i = 0; i < paths.length; i += 100) {
    const infos = await pathsInfo({
      repo: { type: 'dataset', name: s.repoId },
      paths: paths.slice(i, i + 100),
      revision,
      ...creds(s),
    });
    for (const e of infos) if (e.type === 'file') out.set(e.path, toRemote(e));
  }
  return out;
}

function planFilePath(release: ReleaseInput, planId: string): string {
  if (!/^[0-9a-f]{16}$/.test(planId)) throw new HubPublishError('ConfigError', `bad plan id ${JSON.stringify(planId)}`);
  return path.join(layoutOf(release).root, 'publish', `hub-plan-${planId}.json`);
}

/** Hashes a local file once per process run, reporting progress. */
function idsCache(root: string, onBytes: (n: number) => void): (f: PlannedFile) => () => Promise<ContentIds> {
  const cache = new Map<string, Promise<ContentIds>>();
  return (f) => () => {
    let p = cache.get(f.source);
    if (!p) cache.set(f.source, (p = contentIdsOfFile(path.join(root, f.source), onBytes)));
    return p;
  };
}

/**
 * Plans a publish: writes the card to `<release>/publish/README.md`, creates the repo if missing, compares every
 * release file with the repo's tree and cuts what differs into commits (the card last). Nothing is uploaded here.
 */
export async function planHub(
  release: ReleaseInput,
  s: HubSession,
  onProgress: (p: HubProgress) => void = () => undefined,
): Promise<HubPlanSummary> {
  const cfg = hubConfig(release);
  const layout = layoutOf(release);
  const { files, card } = await collectReleaseFiles(release);
  const cardProblems = validateCard(card);
  if (cardProblems.length > 0)
    throw new HubPublishError(
      'HubRejected',
      `the dataset card breaks the Hub's metadata rules: ${cardProblems.join('; ')}`,
    );
  const cardFile = path.join(layout.root, 'publish', 'README.md');
  const existing = await fs.readFile(cardFile, 'utf8').catch(() => null);
  if (existing !== card) await writeFileAtomic(cardFile, card);
  // With a store, sizes come from it, and only files without a recorded sha256 (sizes.json, metadata) are pulled
  // here to be hashed: the shards travel to this host batch by batch, when they are committed.
  const stored = releaseTree(release);
  const storedSizes = new Map<string, number>();
  if (stored.remote) {
    for (const dir of new Set(files.filter((f) => f.sha256).map((f) => path.dirname(f.source))))
      for (const o of await stored.storedFiles(dir)) storedSizes.set(o.file, o.bytes);
    await stored.pullAll(files.filter((f) => !f.sha256).map((f) => ({ file: f.source })));
  }
  const local: PlannedFile[] = [];
  for (const f of [...files, { repoPath: 'README.md', source: cardFile }]) {
    const bytes = storedSizes.get(f.source) ?? (await fs.stat(f.source)).size;
    local.push({
      repoPath: f.repoPath,
      source: path.relative(layout.root, f.source),
      bytes,
      ...('sha256' in f && f.sha256 ? { sha256: f.sha256 } : {}),
    });
  }
  const localPaths = new Set(local.map((f) => f.repoPath));
  const limits = (paths: Iterable<string>) => {
    const problems = checkRepoLimits(paths);
    if (problems.length > 0)
      throw new HubPublishError(
        'HubLimits',
        `publishing ${cfg.repoId} would pass the Hub's repository limits: ${problems.join('; ')}`,
      );
  };
  limits(localPaths); // before touching the Hub; again below with the repo's own files
  const totalBytes = local.reduce((n, f) => n + f.bytes, 0);
  onProgress({ phase: 'reading-repo', files: local.length, bytes: totalBytes, bytesDone: 0 });
  const { created, head } = await ensureRepo(s, cfg.private ? 'private' : 'public');
  const tree = await remoteTree(s, head);
  const ids = idsCache(layout.root, (n) =>
    onProgress({ phase: 'hashing', files: local.length, bytes: totalBytes, bytesDone: n }),
  );
  const changed: PlannedFile[] = [];
  for (const f of local) {
    if (await sameContent(f, tree.get(f.repoPath), ids(f))) continue;
    changed.push(f);
  }
  limits([...tree.keys(), ...localPaths]);
  const batches = cutBatches(changed, cfg);
  const planId = createHash('sha256')
    .update(JSON.stringify({ releaseId: release.releaseId, repoId: cfg.repoId, endpoint: cfg.endpoint, batches }))
    .digest('hex')
    .slice(0, 16);
  const plan: HubPlanFile = {
    planId,
    releaseId: release.releaseId,
    repoId: cfg.repoId,
    endpoint: cfg.endpoint,
    baseCommit: head,
    files: local.length,
    unchanged: local.length - changed.length,
    batches,
  };
  await writeJsonAtomic(planFilePath(release, planId), plan);
  // The commits may run on another io host: the plan and the card go to the store.
  await stored.push(planFilePath(release, planId));
  await stored.push(cardFile);
  return {
    planId,
    repoId: cfg.repoId,
    target: repoUrl(cfg.endpoint, cfg.repoId),
    createdRepo: created,
    baseCommit: head,
    files: local.length,
    unchanged: plan.unchanged,
    toUpload: changed.length,
    bytesToUpload: changed.reduce((n, f) => n + f.bytes, 0),
    batches: batches.map((b) => ({ files: b.files.length, bytes: b.bytes })),
    extraRemoteFiles: [...tree.keys()].filter((p) => !localPaths.has(p) && p !== '.gitattributes').length,
  };
}

export async function readHubPlan(release: ReleaseInput, planId: string): Promise<HubPlanFile> {
  await releaseTree(release).pull(planFilePath(release, planId));
  return readJson<HubPlanFile>(planFilePath(release, planId));
}

/**
 * One planned commit. The branch head is read first and the batch's paths are re-checked at that head: files already
 * there with the same content are dropped (a rerun after a commit whose answer was lost commits nothing), and the
 * commit carries that head as `parentCommit`, so a concurrent writer makes it fail (412) instead of being overwritten.
 */
export async function commitPlannedBatch(
  release: ReleaseInput,
  planId: string,
  batchIndex: number,
  s: HubSession,
  onProgress: (p: HubProgress) => void = () => undefined,
): Promise<CommitBatchResult> {
  hubConfig(release);
  const layout = layoutOf(release);
  const plan = await readHubPlan(release, planId);
  const batch = plan.batches[batchIndex];
  if (!batch) throw new HubPublishError('ConfigError', `plan ${planId} has no batch ${batchIndex}`);
  onProgress({ phase: 'reading-repo', files: batch.files.length, bytes: batch.bytes, bytesDone: 0 });
  const head = await headOf(s);
  const remote = await remotePaths(
    s,
    batch.files.map((f) => f.repoPath),
    head,
  );
  // With a store, this batch's files (and only them) come to this host now, and go again after the commit.
  const tree = releaseTree(release);
  const pulled = batch.files.map((f) => ({ file: path.join(layout.root, f.source), bytes: f.bytes }));
  await tree.pullAll(pulled);
  try {
    const ids = idsCache(layout.root, (n) =>
      onProgress({ phase: 'hashing', files: batch.files.length, bytes: batch.bytes, bytesDone: n }),
    );
    const pending: PlannedFile[] = [];
    for (const f of batch.files) if (!(await sameContent(f, remote.get(f.repoPath), ids(f)))) pending.push(f);
    if (pending.length === 0) {
      onProgress({ phase: 'done', files: 0, bytes: 0, bytesDone: 0 });
      return {
        batch: batchIndex,
        committed: false,
        commitOid: head,
        files: 0,
        bytes: 0,
        alreadyPresent: batch.files.length,
      };
    }
    const sizes = new Map<string, number>();
    const operations: CommitOperation[] = [];
    for (const f of pending) {
      const abs = path.join(layout.root, f.source);
      sizes.set(f.repoPath, (await fs.stat(abs)).size);
      operations.push({ operation: 'addOrUpdate', path: f.repoPath, content: pathToFileURL(abs) });
    }
    const bytes = [...sizes.values()].reduce((n, b) => n + b, 0);
    const done = new Map<string, number>();
    let phase: HubPhase = 'preuploading';
    const report = () =>
      onProgress({
        phase,
        files: pending.length,
        bytes,
        bytesDone: Math.round([...done].reduce((n, [p, frac]) => n + frac * (sizes.get(p) ?? 0), 0)),
      });
    const it = commitIter({
      repo: { type: 'dataset', name: s.repoId },
      operations,
      title: `${plan.releaseId}: commit ${batchIndex + 1} of ${plan.batches.length} (${pending.length} files)`,
      description: `biomedica-release ${plan.releaseId}, publish plan ${planId}, batch ${batchIndex}.`,
      branch: BRANCH,
      parentCommit: head,
      // Plain LFS (basic / multipart transfers): the Hub still accepts it for xet-enabled repos; see docs/publishing.md.
      useXet: false,
      abortSignal: s.signal,
      accessToken: s.token,
      hubUrl: s.endpoint,
      fetch: s.http.fetch,
    });
    let step = await it.next();
    while (!step.done) {
      const ev = step.value;
      if (ev.event === 'phase') {
        phase = ev.phase;
        done.clear();
      } else if (ev.event === 'fileProgress') {
        if (ev.state === 'error') throw new HubPublishError('HubError', `the Hub refused ${ev.path}`);
        // The client hashes the LFS files (sha256) before it uploads them, both inside its uploadingLargeFiles phase.
        const now: HubPhase = ev.state === 'hashing' ? 'hashing' : phase === 'hashing' ? 'uploadingLargeFiles' : phase;
        if (now !== phase) done.clear();
        phase = now;
        done.set(ev.path, ev.progress);
      }
      report();
      step = await it.next();
    }
    const out = step.value;
    if (!out?.commit?.oid) throw new HubPublishError('HubError', 'the Hub answered the commit without a commit id');
    onProgress({ phase: 'done', files: pending.length, bytes, bytesDone: bytes });
    return {
      batch: batchIndex,
      committed: true,
      commitOid: out.commit.oid,
      files: pending.length,
      bytes,
      alreadyPresent: batch.files.length - pending.length,
    };
  } finally {
    if (tree.remote) await Promise.all(pulled.map((f) => fs.rm(f.file, { force: true })));
  }
}

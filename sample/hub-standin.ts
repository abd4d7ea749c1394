/**
 * Loopback stand-in for the Hugging Face Hub: the HTTP API that @huggingface/hub 2.17.5 uses to publish a dataset
 * repo (see docs/publishing.md for the exact calls), with fault injection for tests.
 *
 * - `POST /api/repos/create` (409 when the repo exists; a new repo starts with a `.gitattributes` commit, as on the Hub)
 * - `GET /api/datasets/{ns}/{name}` and `/revision/{rev}` (repo info with `sha`, the branch head)
 * - `GET /api/datasets/{ns}/{name}/tree/{rev}[/{path}]?recursive=&expand=` (paginated with a `Link: rel="next"` header)
 * - `POST /api/datasets/{ns}/{name}/paths-info/{rev}`
 * - `POST /api/datasets/{ns}/{name}/preupload/{rev}` (uploadMode lfs for .gitattributes LFS patterns, files of
 *   10 MiB and more, and binary samples, else regular)
 * - `POST /datasets/{ns}/{name}.git/info/lfs/objects/batch` (basic transfer, or multipart above a threshold; objects
 *   already stored get no upload action; `xet` is never offered, so the client uses plain LFS)
 * - `PUT` presigned-style storage URLs (sha256 and size verified), multipart parts and completion
 * - `POST /api/datasets/{ns}/{name}/commit/{rev}` (NDJSON header / file / lfsFile / deletedFile; `parentCommit`
 *   checked with the Hub's 412 "A commit has happened since"; an LFS pointer to a missing object, a large or binary
 *   file sent as a regular one, and a README.md whose metadata breaks the Hub's rules are refused with 400)
 *
 * Every API call needs `Authorization: Bearer <token>` with an accepted token (401 otherwise). The stand-in never
 * stores or logs an Authorization value; only the `echoAuthorization` fault sends one back, to prove that the client
 * side scrubs it.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { validateCard } from '../activities/publish/card-rules';

export type StandinRoute =
  'create' | 'info' | 'revision' | 'tree' | 'paths-info' | 'preupload' | 'commit' | 'lfs-batch' | 'lfs-upload';

export interface HubFault {
  route: StandinRoute | 'any';
  /** Answer with this status instead (429 carries Retry-After and the Hub's commit-rate message; 5xx the Hub's error body). */
  status?: number;
  /**
   * Drop the connection without an answer: 'before' handling the request (nothing happens), or 'after' it (the
   * request takes effect, e.g. the commit is applied, but the client never hears of it).
   */
  drop?: 'before' | 'after';
  /** Wait this long before answering (or dropping). */
  delayMs?: number;
  /** How many matching requests this fault takes (default 1). */
  times?: number;
  /** For 429: the Retry-After seconds (default 1). */
  retryAfterSeconds?: number;
  /** A misbehaving server or proxy that echoes the request's Authorization header in its error body. */
  echoAuthorization?: boolean;
}

export interface HubStandinOptions {
  host?: string;
  port?: number;
  /** Tokens accepted on API calls; default: any token that starts with hf_. */
  tokens?: string[];
  /** Tree entries per page (the Hub pages at 1,000 without expand). */
  treePageSize?: number;
  /** Files at least this large must be LFS (default 10 MiB). */
  lfsThreshold?: number;
  /** LFS objects at least this large get multipart upload instructions (default 5 GiB; lower it in tests). */
  multipartThreshold?: number;
  multipartChunkSize?: number;
}

export interface StoredFile {
  path: string;
  size: number;
  lfs: boolean;
  sha256: string;
  /** Git blob id: of the content (regular) or of the LFS pointer. */
  gitOid: string;
  pointerSize?: number;
  /** Regular files only (LFS content is in the object store). */
  content?: Buffer;
}

export interface StandinCommit {
  repo: string;
  oid: string;
  parent: string | null;
  title: string;
  description: string;
  /** Paths added or updated by the commit, with their content's sha256. */
  added: { path: string; sha256: string; size: number; lfs: boolean }[];
  deleted: string[];
  t: number;
}

export interface StandinRequest {
  /** ms since start */
  t: number;
  method: string;
  route: StandinRoute | 'unknown';
  status: number | 'dropped';
  fault?: string;
}

export interface HubStandinStats {
  requests: StandinRequest[];
  /** Every commit, the repos' initial ones included, in order. */
  commits: StandinCommit[];
  lfsUploads: number;
  /** LFS objects that came in multipart (parts + completion). */
  multipartUploads: number;
  lfsUploadBytes: number;
  faultsServed: number;
  /** API calls refused for a missing or unknown token. */
  unauthorized: number;
}

export interface HubStandin {
  /** e.g. http://127.0.0.1:PORT (the `endpoint` / hubUrl). */
  url: string;
  stats: HubStandinStats;
  inject(...faults: HubFault[]): void;
  clearFaults(): void;
  /** The files on a repo's main branch, or undefined when the repo does not exist. */
  files(repoId: string): Map<string, StoredFile> | undefined;
  /** The bytes of a file on main (regular or LFS). */
  read(repoId: string, path: string): Buffer | undefined;
  head(repoId: string): string | undefined;
  /** A concurrent writer: commits one file to main directly; returns the new head. */
  commitFile(repoId: string, path: string, content: Buffer | string, title?: string): string;
  close(): Promise<void>;
}

const DEFAULT_GITATTRIBUTES = `${[
  '*.7z',
  '*.arrow',
  '*.bin',
  '*.bz2',
  '*.ckpt',
  '*.ftz',
  '*.gz',
  '*.h5',
  '*.joblib',
  '*.lfs.*',
  '*.lz4',
  '*.mds',
  '*.mlmodel',
  '*.model',
  '*.msgpack',
  '*.npy',
  '*.npz',
  '*.onnx',
  '*.ot',
  '*.parquet',
  '*.pb',
  '*.pickle',
  '*.pkl',
  '*.pt',
  '*.pth',
  '*.rar',
  '*.safetensors',
  '*.tar',
  '*.tar.*',
  '*.tflite',
  '*.tgz',
  '*.wasm',
  '*.xz',
  '*.zip',
  '*.zst',
  '*.mp3',
  '*.ogg',
  '*.wav',
  '*.jpg',
  '*.jpeg',
  '*.png',
  '*.webp',
  '*.gif',
  '*.mp4',
  '*.webm',
]
  .map((p) => `${p} filter=lfs diff=lfs merge=lfs -text`)
  .join('\n')}\n`;

interface Snapshot {
  files: Map<string, StoredFile>;
}

interface Repo {
  id: string;
  private: boolean;
  createdAt: string;
  head: string;
  snapshots: Map<string, Snapshot>;
}

interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string | object;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const gitBlob = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

function globToRegExp(glob: string): RegExp {
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]');
  return new RegExp(`(^|/)${re}$`);
}

function lfsPatterns(gitattributes: string | undefined): RegExp[] {
  return (gitattributes ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && /\bfilter=lfs\b/.test(l))
    .map((l) => globToRegExp(l.split(/\s+/)[0]!));
}

export async function startHubStandin(opts: HubStandinOptions = {}): Promise<HubStandin> {
  const started = Date.now();
  const secret = randomBytes(12).toString('hex');
  const lfsThreshold = opts.lfsThreshold ?? 10 * 1024 * 1024;
  const multipartThreshold = opts.multipartThreshold ?? 5 * 1024 ** 3;
  const chunkSize = opts.multipartChunkSize ?? 5 * 1024 * 1024;
  const pageSize = opts.treePageSize ?? 1000;
  const accepted = opts.tokens ? new Set(opts.tokens) : null;
  const repos = new Map<string, Repo>();
  const objects = new Map<string, Buffer>();
  const parts = new Map<string, Map<number, Buffer>>();
  let faults: (HubFault & { left: number })[] = [];
  let commitCounter = 0;
  const stats: HubStandinStats = {
    requests: [],
    commits: [],
    lfsUploads: 0,
    multipartUploads: 0,
    lfsUploadBytes: 0,
    faultsServed: 0,
    unauthorized: 0,
  };
  let baseUrl = '';

  const pointer = (oid: string, size: number) =>
    Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${size}\n`);
  const isBinary = (sample: Buffer) => sample.includes(0);
  const mustBeLfs = (repo: Repo, path: string, size: number, sample: Buffer) => {
    const ga = repo.snapshots.get(repo.head)!.files.get('.gitattributes')?.content?.toString('utf8');
    return size >= lfsThreshold || isBinary(sample) || lfsPatterns(ga).some((re) => re.test(path));
  };

  function applyCommit(
    repo: Repo,
    title: string,
    description: string,
    changes: { add: StoredFile[]; del: string[] },
  ): string {
    const parent = repo.head || null;
    const files = new Map(parent ? repo.snapshots.get(parent)!.files : []);
    for (const p of changes.del) files.delete(p);
    for (const f of changes.add) files.set(f.path, f);
    const oid = createHash('sha1')
      .update(
        `${repo.id}\n${parent}\n${++commitCounter}\n${title}\n${changes.add.map((f) => `${f.path}:${f.sha256}`).join(',')}`,
      )
      .digest('hex');
    repo.snapshots.set(oid, { files });
    repo.head = oid;
    stats.commits.push({
      repo: repo.id,
      oid,
      parent,
      title,
      description,
      added: changes.add.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size, lfs: f.lfs })),
      deleted: changes.del,
      t: Date.now() - started,
    });
    return oid;
  }

  function regularFile(path: string, content: Buffer): StoredFile {
    return { path, size: content.length, lfs: false, sha256: sha256(content), gitOid: gitBlob(content), content };
  }
  function lfsFile(path: string, oid: string, size: number): StoredFile {
    const ptr = pointer(oid, size);
    return { path, size, lfs: true, sha256: oid, gitOid: gitBlob(ptr), pointerSize: ptr.length };
  }

  function createRepoNamed(id: string, priv: boolean): Repo {
    const repo: Repo = { id, private: priv, createdAt: new Date().toISOString(), head: '', snapshots: new Map() };
    repos.set(id, repo);
    applyCommit(repo, 'initial commit', '', {
      add: [regularFile('.gitattributes', Buffer.from(DEFAULT_GITATTRIBUTES))],
      del: [],
    });
    return repo;
  }

  function repoOr404(id: string): Repo {
    const repo = repos.get(id);
    if (!repo) throw new HttpError(404, 'Repository not found', { 'X-Error-Code': 'RepoNotFound' });
    return repo;
  }

  function snapshotAt(repo: Repo, rev: string): { oid: string; snap: Snapshot } {
    const oid = rev === 'main' || rev === 'HEAD' ? repo.head : rev;
    const snap = repo.snapshots.get(oid);
    if (!snap) throw new HttpError(404, `Invalid rev id: ${rev}`, { 'X-Error-Code': 'RevisionNotFound' });
    return { oid, snap };
  }

  function info(repo: Repo, oid = repo.head) {
    return {
      _id: createHash('sha1').update(repo.id).digest('hex').slice(0, 24),
      id: repo.id,
      author: repo.id.split('/')[0],
      private: repo.private,
      gated: false,
      disabled: false,
      downloads: 0,
      likes: 0,
      tags: [],
      createdAt: repo.createdAt,
      lastModified: new Date().toISOString(),
      sha: oid,
    };
  }

  function entries(snap: Snapshot): { type: 'file' | 'directory'; path: string; file?: StoredFile }[] {
    const dirs = new Set<string>();
    for (const p of snap.files.keys()) {
      const parts = p.split('/');
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    }
    const all = [
      ...[...dirs].map((d) => ({ type: 'directory' as const, path: d })),
      ...[...snap.files.values()].map((f) => ({ type: 'file' as const, path: f.path, file: f })),
    ];
    return all.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  function treeEntry(e: { type: 'file' | 'directory'; path: string; file?: StoredFile }) {
    if (e.type === 'directory')
      return {
        type: 'directory',
        oid: createHash('sha1').update(`tree ${e.path}`).digest('hex'),
        size: 0,
        path: e.path,
      };
    const f = e.file!;
    return {
      type: 'file',
      oid: f.gitOid,
      size: f.size,
      path: f.path,
      ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: f.pointerSize } } : {}),
    };
  }

  function signed(path: string): string {
    return `${baseUrl}${path}?X-Standin-Signature=${secret}`;
  }

  function json(status: number, body: unknown, headers: Record<string, string> = {}): Reply {
    return { status, headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) };
  }

  async function handle(req: http.IncomingMessage, url: URL, route: StandinRoute, body: Buffer): Promise<Reply> {
    const p = url.pathname;
    if (route === 'lfs-upload') {
      if (url.searchParams.get('X-Standin-Signature') !== secret)
        throw new HttpError(403, 'Request has expired or the signature does not match');
      const m = /^\/lfs-storage\/([0-9a-f]{64})(?:\/(part)\/(\d+)|\/(complete))?$/.exec(p);
      if (!m) throw new HttpError(404, 'Not found');
      const oid = m[1]!;
      if (m[2] && req.method === 'PUT') {
        const n = Number(m[3]);
        if (!parts.has(oid)) parts.set(oid, new Map());
        parts.get(oid)!.set(n, body);
        stats.lfsUploadBytes += body.length;
        return { status: 200, headers: { ETag: `"${createHash('md5').update(body).digest('hex')}"` } };
      }
      if (m[4] && req.method === 'POST') {
        const done = JSON.parse(body.toString('utf8')) as {
          oid: string;
          parts: { partNumber: number; etag: string }[];
        };
        const got = parts.get(oid);
        if (!got || done.oid !== oid) throw new HttpError(400, 'Unknown multipart upload');
        const ordered = done.parts
          .sort((a, b) => a.partNumber - b.partNumber)
          .map((pt) => {
            const b = got.get(pt.partNumber);
            if (!b || `"${createHash('md5').update(b).digest('hex')}"` !== pt.etag)
              throw new HttpError(400, `part ${pt.partNumber} missing or its ETag differs`);
            return b;
          });
        const all = Buffer.concat(ordered);
        if (sha256(all) !== oid) throw new HttpError(400, 'The assembled object does not match its sha256');
        objects.set(oid, all);
        parts.delete(oid);
        stats.lfsUploads++;
        stats.multipartUploads++;
        return { status: 200, body: '' };
      }
      if (!m[2] && !m[4] && req.method === 'PUT') {
        if (sha256(body) !== oid) throw new HttpError(400, 'The uploaded object does not match its sha256');
        objects.set(oid, body);
        stats.lfsUploads++;
        stats.lfsUploadBytes += body.length;
        return { status: 200, body: '' };
      }
      throw new HttpError(405, 'Method not allowed');
    }

    if (route === 'create') {
      const b = JSON.parse(body.toString('utf8') || '{}') as {
        name?: string;
        organization?: string;
        type?: string;
        visibility?: string;
        private?: boolean;
      };
      if (b.type !== 'dataset') throw new HttpError(400, 'This stand-in hosts dataset repos only');
      if (!b.name || !b.organization) throw new HttpError(400, 'name and organization are required');
      const id = `${b.organization}/${b.name}`;
      if (repos.has(id))
        return json(409, { error: 'You already created this dataset repo', url: `${baseUrl}/datasets/${id}` });
      createRepoNamed(id, b.visibility ? b.visibility !== 'public' : b.private !== false);
      return json(200, { url: `${baseUrl}/datasets/${id}`, name: id, id: info(repos.get(id)!)._id });
    }

    if (route === 'lfs-batch') {
      const m = /^\/datasets\/([^/]+)\/([^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(p)!;
      repoOr404(`${m[1]}/${m[2]}`);
      const b = JSON.parse(body.toString('utf8')) as { operation: string; objects: { oid: string; size: number }[] };
      if (b.operation !== 'upload') throw new HttpError(400, 'upload only');
      const out = b.objects.map((o) => {
        if (!/^[0-9a-f]{64}$/.test(o.oid))
          return { oid: o.oid, size: o.size, error: { code: 422, message: 'Invalid oid' } };
        const have = objects.get(o.oid);
        if (have && have.length === o.size) return { oid: o.oid, size: o.size, authenticated: true };
        if (o.size >= multipartThreshold) {
          const n = Math.ceil(o.size / chunkSize);
          const header: Record<string, string> = { chunk_size: String(chunkSize) };
          for (let i = 1; i <= n; i++) header[String(i).padStart(5, '0')] = signed(`/lfs-storage/${o.oid}/part/${i}`);
          return {
            oid: o.oid,
            size: o.size,
            authenticated: true,
            actions: { upload: { href: signed(`/lfs-storage/${o.oid}/complete`), header, expires_in: 86400 } },
          };
        }
        return {
          oid: o.oid,
          size: o.size,
          authenticated: true,
          actions: { upload: { href: signed(`/lfs-storage/${o.oid}`), expires_in: 86400 } },
        };
      });
      return {
        status: 200,
        headers: { 'Content-Type': 'application/vnd.git-lfs+json' },
        body: JSON.stringify({ transfer: 'basic', objects: out }),
      };
    }

    const m = /^\/api\/datasets\/([^/]+)\/([^/]+)(?:\/([^/]+)\/([^/]+)(\/.*)?)?$/.exec(p);
    if (!m) throw new HttpError(404, 'Not found');
    const repo = repoOr404(`${m[1]}/${m[2]}`);
    const rev = m[4] ? decodeURIComponent(m[4]) : 'main';

    if (route === 'info') return json(200, info(repo));
    if (route === 'revision') {
      const { oid } = snapshotAt(repo, rev);
      return json(200, info(repo, oid));
    }
    if (route === 'tree') {
      const { snap } = snapshotAt(repo, rev);
      const under = m[5] ? decodeURIComponent(m[5].slice(1)) : '';
      const recursive = url.searchParams.get('recursive') === 'true' || url.searchParams.get('recursive') === '1';
      const all = entries(snap).filter((e) => {
        if (under && !e.path.startsWith(`${under}/`)) return false;
        const rest = under ? e.path.slice(under.length + 1) : e.path;
        return recursive || !rest.includes('/');
      });
      if (under && !entries(snap).some((e) => e.type === 'directory' && e.path === under))
        throw new HttpError(404, `${under} does not exist on "${rev}"`, { 'X-Error-Code': 'EntryNotFound' });
      const cursor = Number(url.searchParams.get('cursor') ?? '0');
      const page = all.slice(cursor, cursor + pageSize).map(treeEntry);
      const headers: Record<string, string> = {};
      if (cursor + pageSize < all.length) {
        const next = new URL(url.href.replace(/^http:\/\/[^/]+/, baseUrl));
        next.searchParams.set('cursor', String(cursor + pageSize));
        headers.Link = `<${next.href}>; rel="next"`;
      }
      return json(200, page, headers);
    }
    if (route === 'paths-info') {
      const { snap } = snapshotAt(repo, rev);
      const b = JSON.parse(body.toString('utf8')) as { paths: string[] };
      const all = new Map(entries(snap).map((e) => [e.path, e]));
      return json(
        200,
        b.paths.flatMap((q) => (all.has(q) ? [treeEntry(all.get(q)!)] : [])),
      );
    }
    if (route === 'preupload') {
      const b = JSON.parse(body.toString('utf8')) as { files: { path: string; size: number; sample: string }[] };
      return json(200, {
        files: b.files.map((f) => ({
          path: f.path,
          uploadMode: mustBeLfs(repo, f.path, f.size, Buffer.from(f.sample, 'base64')) ? 'lfs' : 'regular',
          shouldIgnore: false,
        })),
        commitOid: repo.head,
      });
    }
    if (route === 'commit') {
      if (rev !== 'main') throw new HttpError(400, 'This stand-in commits to main only');
      const lines = body
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
      const header = lines.find((l) => l.key === 'header')?.value as
        { summary?: string; description?: string; parentCommit?: string } | undefined;
      if (!header?.summary) throw new HttpError(400, 'A commit needs a header with a summary');
      if (header.parentCommit && header.parentCommit !== repo.head)
        throw new HttpError(412, 'A commit has happened since. Please refresh and try again.');
      const add: StoredFile[] = [];
      const del: string[] = [];
      for (const l of lines) {
        if (l.key === 'file') {
          const v = l.value as { path: string; content: string; encoding?: string };
          const content = Buffer.from(v.content, v.encoding === 'base64' ? 'base64' : 'utf8');
          if (mustBeLfs(repo, v.path, content.length, content.subarray(0, 512))) {
            throw new HttpError(
              400,
              `Your push was rejected because it contains files that must be stored with LFS: ${v.path}`,
            );
          }
          add.push(regularFile(v.path, content));
        } else if (l.key === 'lfsFile') {
          const v = l.value as { path: string; oid: string; size: number; algo?: string };
          const obj = objects.get(v.oid);
          if (!obj || obj.length !== v.size) {
            throw new HttpError(
              400,
              `Your push was rejected because an LFS pointer pointed to a file that does not exist. Offending file: - ${v.path}`,
            );
          }
          add.push(lfsFile(v.path, v.oid, v.size));
        } else if (l.key === 'deletedFile') {
          del.push((l.value as { path: string }).path);
        }
      }
      const readme = add.find((f) => f.path === 'README.md');
      if (readme) {
        const problems = validateCard(readme.content?.toString('utf8') ?? objects.get(readme.sha256)!.toString('utf8'));
        if (problems.length > 0)
          throw new HttpError(400, `Invalid metadata in README.md.\n${problems.map((x) => `- ${x}`).join('\n')}`);
      }
      const oid = applyCommit(repo, header.summary, header.description ?? '', { add, del });
      return json(200, {
        success: true,
        commitOid: oid,
        commitUrl: `${baseUrl}/datasets/${repo.id}/commit/${oid}`,
        hookOutput: '',
      });
    }
    throw new HttpError(404, 'Not found');
  }

  function routeOf(method: string, p: string): StandinRoute | 'unknown' {
    if (p === '/api/repos/create' && method === 'POST') return 'create';
    if (/\.git\/info\/lfs\/objects\/batch$/.test(p)) return 'lfs-batch';
    if (p.startsWith('/lfs-storage/')) return 'lfs-upload';
    const m = /^\/api\/datasets\/[^/]+\/[^/]+(?:\/([^/]+))?/.exec(p);
    if (!m) return 'unknown';
    if (!m[1]) return 'info';
    return (['revision', 'tree', 'paths-info', 'preupload', 'commit'] as const).find((r) => r === m[1]) ?? 'unknown';
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const url = new URL(req.url ?? '/', baseUrl);
        const method = req.method ?? 'GET';
        const route = routeOf(method, url.pathname);
        const entry: StandinRequest = { t: Date.now() - started, method, route, status: 0 };
        stats.requests.push(entry);
        const send = (r: Reply) => {
          entry.status = r.status;
          const body =
            r.body === undefined
              ? ''
              : typeof r.body === 'string' || Buffer.isBuffer(r.body)
                ? r.body
                : JSON.stringify(r.body);
          res.writeHead(r.status, r.headers ?? {});
          res.end(body);
        };
        const drop = () => {
          entry.status = 'dropped';
          req.socket.destroy();
        };
        try {
          if (route !== 'lfs-upload') {
            const auth = req.headers.authorization ?? '';
            const token = /^Bearer (\S+)$/.exec(auth)?.[1];
            if (!token || !(accepted ? accepted.has(token) : token.startsWith('hf_'))) {
              stats.unauthorized++;
              return send(json(401, { error: 'Invalid credentials in Authorization header' }));
            }
          }
          const fault = faults.find((f) => f.left > 0 && (f.route === 'any' || f.route === route));
          if (fault) {
            fault.left--;
            stats.faultsServed++;
            entry.fault = fault.drop ? `drop-${fault.drop}` : String(fault.status ?? 'delay');
            if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
            if (fault.drop === 'before') return drop();
            if (fault.status) {
              const echoed = fault.echoAuthorization
                ? ` (request had Authorization: ${req.headers.authorization ?? 'none'})`
                : '';
              if (fault.status === 429) {
                const s = fault.retryAfterSeconds ?? 1;
                return send(
                  json(
                    429,
                    {
                      error: `You have exceeded the rate limit for repository commits (128 per hour). You can retry this action in about ${s} seconds.${echoed}`,
                    },
                    { 'Retry-After': String(s), RateLimit: `"commits";r=0;t=${s}` },
                  ),
                );
              }
              if (fault.status >= 500)
                return send(
                  json(fault.status, {
                    error: `Internal Error - We're working hard to fix this as soon as possible!${echoed}`,
                  }),
                );
              return send(json(fault.status, { error: `Injected error ${fault.status}${echoed}` }));
            }
            if (fault.drop === 'after') {
              await handle(req, url, route as StandinRoute, Buffer.concat(chunks)).catch(() => undefined);
              return drop();
            }
          }
          if (route === 'unknown') return send(json(404, { error: 'Not found' }));
          send(await handle(req, url, route, Buffer.concat(chunks)));
        } catch (err) {
          if (err instanceof HttpError) return send(json(err.status, { error: err.message }, err.headers));
          send(json(500, { error: `stand-in error: ${(err as Error).message}` }));
        }
      })();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const addr = server.address() as AddressInfo;
  baseUrl = `http://${opts.host ?? '127.0.0.1'}:${addr.port}`;

  return {
    url: baseUrl,
    stats,
    inject: (...fs) => {
      faults.push(...fs.map((f) => ({ ...f, left: f.times ?? 1 })));
    },
    clearFaults: () => {
      faults = [];
    },
    files: (id) => {
      const repo = repos.get(id);
      return repo ? new Map(repo.snapshots.get(repo.head)!.files) : undefined;
    },
    read: (id, path) => {
      const repo = repos.get(id);
      const f = repo?.snapshots.get(repo.head)!.files.get(path);
      if (!f) return undefined;
      return f.lfs ? objects.get(f.sha256) : f.content;
    },
    head: (id) => repos.get(id)?.head,
    commitFile: (id, path, content, title = `Update ${path}`) => {
      const repo = repoOr404(id);
      const buf = typeof content === 'string' ? Buffer.from(content) : content;
      let f: StoredFile;
      if (mustBeLfs(repo, path, buf.length, buf.subarray(0, 512))) {
        objects.set(sha256(buf), buf);
        f = lfsFile(path, sha256(buf), buf.length);
      } else f = regularFile(path, buf);
      return applyCommit(repo, title, '', { add: [f], del: [] });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What `buildSyntheticRelease` wrote. */
export interface SyntheticRelease {
  root: string;
  /** Repo path -> bytes, for every file the release publishes except the card. */
  files: Map<string, Buffer>;
}

/**
 * A finalized release folder with synthetic bytes, as publishing reads it (plan.json, webdataset/<subset>/ shards
 * with sizes.json and index.json, parquet/, report/): for publishing tests without running the pipeline.
 * Deterministic for a seed; `bump` changes the content of one shard to simulate a rebuilt file.
 */
export async function buildSyntheticRelease(
  dataDir: string,
  releaseId: string,
  opts: {
    shards?: Partial<Record<'commercial' | 'noncommercial' | 'other', number>>;
    shardBytes?: number;
    seed?: string;
    bump?: string;
  } = {},
): Promise<SyntheticRelease> {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const root = path.join(dataDir, 'releases', releaseId);
  const seed = opts.seed ?? 'seed';
  const shardBytes = opts.shardBytes ?? 48 * 1024;
  const shards = { commercial: 3, noncommercial: 0, other: 1, ...opts.shards };
  const bytesOf = (name: string, n: number, magic: string) => {
    const out = Buffer.alloc(n);
    let block = createHash('sha256')
      .update(`${seed}:${name}:${opts.bump === name ? 'bumped' : ''}`)
      .digest();
    for (let off = 0; off < n; off += block.length) {
      block.copy(out, off);
      block = createHash('sha256').update(block).digest();
    }
    out.write(magic, 0, 'latin1');
    return out;
  };
  const files = new Map<string, Buffer>();
  const write = async (rel: string, data: Buffer | string) => {
    const abs = path.join(root, rel);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.writeFile(abs, data);
  };
  const subsets: Record<
    string,
    { shards: number; samples: number; articles: number; bytes: number; licenses: Record<string, number> }
  > = {};
  let samples = 0;
  for (const subset of ['commercial', 'noncommercial', 'other'] as const) {
    const n = shards[subset];
    subsets[subset] = { shards: n, samples: 0, articles: 0, bytes: 0, licenses: {} };
    if (n === 0) continue;
    const index: unknown[] = [];
    const sizes: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const name = `${String(i).padStart(6, '0')}`;
      const tar = bytesOf(`${subset}/${name}.tar`, shardBytes + i * 1000, `${subset}-${name}.jpg\0`);
      const parquet = bytesOf(`${subset}/${name}.parquet`, Math.floor(shardBytes / 4) + i * 100, 'PAR1');
      await write(`webdataset/${subset}/${name}.tar`, tar);
      await write(`parquet/${subset}/${name}.parquet`, parquet);
      files.set(`${subset}/${name}.tar`, tar);
      files.set(`parquet/${subset}/${name}.parquet`, parquet);
      const count = 10 + i;
      sizes[`${name}.tar`] = count;
      index.push({
        shard: `${subset}/${name}.tar`,
        unit: `${subset}-${name}`,
        samples: count,
        articles: 3,
        bytes: tar.length,
        sha256: sha256(tar),
        parquet: `${subset}/${name}.parquet`,
        parquetRows: count,
        parquetSha256: sha256(parquet),
      });
      subsets[subset]!.samples += count;
      subsets[subset]!.articles += 3;
      subsets[subset]!.bytes += tar.length;
      samples += count;
    }
    const sizesJson = JSON.stringify(sizes, null, 2) + '\n';
    await write(`webdataset/${subset}/sizes.json`, sizesJson);
    await write(`webdataset/${subset}/index.json`, JSON.stringify(index, null, 2) + '\n');
    files.set(`${subset}/sizes.json`, Buffer.from(sizesJson));
  }
  const summary = {
    releaseId,
    inventoryManifest: 'inventory-reports/pmc-oa-opendata/metadata/2026-11-01T01-00Z/manifest.json',
    articles: { planned: 12, parsed: 12, excludedAtPlan: { retracted: 1 } },
    figures: samples + 2,
    samples,
    rejected: 2,
    rejectedByReason: { 'images:corrupt': 1, 'media:image-not-found': 1 },
    subsets,
    warnings: 1,
    enrichment: { pmids: 10, returned: 10, notReturned: 0, failedBatches: 0, withoutPmid: 2 },
    annotation: { provider: 'cpu', taxonomyVersion: 'bootstrap-v0' },
  };
  const report = {
    'summary.json': JSON.stringify(summary, null, 2) + '\n',
    'quarantine.ndjson':
      '{"article":"PMC1","figure":"F1","stage":"images","reason":"corrupt","detail":"truncated JPEG"}\n{"article":"PMC2","figure":"F2","stage":"media","reason":"image-not-found","detail":"404"}\n',
    'warnings.ndjson':
      '{"article":"PMC5","stage":"parse","detail":"invalid UTF-8: 1 byte sequence replaced by U+FFFD"}\n',
    'enrichment.ndjson':
      '{"article":"PMC3","reason":"no-pmid","detail":"the article has no PMID"}\n{"article":"PMC4","reason":"no-pmid","detail":"the article has no PMID"}\n',
  };
  for (const [name, text] of Object.entries(report)) {
    await write(`report/${name}`, text);
    files.set(`metadata/${name}`, Buffer.from(text));
  }
  await write(
    'plan/plan.json',
    JSON.stringify({ releaseId, inventoryManifest: summary.inventoryManifest }, null, 2) + '\n',
  );
  return { root, files };
}

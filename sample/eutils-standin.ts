/**
 * Loopback stand-in for NCBI E-utilities efetch (db=pubmed), replaying recorded real responses.
 *
 * At start it reads every recorded efetch pubmed file once and indexes each raw <PubmedArticle> /
 * <PubmedBookArticle> element by its PMID; answers are assembled from those recorded bytes, so the
 * client and parser see NCBI's own markup. It enforces NCBI's sliding per-second request limit with
 * NCBI's 429 JSON body, and faults can be injected to exercise retry paths.
 * It never records or prints api_key values: the log keeps only whether one was sent.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { AuthorRecord, HistoryDate } from '../activities/parse/records';

export interface EutilsFaults {
  /** Answer the next N requests with NCBI's 429 rate-limit JSON. */
  rateLimitBurst?: number;
  /** Answer the next N requests with 502 Bad Gateway. */
  status502?: number;
  /** Send the next N responses only half-way, then reset the connection (a transfer cut off mid-body). */
  truncate?: number;
  /** Delay every answer by this many ms (0 turns it off); to exercise client timeouts. */
  slowMs?: number;
}

export interface EutilsStandinOptions {
  fixturesDir: string;
  port?: number;
  host?: string;
  /** Requests allowed per sliding second and client. Unset: 3, or 10 when api_key is sent, as at NCBI. */
  maxPerSecond?: number;
  faults?: EutilsFaults;
  /**
   * Articles to answer for when no recording has their PMID (the demo's sample articles): a well-formed
   * <PubmedArticle> is generated from what the article's own XML says, its MeSH headings taken from the article's
   * keywords and marked as generated, with its AuthorList, ArticleDate and History from the article's byline and
   * dates. Recorded responses always win.
   */
  generated?: Iterable<GeneratedPubmedArticle>;
}

export interface GeneratedPubmedArticle {
  pmid: string;
  title: string | null;
  journal: string | null;
  /** `YYYY`, `YYYY-MM` or `YYYY-MM-DD`. */
  pubDate: string | null;
  doi: string | null;
  keywords: string[];
  /** the article's byline (AuthorList); absent or empty: no AuthorList */
  authors?: AuthorRecord[];
  /** the electronic publication date (ArticleDate, written only at day precision as PubMed has it) */
  epubDate?: string | null;
  /** the article's <history> dates; received, rev-recd and accepted become PubMed History dates */
  history?: HistoryDate[];
}

/** JATS <history> date types and the PubMedPubDate PubStatus PubMed gives the same event. */
const PUB_STATUS: Record<string, string> = { received: 'received', 'rev-recd': 'revised', accepted: 'accepted' };

/** Y, M, D elements of an ISO date; null when it lacks a part PubMed requires (PubMedPubDate and ArticleDate: all three). */
function ymd(iso: string | null | undefined): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso ?? '');
  return m ? `<Year>${m[1]}</Year><Month>${m[2]}</Month><Day>${m[3]}</Day>` : null;
}

/** PubMed's Initials: the first letter of each given name ("Todd S" → "TS", "Jean-François" → "JF"). */
function initialsOf(given: string): string {
  return (given.match(/\p{Lu}|(?<![\p{L}])\p{Ll}/gu) ?? []).join('').toUpperCase();
}

function authorListOf(authors: AuthorRecord[]): string {
  if (authors.length === 0) return '';
  const entries = authors.map((a) => {
    const name =
      a.group || !a.surname
        ? `<CollectiveName>${xmlText(a.name)}</CollectiveName>`
        : `<LastName>${xmlText(a.surname)}</LastName>` +
          (a.givenNames
            ? `<ForeName>${xmlText(a.givenNames)}</ForeName><Initials>${xmlText(initialsOf(a.givenNames))}</Initials>`
            : '');
    const orcid = a.orcid ? `<Identifier Source="ORCID">${a.orcid}</Identifier>` : '';
    const affs = a.affiliations.map(
      (t) => `<AffiliationInfo><Affiliation>${xmlText(t)}</Affiliation></AffiliationInfo>`,
    );
    return `<Author ValidYN="Y">${name}${orcid}${affs.join('')}</Author>`;
  });
  return `<AuthorList CompleteYN="Y">${entries.join('')}</AuthorList>`;
}

function historyOf(history: HistoryDate[]): string {
  const dates = history.flatMap((h) => {
    const status = PUB_STATUS[h.type];
    const date = ymd(h.date);
    return status && date ? [`<PubMedPubDate PubStatus="${status}">${date}</PubMedPubDate>`] : [];
  });
  return dates.length > 0 ? `<History>${dates.join('')}</History>` : '';
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A PubmedArticle element in efetch's layout for an article no recording covers. */
export function generatedPubmedArticle(a: GeneratedPubmedArticle): string {
  const [year, month, day] = (a.pubDate ?? '').split('-');
  const date = year
    ? `<PubDate><Year>${year}</Year>${month ? `<Month>${month}</Month>` : ''}${day ? `<Day>${day}</Day>` : ''}</PubDate>`
    : '<PubDate><MedlineDate>unknown</MedlineDate></PubDate>';
  const mesh = a.keywords
    .slice(0, 8)
    .map(
      (k, i) =>
        `<MeshHeading><DescriptorName MajorTopicYN="${i === 0 ? 'Y' : 'N'}">${xmlText(k)}</DescriptorName></MeshHeading>`,
    )
    .join('');
  const articleDate = ymd(a.epubDate);
  // No ChemicalList: the article's XML names no substances with registry numbers, and an invented list would be
  // data no source gave.
  return (
    `<PubmedArticle><!-- generated by the E-utilities stand-in from the article's own XML (no recorded response for this PMID) -->` +
    `<MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">${a.pmid}</PMID>` +
    `<Article PubModel="Electronic"><Journal><JournalIssue CitedMedium="Internet">${date}</JournalIssue><Title>${xmlText(a.journal ?? 'Unknown journal')}</Title></Journal>` +
    `<ArticleTitle>${xmlText(a.title ?? '')}</ArticleTitle>${authorListOf(a.authors ?? [])}<Language>eng</Language><PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType></PublicationTypeList>` +
    (articleDate ? `<ArticleDate DateType="Electronic">${articleDate}</ArticleDate>` : '') +
    `</Article>` +
    (mesh ? `<MeshHeadingList>${mesh}</MeshHeadingList>` : '') +
    `</MedlineCitation><PubmedData>${historyOf(a.history ?? [])}<PublicationStatus>epublish</PublicationStatus><ArticleIdList><ArticleId IdType="pubmed">${a.pmid}</ArticleId>${a.doi ? `<ArticleId IdType="doi">${xmlText(a.doi)}</ArticleId>` : ''}</ArticleIdList></PubmedData></PubmedArticle>`
  );
}

export interface EutilsRequestLogEntry {
  /** ms since the stand-in started */
  t: number;
  ids: string[];
  status: number;
  method: string;
  tool: string | null;
  email: string | null;
  /** Whether an api_key was sent; its value is never kept. */
  apiKeyPresent: boolean;
}

export interface EutilsStandinStats {
  requests: number;
  /** Most requests (answered or rejected) seen in any 1000 ms sliding window. */
  perSecondMax: number;
  rejected429: number;
  log: EutilsRequestLogEntry[];
}

export interface EutilsStandin {
  /** e.g. http://127.0.0.1:PORT/entrez/eutils */
  baseUrl: string;
  close(): Promise<void>;
  stats: EutilsStandinStats;
  inject(f: EutilsFaults): void;
}

interface Recordings {
  /** The recorded XML declaration + DOCTYPE lines of a PubmedArticleSet response. */
  prolog: string;
  elements: Map<string, string>;
  /** A recorded <ERROR> response, replayed verbatim when no id is given. */
  errorBody: string;
}

const RECORD_ELEMENT = /<(PubmedArticle|PubmedBookArticle)\b[^>]*>[\s\S]*?<\/\1>/g;
// The first PMID in either element is the record's own (MedlineCitation/PMID or BookDocument/PMID);
// later PMIDs belong to CommentsCorrections and references.
const FIRST_PMID = /<PMID\b[^>]*>\s*(\d+)\s*<\/PMID>/;
const BAD_GATEWAY =
  '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n';
const MAX_BODY_BYTES = 4 * 1024 * 1024;

function loadRecordings(dir: string): Recordings {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.xml'))
    .sort();
  let prolog: string | null = null;
  let errorBody: string | null = null;
  const elements = new Map<string, string>();
  for (const file of files) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const setAt = text.indexOf('<PubmedArticleSet>');
    if (setAt >= 0) {
      prolog ??= text.slice(0, setAt).trimEnd();
      for (const m of text.matchAll(RECORD_ELEMENT)) {
        const pmid = FIRST_PMID.exec(m[0])?.[1];
        if (pmid && !elements.has(pmid)) elements.set(pmid, m[0]);
      }
    } else if (errorBody === null && /<ERROR>/.test(text)) {
      errorBody = text;
    }
  }
  if (prolog === null || elements.size === 0) throw new Error(`no recorded efetch pubmed responses in ${dir}`);
  if (errorBody === null) throw new Error(`no recorded <ERROR> response in ${dir}`);
  return { prolog, elements, errorBody };
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) req.destroy(new Error('request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startEutilsStandin(opts: EutilsStandinOptions): Promise<EutilsStandin> {
  const rec = loadRecordings(opts.fixturesDir);
  for (const a of opts.generated ?? [])
    if (!rec.elements.has(a.pmid)) rec.elements.set(a.pmid, generatedPubmedArticle(a));
  const faults: Required<EutilsFaults> = { rateLimitBurst: 0, status502: 0, truncate: 0, slowMs: 0, ...opts.faults };
  const stats: EutilsStandinStats = { requests: 0, perSecondMax: 0, rejected429: 0, log: [] };
  const startedAt = Date.now();
  const allArrivals: number[] = [];
  // Per client (api key or IP), like NCBI: arrival times of every request in the last second.
  const arrivalsByClient = new Map<string, number[]>();

  const slide = (times: number[], now: number): void => {
    while (times.length > 0 && times[0] <= now - 1000) times.shift();
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const now = Date.now();
    const url = new URL(req.url ?? '/', 'http://standin');
    const params = new URLSearchParams(url.search);
    if (req.method === 'POST') {
      for (const [k, v] of new URLSearchParams(await readBody(req))) params.set(k, v);
    }
    const ids = (params.get('id') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const apiKey = params.get('api_key');
    const entry: EutilsRequestLogEntry = {
      t: now - startedAt,
      ids,
      status: 0,
      method: req.method ?? '?',
      tool: params.get('tool'),
      email: params.get('email'),
      apiKeyPresent: apiKey !== null && apiKey !== '',
    };
    stats.requests += 1;
    stats.log.push(entry);
    allArrivals.push(now);
    slide(allArrivals, now);
    stats.perSecondMax = Math.max(stats.perSecondMax, allArrivals.length);

    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}): void => {
      entry.status = status;
      res.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)), ...headers });
      res.end(body);
    };

    if (url.pathname !== '/entrez/eutils/efetch.fcgi') {
      send(404, 'text/plain', 'not found in the E-utilities stand-in (efetch.fcgi only)\n');
      return;
    }

    const ip = req.socket.remoteAddress ?? 'unknown';
    // The key is hashed before it is used as a map key so not even memory dumps of the stand-in hold it.
    const client = entry.apiKeyPresent
      ? `key:${createHash('sha256')
          .update(apiKey as string)
          .digest('hex')}`
      : `ip:${ip}`;
    const limit = opts.maxPerSecond ?? (entry.apiKeyPresent ? 10 : 3);
    const arrivals = arrivalsByClient.get(client) ?? [];
    arrivalsByClient.set(client, arrivals);
    arrivals.push(now);
    slide(arrivals, now);
    const overLimit = arrivals.length > limit;
    if (overLimit || faults.rateLimitBurst > 0) {
      if (!overLimit) faults.rateLimitBurst -= 1;
      stats.rejected429 += 1;
      // NCBI's observed body; its "api-key" field carries the caller's IP for keyless requests.
      const body = JSON.stringify({
        error: 'API rate limit exceeded',
        'api-key': ip,
        count: String(arrivals.length),
        limit: String(limit),
      });
      send(429, 'application/json', body, { 'x-ratelimit-limit': String(limit), 'x-ratelimit-remaining': '0' });
      return;
    }
    if (faults.status502 > 0) {
      faults.status502 -= 1;
      send(502, 'text/html', BAD_GATEWAY);
      return;
    }
    if (faults.slowMs > 0) await new Promise((r) => setTimeout(r, faults.slowMs));
    if (res.destroyed) return;

    const db = params.get('db') ?? 'pubmed';
    if (db !== 'pubmed') {
      send(400, 'text/plain', `the stand-in serves db=pubmed only, not ${JSON.stringify(db.slice(0, 40))}\n`);
      return;
    }
    if (ids.length === 0) {
      send(200, 'text/xml; charset=UTF-8', rec.errorBody);
      return;
    }
    // Request order; ids without a recording are left out, as NCBI leaves out unknown PMIDs.
    const found = ids.map((id) => rec.elements.get(id)).filter((e): e is string => e !== undefined);
    const body = `${rec.prolog}\n<PubmedArticleSet>\n${found.join('\n')}\n</PubmedArticleSet>\n`;
    if (faults.truncate > 0) {
      faults.truncate -= 1;
      entry.status = 200;
      const bytes = Buffer.from(body, 'utf8');
      res.writeHead(200, { 'content-type': 'text/xml; charset=UTF-8', 'content-length': String(bytes.length) });
      res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => res.socket?.destroy());
      return;
    }
    send(200, 'text/xml; charset=UTF-8', body);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('stand-in failure\n');
      } else {
        res.destroy();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    baseUrl: `http://${hostForUrl}:${address.port}/entrez/eutils`,
    stats,
    inject(f: EutilsFaults): void {
      for (const [k, v] of Object.entries(f) as [keyof EutilsFaults, number | undefined][]) {
        if (v !== undefined) faults[k] = v;
      }
    },
    close(): Promise<void> {
      return new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive sockets from fetch would otherwise hold close() open.
        server.closeAllConnections();
      });
    },
  };
}

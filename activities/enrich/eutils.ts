/**
 * NCBI E-utilities efetch client for PubMed records.
 *
 * Always POSTs: NBK25499 asks for POST above ~200 UIDs, and a POST keeps api_key out of the URL, so
 * no proxy log, undici error or stack trace can ever carry it. Failures are EutilsError values with a
 * `kind` and `retryable` so the calling Temporal activity can choose between retrying and failing.
 * Pacing (3 req/s without a key, 10 with) is the caller's job: this function makes exactly one request.
 */

export type EutilsErrorKind = 'rate-limited' | 'server' | 'timeout' | 'network' | 'bad-request' | 'ncbi-error';

const RETRYABLE: Record<EutilsErrorKind, boolean> = {
  'rate-limited': true,
  server: true,
  timeout: true,
  network: true,
  'bad-request': false,
  // An <ERROR> body answers the request as sent (bad ids, bad parameters); asking again gives the same.
  'ncbi-error': false,
};

/**
 * Messages are built only from status codes, counts and error codes, never from the request body,
 * the request URL or a raw response body: NCBI's 429 JSON echoes an "api-key" field.
 */
export class EutilsError extends Error {
  override readonly name = 'EutilsError';
  readonly retryable: boolean;
  constructor(
    readonly kind: EutilsErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.retryable = RETRYABLE[kind];
  }
}

export interface EfetchPubmedRequest {
  /** E-utilities base without trailing slash, e.g. https://eutils.ncbi.nlm.nih.gov/entrez/eutils */
  baseUrl: string;
  pmids: string[];
  /** Registered tool name (no spaces) and developer e-mail; NCBI may block unidentified heavy users. */
  tool: string;
  email: string;
  apiKey?: string;
  /** Whole request including reading the body. Default 120 s: a 200-record efetch can be slow. */
  timeoutMs?: number;
  /** Caller cancellation (e.g. Temporal activity cancel); its reason is rethrown unchanged. */
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const PMID = /^[1-9][0-9]{0,9}$/;

/**
 * Fetches the PubMed XML (a PubmedArticleSet) for the given PMIDs. PMIDs PubMed does not know are
 * simply absent from the result, so callers must key the parsed records by PMID, not by position.
 */
export async function efetchPubmed(req: EfetchPubmedRequest): Promise<string> {
  const secret = req.apiKey;
  const fail = (kind: EutilsErrorKind, message: string, status?: number): EutilsError =>
    new EutilsError(kind, scrub(message, secret), status);

  const pmids = [...new Set(req.pmids.map((p) => p.trim()))];
  // The seed sent Python's "None" for missing PMIDs; refuse anything that is not a PMID up front.
  const bad = pmids.filter((p) => !PMID.test(p));
  if (pmids.length === 0) throw fail('bad-request', 'efetch needs at least one PMID');
  if (bad.length > 0)
    throw fail(
      'bad-request',
      `not PMIDs: ${bad
        .slice(0, 5)
        .map((b) => JSON.stringify(b.slice(0, 20)))
        .join(', ')}`,
    );
  if (!/^\S+$/.test(req.tool) || !req.email.includes('@')) {
    throw fail('bad-request', 'tool must be non-empty without spaces and email a full address (NCBI identification)');
  }

  const form = new URLSearchParams({
    db: 'pubmed',
    retmode: 'xml',
    id: pmids.join(','),
    tool: req.tool,
    email: req.email,
  });
  if (secret) form.set('api_key', secret);
  const url = `${req.baseUrl.replace(/\/+$/, '')}/efetch.fcgi`;

  const timeout = AbortSignal.timeout(req.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;

  let status: number;
  let body: string;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
      signal,
    });
    status = res.status;
    body = await res.text();
  } catch (err) {
    if (req.signal?.aborted) throw req.signal.reason;
    if (timeout.aborted)
      throw fail(
        'timeout',
        `efetch of ${pmids.length} PMIDs timed out after ${req.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`,
      );
    throw fail('network', `efetch of ${pmids.length} PMIDs failed in transport: ${transportReason(err)}`);
  }
  return classify(status, body, pmids.length, fail);
}

function classify(
  status: number,
  body: string,
  count: number,
  fail: (kind: EutilsErrorKind, message: string, status?: number) => EutilsError,
): string {
  const rate = rateLimitBody(body);
  if (status === 429 || rate) {
    const detail = rate ? ` (count ${rate.count ?? '?'}, limit ${rate.limit ?? '?'})` : '';
    throw fail('rate-limited', `E-utilities rate limit exceeded, HTTP ${status}${detail}`, status);
  }
  if (status >= 500) throw fail('server', `E-utilities server error, HTTP ${status}`, status);
  if (status === 408) throw fail('timeout', 'E-utilities answered HTTP 408 (request timeout)', status);
  if (status >= 400) throw fail('bad-request', `E-utilities rejected the request, HTTP ${status}`, status);
  if (status !== 200) throw fail('server', `unexpected HTTP ${status} from E-utilities`, status);

  const ncbiError = errorElementText(body);
  if (ncbiError !== null) throw fail('ncbi-error', `E-utilities <ERROR>: ${ncbiError}`, status);
  // A 200 whose set never closes was cut off upstream; the same request usually succeeds next time.
  if (!/<\/PubmedArticleSet>\s*$|<PubmedArticleSet\s*\/>\s*$/.test(body)) {
    throw fail(
      'server',
      `incomplete efetch response for ${count} PMIDs (${body.length} chars, no closing </PubmedArticleSet>)`,
      status,
    );
  }
  return body;
}

/** NCBI answers rate-limit breaches with JSON even on XML endpoints: {"error":"API rate limit exceeded",...}. */
function rateLimitBody(body: string): { count?: string; limit?: string } | null {
  const head = body.trimStart();
  if (!head.startsWith('{') || !/rate limit/i.test(head)) return null;
  try {
    const parsed = JSON.parse(head) as { error?: unknown; count?: unknown; limit?: unknown };
    if (typeof parsed.error !== 'string' || !/rate limit/i.test(parsed.error)) return null;
    // Only the two numbers are kept; the "api-key" field may hold the caller's key.
    return { count: digitsOrUndefined(parsed.count), limit: digitsOrUndefined(parsed.limit) };
  } catch {
    return null;
  }
}

function digitsOrUndefined(v: unknown): string | undefined {
  return typeof v === 'string' && /^\d{1,9}$/.test(v) ? v : typeof v === 'number' ? String(v) : undefined;
}

/**
 * The text of an <ERROR> element when the body is an error document (<eFetchResult><ERROR>…, a bare
 * <ERROR>, or another e*Result wrapper) rather than a PubmedArticleSet. Only the head is inspected.
 */
function errorElementText(body: string): string | null {
  const head = body.slice(0, 4096);
  if (/<PubmedArticleSet[\s>/]/.test(head)) return null;
  // Every <ERROR> is kept: the seed kept the first and lost the others' causes.
  const texts = [...head.matchAll(/<ERROR>([\s\S]*?)<\/ERROR>/g)].map(
    (m) =>
      (m[1] as string)
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&quot;/g, '"')
        .replace(/&apos;/g, "'")
        .replace(/&amp;/g, '&')
        .replace(/\s+/g, ' ')
        .trim()
        .slice(0, 300) || '(empty)',
  );
  if (texts.length === 0) return null;
  return texts.length === 1 ? (texts[0] as string) : `${texts.length} errors: ${texts.join('; ')}`;
}

/** undici wraps socket errors as TypeError('fetch failed') with a coded cause; keep only code/message. */
function transportReason(err: unknown): string {
  const e = err as { message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  const message = typeof e.message === 'string' ? e.message : 'unknown error';
  return code ? `${message} (${code})` : message;
}

/** Last line of defence: nothing built above should contain the key, but never let it through. */
function scrub(message: string, secret: string | undefined): string {
  if (!secret) return message;
  return message.split(secret).join('[api_key]').split(encodeURIComponent(secret)).join('[api_key]');
}

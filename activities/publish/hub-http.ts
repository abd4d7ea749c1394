/**
 * HTTP plumbing for the Hub client: a `fetch` that rides out 429s and 5xx with backoff (honouring Retry-After), the
 * mapping of failures to retryable / non-retryable kinds, and the scrubbing of anything secret from error text.
 * No Temporal here; activity.ts-style adapters turn a classified error into an ApplicationFailure.
 */
import { HubApiError } from '@huggingface/hub';

/** The Hub API calls @huggingface/hub makes for a dataset repo, by URL shape (also the stand-in's fault routes). */
export type HubRoute =
  'create' | 'info' | 'revision' | 'tree' | 'paths-info' | 'preupload' | 'commit' | 'lfs-batch' | 'lfs-upload';

export function hubRoute(url: string): HubRoute {
  const p = new URL(url).pathname;
  if (p === '/api/repos/create') return 'create';
  if (/\.git\/info\/lfs\/objects\/batch$/.test(p)) return 'lfs-batch';
  const m = /^\/api\/datasets\/[^/]+\/[^/]+\/([^/]+)/.exec(p);
  if (m) {
    const r = m[1]!;
    if (r === 'revision' || r === 'tree' || r === 'paths-info' || r === 'preupload' || r === 'commit') return r;
  } else if (/^\/api\/datasets\/[^/]+\/[^/]+$/.test(p)) return 'info';
  // Anything else is an LFS storage URL handed out by the batch call (S3 presigned PUTs, multipart completion).
  return 'lfs-upload';
}

export interface RetryNote {
  route: HubRoute;
  /** HTTP status, or 'network' for a connection that failed or dropped. */
  status: number | 'network';
  attempt: number;
  delayMs: number;
}

export interface HubFetchOptions {
  /** Tries per request, the first included (default 5). */
  attempts?: number;
  /** First backoff (default 500 ms), doubled per retry with jitter. */
  baseDelayMs?: number;
  /**
   * The longest wait done here (default 30 s). A 429 asking for longer is returned to the caller, whose activity
   * fails with that delay as its next retry delay: the activity slot is not held while the Hub's window resets.
   */
  maxDelayMs?: number;
  signal?: AbortSignal;
  onRetry?: (note: RetryNote) => void;
  /** The fetch to wrap (default: global fetch). */
  fetch?: typeof fetch;
}

export interface HubFetch {
  fetch: typeof fetch;
  /** The wait the Hub last asked for (Retry-After / RateLimit t=), in ms, or null. */
  lastRetryAfterMs: number | null;
  retries: number;
}

/** Retry-After (seconds or an HTTP date) or the IETF RateLimit header's `t=` (seconds until the window resets). */
export function retryAfterMs(headers: Headers, now = Date.now()): number | null {
  const ra = headers.get('retry-after');
  if (ra) {
    if (/^\d+(\.\d+)?$/.test(ra.trim())) return Math.round(Number(ra) * 1000);
    const at = Date.parse(ra);
    if (!Number.isNaN(at)) return Math.max(0, at - now);
  }
  const rl = headers.get('ratelimit');
  const t = rl ? /(?:^|[;,\s])t=(\d+)/.exec(rl) : null;
  return t ? Number(t[1]) * 1000 : null;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function retryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/**
 * A fetch for @huggingface/hub's `fetch` option. 429 and 5xx are retried here for every call, the commit included:
 * a commit carries `parentCommit`, so a repeat of one the Hub did apply is refused (412) instead of applied twice.
 * A connection that fails or drops is retried for every call except the commit, whose outcome is then unknown:
 * that is left to the activity's retry, which re-reads the repo before committing again.
 */
export function hubFetch(opts: HubFetchOptions = {}): HubFetch {
  const attempts = opts.attempts ?? 5;
  const base = opts.baseDelayMs ?? 500;
  const maxDelay = opts.maxDelayMs ?? 30_000;
  const inner = opts.fetch ?? fetch;
  const state: HubFetch = {
    lastRetryAfterMs: null,
    retries: 0,
    fetch: async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      const route = hubRoute(url);
      for (let attempt = 1; ; attempt++) {
        const backoff = Math.min(maxDelay, base * 2 ** (attempt - 1) * (0.75 + Math.random() / 2));
        let res: Response;
        try {
          res = await inner(input, init);
        } catch (err) {
          const aborted = (err as Error)?.name === 'AbortError' || init?.signal?.aborted || opts.signal?.aborted;
          if (aborted || route === 'commit' || attempt >= attempts) throw err;
          state.retries++;
          opts.onRetry?.({ route, status: 'network', attempt, delayMs: Math.round(backoff) });
          await sleep(backoff, opts.signal);
          continue;
        }
        if (!retryableStatus(res.status)) return res;
        const asked = retryAfterMs(res.headers);
        if (asked !== null) state.lastRetryAfterMs = asked;
        const delay = asked ?? backoff;
        if (attempt >= attempts || delay > maxDelay) return res;
        await res.arrayBuffer().catch(() => undefined); // free the connection
        state.retries++;
        opts.onRetry?.({ route, status: res.status, attempt, delayMs: Math.round(delay) });
        await sleep(delay, opts.signal);
      }
    },
  };
  return state;
}

/** Replaces every secret (and anything shaped like a Hub token) and drops URL query strings (presigned URLs). */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  return out
    .replace(/\bhf_[A-Za-z0-9]{6,}/g, 'hf_[redacted]')
    .replace(/(https?:\/\/[^\s?#"'<>]+)\?[^\s"'<>]*/g, '$1?[query removed]');
}

export type HubErrorType =
  | 'HubRateLimited'
  | 'HubUnavailable'
  | 'HubConflict'
  | 'HubNetwork'
  | 'HubAuth'
  | 'HubNotFound'
  | 'HubRejected'
  | 'HubLimits'
  | 'ConfigError'
  | 'HubError';

/** Failures no retry can fix: a bad or missing token, a refused payload (invalid card), a layout over the Hub's limits. */
export const NON_RETRYABLE_HUB_ERRORS: readonly HubErrorType[] = [
  'HubAuth',
  'HubNotFound',
  'HubRejected',
  'HubLimits',
  'ConfigError',
];

export interface ClassifiedHubError {
  type: HubErrorType;
  retryable: boolean;
  /** Scrubbed of secrets and URL queries. */
  message: string;
  status?: number;
  /** The wait the Hub asked for, for the activity's next retry. */
  retryAfterMs?: number;
}

export class HubPublishError extends Error {
  constructor(
    readonly type: HubErrorType,
    message: string,
  ) {
    super(message);
    this.name = 'HubPublishError';
  }
}

export function classifyHubError(
  err: unknown,
  secrets: readonly (string | undefined)[],
  lastRetryAfterMs?: number | null,
): ClassifiedHubError {
  const e = err as {
    message?: unknown;
    statusCode?: unknown;
    code?: unknown;
    name?: unknown;
    cause?: { code?: unknown; message?: unknown };
  };
  const raw = typeof e?.message === 'string' ? e.message : String(err);
  const msg = (m: string) => redact(m, secrets);
  if (err instanceof HubPublishError) {
    return { type: err.type, retryable: !NON_RETRYABLE_HUB_ERRORS.includes(err.type), message: msg(raw) };
  }
  const status =
    err instanceof HubApiError ? err.statusCode : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined) {
    const text = msg(`Hub answered ${status}: ${raw}`);
    if (status === 429)
      return {
        type: 'HubRateLimited',
        retryable: true,
        status,
        message: text,
        retryAfterMs: lastRetryAfterMs ?? undefined,
      };
    if (status >= 500) return { type: 'HubUnavailable', retryable: true, status, message: text };
    // 412: the branch moved since we read it (parentCommit); 409: a concurrent operation. Re-read and try again.
    if (status === 412 || status === 409) return { type: 'HubConflict', retryable: true, status, message: text };
    if (status === 408) return { type: 'HubNetwork', retryable: true, status, message: text };
    if (status === 401 || status === 403) return { type: 'HubAuth', retryable: false, status, message: text };
    if (status === 404) return { type: 'HubNotFound', retryable: false, status, message: text };
    return { type: 'HubRejected', retryable: false, status, message: text };
  }
  if (typeof raw === 'string' && /access token must start with 'hf_'/.test(raw)) {
    return { type: 'ConfigError', retryable: false, message: msg(`HF_TOKEN is malformed: ${raw}`) };
  }
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  const fetchFailed =
    e?.name === 'TypeError' &&
    /fetch failed|terminated|other side closed|socket/i.test(`${raw} ${String(e?.cause?.message ?? '')}`);
  if (fetchFailed || (code !== undefined && /^(ECONN|EPIPE|ETIMEDOUT|UND_ERR)/.test(code))) {
    return {
      type: 'HubNetwork',
      retryable: true,
      message: msg(`connection to the Hub failed${code ? ` (${code})` : ''}: ${raw}`),
    };
  }
  return { type: 'HubError', retryable: true, message: msg(raw) };
}

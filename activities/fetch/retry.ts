import { loadEnv } from '../../config/env';
import { SourceError } from './source';

/**
 * How downloads behave in a worker process. Worker-side settings (the environment, config/env.ts), never workflow input:
 * BIOMEDICA_FETCH_PER_WORKER     downloads in flight in the whole process, all activities together (32)
 * BIOMEDICA_FETCH_PER_ACTIVITY   downloads in flight per fetch activity (8)
 * BIOMEDICA_FETCH_ATTEMPTS       tries per object inside the activity before the failure escapes to Temporal (4)
 * BIOMEDICA_FETCH_BACKOFF_MS     first backoff, doubled per try with jitter, capped at BIOMEDICA_FETCH_BACKOFF_MAX_MS (500 / 10000)
 * BIOMEDICA_FETCH_TIMEOUT_MS     per request (HTTP: whole body; streams and FTP: idle) (60000)
 * BIOMEDICA_PLAN_CONCURRENCY     metadata GETs in flight while planning (32)
 */
export interface FetchTuning {
  perWorker: number;
  perActivity: number;
  attempts: number;
  backoffMs: number;
  backoffMaxMs: number;
  timeoutMs: number;
  planConcurrency: number;
}

/** Read from the environment on first use (a bad value is then one EnvError naming the variable). */
let tuning: FetchTuning | null = null;

function current(): FetchTuning {
  if (tuning) return tuning;
  const env = loadEnv();
  tuning = {
    perWorker: env.BIOMEDICA_FETCH_PER_WORKER,
    perActivity: env.BIOMEDICA_FETCH_PER_ACTIVITY,
    attempts: env.BIOMEDICA_FETCH_ATTEMPTS,
    backoffMs: env.BIOMEDICA_FETCH_BACKOFF_MS,
    backoffMaxMs: env.BIOMEDICA_FETCH_BACKOFF_MAX_MS,
    timeoutMs: env.BIOMEDICA_FETCH_TIMEOUT_MS,
    planConcurrency: env.BIOMEDICA_PLAN_CONCURRENCY,
  };
  return tuning;
}

export function fetchTuning(): Readonly<FetchTuning> {
  return current();
}

/** For tests and benchmarks: change the process's tuning; returns the previous values. */
export function setFetchTuning(change: Partial<FetchTuning>): FetchTuning {
  const before = { ...current() };
  Object.assign(current(), change);
  if (change.perWorker !== undefined && change.perWorker !== before.perWorker) workerLimiter = null;
  return before;
}

/** A FIFO counting semaphore; a waiter whose signal aborts leaves the line at once. */
export class Limiter {
  private active = 0;
  private readonly waiting: { grant: () => void }[] = [];
  constructor(readonly limit: number) {}
  get inFlight(): number {
    return this.active;
  }
  get queued(): number {
    return this.waiting.length;
  }
  /**
   * A slot: resolves with its release once one is free (first come, first served). A waiter whose signal aborts
   * leaves the line at once and rejects with the abort reason; a released slot passes straight to the next waiter.
   */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.active < this.limit) this.active++;
    else {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal!.reason instanceof Error ? signal!.reason : new Error('cancelled while waiting for a slot'));
        };
        const waiter = {
          grant: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiting.push(waiter);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next)
        next.grant(); // the slot passes on: `active` stays
      else this.active--;
    };
  }

  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

let workerLimiter: Limiter | null = null;

/** The process-wide bound on downloads in flight (every fetch activity and the planner share it). */
export function downloadLimiter(): Limiter {
  workerLimiter ??= new Limiter(current().perWorker);
  return workerLimiter;
}

/** Errors worth another try now: resets, timeouts, 5xx and checksum mismatches (a corrupted transfer). */
export function isRetryable(err: unknown): boolean {
  return err instanceof SourceError && err.retryable;
}

export function backoffDelay(attempt: number, t: Pick<FetchTuning, 'backoffMs' | 'backoffMaxMs'> = current()): number {
  const exp = Math.min(t.backoffMaxMs, t.backoffMs * 2 ** (attempt - 1));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `fn` up to `attempts` times, backing off exponentially with jitter between tries, as long as it fails
 * with a retryable SourceError. The last error escapes unchanged: a retryable one then fails the activity, and
 * Temporal retries it with its own (longer) backoff; a non-retryable one (404, 403) is the caller's to record.
 */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T>,
  opts: {
    signal?: AbortSignal;
    attempts?: number;
    onRetry?: (err: SourceError, attempt: number, delayMs: number) => void;
  } = {},
): Promise<T> {
  const attempts = opts.attempts ?? current().attempts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetryable(err) || attempt >= attempts || opts.signal?.aborted) throw err;
      const delay = backoffDelay(attempt);
      opts.onRetry?.(err as SourceError, attempt, delay);
      await sleep(delay, opts.signal);
    }
  }
}

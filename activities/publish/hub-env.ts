import { loadEnv, type Env } from '../../config/env';
import { HubPublishError } from './hub-http';

/**
 * Worker-side Hub settings, from the worker's environment only (never from workflow input or history):
 * HF_TOKEN (a write token for the dataset repo) and HF_COMMITS_PER_HOUR (the hub task queue's dispatch rate, retries
 * included: the Hub's commit limit is undocumented; 429s seen in the wild say "128 per hour" (free) and "320 per
 * hour", so the default 100 leaves headroom).
 */
export type HubWorkerEnv = Pick<Env, 'HF_TOKEN' | 'HF_COMMITS_PER_HOUR'>;

export function readHubWorkerEnv(env: NodeJS.ProcessEnv = process.env): HubWorkerEnv {
  return loadEnv(env);
}

/** The token, or a non-retryable ConfigError that names the variable (never a value). */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string {
  const token = readHubWorkerEnv(env).HF_TOKEN;
  if (!token)
    throw new HubPublishError(
      'ConfigError',
      "HF_TOKEN is not set in this worker's environment (Hub publishing needs a write token there)",
    );
  return token;
}

/** maxTaskQueueActivitiesPerSecond for the hub queue. */
export function hubCommitRatePerSecond(env: HubWorkerEnv): number {
  return env.HF_COMMITS_PER_HOUR / 3600;
}

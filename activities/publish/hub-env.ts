import { z } from 'zod';
import { HubPublishError } from './hub-http';

/**
 * Worker-side Hub settings, from the worker's environment only (never from workflow input or history):
 * HF_TOKEN (a write token for the dataset repo) and HF_COMMITS_PER_HOUR (the hub task queue's dispatch rate).
 */
export const HubWorkerEnvSchema = z.object({
  HF_TOKEN: z.string().optional(),
  /**
   * Commit activities dispatched per hour on the biomedica-hub queue, retries included. The Hub's commit limit is
   * undocumented; 429s seen in the wild say "128 per hour" (free) and "320 per hour", so 100 leaves headroom.
   */
  HF_COMMITS_PER_HOUR: z.coerce.number().positive().max(36_000).default(100),
});
export type HubWorkerEnv = z.infer<typeof HubWorkerEnvSchema>;

export function readHubWorkerEnv(env: NodeJS.ProcessEnv = process.env): HubWorkerEnv {
  return HubWorkerEnvSchema.parse({ HF_TOKEN: env.HF_TOKEN || undefined, HF_COMMITS_PER_HOUR: env.HF_COMMITS_PER_HOUR || undefined });
}

/** The token, or a non-retryable ConfigError that names the variable (never a value). */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string {
  const token = readHubWorkerEnv(env).HF_TOKEN;
  if (!token) throw new HubPublishError('ConfigError', "HF_TOKEN is not set in this worker's environment (Hub publishing needs a write token there)");
  return token;
}

/** maxTaskQueueActivitiesPerSecond for the hub queue. */
export function hubCommitRatePerSecond(env: HubWorkerEnv): number {
  return env.HF_COMMITS_PER_HOUR / 3600;
}

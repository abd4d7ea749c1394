import { z } from 'zod';

/** The three published license subsets (reference/pmc-sources.md §1.7). */
export const SUBSETS = ['commercial', 'noncommercial', 'other'] as const;
export const SubsetSchema = z.enum(SUBSETS);
export type Subset = z.infer<typeof SubsetSchema>;

export { TASK_QUEUES } from './task-queues';

export const SourceSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('pmc-cloud-http'),
    /** Base URL of the bucket, e.g. https://pmc-oa-opendata.s3.amazonaws.com (no trailing slash). */
    baseUrl: z.string().url().describe('S3-style HTTPS endpoint of the PMC cloud bucket'),
  }),
  z.object({
    kind: z.literal('pmc-cloud-dir'),
    /** A local directory holding the bucket's layout (a synced mirror). */
    root: z.string().min(1),
  }),
]);
export type SourceConfig = z.infer<typeof SourceSchema>;

/**
 * Everything that defines a release. It travels in the workflow input, so it must never hold a secret:
 * the NCBI API key and the Hub token are read by workers from their environment.
 */
export const ReleaseInputSchema = z.object({
  releaseId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, . _ - (max 64)'),
  /** Shared by every worker (a local path here, a shared filesystem on a cluster). */
  dataDir: z.string().min(1),
  source: SourceSchema,
  units: z
    .object({
      /** Articles per unit; one unit becomes one shard (published shards hold at most 10,000 samples). */
      maxArticles: z.number().int().positive().default(2500),
      /** Figure images per unit, counted from the metadata's media_urls at planning time: bounds samples per shard. */
      maxImages: z.number().int().positive().max(10000).default(10000),
    })
    .default({ maxArticles: 2500, maxImages: 10000 }),
  entrez: z
    .object({
      enabled: z.boolean().default(true),
      /** PMIDs per efetch POST (NCBI: POST above ~200). */
      batchSize: z.number().int().positive().max(10000).default(200),
      /** Send requests only on weekends or 21:00-05:00 US Eastern, as NCBI asks of large jobs; waits on durable timers. */
      offPeak: z.boolean().default(false),
    })
    .default({ enabled: true, batchSize: 200, offPeak: false }),
  images: z
    .object({
      minSide: z.number().int().positive().default(21),
      maxPixels: z.number().int().positive().default(178956970),
      jpegQuality: z.number().int().min(50).max(100).default(90),
    })
    .default({ minSide: 21, maxPixels: 178956970, jpegQuality: 90 }),
  annotate: z
    .object({
      /** ONNX embedding model; relative paths are under the data dir. Generated for the sample when missing. */
      modelPath: z.string().default('models/tiny-vit-seed1.onnx'),
      /** Taxonomy artifact (centroids -> cluster labels); relative to the data dir. */
      taxonomyPath: z.string().default('models/taxonomy-bootstrap-v0.json'),
      batchSize: z.number().int().positive().default(16),
    })
    .default({ modelPath: 'models/tiny-vit-seed1.onnx', taxonomyPath: 'models/taxonomy-bootstrap-v0.json', batchSize: 16 }),
  publish: z
    .object({
      kind: z.literal('local-folder').default('local-folder'),
      /** Relative to the release folder unless absolute. */
      path: z.string().default('hub'),
      repoId: z.string().default('local/biomedica-sample'),
    })
    .default({ kind: 'local-folder', path: 'hub', repoId: 'local/biomedica-sample' }),
  /** Unit workflows in flight at once. */
  window: z.number().int().positive().max(500).default(4),
});
export type ReleaseInput = z.infer<typeof ReleaseInputSchema>;
export type ReleaseInputArgs = z.input<typeof ReleaseInputSchema>;

export function releaseWorkflowId(releaseId: string): string {
  return `release-${releaseId}`;
}

/** Worker-side settings: endpoints and secrets from the environment, never from workflow input. */
export const WorkerEnvSchema = z.object({
  NCBI_EUTILS_URL: z.string().url().default('https://eutils.ncbi.nlm.nih.gov/entrez/eutils'),
  NCBI_TOOL: z.string().default('biomedica-release'),
  NCBI_EMAIL: z.string().default(''),
  NCBI_API_KEY: z.string().optional(),
  /** Task-queue-wide efetch rate; NCBI allows 3/s without a key, 10/s with one. Lower is allowed, higher is clamped. */
  NCBI_MAX_RPS: z.coerce.number().positive().optional(),
  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  ORT_EXECUTION_PROVIDERS: z.string().default('cpu'),
});
export type WorkerEnv = z.infer<typeof WorkerEnvSchema>;

export function readWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  return WorkerEnvSchema.parse(env);
}

/**
 * The entrez task queue's server-side dispatch rate. Temporal's task-queue limiter is a token bucket whose burst
 * equals its rate, so one second can see up to twice the rate: half of NCBI's ceiling (3/s, 10/s with a key) keeps
 * every one-second window within it, for any number of workers. Each request carries up to 200 PMIDs, so even
 * 1.5 requests/s covers 8 million articles in about 7.5 hours.
 */
export function entrezRatePerSecond(env: WorkerEnv): number {
  const ceiling = env.NCBI_API_KEY ? 10 : 3;
  return Math.min(env.NCBI_MAX_RPS ?? ceiling, ceiling) / 2;
}

import { z } from 'zod';
import { defaultTemporalAddress } from './dev-server';
import { loadEnv, type Env } from './env';
import { DRIVER_EVENTS_PER_UNIT, HISTORY_BUDGET, maxWindowFor } from './history';

/** The three published license subsets (docs/sources.md). */
export const SUBSETS = ['commercial', 'noncommercial', 'other'] as const;
export const SubsetSchema = z.enum(SUBSETS);
export type Subset = z.infer<typeof SubsetSchema>;

export { TASK_QUEUES } from './task-queues';
export { releaseLocation } from './location';

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
  z.object({
    /**
     * The legacy PMC FTP service (removed by NCBI in August 2026; mirrors and archived copies remain):
     * `oa_file_list.csv` (or the older `.txt`) and `oa_package/xx/yy/PMC<id>.tar.gz` (docs/sources.md).
     */
    kind: z.literal('pmc-legacy'),
    /** ftp://host[:port]/pub/pmc or https://host/pub/pmc: the folder holding the file list and oa_package/. */
    baseUrl: z
      .string()
      .url()
      .refine((u) => /^(ftp|https?):\/\//.test(u), 'ftp://, http:// or https://'),
    /** The file list, relative to baseUrl: oa_file_list.csv, or the older tab-separated oa_file_list.txt. */
    fileList: z.string().min(1).default('oa_file_list.csv'),
    /** Largest package member extracted (nXML or image); larger ones are rejected with a recorded reason. */
    maxEntryBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024 * 1024),
    /** Largest decompressed package; past it the package is rejected. */
    maxPackageBytes: z
      .number()
      .int()
      .positive()
      .default(4 * 1024 * 1024 * 1024),
    /**
     * The list has no figure counts, so units are cut at min(units.maxArticles, floor(units.maxImages / this)) articles
     * to keep a unit's figures within units.maxImages.
     */
    assumedImagesPerArticle: z.number().int().positive().default(8),
    /** FTP connections (or HTTPS downloads) per worker process. */
    connections: z.number().int().positive().max(64).default(4),
  }),
]);
export type SourceConfig = z.infer<typeof SourceSchema>;

/** The embedded default: a local folder laid out like the Hub dataset repo (no network, no token). */
export const LocalFolderPublishSchema = z.object({
  kind: z.literal('local-folder').default('local-folder'),
  /** Relative to the release folder unless absolute. */
  path: z.string().default('hub'),
  repoId: z.string().default('local/biomedica-sample'),
});

/**
 * A Hugging Face Hub dataset repo (docs/publishing.md). The token is never part of this: workers read HF_TOKEN from
 * their environment. Commit bounds follow the Hub's advice (about 50-100 files per commit, a 60 s commit timeout).
 */
export const HubPublishSchema = z.object({
  kind: z.literal('hub'),
  /** `namespace/name` of the dataset repo; created (private unless `private: false`) when missing. */
  repoId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/, 'namespace/name'),
  /** The Hub's base URL (no trailing slash needed); a loopback stand-in in tests. */
  endpoint: z
    .string()
    .url()
    .default('https://huggingface.co')
    .transform((u) => u.replace(/\/+$/, '')),
  /** Visibility when the repo has to be created; an existing repo keeps its own. */
  private: z.boolean().default(true),
  /** Files per commit (the Hub advises 50-100 and caps a commit's processing at 60 s). */
  maxFilesPerCommit: z.number().int().positive().max(1000).default(50),
  /** Bytes per commit (LFS uploads happen inside the commit's activity; this bounds one activity's work). */
  maxBytesPerCommit: z.number().int().positive().default(50_000_000_000),
});

export const PublishSchema = z
  .union([LocalFolderPublishSchema, HubPublishSchema])
  .default({ kind: 'local-folder', path: 'hub', repoId: 'local/biomedica-sample' });
export type PublishConfig = z.infer<typeof PublishSchema>;
export type HubPublishConfig = z.infer<typeof HubPublishSchema>;

/**
 * Everything that defines a release. It travels in the workflow input, so it must never hold a secret:
 * the NCBI API key and the Hub token are read by workers from their environment.
 */
export const ReleaseInputSchema = z
  .object({
    /** `{year}` is replaced by the year the run starts (for a yearly Temporal Schedule). */
    releaseId: z.string().regex(/^[A-Za-z0-9{][A-Za-z0-9._{}-]{0,63}$/, 'letters, digits, . _ - and {year} (max 64)'),
    /** Shared by every worker (a local path here, a shared filesystem on a cluster). */
    dataDir: z.string().min(1),
    /**
     * Where the release tree lives when the pools do not share a filesystem: `s3://bucket/prefix` (an S3-compatible
     * bucket; endpoint and credentials come from each worker's environment) or `file:///path`. Every worker then
     * works in a folder of its own (BIOMEDICA_WORK_DIR, else dataDir) and commits each stage's outputs, then its
     * manifest, to the store; a stage on any host finds its inputs there by key. Without it, dataDir is the tree
     * itself, shared by every worker (the embedded default, or a shared filesystem).
     */
    store: z
      .string()
      .regex(
        /^(s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?|file:\/\/\/.*)$/,
        's3://bucket/prefix or file:///absolute/path',
      )
      .optional(),
    source: SourceSchema,
    /**
     * Plan incrementally against this earlier release in the same data dir: versions whose inventory ETag (legacy:
     * package path and Last Updated) is unchanged reuse that plan's facts without a metadata GET, and the plan
     * reports new, changed, unchanged, removed and newly retracted versions. Downloads are reused through the
     * content-addressed cache under <dataDir>/cache either way.
     */
    previousRelease: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)
      .optional(),
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
    /** What the parse stage reads beyond the default record (docs/dataset-format.md). */
    figures: z
      .object({
        /** Figure citations inside table cells count as mentions (the row's text is the mention). */
        tableCellMentions: z.boolean().default(false),
        /** Graphical abstracts' images are published as samples; otherwise quarantined as "graphical-abstract". */
        graphicalAbstracts: z.boolean().default(false),
      })
      .default({ tableCellMentions: false, graphicalAbstracts: false }),
    shard: z
      .object({
        /** The published shards hold at most 10,000 samples and about 1 GB; a unit that would not fit fails with a clear error. */
        maxBytes: z.number().int().min(10240).default(1_000_000_000),
        maxSamples: z.number().int().positive().max(10000).default(10000),
      })
      .default({ maxBytes: 1_000_000_000, maxSamples: 10000 }),
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
      .default({
        modelPath: 'models/tiny-vit-seed1.onnx',
        taxonomyPath: 'models/taxonomy-bootstrap-v0.json',
        batchSize: 16,
      }),
    publish: PublishSchema,
    /** Unit workflows in flight at once (shared out among the subsets by size). */
    window: z.number().int().positive().max(500).default(4),
    /**
     * How often a unit (and the release) that waits on an activity asks the server whether that activity is being
     * retried, and then says so in its current details (attempt, next try, last error). Seconds.
     */
    retryReportSeconds: z.number().int().min(1).max(86_400).default(600),
    /** Units a subset driver starts before it continues as new, at most. */
    unitsPerRun: z.number().int().positive().max(2000).default(400),
    /**
     * Events a subset driver's run may reach before it continues as new (stops starting units, drains, continues):
     * keeps every history a few thousand events long whatever the window. Temporal warns at 10,240.
     */
    historyBudget: z.number().int().min(200).max(10_000).default(HISTORY_BUDGET),
  })
  .superRefine((r, ctx) => {
    // A subset driver's run holds about historyBudget / 25 units and drains before it continues as new: a window
    // of more than half of that would spend its runs draining. Refused here rather than quietly served badly.
    const most = maxWindowFor(r.historyBudget);
    if (r.window > most) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['window'],
        message: `a window of ${r.window} needs historyBudget >= ${r.window * 2 * DRIVER_EVENTS_PER_UNIT} (a subset driver's run holds about historyBudget / ${DRIVER_EVENTS_PER_UNIT} units and drains before it continues as new, so it should hold two windows at least); with historyBudget ${r.historyBudget} the window is at most ${most}, and historyBudget is at most 10000`,
      });
    }
  });
export type ReleaseInput = z.infer<typeof ReleaseInputSchema>;
export type ReleaseInputArgs = z.input<typeof ReleaseInputSchema>;

export function releaseWorkflowId(releaseId: string): string {
  return `release-${releaseId}`;
}

/** Worker-side settings: endpoints and secrets from the environment (config/env.ts), never from workflow input. */
export type WorkerEnv = Env & { TEMPORAL_ADDRESS: string };

export function readWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  // Without TEMPORAL_ADDRESS, the embedded default's server (its port may come from BIOMEDICA_TEMPORAL_PORT).
  return { ...loadEnv(env), TEMPORAL_ADDRESS: defaultTemporalAddress(env) };
}

/**
 * The entrez task queue's server-side dispatch rate. Temporal's task-queue limiter is a token bucket whose burst
 * equals its rate, so one second can see up to twice the rate: half of NCBI's ceiling (3/s, 10/s with a key) keeps
 * every one-second window within it, for any number of workers. Each request carries up to 200 PMIDs, so even
 * 1.5 requests/s covers 8 million articles in about 7.5 hours.
 */
export function entrezRatePerSecond(env: Pick<Env, 'NCBI_API_KEY' | 'NCBI_MAX_RPS'>): number {
  const ceiling = env.NCBI_API_KEY ? 10 : 3;
  return Math.min(env.NCBI_MAX_RPS ?? ceiling, ceiling) / 2;
}

import { z } from 'zod';

/**
 * Every environment variable the project reads, in one typed schema: workers, the CLI, the demo and the tests read
 * the environment only through `loadEnv()`. Workflow inputs never carry any of these (secrets stay here).
 * docs/operations.md's "Environment" table is `envTable()`'s output; a test keeps the two the same.
 */

const port = z.coerce
  .number({ error: 'a port number (1 to 65535)' })
  .int({ error: 'a port number (1 to 65535)' })
  .min(1, { error: 'a port number (1 to 65535)' })
  .max(65535, { error: 'a port number (1 to 65535)' });
const positiveInt = z.coerce
  .number({ error: 'a whole number above 0' })
  .int({ error: 'a whole number above 0' })
  .positive({ error: 'a whole number above 0' });
const bool = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => ['1', '0', 'true', 'false', 'yes', 'no'].includes(v), 'true or false (1/0, yes/no)')
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

interface VarDoc {
  /** Who reads it. */
  for: 'workers' | 'CLI' | 'workers, CLI' | 'demo' | 'tests' | 'all';
  default: string;
  secret?: true;
  text: string;
}

/** The schema, with the documentation of each variable beside it. */
const VARS = {
  BIOMEDICA_DATA_DIR: [
    z.string().min(1).optional(),
    {
      for: 'all',
      default: './data',
      text: "Data dir of the embedded default: releases, the sample mirror, the dev server's SQLite file, caches. A release names its own `dataDir`.",
    },
  ],
  BIOMEDICA_SHARED_DIR: [
    z.string().min(1).optional(),
    {
      for: 'all',
      default: '../shared',
      text: 'The shared fixtures folder beside the checkout (read in place, never copied).',
    },
  ],
  BIOMEDICA_WORK_DIR: [
    z.string().min(1).optional(),
    {
      for: 'workers',
      default: "the release's `dataDir`",
      text: "This worker's own working folder for a release with a `store`: stages work here and commit to the store (one per host; nothing in it is shared).",
    },
  ],
  BIOMEDICA_S3_ENDPOINT: [
    z.string().url().optional(),
    {
      for: 'workers, CLI',
      default: "AWS S3 (the region's endpoint)",
      text: 'Endpoint URL of an S3-compatible store (MinIO, Ceph, a loopback stand-in) for `s3://` stores.',
    },
  ],
  BIOMEDICA_S3_FORCE_PATH_STYLE: [
    bool.optional(),
    {
      for: 'workers, CLI',
      default: 'true with BIOMEDICA_S3_ENDPOINT, else false',
      text: 'Path-style bucket addressing (`endpoint/bucket/key`), which most S3-compatible servers want.',
    },
  ],
  AWS_REGION: [
    z.string().min(1).default('us-east-1'),
    { for: 'workers, CLI', default: 'us-east-1', text: 'Region of the `s3://` store (SigV4 signs with it).' },
  ],
  AWS_ACCESS_KEY_ID: [
    z.string().min(1).optional(),
    {
      for: 'workers, CLI',
      default: "(the SDK's chain: profile, web identity, instance role)",
      text: 'Access key of the `s3://` store, with AWS_SECRET_ACCESS_KEY.',
    },
  ],
  AWS_SECRET_ACCESS_KEY: [
    z.string().min(1).optional(),
    { for: 'workers, CLI', default: '(none)', secret: true, text: 'Secret key of the `s3://` store.' },
  ],
  AWS_SESSION_TOKEN: [
    z.string().min(1).optional(),
    { for: 'workers, CLI', default: '(none)', secret: true, text: 'Session token of temporary `s3://` credentials.' },
  ],
  TEMPORAL_ADDRESS: [
    z.string().min(1).optional(),
    { for: 'workers, CLI', default: 'the dev server (127.0.0.1:7233)', text: 'host:port of the Temporal frontend.' },
  ],
  TEMPORAL_NAMESPACE: [
    z.string().min(1).default('default'),
    { for: 'workers, CLI', default: 'default', text: 'Temporal namespace.' },
  ],
  TEMPORAL_TLS: [
    bool.optional(),
    {
      for: 'workers, CLI',
      default: 'false (true with a CA, a client certificate or an API key)',
      text: 'Connect with TLS (system CAs unless TEMPORAL_TLS_CA).',
    },
  ],
  TEMPORAL_TLS_CA: [
    z.string().min(1).optional(),
    {
      for: 'workers, CLI',
      default: '(system CAs)',
      text: "PEM file of the CA that signed the server's certificate (a self-hosted cluster).",
    },
  ],
  TEMPORAL_TLS_CERT: [
    z.string().min(1).optional(),
    {
      for: 'workers, CLI',
      default: '(none)',
      text: 'PEM file of the client certificate, for mTLS (with TEMPORAL_TLS_KEY).',
    },
  ],
  TEMPORAL_TLS_KEY: [
    z.string().min(1).optional(),
    { for: 'workers, CLI', default: '(none)', secret: true, text: "PEM file of the client certificate's private key." },
  ],
  TEMPORAL_TLS_SERVER_NAME: [
    z.string().min(1).optional(),
    {
      for: 'workers, CLI',
      default: "(the address's host)",
      text: 'Server name to verify the certificate against, when it differs from the address.',
    },
  ],
  TEMPORAL_API_KEY: [
    z.string().min(1).optional(),
    { for: 'workers, CLI', default: '(none)', secret: true, text: 'API key (Temporal Cloud); implies TLS.' },
  ],
  TEMPORAL_UI_URL: [
    z.string().url().optional(),
    {
      for: 'CLI',
      default: "the dev server's UI (http://localhost:8233)",
      text: 'Base URL of the Web UI, for the links the CLI prints (e.g. https://cloud.temporal.io).',
    },
  ],
  BIOMEDICA_TEMPORAL_PORT: [
    port.optional(),
    {
      for: 'workers, CLI',
      default: '7233',
      text: "The dev server's gRPC port (the demo, workers and CLI follow it; TEMPORAL_ADDRESS overrides).",
    },
  ],
  BIOMEDICA_TEMPORAL_UI_PORT: [port.optional(), { for: 'CLI', default: '8233', text: "The dev server's Web UI port." }],
  TEMPORAL_CLI: [
    z.string().min(1).optional(),
    {
      for: 'CLI',
      default: 'tools/bin/temporal',
      text: 'The Temporal CLI that runs the dev server (setup builds v1.5.1 there).',
    },
  ],
  BIOMEDICA_SAMPLE_MIRROR_PORT: [
    port.default(8710),
    { for: 'demo', default: '8710', text: "Port of the demo's loopback PMC bucket." },
  ],
  BIOMEDICA_SAMPLE_EUTILS_PORT: [
    port.default(8711),
    { for: 'demo', default: '8711', text: "Port of the demo's loopback E-utilities stand-in." },
  ],
  BIOMEDICA_SAMPLE_NXML: [
    z.string().min(1).optional(),
    {
      for: 'demo',
      default: '<shared>/fixtures/real/nxml',
      text: 'Folder of PMC article XML the sample mirror is built from.',
    },
  ],
  NCBI_EUTILS_URL: [
    z.string().url().default('https://eutils.ncbi.nlm.nih.gov/entrez/eutils'),
    {
      for: 'workers',
      default: 'https://eutils.ncbi.nlm.nih.gov/entrez/eutils',
      text: 'E-utilities base URL (the demo and tests point it at the loopback stand-in).',
    },
  ],
  NCBI_TOOL: [
    z.string().default('biomedica-release'),
    {
      for: 'workers',
      default: 'biomedica-release',
      text: '`tool=` sent with every E-utilities request, as NCBI asks.',
    },
  ],
  NCBI_EMAIL: [
    z.string().default(''),
    {
      for: 'workers',
      default: '(none)',
      text: '`email=` sent with every request: NCBI contacts it before blocking a tool.',
    },
  ],
  NCBI_API_KEY: [
    z.string().min(1).optional(),
    {
      for: 'workers',
      default: '(none)',
      secret: true,
      text: "NCBI API key: raises the entrez queue's rate from 3/s to 10/s (halved for the limiter's burst).",
    },
  ],
  NCBI_MAX_RPS: [
    z.coerce.number().positive().optional(),
    { for: 'workers', default: "NCBI's ceiling", text: 'A lower efetch rate than NCBI allows (higher is clamped).' },
  ],
  HF_TOKEN: [
    z.string().min(1).optional(),
    { for: 'workers', default: '(none)', secret: true, text: 'Hugging Face write token, for publish.kind `hub`.' },
  ],
  HF_COMMITS_PER_HOUR: [
    z.coerce.number().positive().max(36_000).default(100),
    {
      for: 'workers',
      default: '100',
      text: 'Hub commits dispatched per hour on the biomedica-hub queue, retries included.',
    },
  ],
  ORT_EXECUTION_PROVIDERS: [
    z.string().min(1).default('cpu'),
    {
      for: 'workers',
      default: 'cpu',
      text: 'onnxruntime execution providers in order of preference, e.g. `cuda,cpu`.',
    },
  ],
  GPU_SLOTS: [
    positiveInt.default(1),
    {
      for: 'workers',
      default: '1',
      text: 'Concurrent activities of the gpu pool per process (one onnxruntime session each).',
    },
  ],
  BIOMEDICA_CPU_HOSTS_WORKFLOWS: [
    bool.default(true),
    {
      for: 'workers',
      default: 'true',
      text: 'Whether a cpu pool running alone also hosts the workflow task queue (a process running several pools always does).',
    },
  ],
  BIOMEDICA_CPU_THREADS: [
    z.coerce
      .number({ error: 'a whole number, 0 or more' })
      .int({ error: 'a whole number, 0 or more' })
      .min(0, { error: 'a whole number, 0 or more' })
      .optional(),
    {
      for: 'workers',
      default: 'the cores (os.availableParallelism())',
      text: 'Worker threads of a cpu pool process for parse, images, shard, parquet, finalize and the taxonomy fit; 0 runs them on the main thread.',
    },
  ],
  BIOMEDICA_CPU_ISOLATION: [
    z.enum(['threads', 'processes'], { error: 'threads or processes' }).default('processes'),
    {
      for: 'workers',
      default: 'processes',
      text: "Where a cpu pool process runs those tasks: as many child processes (one task each at a time; libvips scales across processes, not across one process's threads: 1.96x at 2 against 1.39x on threads), or its worker threads.",
    },
  ],
  BIOMEDICA_CPU_PIN: [
    bool.optional(),
    {
      for: 'workers',
      default: 'true when the child processes are at least as many as the cores this process may use (Linux)',
      text: "Pins each child process of the cpu pool to one of this process's cores (taskset; Linux only): a child's threads then hand work to each other on one core, where unpinned they often waited in the other core's queue while theirs idled (2 cores: 1.88 against 1.75 cores busy, 10% more figures per second).",
    },
  ],
  BIOMEDICA_FETCH_PER_WORKER: [
    positiveInt.default(32),
    { for: 'workers', default: '32', text: 'Downloads in flight in a whole worker process.' },
  ],
  BIOMEDICA_FETCH_PER_ACTIVITY: [
    positiveInt.default(8),
    { for: 'workers', default: '8', text: 'Downloads in flight per fetch activity.' },
  ],
  BIOMEDICA_FETCH_ATTEMPTS: [
    positiveInt.default(4),
    { for: 'workers', default: '4', text: 'Tries per object inside an activity before the failure goes to Temporal.' },
  ],
  BIOMEDICA_FETCH_BACKOFF_MS: [
    positiveInt.default(500),
    { for: 'workers', default: '500', text: 'First backoff between tries, doubled per try with jitter.' },
  ],
  BIOMEDICA_FETCH_BACKOFF_MAX_MS: [
    positiveInt.default(10_000),
    { for: 'workers', default: '10000', text: 'Longest backoff between tries.' },
  ],
  BIOMEDICA_FETCH_TIMEOUT_MS: [
    positiveInt.default(60_000),
    { for: 'workers', default: '60000', text: 'Per request (HTTP: the whole body; streams and FTP: idle time).' },
  ],
  BIOMEDICA_PLAN_CONCURRENCY: [
    positiveInt.default(32),
    { for: 'workers', default: '32', text: 'Metadata GETs in flight while planning.' },
  ],
  UV_THREADPOOL_SIZE: [
    positiveInt.optional(),
    {
      for: 'workers',
      default: '4',
      text: 'Read by Node itself: libuv threads, which decode JPEGs for sharp; set it to the cores on GPU hosts and on cpu hosts of more than 4 cores (every cpu thread decodes through it).',
    },
  ],
  LOG_LEVEL: [
    z.enum(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']).optional(),
    { for: 'workers', default: 'INFO (WARN with several pools)', text: 'Worker log level.' },
  ],
  BIOMEDICA_TEST_PYTHON: [
    z.string().min(1).optional(),
    {
      for: 'tests',
      default: 'tools/py/bin/python',
      text: 'The Python with the readers the tests check outputs with (pyarrow, webdataset, datasets).',
    },
  ],
} satisfies Record<string, [z.ZodTypeAny, VarDoc]>;

type Vars = typeof VARS;
export type EnvName = keyof Vars;

export const EnvSchema = z.object(
  Object.fromEntries(Object.entries(VARS).map(([k, [schema]]) => [k, schema])) as { [K in EnvName]: Vars[K][0] },
);
export type Env = z.infer<typeof EnvSchema>;

/** A variable set to a value its schema refuses: one line naming the variable and what it takes. */
export class EnvError extends Error {
  override readonly name = 'EnvError';
}

/**
 * The environment, parsed: unset and empty variables take their defaults, a bad value is an EnvError naming the
 * variable and what it must be (never its value when it is a secret).
 */
export function loadEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const picked: Record<string, string> = {};
  for (const name of Object.keys(VARS)) {
    const v = source[name];
    if (v !== undefined && v !== '') picked[name] = v;
  }
  const parsed = EnvSchema.safeParse(picked);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => {
    const name = String(i.path[0]) as EnvName;
    const shown = VARS[name]?.[1] && 'secret' in VARS[name][1] ? '(a secret, not shown)' : JSON.stringify(picked[name]);
    return `${name}=${shown}: ${i.message}`;
  });
  throw new EnvError(`bad environment: ${lines.join('; ')} (docs/operations.md, "Environment")`);
}

/** Each variable with what it is set to here (secrets only as "(set)"), for `cli/main.ts env`. */
export function envReport(source: NodeJS.ProcessEnv = process.env): string[] {
  return Object.entries(VARS).map(([name, [, d]]) => {
    const v = source[name];
    const shown = v === undefined || v === '' ? `(default: ${d.default})` : 'secret' in d ? '(set)' : v;
    return `${name.padEnd(32)} ${shown}`;
  });
}

/** The Markdown table of every variable (docs/operations.md carries it verbatim). */
export function envTable(): string {
  const rows = Object.entries(VARS).map(
    ([name, [, d]]) =>
      `| \`${name}\` | ${d.for} | ${d.default} | ${d.text}${'secret' in d ? ' Secret: worker environment only, never in inputs, history or logs.' : ''} |`,
  );
  return ['| variable | read by | default | what it sets |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { temporalConnectionConfig } from '../config/connection';
import { envReport, envTable, loadEnv } from '../config/env';
import { DYNAMIC_CONFIG_ADVICE, setupCluster } from './cluster';
import { fixturePaths, defaultDataDir } from '../config/paths';
import { ReleaseInputSchema, type ReleaseInputArgs } from '../config/release';
import { startEutilsStandin } from '../sample/eutils-standin';
import { startMirrorServer } from '../sample/mirror-server';
import { isWorkerPool, POOLS, runPools, WORKER_POOLS } from '../workers/pools';
import { parseCommand, UsageError } from './args';
import { cancelRelease, createYearlySchedule, pauseRelease, resumeRelease } from './control';
import {
  connectClient,
  formatStageTable,
  formatStatus,
  progressLine,
  releaseStatus,
  startRelease,
  uiLink,
} from './release';
import { runExport } from './export';
import { checkStore, openStore } from '../activities/common/store';
import { taxonomyCommand, TAXONOMY_USAGE } from './taxonomy';
import {
  SAMPLE_RELEASE_ID,
  ensureSampleMirror,
  sampleEnrichmentArticles,
  samplePorts,
  sampleReleaseInput,
} from './sample';
import { devServerStatus, ensureDevServer, stopDevServer } from './server';

const USAGE = `biomedica-release: yearly PMC-OA figure/caption releases as durable Temporal workflows

  demo [--release ID]          whole sample release on the embedded default (dev server, all pools, local data dir)
  server start|stop|status     the Temporal dev server from temporal-dev.yaml (SQLite under the data dir, UI :8233)
  sample build                 build the sample mirror (PMC bucket layout) from ../shared/fixtures/real/nxml
  worker [--pool io|entrez|cpu|gpu|workflows]   run worker pools (all in one process by default; workflows: the
                               workflow queue alone, with BIOMEDICA_CPU_HOSTS_WORKFLOWS=false on the cpu pool)
  release start --config FILE  start (or attach to) a release described by a JSON ReleaseInput
  release status [--release ID] [--watch]   stage progress, counts, outputs, UI link
  release pause|resume|cancel [--release ID]  running units finish; no new unit or stage starts until resume
  release schedule --config FILE [--month 1 --day 15 --hour 3 --id biomedica-yearly]   a yearly Temporal Schedule
  cluster setup                register the search attributes on a cluster or Temporal Cloud (TEMPORAL_ADDRESS)
  store check URL              prove a release store (s3://bucket/prefix, file:///path) usable with this environment
  export --help                subset export: filter a release's parquet and write a new WebDataset
  env [--markdown]             every environment variable with its value here (secrets as "(set)"), or the docs table

Environment: "env" lists every variable (docs/operations.md, "Environment"): BIOMEDICA_DATA_DIR (default ./data),
TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_TLS_* / TEMPORAL_API_KEY (the server), NCBI_* and HF_* (workers only).`;

/** Errors whose message says all there is to say: no stack hint. */
const KNOWN_ERRORS = new Set([
  'EnvError',
  'ConnectionConfigError',
  'TemporalUnreachableError',
  'CliError',
  'ExportConfigError',
  'StoreError',
]);

/** Warnings and errors only, without the worker's notes that a pool hosts no workflows (by design here). */
function quietLogger(): DefaultLogger {
  return new DefaultLogger('WARN', (entry) => {
    if (/^No (workflows|activities) registered/.test(entry.message)) return;
    console.error(`${entry.level} ${entry.message}${entry.meta ? ` ${JSON.stringify(entry.meta)}` : ''}`);
  });
}

async function demo(releaseId: string): Promise<number> {
  const dataDir = defaultDataDir();
  console.log(`data dir: ${dataDir}; shared fixtures: ${path.dirname(path.dirname(fixturePaths.nxml()))}`);
  const server = await ensureDevServer(dataDir);
  const client = await connectClient(server.address);
  const existing = await releaseStatus(client, releaseId);
  if (existing?.status === 'COMPLETED') {
    console.log(`release ${releaseId} already completed; nothing to do (outputs unchanged).`);
    console.log(formatStatus(existing));
    return 0;
  }
  const mirror = await ensureSampleMirror(dataDir);
  console.log(
    `sample mirror: ${mirror.articles} real PMC articles, ${mirror.mediaFiles} media files (${mirror.realImages} real, ${mirror.generatedImages} generated) in ${mirror.outDir}`,
  );
  const ports = samplePorts();
  const mirrorServer = await startMirrorServer(mirror.outDir, { port: ports.mirror });
  const eutils = await startEutilsStandin({
    fixturesDir: fixturePaths.entrez(),
    port: ports.eutils,
    generated: await sampleEnrichmentArticles(mirror.outDir),
  });
  console.log(`loopback stand-ins: PMC bucket at ${mirrorServer.baseUrl}, E-utilities at ${eutils.baseUrl}`);
  process.env.NCBI_EUTILS_URL = eutils.baseUrl;
  // The demo's workers serve the demo's own server (its port may come from BIOMEDICA_TEMPORAL_PORT).
  process.env.TEMPORAL_ADDRESS = server.address;
  process.env.NCBI_EMAIL ??= 'demo@localhost';
  Runtime.install({ logger: quietLogger() });
  const ac = new AbortController();
  const workers = runPools(POOLS, { signal: ac.signal });
  try {
    const outcome = await startRelease(client, sampleReleaseInput(dataDir, mirrorServer.baseUrl, releaseId));
    console.log(
      `${outcome.kind === 'started' ? 'started' : outcome.kind === 'attached' ? 'attached to running' : 'found finished'} release workflow ${outcome.workflowId}`,
    );
    const handle = client.workflow.getHandle(outcome.workflowId);
    await Promise.race([
      handle.result(),
      workers.then(() => Promise.reject(new Error('workers stopped before the release finished'))),
    ]);
    const status = await releaseStatus(client, releaseId);
    console.log(formatStatus(status!));
    return 0;
  } finally {
    ac.abort();
    await workers.catch(() => undefined);
    await mirrorServer.close();
    await eutils.close();
  }
}

function showHelp(usage: string): number {
  console.log(usage);
  return 0;
}

/** A command that cannot go on for a reason the message says in full (what, where, how to fix): no stack. */
class CliError extends Error {
  override readonly name = 'CliError';
}

/** One line per problem of a zod parse, by path: `units.maxImages: Too big: expected number to be <=10000`. */
function zodIssues(err: { issues: { path: PropertyKey[]; message: string }[] }): string {
  const lines = err.issues
    .slice(0, 4)
    .map((i) => `${i.path.map(String).join('.') || '(the whole object)'}: ${i.message}`);
  return lines.join('; ') + (err.issues.length > 4 ? ` (and ${err.issues.length - 4} more)` : '');
}

/** A release config file: read, JSON, and a valid ReleaseInput (dataDir relative to here, default the data dir). */
export async function readReleaseConfig(file: string, dataDir: string): Promise<ReleaseInputArgs> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(
      `cannot read the release config ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); config/release.example.json is one to start from`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json))
    throw new CliError(`${file} must hold a JSON object (a ReleaseInput, config/release.ts)`);
  const args = json as ReleaseInputArgs;
  args.dataDir = path.resolve(args.dataDir ?? dataDir);
  const parsed = ReleaseInputSchema.safeParse(args);
  if (!parsed.success)
    throw new CliError(
      `${file} is not a valid release config: ${zodIssues(parsed.error)} (the fields are in config/release.ts, ReleaseInputSchema)`,
    );
  return args;
}

function intOption(
  name: string,
  v: string | undefined,
  fallback: number,
  min: number,
  max: number,
  usage: string,
): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`, usage);
  return n;
}

const USAGES = {
  demo: '  demo [--release ID]          whole sample release on the embedded default (dev server, all pools, local data dir)',
  server:
    '  server start|stop|status     the Temporal dev server from temporal-dev.yaml (SQLite under the data dir, UI :8233)',
  sample:
    '  sample [build]               build the sample mirror (PMC bucket layout) from ../shared/fixtures/real/nxml',
  worker: '  worker [--pool io|entrez|cpu|gpu|workflows]   run worker pools (all in one process by default)',
  cluster:
    '  cluster setup                register the search attributes in the namespace of TEMPORAL_ADDRESS (a cluster, Temporal Cloud)',
  env: '  env [--markdown]             every environment variable with its value here, or the docs table',
  store:
    '  store check URL              list, put, read back and delete a probe object in s3://bucket/prefix or file:///path, with this environment (BIOMEDICA_S3_ENDPOINT, AWS_*)',
  release: [
    '  release start --config FILE  start (or attach to) a release described by a JSON ReleaseInput (config/release.example.json)',
    '  release status [--release ID] [--watch]   stage progress, counts, failing activities, outputs, UI link',
    '  release pause|resume|cancel [--release ID]  running units finish; no new unit or stage starts until resume',
    '  release schedule --config FILE [--month 1 --day 15 --hour 3 --id biomedica-yearly]   a yearly Temporal Schedule',
  ].join('\n'),
} as const;

async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  const dataDir = defaultDataDir();
  const help = showHelp;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      return help(`${USAGE}\n\n${TAXONOMY_USAGE}`);
    case 'taxonomy':
      return taxonomyCommand(sub, rest);
    case 'export':
      return runExport(argv.slice(1));
    case 'demo': {
      const { values } = parseCommand('demo', argv.slice(1), { release: { type: 'string' } }, USAGES.demo);
      if (values.help) return help(USAGES.demo);
      return demo(values.release ?? SAMPLE_RELEASE_ID);
    }
    case 'server': {
      const { values, positionals } = parseCommand('server', argv.slice(1), {}, USAGES.server, 1);
      if (values.help) return help(USAGES.server);
      const action = positionals[0] ?? 'status';
      if (action === 'start') await ensureDevServer(dataDir);
      else if (action === 'stop')
        console.log((await stopDevServer(dataDir)) ? 'stopped' : 'no dev server started from this data dir');
      else if (action === 'status') console.log(await devServerStatus(dataDir));
      else throw new UsageError(`server ${action}: not a server command (start, stop or status)`, USAGES.server);
      return 0;
    }
    case 'sample': {
      const { values, positionals } = parseCommand('sample', argv.slice(1), {}, USAGES.sample, 1);
      if (values.help) return help(USAGES.sample);
      if (positionals[0] !== undefined && positionals[0] !== 'build')
        throw new UsageError(`sample ${positionals[0]}: the only sample command is build`, USAGES.sample);
      const built = await ensureSampleMirror(dataDir);
      console.log(JSON.stringify(built, null, 2));
      return 0;
    }
    case 'env': {
      const { values } = parseCommand('env', argv.slice(1), { markdown: { type: 'boolean' } }, USAGES.env);
      if (values.help) return help(USAGES.env);
      // The schema's own table (docs/operations.md carries it), or what each variable is set to here.
      if (values.markdown) console.log(envTable());
      else {
        loadEnv();
        console.log(envReport().join('\n'));
      }
      return 0;
    }
    case 'worker': {
      const { values } = parseCommand('worker', argv.slice(1), { pool: { type: 'string' } }, USAGES.worker);
      if (values.help) return help(USAGES.worker);
      const pool = values.pool;
      if (pool !== undefined && !isWorkerPool(pool))
        throw new UsageError(`unknown pool ${JSON.stringify(pool)}: one of ${WORKER_POOLS.join(', ')}`, USAGES.worker);
      const pools = pool ? [pool] : POOLS;
      Runtime.install({ logger: new DefaultLogger(loadEnv().LOG_LEVEL ?? (pools.length > 1 ? 'WARN' : 'INFO')) });
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      process.once('SIGTERM', () => ac.abort());
      await runPools(pools, {
        signal: ac.signal,
        onReady: () => console.log(`worker pools running: ${pools.join(', ')}`),
      });
      return 0;
    }
    case 'release':
      return releaseCommand(sub, rest, dataDir);
    case 'cluster': {
      const { values, positionals } = parseCommand('cluster', argv.slice(1), {}, USAGES.cluster, 1);
      if (values.help) return help(USAGES.cluster);
      if (positionals[0] !== 'setup') throw new UsageError('the cluster command is: cluster setup', USAGES.cluster);
      const cfg = temporalConnectionConfig();
      const r = await setupCluster(await connectClient(), cfg.namespace);
      console.log(
        `search attributes in ${cfg.namespace} at ${cfg.address}: ${r.added.length ? `added ${r.added.join(', ')}` : 'nothing to add'}${r.present.length ? `; already there: ${r.present.join(', ')}` : ''}`,
      );
      console.log(DYNAMIC_CONFIG_ADVICE);
      return 0;
    }
    case 'store': {
      const { values, positionals } = parseCommand('store', argv.slice(1), {}, USAGES.store, 2);
      if (values.help) return help(USAGES.store);
      if (positionals[0] !== 'check' || !positionals[1])
        throw new UsageError('the store command is: store check URL', USAGES.store);
      const store = openStore(positionals[1]);
      await checkStore(store);
      console.log(`store ${store.url}: listed, wrote, read back and deleted a probe object`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`, USAGE);
  }
}

async function releaseCommand(sub: string | undefined, rest: string[], dataDir: string): Promise<number> {
  const usage = USAGES.release;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(usage);
    return sub === undefined ? 2 : 0;
  }
  switch (sub) {
    case 'start': {
      const { values } = parseCommand('release start', rest, { config: { type: 'string' } }, usage);
      if (values.help) return showHelp(usage);
      if (!values.config)
        throw new UsageError(
          'release start needs --config FILE: a JSON ReleaseInput (config/release.example.json is one to copy)',
          usage,
        );
      const args = await readReleaseConfig(values.config, dataDir);
      const outcome = await startRelease(await connectClient(), ReleaseInputSchema.parse(args));
      console.log(`${outcome.kind}: ${outcome.workflowId} (run ${outcome.runId}) ${uiLink(outcome.workflowId)}`);
      return 0;
    }
    case 'pause':
    case 'resume':
    case 'cancel': {
      const { values } = parseCommand(`release ${sub}`, rest, { release: { type: 'string' } }, usage);
      if (values.help) return showHelp(usage);
      const id = values.release ?? SAMPLE_RELEASE_ID;
      await { pause: pauseRelease, resume: resumeRelease, cancel: cancelRelease }[sub](await connectClient(), id);
      console.log(`${sub} sent to release ${id}`);
      return 0;
    }
    case 'schedule': {
      const { values } = parseCommand(
        'release schedule',
        rest,
        {
          config: { type: 'string' },
          month: { type: 'string' },
          day: { type: 'string' },
          hour: { type: 'string' },
          id: { type: 'string' },
        },
        usage,
      );
      if (values.help) return showHelp(usage);
      if (!values.config)
        throw new UsageError(
          'release schedule needs --config FILE: a JSON ReleaseInput whose releaseId contains {year}',
          usage,
        );
      const when = {
        scheduleId: values.id ?? 'biomedica-yearly',
        month: intOption('month', values.month, 1, 1, 12, usage),
        day: intOption('day', values.day, 15, 1, 31, usage),
        hourUtc: intOption('hour', values.hour, 3, 0, 23, usage),
      };
      const args = await readReleaseConfig(values.config, dataDir);
      const id = await createYearlySchedule(await connectClient(), args, when);
      console.log(
        `schedule ${id} created: see it in the UI under Schedules, or \`temporal schedule describe --schedule-id ${id}\``,
      );
      return 0;
    }
    case 'status':
      return releaseStatusCommand(rest, usage);
    default:
      throw new UsageError(
        `release ${sub}: not a release command (start, status, pause, resume, cancel, schedule)`,
        usage,
      );
  }
}

async function releaseStatusCommand(rest: string[], usage: string): Promise<number> {
  const { values } = parseCommand(
    'release status',
    rest,
    { release: { type: 'string' }, watch: { type: 'boolean' } },
    usage,
  );
  if (values.help) return showHelp(usage);
  const client = await connectClient();
  const id = values.release ?? SAMPLE_RELEASE_ID;
  let s = await releaseStatus(client, id);
  if (!s) {
    console.log(`no release ${id} on this server`);
    return 1;
  }
  if (values.watch && s.status === 'RUNNING') {
    // Redraw the bar and the per-stage table until the release closes (on a terminal; elsewhere a line a
    // refresh). The bar's rate and ETA come from what this watcher saw; the table's from the drivers.
    const started = Date.now();
    const unitsAtStart = s.progress?.units.done ?? 0;
    let drawn = 0;
    let lastLogged = '';
    while (s && s.status === 'RUNNING') {
      if (s.progress) {
        const bar = progressLine(s.progress, Date.now() - started, unitsAtStart);
        if (process.stdout.isTTY) {
          const frame = [
            bar,
            ...(s.progress.stages ? formatStageTable(s.progress.stages, s.progress.units.total) : []),
          ];
          process.stdout.write(`${drawn > 0 ? `\x1b[${drawn}A` : ''}\x1b[J${frame.join('\n')}\n`);
          drawn = frame.length;
        } else {
          // In a log (not a terminal): a line only when the counts change, not every refresh of a multi-day run.
          const u = s.progress.units;
          const key = `${s.progress.stage}|${s.progress.paused}|${u.done}|${u.inFlight}|${u.failed}`;
          if (key !== lastLogged) console.log(bar);
          lastLogged = key;
        }
      }
      await new Promise((r) => setTimeout(r, 2000));
      s = await releaseStatus(client, id);
    }
  }
  console.log(s ? formatStatus(s) : `no release ${id} on this server`);
  return s ? 0 : 1;
}

const verbose = process.argv.includes('--verbose');
main(process.argv.slice(2).filter((a) => a !== '--verbose')).then(
  (code) => process.exit(code),
  (err) => {
    // What went wrong in a line or two (the errors of config/env.ts and config/connection.ts say where and what to
    // set); the stack only with --verbose.
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}\n\n${err.usage}`);
      process.exit(2);
    }
    if (verbose) console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    else
      console.error(
        `error: ${err instanceof Error ? err.message : String(err)}${err instanceof Error && !KNOWN_ERRORS.has(err.name) ? '\n  (--verbose prints the stack)' : ''}`,
      );
    process.exit(1);
  },
);

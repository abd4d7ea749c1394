import * as path from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { envReport, envTable, loadEnv } from '../config/env';
import { fixturePaths, defaultDataDir } from '../config/paths';
import { ReleaseInputSchema, type ReleaseInputArgs } from '../config/release';
import { startEutilsStandin } from '../sample/eutils-standin';
import { startMirrorServer } from '../sample/mirror-server';
import { isWorkerPool, POOLS, runPools, WORKER_POOLS } from '../workers/pools';
import { rawFlag as flag } from './args'; // unchecked, as these commands always read their flags: a missing value reads as absent
import { cancelRelease, createYearlySchedule, pauseRelease, resumeRelease } from './control';
import { connectClient, formatStageTable, formatStatus, progressLine, releaseStatus, startRelease } from './release';
import { runExport } from './export';
import { taxonomyCommand, TAXONOMY_USAGE } from './taxonomy';
import { SAMPLE_RELEASE_ID, ensureSampleMirror, samplePorts, sampleReleaseInput } from './sample';
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
  export --help                subset export: filter a release's parquet and write a new WebDataset
  env [--markdown]             every environment variable with its value here (secrets as "(set)"), or the docs table

Environment: "env" lists every variable (docs/operations.md, "Environment"): BIOMEDICA_DATA_DIR (default ./data),
TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_TLS_* / TEMPORAL_API_KEY (the server), NCBI_* and HF_* (workers only).`;

/** Errors whose message says all there is to say: no stack hint. */
const KNOWN_ERRORS = new Set(['EnvError', 'ConnectionConfigError', 'TemporalUnreachableError', 'ZodError']);

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
  console.log(`sample mirror: ${mirror.articles} real PMC articles, ${mirror.mediaFiles} media files (${mirror.realImages} real, ${mirror.generatedImages} generated) in ${mirror.outDir}`);
  const ports = samplePorts();
  const mirrorServer = await startMirrorServer(mirror.outDir, { port: ports.mirror });
  const eutils = await startEutilsStandin({ fixturesDir: fixturePaths.entrez(), port: ports.eutils });
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
    console.log(`${outcome.kind === 'started' ? 'started' : outcome.kind === 'attached' ? 'attached to running' : 'found finished'} release workflow ${outcome.workflowId}`);
    const handle = client.workflow.getHandle(outcome.workflowId);
    await Promise.race([handle.result(), workers.then(() => Promise.reject(new Error('workers stopped before the release finished')))]);
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

async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  const dataDir = defaultDataDir();
  switch (cmd) {
    case 'taxonomy':
      return taxonomyCommand(sub, rest);
    case 'export':
      return runExport(argv.slice(1));
    case 'demo':
      return demo(flag(argv, 'release') ?? SAMPLE_RELEASE_ID);
    case 'server': {
      if (sub === 'start') await ensureDevServer(dataDir);
      else if (sub === 'stop') console.log((await stopDevServer(dataDir)) ? 'stopped' : 'no dev server started from this data dir');
      else console.log(await devServerStatus(dataDir));
      return 0;
    }
    case 'env': {
      // The schema's own table (docs/operations.md carries it), or what each variable is set to here.
      if (sub === '--markdown') console.log(envTable());
      else {
        loadEnv();
        console.log(envReport().join('\n'));
      }
      return 0;
    }
    case 'sample': {
      const built = await ensureSampleMirror(dataDir);
      console.log(JSON.stringify(built, null, 2));
      return 0;
    }
    case 'worker': {
      const pool = flag([sub ?? '', ...rest], 'pool');
      if (pool !== undefined && !isWorkerPool(pool)) {
        console.error(`unknown pool ${JSON.stringify(pool)}: one of ${WORKER_POOLS.join(', ')}`);
        return 2;
      }
      const pools = pool ? [pool] : POOLS;
      Runtime.install({ logger: new DefaultLogger(loadEnv().LOG_LEVEL ?? (pools.length > 1 ? 'WARN' : 'INFO')) });
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      process.once('SIGTERM', () => ac.abort());
      await runPools(pools, { signal: ac.signal, onReady: () => console.log(`worker pools running: ${pools.join(', ')}`) });
      return 0;
    }
    case 'release': {
      const client = await connectClient();
      if (sub === 'start') {
        const file = flag(rest, 'config');
        if (!file) throw new Error('release start needs --config FILE (a JSON ReleaseInput; see config/sample-release.json)');
        const args = JSON.parse(await (await import('node:fs/promises')).readFile(file, 'utf8')) as ReleaseInputArgs;
        args.dataDir = path.resolve(args.dataDir ?? dataDir);
        const outcome = await startRelease(client, ReleaseInputSchema.parse(args));
        console.log(`${outcome.kind}: ${outcome.workflowId} (run ${outcome.runId})`);
        return 0;
      }
      if (sub === 'pause' || sub === 'resume' || sub === 'cancel') {
        const id = flag(rest, 'release') ?? SAMPLE_RELEASE_ID;
        await { pause: pauseRelease, resume: resumeRelease, cancel: cancelRelease }[sub](client, id);
        console.log(`${sub} sent to release ${id}`);
        return 0;
      }
      if (sub === 'schedule') {
        const file = flag(rest, 'config');
        if (!file) throw new Error('release schedule needs --config FILE (a JSON ReleaseInput whose releaseId contains {year})');
        const args = JSON.parse(await (await import('node:fs/promises')).readFile(file, 'utf8')) as ReleaseInputArgs;
        args.dataDir = path.resolve(args.dataDir ?? dataDir);
        const id = await createYearlySchedule(client, args, {
          scheduleId: flag(rest, 'id') ?? 'biomedica-yearly',
          month: Number(flag(rest, 'month') ?? 1),
          day: Number(flag(rest, 'day') ?? 15),
          hourUtc: Number(flag(rest, 'hour') ?? 3),
        });
        console.log(`schedule ${id} created: see it in the UI under Schedules, or \`temporal schedule describe --schedule-id ${id}\``);
        return 0;
      }
      if (sub === 'status') {
        const id = flag(rest, 'release') ?? SAMPLE_RELEASE_ID;
        let s = await releaseStatus(client, id);
        if (!s) {
          console.log(`no release ${id} on this server`);
          return 1;
        }
        if (rest.includes('--watch') && s.status === 'RUNNING') {
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
                const frame = [bar, ...(s.progress.stages ? formatStageTable(s.progress.stages, s.progress.units.total) : [])];
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
      console.error(USAGE);
      return 2;
    }
    default:
      console.log(`${USAGE}\n\n${TAXONOMY_USAGE}`);
      return cmd ? 2 : 0;
  }
}

const verbose = process.argv.includes('--verbose');
main(process.argv.slice(2).filter((a) => a !== '--verbose')).then(
  (code) => process.exit(code),
  (err) => {
    // What went wrong in a line or two (the errors of config/env.ts and config/connection.ts say where and what to
    // set); the stack only with --verbose.
    if (verbose) console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    else console.error(`error: ${err instanceof Error ? err.message : String(err)}${err instanceof Error && !KNOWN_ERRORS.has(err.name) ? '\n  (--verbose prints the stack)' : ''}`);
    process.exit(1);
  },
);

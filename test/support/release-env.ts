import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { installQuietRuntime } from './runtime';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { loadDevServerConfig, temporalCliPath } from '../../config/dev-server';
import { fixturePaths } from '../../config/paths';
import { readWorkerEnv } from '../../config/release';
import { SEARCH_ATTRIBUTES } from '../../config/task-queues';
import { startEutilsStandin, type EutilsStandin } from '../../sample/eutils-standin';
import { startMirrorServer, type MirrorServer } from '../../sample/mirror-server';
import { POOLS, createPoolWorkers } from '../../workers/pools';
import { ensureSampleMirror } from '../../cli/sample';

/** A real Temporal dev server (the project's pinned CLI), loopback stand-ins, and every worker pool in this process. */
export interface ReleaseTestEnv {
  env: TestWorkflowEnvironment;
  dataDir: string;
  mirror: MirrorServer;
  eutils: EutilsStandin;
  startWorkers(): Promise<void>;
  stopWorkers(): Promise<void>;
  teardown(): Promise<void>;
}

export interface ReleaseTestEnvOptions {
  /** Publisher-side faults in the sample mirror. */
  faults?: { corruptImages?: number; missingImages?: number };
  /** The data dir (made if missing; removed at teardown); a fresh temporary folder without it. */
  dataDir?: string;
  /** Builds the bucket mirror to serve, in place of the sample's, and returns its folder. */
  mirror?: (dataDir: string) => Promise<string>;
}

export async function createReleaseTestEnv(opts: ReleaseTestEnvOptions = {}): Promise<ReleaseTestEnv> {
  installQuietRuntime();
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-e2e-'));
  fs.mkdirSync(dataDir, { recursive: true });
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      searchAttributes: Object.values(SEARCH_ATTRIBUTES).map((name) =>
        defineSearchAttributeKey(name, SearchAttributeType.KEYWORD),
      ),
      log: { format: 'pretty', level: 'warn' },
      // The same dynamic config as the embedded default (temporal-dev.yaml), e.g. one partition per task queue.
      extraArgs: Object.entries(loadDevServerConfig().dynamicConfig).flatMap(([k, v]) => [
        '--dynamic-config-value',
        `${k}=${JSON.stringify(v)}`,
      ]),
    },
  });
  const mirrorDir = opts.mirror
    ? await opts.mirror(dataDir)
    : (await ensureSampleMirror(dataDir, { faults: opts.faults })).outDir;
  const mirror = await startMirrorServer(mirrorDir);
  const eutils = await startEutilsStandin({ fixturesDir: fixturePaths.entrez() });
  process.env.NCBI_EUTILS_URL = eutils.baseUrl;
  process.env.NCBI_EMAIL = 'tests@localhost';
  let workers: Worker[] = [];
  let running: Promise<unknown> = Promise.resolve();
  const stopWorkers = async () => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await running.catch(() => undefined);
    workers = [];
  };
  return {
    env,
    dataDir,
    mirror,
    eutils,
    async startWorkers() {
      const workerEnv = readWorkerEnv({ ...process.env, TEMPORAL_NAMESPACE: 'default' });
      workers = (
        await Promise.all(
          POOLS.map((p) => createPoolWorkers(p, env.nativeConnection, { env: workerEnv, workflows: p === 'cpu' })),
        )
      ).flat();
      running = Promise.all(workers.map((w) => w.run()));
    },
    stopWorkers,
    async teardown() {
      await stopWorkers();
      await mirror.close();
      await eutils.close();
      await env.teardown();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

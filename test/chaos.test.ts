import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { isPartialName, sha256File } from '../activities/common/files';
import { mulberry32 } from '../activities/annotate/tiny-vit';
import { releaseWorkflowId } from '../config/release';
import { pauseRelease, resumeRelease } from '../cli/control';
import { releaseStatus, startRelease } from '../cli/release';
import { sampleReleaseInput } from '../cli/sample';
import type { MirrorServer } from '../sample/mirror-server';
import { startSampleServices, WorkerProcess, type DevServerProcess, type SampleServices } from './support/processes';

/** sha256 of every shard, parquet file and index of a release, by relative path. */
function outputDigests(dataDir: string, releaseId: string): Promise<Map<string, string>> {
  const root = path.join(dataDir, 'releases', releaseId);
  const files = ['webdataset', 'parquet'].flatMap((d) =>
    fs
      .readdirSync(path.join(root, d), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.relative(root, path.join(e.parentPath, e.name))),
  );
  return Promise.all(files.sort().map(async (f) => [f, await sha256File(path.join(root, f))] as const)).then(
    (e) => new Map(e),
  );
}

/** Files anywhere under the release (and its publish folder) that a killed attempt left as temporaries. */
function leftoverTemporaries(dataDir: string, releaseId: string): string[] {
  const root = path.join(dataDir, 'releases', releaseId);
  return fs
    .readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && isPartialName(e.name))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

/**
 * The interrupted runs keep one unit in flight at a time (the baseline keeps 4), so they last long enough for every
 * kill and restart to land while units run; the window must not change a byte of the output either.
 */
function interruptedRelease(dataDir: string, mirrorUrl: string, releaseId: string) {
  return { ...sampleReleaseInput(dataDir, mirrorUrl, releaseId), window: 1 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries a call while the just-restarted server is not answering yet. */
async function untilDone(call: () => Promise<void>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (err) {
      if (i >= 60) throw err;
      await sleep(500);
    }
  }
}

/**
 * Durability: the sample release survives its worker process being SIGKILLed at random moments, and the dev
 * server being killed and restarted (its SQLite file keeps the histories), and its outputs are byte-identical
 * to an uninterrupted run: no sample lost, duplicated or corrupted.
 */
describe('chaos: killed workers and a restarted server change no output byte', function () {
  this.timeout(1_200_000);
  let services: SampleServices;
  let dataDir: string;
  let server: DevServerProcess;
  let workers: WorkerProcess;
  let mirror: MirrorServer;
  let client: Client;
  let baseline: Map<string, string>;
  const rand = mulberry32(20261127);

  async function waitForRelease(releaseId: string, onTick: (elapsedMs: number) => Promise<void>): Promise<void> {
    const started = Date.now();
    const handle = client.workflow.getHandle(releaseWorkflowId(releaseId));
    for (;;) {
      try {
        const d = await handle.describe();
        if (d.status.name === 'COMPLETED') {
          console.log(`      ${releaseId}: completed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
          return;
        }
        if (d.status.name !== 'RUNNING') throw new Error(`release ${releaseId} ended ${d.status.name}`);
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('release ')) throw err;
        // the server is down for a moment: keep going
      }
      await onTick(Date.now() - started);
      await sleep(500);
    }
  }

  before(async () => {
    services = await startSampleServices('biomedica-chaos-');
    ({ dataDir, server, mirror } = services);
    workers = new WorkerProcess(services.workerEnv);
    await workers.start();
    client = new Client({ connection: await Connection.connect({ address: server.address }) });
    await startRelease(client, sampleReleaseInput(dataDir, mirror.baseUrl, 'baseline'));
    await waitForRelease('baseline', async () => undefined);
    baseline = await outputDigests(dataDir, 'baseline');
    assert.ok(baseline.size > 10);
  });
  after(async () => {
    await workers?.kill();
    await services?.close();
  });

  it('completes while the worker process is SIGKILLed 5 times at random moments', async () => {
    await startRelease(client, interruptedRelease(dataDir, mirror.baseUrl, 'worker-kills'));
    let kills = 0;
    let nextKillAt = 1500 + rand() * 4000;
    await waitForRelease('worker-kills', async (elapsed) => {
      if (kills < 5 && elapsed >= nextKillAt) {
        await workers.kill('SIGKILL');
        kills++;
        await workers.start();
        nextKillAt = elapsed + 2000 + rand() * 6000;
      }
    });
    assert.equal(kills, 5, 'the release outlived 5 kills');
    assert.deepEqual(await outputDigests(dataDir, 'worker-kills'), baseline);
    assert.deepEqual(leftoverTemporaries(dataDir, 'worker-kills'), [], 'no temporary file of a killed attempt is left');
  });

  it('completes while the dev server is killed and restarted 5 times', async () => {
    await startRelease(client, interruptedRelease(dataDir, mirror.baseUrl, 'server-restarts'));
    let restarts = 0;
    const busyAtKill: number[] = [];
    // Before each restart the release is resumed until a unit is in flight, then paused (the unit in flight goes
    // on; no other starts), so every restart lands while a unit runs, and the release cannot finish before all five
    // have landed. Pause and resume are signals that themselves go through the restarts.
    let nextAt = 500 + rand() * 1000;
    await waitForRelease('server-restarts', async (elapsed) => {
      if (restarts < 5 && elapsed >= nextAt) {
        await untilDone(() => resumeRelease(client, 'server-restarts'));
        let inFlight = 0;
        for (let i = 0; i < 240 && inFlight === 0; i++) {
          const st = await releaseStatus(client, 'server-restarts').catch(() => null);
          inFlight = st?.status === 'RUNNING' ? st.subsets.reduce((n, x) => n + x.inFlight, 0) : 0;
          if (inFlight === 0) await sleep(250);
        }
        assert.ok(inFlight > 0, `restart ${restarts + 1}: a unit is in flight`);
        await untilDone(() => pauseRelease(client, 'server-restarts'));
        busyAtKill.push(inFlight);
        await server.kill();
        await sleep(500 + rand() * 2000);
        await server.start();
        restarts++;
        if (restarts === 5) await untilDone(() => resumeRelease(client, 'server-restarts'));
        nextAt = elapsed + 300 + rand() * 700;
      }
    });
    assert.equal(busyAtKill.length, 5, `units in flight at each restart: ${busyAtKill.join(', ')}`);
    assert.equal(restarts, 5, 'the release outlived 5 server restarts');
    assert.deepEqual(await outputDigests(dataDir, 'server-restarts'), baseline);
    assert.deepEqual(leftoverTemporaries(dataDir, 'server-restarts'), []);
  });
});

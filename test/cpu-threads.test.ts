/**
 * The cpu pool's worker threads (activities/common/threads.ts): an activity on a thread heartbeats through the main
 * thread, which stays responsive while the thread holds a core; a cancel stops the thread; failures keep their
 * Temporal type; and the CPU path gives the same bytes on threads as on the main thread.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { sha256File } from '../activities/common/files';
import { closeCpuThreads, errorOf, failureOf, inCpuThread, setCpuThreads } from '../activities/common/threads';
import { cpuActivities } from '../activities';
import { ZodError } from 'zod';
import { buildReleaseInProcess, inlineRunner, rerunCpuPath, type InProcessRelease } from './support/in-process-release';

function digests(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const dir of ['webdataset', 'parquet'])
    for (const f of fs.readdirSync(path.join(root, dir), { recursive: true }).map(String).sort()) {
      const file = path.join(root, dir, f);
      if (fs.statSync(file).isFile()) out[`${dir}/${f}`] = file;
    }
  return out;
}

describe('cpu pool threads', function () {
  this.timeout(180_000);
  after(() => closeCpuThreads());

  it('relays heartbeats on time while a thread holds its core, and the main thread stays responsive', async () => {
    const env = new MockActivityEnvironment();
    const beats: number[] = [];
    let lastDetails: unknown;
    env.on('heartbeat', (d: unknown) => {
      beats.push(Date.now());
      lastDetails = d;
    });
    let lag = 0;
    let last = Date.now();
    const timer = setInterval(() => {
      lag = Math.max(lag, Date.now() - last - 20);
      last = Date.now();
    }, 20);
    const started = Date.now();
    const r = (await env.run(() => inCpuThread('cpuProbe', [1500, 100]))) as { beats: number };
    clearInterval(timer);
    assert.ok(r.beats >= 10, `beats sent: ${r.beats}`);
    // Coalesced to one per 250 ms (activities/cpu-tasks.ts), the latest details winning; the last always arrives.
    assert.ok(beats.length >= r.beats / 3 && beats.length <= r.beats, `beats relayed: ${beats.length} of ${r.beats}`);
    assert.deepEqual(lastDetails, { probe: r.beats }, 'the last heartbeat reached the activity');
    const gaps = beats.map((t, i) => t - (i ? beats[i - 1]! : started));
    assert.ok(Math.max(...gaps.slice(1)) < 600, `gaps between heartbeats: ${gaps.join(',')}`);
    assert.ok(lag < 400, `main thread event-loop lag ${lag} ms while the thread spun`);
  });

  it('a cancelled activity whose computation never yields has its thread stopped after the grace period', async () => {
    const env = new MockActivityEnvironment();
    const t0 = Date.now();
    const run = env.run(() => inCpuThread('cpuProbe', [20_000, 100]));
    setTimeout(() => env.cancel(), 300);
    await assert.rejects(run, (e: unknown) => e instanceof CancelledFailure);
    assert.ok(Date.now() - t0 < 9_000, `stopped after ${Date.now() - t0} ms (5 s grace), not after 20 s`);
    // The pool still works after losing a thread.
    assert.equal(((await inCpuThread('cpuProbe', [10, 5])) as { finished: boolean }).finished, true);
  });

  it('runs on the main thread with BIOMEDICA_CPU_THREADS=0 (the error is the original, not a copy from a thread)', async () => {
    await setCpuThreads(0);
    try {
      const err = await cpuActivities.writeParquet({ release: { releaseId: 'x' }, unitId: 'u' } as never).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof ZodError, String(err));
    } finally {
      await setCpuThreads(null);
    }
  });

  it("keeps a failure's Temporal type and retryability across the thread", async () => {
    const f = failureOf(ApplicationFailure.nonRetryable('model missing', 'ModelMissing'));
    const back = errorOf(structuredClone(f));
    assert.ok(back instanceof ApplicationFailure);
    assert.equal(back.type, 'ModelMissing');
    assert.equal(back.nonRetryable, true);
    await assert.rejects(
      inCpuThread('writeParquet', [{ release: { releaseId: 'x' }, unitId: 'u' }]),
      (e: Error) => e.name === 'ZodError' || /releaseId|dataDir|source/.test(e.message),
    );
  });

  describe('the CPU path on threads', () => {
    let rel: InProcessRelease;
    before(async () => {
      rel = await buildReleaseInProcess({ releaseId: 'threads' });
    });
    after(() => rel?.cleanup());

    it('writes the same shards and parquet files, byte for byte, as on the main thread', async () => {
      const inline = digests(rel.root);
      const want: Record<string, string> = {};
      for (const [k, f] of Object.entries(inline)) want[k] = await sha256File(f);
      const figures = await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2);
      assert.ok(figures > 100, `${figures} figures`);
      const got: Record<string, string> = {};
      for (const [k, f] of Object.entries(digests(rel.root))) got[k] = await sha256File(f);
      assert.deepEqual(got, want);
      // And once more inline, for the record: the same again.
      await rerunCpuPath(rel, inlineRunner, 1);
      for (const [k, f] of Object.entries(digests(rel.root))) assert.equal(await sha256File(f), want[k], k);
    });
  });
});

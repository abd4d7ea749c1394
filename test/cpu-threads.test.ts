/**
 * The cpu pool's worker threads (activities/common/threads.ts) and its child processes
 * (BIOMEDICA_CPU_ISOLATION=processes, activities/common/cpu-processes.ts), the same tests for both: an activity on a
 * thread or in a child heartbeats through the main thread, which stays responsive while the task holds a core; a
 * cancel stops the task (its thread or process); failures keep their Temporal type; and the CPU path gives the same
 * bytes there as on the main thread. A child that dies mid-task fails the task retryably and is replaced.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { sha256File } from '../activities/common/files';
import { allowedCpus, canPin, pinningCpus } from '../activities/common/cpu-processes';
import {
  closeCpuThreads,
  cpuProcessCores,
  cpuProcessPids,
  errorOf,
  failureOf,
  inCpuThread,
  setCpuThreads,
  type CpuIsolation,
} from '../activities/common/threads';
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

for (const isolation of ['threads', 'processes'] as CpuIsolation[]) {
  describe(`cpu pool ${isolation}`, function () {
    this.timeout(180_000);
    // The pool's default size (the cores), on this backend.
    before(() => setCpuThreads(null, isolation));
    after(() => setCpuThreads(null));

    it('relays heartbeats on time while a task holds its core, and the main thread stays responsive', async () => {
      const env = new MockActivityEnvironment();
      const beats: number[] = [];
      let lastDetails: unknown;
      env.on('heartbeat', (d: unknown) => {
        beats.push(Date.now());
        lastDetails = d;
      });
      // A child process starts in about a second (tsx, the activities' modules): not part of what is measured.
      await inCpuThread('cpuProbe', [10, 5]);
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
      assert.ok(lag < 400, `main thread event-loop lag ${lag} ms while the task spun`);
    });

    it('a cancelled activity whose computation never yields has its thread or process stopped after the grace period', async () => {
      const env = new MockActivityEnvironment();
      await inCpuThread('cpuProbe', [10, 5]);
      const pidsBefore = cpuProcessPids();
      const t0 = Date.now();
      const run = env.run(() => inCpuThread('cpuProbe', [20_000, 100]));
      setTimeout(() => env.cancel(), 300);
      await assert.rejects(run, (e: unknown) => e instanceof CancelledFailure && /was stopped/.test(e.message));
      assert.ok(Date.now() - t0 < 9_000, `stopped after ${Date.now() - t0} ms (5 s grace), not after 20 s`);
      // The pool still works after losing a thread or a process.
      assert.equal(((await inCpuThread('cpuProbe', [10, 5])) as { finished: boolean }).finished, true);
      if (isolation === 'processes') {
        assert.equal(pidsBefore.length, 1);
        assert.ok(!cpuProcessPids().includes(pidsBefore[0]!), 'the stopped child was replaced');
        assert.throws(() => process.kill(pidsBefore[0]!, 0), /ESRCH/, 'the stopped child is gone');
      }
    });

    it("keeps a failure's Temporal type and retryability", async () => {
      await assert.rejects(
        inCpuThread('cpuProbe', [10, 5, 'ModelMissing']),
        (e: unknown) => e instanceof ApplicationFailure && e.type === 'ModelMissing' && e.nonRetryable === true,
      );
      await assert.rejects(
        inCpuThread('writeParquet', [{ release: { releaseId: 'x' }, unitId: 'u' }]),
        (e: Error) => e.name === 'ZodError' || /releaseId|dataDir|source/.test(e.message),
      );
    });

    if (isolation === 'processes')
      it('a child that dies mid-task fails that task retryably and is replaced', async () => {
        await setCpuThreads(1, 'processes');
        const env = new MockActivityEnvironment();
        let beats = 0;
        env.on('heartbeat', () => beats++);
        const run = env.run(() => inCpuThread('cpuProbe', [20_000, 100]));
        while (beats === 0) await new Promise((r) => setTimeout(r, 50)); // its child is running the task
        const [pid] = cpuProcessPids();
        process.kill(pid!, 'SIGKILL');
        const err = await run.then(
          () => null,
          (e: unknown) => e,
        );
        assert.ok(err instanceof ApplicationFailure, String(err));
        assert.equal(err.type, 'CpuProcessExited');
        assert.equal(err.nonRetryable, false);
        assert.equal(((await inCpuThread('cpuProbe', [10, 5])) as { finished: boolean }).finished, true);
        const now = cpuProcessPids();
        assert.equal(now.length, 1);
        assert.notEqual(now[0], pid, 'a new child took its place');
      });
  });
}

/** The cores the kernel lets process `pid` run on, as /proc lists them ("0-1", "3"). */
function coresOf(pid: number): string {
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
}

describe('cpu pool processes pinned to cores (BIOMEDICA_CPU_PIN)', function () {
  this.timeout(180_000);
  after(() => setCpuThreads(null));

  it('pins by default only a pool that covers the cores; true and false decide for any size', () => {
    const cpus = allowedCpus();
    assert.ok(cpus && cpus.length === new Set(cpus).size, `the cores this process may use: ${cpus}`);
    assert.deepEqual(pinningCpus(cpus.length, undefined), cpus);
    assert.deepEqual(pinningCpus(cpus.length + 3, undefined), cpus);
    assert.equal(pinningCpus(cpus.length, false), null);
    assert.deepEqual(pinningCpus(1, true), cpus);
    if (cpus.length > 1) assert.equal(pinningCpus(cpus.length - 1, undefined), null, 'a smaller pool is left unpinned');
  });

  it('does not pin where taskset cannot (a child that cannot start would fail every task)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskset-'));
    try {
      const refusing = path.join(dir, 'taskset');
      fs.writeFileSync(
        refusing,
        '#!/bin/sh\necho "taskset: failed to set pid 0\'s affinity: Operation not permitted" >&2\nexit 1\n',
        {
          mode: 0o755,
        },
      );
      assert.equal(canPin(refusing, allowedCpus()!), false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('puts each child on a core of its own, and a replaced child on the core it freed', async () => {
    const cpus = allowedCpus()!;
    await setCpuThreads(cpus.length, 'processes');
    // As many tasks at once as children: each child starts.
    const busy = () => Promise.all(cpus.map(() => inCpuThread('cpuProbe', [300, 100])));
    await busy();
    const pinned = cpuProcessCores();
    assert.deepEqual(
      [...pinned.values()].sort((a, b) => a - b),
      cpus,
    );
    // What the kernel holds, not only what the pool meant: the child and every thread it started are on its core.
    for (const [pid, core] of pinned) {
      assert.equal(coresOf(pid), String(core), `child ${pid}`);
      for (const tid of fs.readdirSync(`/proc/${pid}/task`))
        assert.equal(coresOf(Number(tid)), String(core), `thread ${tid} of child ${pid}`);
    }
    const [victim, core] = [...pinned][0]!;
    process.kill(victim, 'SIGKILL');
    while (cpuProcessPids().includes(victim)) await new Promise((r) => setTimeout(r, 20));
    await busy();
    const now = cpuProcessCores();
    assert.equal(now.size, cpus.length);
    const [replacement] = [...now].filter(([pid]) => !pinned.has(pid));
    assert.ok(replacement, "a new child took the dead one's place");
    assert.equal(replacement[1], core);
    assert.equal(coresOf(replacement[0]), String(core));
  });
});

describe('cpu pool', function () {
  this.timeout(180_000);
  after(() => closeCpuThreads());

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

  it("serialises a failure's Temporal type and retryability", () => {
    const f = failureOf(ApplicationFailure.nonRetryable('model missing', 'ModelMissing'));
    const back = errorOf(structuredClone(f));
    assert.ok(back instanceof ApplicationFailure);
    assert.equal(back.type, 'ModelMissing');
    assert.equal(back.nonRetryable, true);
  });

  describe('the CPU path on threads and in processes', () => {
    let rel: InProcessRelease;
    before(async () => {
      rel = await buildReleaseInProcess({ releaseId: 'threads' });
    });
    after(() => rel?.cleanup());

    it('writes the same shards and parquet files, byte for byte, as on the main thread', async () => {
      const inline = digests(rel.root);
      const want: Record<string, string> = {};
      for (const [k, f] of Object.entries(inline)) want[k] = await sha256File(f);
      for (const isolation of ['threads', 'processes'] as CpuIsolation[]) {
        await setCpuThreads(null, isolation);
        const figures = await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2);
        assert.ok(figures > 100, `${figures} figures`);
        for (const [k, f] of Object.entries(digests(rel.root)))
          assert.equal(await sha256File(f), want[k], `${isolation}: ${k}`);
        assert.deepEqual(Object.keys(digests(rel.root)).sort(), Object.keys(want).sort());
      }
      await setCpuThreads(null);
      // And once more inline, for the record: the same again.
      await rerunCpuPath(rel, inlineRunner, 1);
      for (const [k, f] of Object.entries(digests(rel.root))) assert.equal(await sha256File(f), want[k], k);
    });
  });
});

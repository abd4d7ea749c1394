import * as assert from 'node:assert/strict';
import { sampleReleaseInput } from '../cli/sample';
import { cancelRelease, createYearlySchedule, pauseRelease, resumeRelease } from '../cli/control';
import { releaseStatus, startRelease } from '../cli/release';
import type { ReleaseResult } from '../workflows/release';
import { createReleaseTestEnv, type ReleaseTestEnv } from './support/release-env';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('operating a release: pause, resume, cancel, yearly schedule', function () {
  this.timeout(600_000);
  let t: ReleaseTestEnv;
  before(async () => {
    t = await createReleaseTestEnv();
    await t.startWorkers();
  });
  after(async () => {
    await t?.teardown();
  });

  it('pause stops new units from starting; resume finishes the release', async () => {
    await startRelease(t.env.client, { ...sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'paused'), window: 1 });
    // Pause once the units are running, then wait until every in-flight unit has drained.
    let s = await releaseStatus(t.env.client, 'paused');
    for (let i = 0; i < 240 && !(s?.progress?.stage === 'units' && s.subsets.length > 0); i++) {
      await sleep(250);
      s = await releaseStatus(t.env.client, 'paused');
    }
    await pauseRelease(t.env.client, 'paused');
    for (let i = 0; i < 240 && !(s?.subsets.length && s.subsets.every((x) => x.paused && x.inFlight === 0)); i++) {
      await sleep(500);
      s = await releaseStatus(t.env.client, 'paused');
    }
    assert.equal(s?.status, 'RUNNING');
    assert.equal(s?.progress?.paused, true);
    const doneWhilePaused = s!.progress!.units.done;
    await sleep(4000);
    const later = await releaseStatus(t.env.client, 'paused');
    assert.equal(later?.progress?.units.done, doneWhilePaused, 'no unit ran while paused');
    assert.ok(doneWhilePaused < later!.progress!.units.total, 'units were left to do');
    await resumeRelease(t.env.client, 'paused');
    const result = (await t.env.client.workflow.getHandle('release-paused').result()) as ReleaseResult;
    assert.ok(result.summary.samples > 0);
    assert.equal((await releaseStatus(t.env.client, 'paused'))?.status, 'COMPLETED');
  });

  it('cancel ends the release as Cancelled, and starting it again completes it from what was finished', async () => {
    await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'cancelled'));
    let s = await releaseStatus(t.env.client, 'cancelled');
    for (let i = 0; i < 120 && s?.progress?.stage !== 'units'; i++) {
      await sleep(250);
      s = await releaseStatus(t.env.client, 'cancelled');
    }
    await cancelRelease(t.env.client, 'cancelled');
    await assert.rejects(t.env.client.workflow.getHandle('release-cancelled').result());
    assert.equal((await releaseStatus(t.env.client, 'cancelled'))?.status, 'CANCELLED');
    const again = await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'cancelled'));
    assert.equal(again.kind, 'started');
    const result = (await t.env.client.workflow.getHandle('release-cancelled').result()) as ReleaseResult;
    assert.equal(result.summary.samples, result.summary.figures - result.summary.rejected);
  });

  it('creates a yearly schedule whose run names the release after the year it starts', async () => {
    const id = await createYearlySchedule(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'sched-{year}'), { scheduleId: 'test-yearly', month: 1, day: 15, hourUtc: 3 });
    const handle = t.env.client.schedule.getHandle(id);
    const desc = await handle.describe();
    assert.deepEqual(desc.spec.calendars?.[0]?.month, [{ start: 'JANUARY', end: 'JANUARY', step: 1 }]);
    assert.deepEqual(desc.spec.calendars?.[0]?.dayOfMonth, [{ start: 15, end: 15, step: 1 }]);
    assert.ok(desc.info.nextActionTimes.length > 0);
    await handle.trigger();
    let started: string | undefined;
    for (let i = 0; i < 60 && !started; i++) {
      await sleep(500);
      started = (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId;
    }
    assert.ok(started, 'the schedule started a run');
    const result = (await t.env.client.workflow.getHandle(started).result()) as ReleaseResult;
    assert.equal(result.releaseId, `sched-${new Date().getUTCFullYear()}`);
    await handle.delete();
  });
});

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sampleReleaseInput } from '../cli/sample';
import { cancelRelease, createYearlySchedule, findReleaseWorkflow, pauseRelease, resumeRelease } from '../cli/control';
import { formatStatus, releaseStatus, startRelease } from '../cli/release';
import { UNIT_STAGES } from '../workflows/progress';
import { progressQuery, type ReleaseResult } from '../workflows/release';
import { subsetProgressQuery } from '../workflows/subset';
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
    // The per-stage table while paused: what finished is done in every stage, nothing is in flight.
    const stages = later!.progress!.stages!;
    assert.ok(stages, 'status has the per-stage table');
    for (const st of UNIT_STAGES) {
      assert.equal(stages[st].done, doneWhilePaused, `${st} done while paused`);
      assert.equal(stages[st].inFlight, 0, `${st} in flight while paused`);
    }
    assert.match(formatStatus(later!), /stage\s+done\s+in flight\s+failed\s+rejected\s+units\/h\s+ETA/);
    await resumeRelease(t.env.client, 'paused');
    const handle = t.env.client.workflow.getHandle('release-paused');
    const result = (await handle.result()) as ReleaseResult;
    assert.ok(result.summary.samples > 0);
    assert.equal((await releaseStatus(t.env.client, 'paused'))?.status, 'COMPLETED');
    // The release's own progress query (the one the Temporal UI runs) has the final table: every unit through
    // every stage, and the rejections the report lists, stage by stage.
    const final = await handle.query(progressQuery);
    const total = final.units.total;
    for (const st of UNIT_STAGES) assert.equal(final.stages?.[st].done, total, `${st} done`);
    const quarantined = (stage: string) =>
      Object.entries(result.summary.rejectedByReason).reduce((n, [k, v]) => n + (k.startsWith(`${stage}:`) ? v : 0), 0);
    assert.equal(final.stages?.parse.rejected, quarantined('parse'));
    assert.equal(final.stages?.images.rejected, quarantined('media') + quarantined('images'));
    assert.equal(final.stages?.fetch.rejected, quarantined('fetch'));
    assert.equal(final.stages?.enrich.rejected, result.summary.enrichment.notReturned);
    assert.ok(quarantined('parse') > 0, 'the sample has a figure without a caption');
    assert.deepEqual(result.stages, final.stages, 'the result keeps the final table');
    assert.match(formatStatus((await releaseStatus(t.env.client, 'paused'))!), /units by stage:\n\s+stage\s+done/);
  });

  it('cancel ends the release as Cancelled, and starting it again completes it from what was finished', async () => {
    await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'cancelled'));
    let s = await releaseStatus(t.env.client, 'cancelled');
    for (let i = 0; i < 120 && !(s?.progress?.stage === 'units' && s.subsets.some((x) => x.inFlight > 0)); i++) {
      await sleep(250);
      s = await releaseStatus(t.env.client, 'cancelled');
    }
    const drivers = s!.progress!.subsetWorkflows;
    assert.ok(drivers.length > 0, 'cancelled while units run');
    await cancelRelease(t.env.client, 'cancelled');
    await assert.rejects(t.env.client.workflow.getHandle('release-cancelled').result());
    const after = await releaseStatus(t.env.client, 'cancelled');
    assert.equal(after?.status, 'CANCELLED');
    // Status of a closed release says why it ended and where it stood (the release's last progress).
    assert.match(after!.failure ?? '', /cancel/i);
    assert.equal(after!.progress?.stage, 'units');
    assert.match(
      formatStatus(after!),
      /ended by: .*cancel.*\n.*release start.*\n\s+last stage: units; units \d+\/\d+ done/i,
    );
    // The units the cancellation stopped are not failures: a cancelled driver's table counts none as failed.
    for (const id of drivers) {
      const p = await t.env.client.workflow.getHandle(id).query(subsetProgressQuery);
      assert.equal(p.failed, 0, `${id}: no unit failed`);
      for (const st of UNIT_STAGES) assert.equal(p.stages[st].failed, 0, `${id}: ${st} failed`);
    }
    const again = await startRelease(t.env.client, sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'cancelled'));
    assert.equal(again.kind, 'started');
    const result = (await t.env.client.workflow.getHandle('release-cancelled').result()) as ReleaseResult;
    assert.equal(result.summary.samples, result.summary.figures - result.summary.rejected);
  });

  it('a release stuck in retries says so in release status: which activity, the attempt, the last error', async () => {
    // Every GET of one article's XML answers 500: its unit's fetch activity fails, and Temporal retries it.
    const rule = { match: /^PMC7159286\.\d+\/PMC7159286\.\d+\.xml$/, fault: { kind: 'status' as const, status: 500 } };
    t.mirror.faults.push(rule);
    // Earlier releases of this data dir cached the XML by md5: without the cache the fetch has to GET it.
    fs.rmSync(path.join(t.dataDir, 'cache'), { recursive: true, force: true });
    try {
      await startRelease(t.env.client, {
        ...sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'stuck'),
        retryReportSeconds: 2,
      });
      let s = await releaseStatus(t.env.client, 'stuck');
      for (let i = 0; i < 120 && !s?.retrying.length; i++) {
        await sleep(1000);
        s = await releaseStatus(t.env.client, 'stuck');
      }
      assert.equal(s?.status, 'RUNNING');
      const r = s!.retrying.find((x) => x.activity === 'fetchArticles');
      assert.ok(r, `a retrying fetchArticles in ${JSON.stringify(s!.retrying)}`);
      assert.match(r.workflowId, /^release-stuck\/other-\d{6}$/);
      assert.ok(r.attempt >= 2);
      assert.match(r.lastFailure ?? '', /PMC7159286.*(500|InternalError)/);
      // The unit itself says so in its current details (what the Temporal UI shows on its page).
      let details = '';
      for (let i = 0; i < 60 && !/retrying: fetchArticles attempt/.test(details); i++) {
        await sleep(1000);
        const meta = (await t.env.client.workflow.getHandle(r.workflowId).query('__temporal_workflow_metadata')) as {
          currentDetails?: string;
        };
        details = meta.currentDetails ?? '';
      }
      assert.match(
        details,
        /^unit other-\d{6}: fetch\nretrying: fetchArticles attempt \d+ \(next try [^)]+\): .*PMC7159286.*(500|InternalError)/,
      );
      assert.match(
        formatStatus(s!),
        /retrying: \d+ activit(y|ies) failed and (is|are) being tried again\n\s+release-stuck\/other-\d{6} fetchArticles: attempt \d+(, next try [^;]+)?; last error: .*500/,
      );
    } finally {
      t.mirror.faults.splice(t.mirror.faults.indexOf(rule), 1);
    }
    // The source answers again: the next attempt goes through and the release completes.
    const result = (await t.env.client.workflow.getHandle('release-stuck').result()) as ReleaseResult;
    assert.ok(result.summary.samples > 0);
    assert.deepEqual((await releaseStatus(t.env.client, 'stuck'))?.retrying, []);
  });

  it('creates a yearly schedule whose run names the release after the year it starts', async () => {
    const id = await createYearlySchedule(
      t.env.client,
      sampleReleaseInput(t.dataDir, t.mirror.baseUrl, 'sched-{year}'),
      { scheduleId: 'test-yearly', month: 1, day: 15, hourUtc: 3 },
    );
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
    assert.notEqual(
      started,
      'release-sched-' + new Date().getUTCFullYear(),
      "a Schedule's run has a workflow id of its own",
    );
    // The CLI finds that run by the release id it resolved (the BiomedicaRelease search attribute), and controls it.
    const releaseId = `sched-${new Date().getUTCFullYear()}`;
    let ref: Awaited<ReturnType<typeof findReleaseWorkflow>> = null;
    for (let i = 0; i < 60 && !ref; i++) {
      ref = await findReleaseWorkflow(t.env.client, releaseId);
      if (!ref) await sleep(250);
    }
    assert.equal(ref?.workflowId, started);
    await pauseRelease(t.env.client, releaseId);
    const paused = await releaseStatus(t.env.client, releaseId);
    assert.equal(paused?.workflowId, started);
    // Found within a second of a run that takes several: it is running, and a paused release does not finish.
    assert.equal(paused?.status, 'RUNNING');
    assert.equal(paused.progress?.paused, true, 'paused through the run found by search attribute');
    await resumeRelease(t.env.client, releaseId);
    const result = (await t.env.client.workflow.getHandle(started).result()) as ReleaseResult;
    assert.equal(result.releaseId, releaseId);
    const done = await releaseStatus(t.env.client, releaseId);
    assert.deepEqual(
      [done?.workflowId, done?.status, done?.result?.summary.samples],
      [started, 'COMPLETED', result.summary.samples],
    );
    assert.equal(await findReleaseWorkflow(t.env.client, 'sched-1999'), null);
    await handle.delete();
  });
});

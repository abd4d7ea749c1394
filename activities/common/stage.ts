import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ReleaseInputSchema, type ReleaseInput } from '../../config/release';
import type { PlannedUnit } from '../plan/plan';
import { ndjson, readJson, readJsonIfExists, writeFileAtomic, writeJsonAtomic } from './files';
import { ReleaseLayout } from './layout';
import type { QuarantineRecord } from './quarantine';

/** What every unit-stage activity receives: the release's (secret-free) input and which unit. */
export interface UnitTask {
  release: ReleaseInput;
  unitId: string;
}

export interface StageOutput {
  /** Path relative to the release folder. */
  path: string;
  bytes: number;
}

/** A completed stage, provable from disk: rerunning the activity returns this without redoing the work. */
export interface StageManifest<R> {
  stage: string;
  unitId: string;
  result: R;
  outputs: StageOutput[];
  quarantined: number;
}

/** What a unit-stage activity returns: its own result, and how many quarantine records the stage wrote. */
export type Staged<R> = R & { quarantined: number };

export function layoutOf(release: ReleaseInput): ReleaseLayout {
  const parsed = ReleaseInputSchema.parse(release);
  return new ReleaseLayout(parsed.dataDir, parsed.releaseId);
}

export async function loadUnit(layout: ReleaseLayout, unitId: string): Promise<PlannedUnit> {
  return readJson<PlannedUnit>(layout.unitFile(unitId));
}

/** Heartbeat when running inside an activity; a no-op in plain unit tests. */
export function heartbeat(details?: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    /* not in an activity context */
  }
}

/**
 * Runs `fn` while heartbeating `details()` every `everyMs`, besides the heartbeats `fn` sends itself: an activity
 * that waits (for a shared connection, a slow single transfer) is still alive, and must not time out on its
 * heartbeat. A transfer that hangs is ended by its own timeout, never by this.
 */
export async function withPulse<T>(details: () => unknown, fn: () => Promise<T>, everyMs = 10_000): Promise<T> {
  const timer = setInterval(() => heartbeat(details()), everyMs);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

/** Logs through the activity's logger (worker log, with workflow and activity ids); silent outside an activity. */
export function activityLog(level: 'info' | 'warn', message: string, attrs: Record<string, unknown>): void {
  try {
    Context.current().log[level](message, attrs);
  } catch {
    /* not in an activity context */
  }
}

export function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

async function outputsIntact(layout: ReleaseLayout, outputs: StageOutput[]): Promise<boolean> {
  for (const o of outputs) {
    const st = await fs.stat(path.join(layout.root, o.path)).catch(() => null);
    if (!st || st.size !== o.bytes) return false;
  }
  return true;
}

/**
 * Runs one stage of one unit idempotently: if its manifest exists and every recorded output is intact, the
 * recorded result is returned; otherwise `work` runs, its quarantine records are written (replacing any from
 * an earlier attempt), and the manifest is written last. Either way the result carries the stage's quarantine
 * count, which the unit workflow reports as the stage's rejections.
 */
export async function runUnitStage<R extends object>(
  task: UnitTask,
  stage: QuarantineRecord['stage'] | 'enrich-batch',
  work: (ctx: {
    layout: ReleaseLayout;
    unit: PlannedUnit;
    quarantine: QuarantineRecord[];
  }) => Promise<{ result: R; outputs: string[] }>,
  manifestName: string = stage,
): Promise<Staged<R>> {
  const layout = layoutOf(task.release);
  const manifestFile = layout.stageManifest(task.unitId, manifestName);
  const done = await readJsonIfExists<StageManifest<R>>(manifestFile);
  if (done && (await outputsIntact(layout, done.outputs))) return { ...done.result, quarantined: done.quarantined };
  const unit = await loadUnit(layout, task.unitId);
  const quarantine: QuarantineRecord[] = [];
  const { result, outputs } = await work({ layout, unit, quarantine });
  await writeFileAtomic(layout.quarantineFile(task.unitId, manifestName), ndjson(quarantine));
  const recorded: StageOutput[] = [];
  for (const abs of outputs) {
    const st = await fs.stat(abs);
    recorded.push({ path: path.relative(layout.root, abs), bytes: st.size });
  }
  const manifest: StageManifest<R> = {
    stage: manifestName,
    unitId: task.unitId,
    result,
    outputs: recorded,
    quarantined: quarantine.length,
  };
  await writeJsonAtomic(manifestFile, manifest);
  return { ...result, quarantined: quarantine.length };
}

/**
 * Runs `fn` over items with at most `limit` in flight, preserving result order. After a failure no further item
 * starts, and the first error is thrown only once every call in flight has settled, so the caller's clean-up never
 * races work that is still running.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | null = null;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  });
  await Promise.all(workers);
  if (failure) throw (failure as { error: unknown }).error;
  return results;
}

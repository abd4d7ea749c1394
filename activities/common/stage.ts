import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ReleaseInputSchema, type ReleaseInput } from '../../config/release';
import type { PlannedUnit } from '../plan/plan';
import { ndjson, readJson, readJsonIfExists, writeFileAtomic, writeJsonAtomic } from './files';
import { ReleaseLayout } from './layout';
import { localDataDir, releaseTree, type ReleaseTree } from './sync';
import { threadSink } from './threads';
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
  return new ReleaseLayout(localDataDir(parsed), parsed.releaseId);
}

/**
 * What each stage reads of the stages before it, by manifest name (`enrich-*`: every PubMed batch): with a store,
 * their manifests and outputs are pulled to this worker before the stage runs.
 */
export const STAGE_INPUTS: Record<string, readonly string[]> = {
  fetch: [],
  parse: ['fetch'],
  media: ['parse'],
  images: ['parse', 'media'],
  enrich: ['parse'],
  annotate: ['images'],
  shard: ['parse', 'images', 'annotate', 'enrich-*'],
  parquet: ['shard'],
};

/**
 * Outputs of its inputs that a stage does not pull with them, by stage: annotate embeds the model inputs the images
 * stage made (activities/images/model-inputs.ts), and pulls a figure's JPEG itself only when it has to decode it.
 */
export const NOT_PULLED: Record<string, (stage: string, relPath: string) => boolean> = {
  annotate: (stage, relPath) => stage === 'images' && /(^|\/)images\/[^/]+\.jpg$/.test(relPath),
};

/**
 * Stages whose outputs a worker keeps once it has them: parse's are small, and media, images and enrich read them
 * at the same time (all pools in one process share one folder), so none of them may take them away. Every other
 * output, pulled or written, leaves the worker's folder once its stage has committed: a host's disk holds the units
 * it is working on, not its share of the release.
 */
const KEPT_OUTPUTS = new Set(['parse']);

/**
 * Pulls the manifests of `inputs` of a unit, and every output they name, from the store to this worker. Returns the
 * local files of those outputs that may go once the stage is done.
 */
export async function pullStageInputs(
  files: ReleaseTree,
  layout: ReleaseLayout,
  unitId: string,
  inputs: readonly string[],
  notPulled: (stage: string, relPath: string) => boolean = () => false,
): Promise<string[]> {
  if (!files.remote || inputs.length === 0) return [];
  const manifestsDir = path.dirname(layout.stageManifest(unitId, 'x'));
  const stored = await files.storedFiles(manifestsDir);
  const wanted = stored.filter((m) => {
    const name = path.basename(m.file, '.json');
    return inputs.some((i) => (i.endsWith('*') ? name.startsWith(i.slice(0, -1)) : name === i));
  });
  for (const i of inputs)
    if (!i.endsWith('*') && !wanted.some((m) => path.basename(m.file, '.json') === i))
      throw ApplicationFailure.retryable(
        `unit ${unitId}: stage ${i} has not committed to the store yet`,
        'StoreObjectMissing',
      );
  await files.pullAll(wanted);
  const outputs: { file: string; bytes: number }[] = [];
  const evictable: string[] = [];
  for (const m of wanted) {
    const manifest = await readJson<StageManifest<unknown>>(m.file);
    for (const o of manifest.outputs) {
      if (notPulled(manifest.stage, o.path)) continue;
      const file = path.join(layout.root, o.path);
      outputs.push({ file, bytes: o.bytes });
      if (evictableOutput(layout, unitId, manifest.stage, file)) evictable.push(file);
    }
  }
  let n = 0;
  await files.pullAll(outputs, () => {
    if (++n % 200 === 0) heartbeat({ pulled: n, of: outputs.length });
  });
  return evictable;
}

/** Whether a committed output may leave the worker's folder (never the unit's plan, which legacy fetch rewrites). */
function evictableOutput(layout: ReleaseLayout, unitId: string, stage: string, file: string): boolean {
  return !KEPT_OUTPUTS.has(stage) && path.resolve(file) !== path.resolve(layout.unitFile(unitId));
}

export async function loadUnit(layout: ReleaseLayout, unitId: string): Promise<PlannedUnit> {
  return readJson<PlannedUnit>(layout.unitFile(unitId));
}

/** Heartbeat when running inside an activity; a no-op in plain unit tests. */
export function heartbeat(details?: unknown): void {
  const sink = threadSink();
  if (sink) return sink.heartbeat(details);
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
  const sink = threadSink();
  if (sink) return sink.log(level, message, attrs);
  try {
    Context.current().log[level](message, attrs);
  } catch {
    /* not in an activity context */
  }
}

export function cancellationSignal(): AbortSignal | undefined {
  const sink = threadSink();
  if (sink) return sink.signal;
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
  stage: QuarantineRecord['stage'] | 'enrich',
  work: (ctx: {
    layout: ReleaseLayout;
    unit: PlannedUnit;
    quarantine: QuarantineRecord[];
  }) => Promise<{ result: R; outputs: string[] }>,
  manifestName: string = stage,
): Promise<Staged<R>> {
  const layout = layoutOf(task.release);
  const files = releaseTree(task.release);
  const manifestFile = layout.stageManifest(task.unitId, manifestName);
  let pulled: string[] = [];
  if (files.remote) {
    // The store's manifest is the stage's commit: it is put only after every output it names.
    const done = await files.readJson<StageManifest<R>>(manifestFile);
    if (done) return { ...done.result, quarantined: done.quarantined };
    if (!(await files.pull(layout.unitFile(task.unitId))))
      throw ApplicationFailure.retryable(`unit ${task.unitId}: its plan is not in the store`, 'StoreObjectMissing');
    pulled = await pullStageInputs(files, layout, task.unitId, STAGE_INPUTS[stage] ?? [], NOT_PULLED[stage]);
  } else {
    const done = await readJsonIfExists<StageManifest<R>>(manifestFile);
    if (done && (await outputsIntact(layout, done.outputs))) return { ...done.result, quarantined: done.quarantined };
  }
  const unit = await loadUnit(layout, task.unitId);
  const quarantine: QuarantineRecord[] = [];
  const { result, outputs } = await work({ layout, unit, quarantine });
  const quarantineFile = layout.quarantineFile(task.unitId, manifestName);
  await writeFileAtomic(quarantineFile, ndjson(quarantine));
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
  if (files.remote) {
    let n = 0;
    await files.pushAll([...outputs, quarantineFile], () => {
      if (++n % 200 === 0) heartbeat({ committed: n, of: outputs.length });
    });
    await files.push(manifestFile);
    // Committed: what the stage read and wrote is in the store, and goes from this worker's folder.
    const gone = [...pulled, ...outputs.filter((f) => evictableOutput(layout, task.unitId, stage, f))];
    await Promise.all(gone.map((f) => fs.rm(f, { force: true })));
  }
  return { ...result, quarantined: quarantine.length };
}

export { mapLimit } from './files';

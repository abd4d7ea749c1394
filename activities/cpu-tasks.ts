import { ApplicationFailure } from '@temporalio/common';
import { fitTaxonomyModel } from './annotate/taxonomy-activity';
import { heartbeat } from './common/stage';
import type { ProcessReply, ProcessRequest } from './common/cpu-processes';
import {
  failureOf,
  withThreadSink,
  type TaskPort,
  type ThreadControl,
  type ThreadMessage,
  type ThreadResult,
} from './common/threads';
import { prepareImages } from './images/activity';
import { writeParquet } from './parquet/activity';
import { parseArticles } from './parse/activity';
import { finalizeRelease } from './publish/finalize';
import { writeShard } from './shard/activity';

/**
 * A thread's probe: holds the thread's CPU for `ms` (no await), heartbeating every `beatMs`, and returns how many
 * heartbeats it sent, or throws a non-retryable ApplicationFailure of type `failType` at the end. The tests use it to
 * show that the main thread stays responsive, that a cancel stops it, and that a failure keeps its type.
 */
export async function cpuProbe(
  ms: number,
  beatMs: number,
  failType?: string,
): Promise<{ beats: number; finished: true }> {
  const end = Date.now() + ms;
  let next = Date.now() + beatMs;
  let beats = 0;
  while (Date.now() < end) {
    if (Date.now() >= next) {
      heartbeat({ probe: ++beats });
      next += beatMs;
    }
  }
  if (failType) throw ApplicationFailure.nonRetryable(`probe failed after ${beats} beats`, failType);
  return { beats, finished: true };
}

/** What the cpu pool's threads run: the activities themselves (activities/index.ts registers them through a thread). */
export const CPU_TASKS = {
  parseArticles,
  prepareImages,
  writeShard,
  writeParquet,
  finalizeRelease,
  fitTaxonomyModel,
  cpuProbe,
};
export type CpuTaskName = keyof typeof CPU_TASKS;

/** Least time between two heartbeats a thread posts to the main thread. */
const BEAT_MS = 250;

/** One task on this thread (piscina calls it): its heartbeats and logs go to the main thread through `port`. */
export async function runCpuTask(task: { name: CpuTaskName; args: unknown[]; port: TaskPort }): Promise<ThreadResult> {
  const post = (m: ThreadMessage) => task.port.postMessage(m);
  const cancel = new AbortController();
  task.port.on('message', (m: ThreadControl) => {
    if (m.kind === 'cancel') cancel.abort(new Error(`${task.name} cancelled`));
  });
  // Heartbeats are coalesced to one per BEAT_MS, the latest details winning (the images stage beats per figure,
  // hundreds a second: one message each cost about 4% of a thread's CPU; Temporal throttles them anyway).
  let lastBeat = 0;
  let pending: { details: unknown } | null = null;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending) post({ kind: 'heartbeat', details: pending.details });
    pending = null;
    lastBeat = Date.now();
  };
  const sink = {
    heartbeat: (details: unknown) => {
      pending = { details };
      const wait = lastBeat + BEAT_MS - Date.now();
      if (wait <= 0) flush();
      else timer ??= setTimeout(flush, wait);
    },
    log: (level: 'info' | 'warn', message: string, attrs: Record<string, unknown>) =>
      post({ kind: 'log', level, message, attrs }),
    signal: cancel.signal,
  };
  try {
    const fn = CPU_TASKS[task.name] as (...a: unknown[]) => Promise<unknown>;
    return { value: await withThreadSink(sink, () => fn(...task.args)) };
  } catch (err) {
    return { error: failureOf(err) };
  } finally {
    flush();
    task.port.close();
  }
}

/**
 * A child process of the processes backend (workers/cpu-process.js, activities/common/cpu-processes.ts): runs the
 * tasks the parent sends, one at a time, each through runCpuTask with a port over the IPC channel, and answers each
 * with its result and this process's CPU time so far.
 */
export function serveCpuProcess(): void {
  const send = (m: ProcessReply) => process.send!(m);
  const controls = new Map<number, (m: ThreadControl) => void>();
  process.on('message', (m: ProcessRequest) => {
    if ('control' in m) return controls.get(m.id)?.(m.control);
    const { id } = m;
    const port: TaskPort = {
      postMessage: (message) => send({ id, message }),
      on: (_event, listener) => controls.set(id, listener),
      close: () => controls.delete(id),
    };
    void runCpuTask({ name: m.name as CpuTaskName, args: m.args, port }).then((result) => {
      try {
        send({ id, result, cpu: process.cpuUsage() });
      } catch (err) {
        // A result that does not serialise fails its task, as a DataCloneError does from a thread.
        send({ id, result: { error: failureOf(err) }, cpu: process.cpuUsage() });
      }
    });
  });
  // The parent went away: nothing more to do.
  process.on('disconnect', () => process.exit(0));
}

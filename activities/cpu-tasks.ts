import type { MessagePort } from 'node:worker_threads';
import { fitTaxonomyModel } from './annotate/taxonomy-activity';
import { heartbeat } from './common/stage';
import { failureOf, withThreadSink, type ThreadControl, type ThreadMessage, type ThreadResult } from './common/threads';
import { prepareImages } from './images/activity';
import { writeParquet } from './parquet/activity';
import { parseArticles } from './parse/activity';
import { finalizeRelease } from './publish/finalize';
import { writeShard } from './shard/activity';

/**
 * A thread's probe: holds the thread's CPU for `ms` (no await), heartbeating every `beatMs`, and returns how many
 * heartbeats it sent. The tests use it to show that the main thread stays responsive and that a cancel stops it.
 */
export async function cpuProbe(ms: number, beatMs: number): Promise<{ beats: number; finished: true }> {
  const end = Date.now() + ms;
  let next = Date.now() + beatMs;
  let beats = 0;
  while (Date.now() < end) {
    if (Date.now() >= next) {
      heartbeat({ probe: ++beats });
      next += beatMs;
    }
  }
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
export async function runCpuTask(task: {
  name: CpuTaskName;
  args: unknown[];
  port: MessagePort;
}): Promise<ThreadResult> {
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

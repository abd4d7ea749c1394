import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Piscina } from 'piscina';
// sharp's native libraries stay loaded for the process when the main thread holds them (glibc unloads them with
// the last thread that used them otherwise: lovell/sharp#2263).
import sharp from 'sharp';
import { loadEnv } from '../../config/env';
import { CpuProcessPool, pinningCpus } from './cpu-processes';
import { partialPathOf, writeFileAtomic } from './files';
import { projectRoot } from '../../config/paths';

/**
 * CPU-bound activities of the cpu pool run on a pool of worker threads (piscina), one per core by default
 * (BIOMEDICA_CPU_THREADS), so one `worker --pool cpu` process uses every core while its main thread stays free for
 * polling, heartbeats, cancellation and workflow tasks. Inside a thread, the activity's heartbeats and logs go to
 * the main thread over a MessagePort (the `ThreadSink`), which hands them to the activity's Context; cancelling the
 * activity aborts the task's signal, and terminates its thread if it has not stopped within a grace period. The
 * code that runs is the same as on the main thread, so the outputs are byte for byte the same. With
 * BIOMEDICA_CPU_ISOLATION=processes the same tasks run in child processes instead (activities/common/cpu-processes.ts),
 * with the same messages over their IPC channel.
 */
export interface ThreadSink {
  heartbeat(details: unknown): void;
  log(level: 'info' | 'warn', message: string, attrs: Record<string, unknown>): void;
  /** Aborted when the activity is cancelled (its thread is terminated if the task goes on past a grace period). */
  signal: AbortSignal;
}

// Per task (the async context of the task's call), so nothing of one task can reach another's activity.
const sinks = new AsyncLocalStorage<ThreadSink>();

/** The sink of the task this code runs for, or null outside a thread's task (the main thread). */
export function threadSink(): ThreadSink | null {
  return sinks.getStore() ?? null;
}

/** Runs `fn` as a task with `sink`: its heartbeats, logs and cancellation go through it. */
export function withThreadSink<T>(sink: ThreadSink, fn: () => Promise<T>): Promise<T> {
  return sinks.run(sink, fn);
}

/**
 * File calls for a cpu task's per-figure loops (a figure's bytes in and out). A task of the pool has its thread or
 * process to itself, one task at a time: there a blocking call costs less than the hop to libuv's threads and back
 * (two wake-ups per call, and the core idles between them), and holds up nothing else. On the main thread
 * (BIOMEDICA_CPU_THREADS=0) they stay asynchronous, as its event loop serves other activities.
 */
export async function readTaskFile(file: string): Promise<Buffer> {
  return threadSink() ? fs.readFileSync(file) : fs.promises.readFile(file);
}

/** writeFileAtomic, blocking within a cpu task (readTaskFile says why). */
export async function writeTaskFileAtomic(file: string, data: Buffer): Promise<void> {
  if (!threadSink()) return writeFileAtomic(file, data);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = partialPathOf(file);
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** What goes from the main thread to a task: the activity was cancelled. */
export type ThreadControl = { kind: 'cancel' };

/**
 * A task's end of its channel to the main thread: a MessagePort in a thread, the IPC channel with the task's id in a
 * child process (activities/cpu-tasks.ts).
 */
export interface TaskPort {
  postMessage(m: ThreadMessage): void;
  on(event: 'message', listener: (m: ThreadControl) => void): unknown;
  close(): void;
}

/** What goes from a thread to the main thread while a task runs. */
export type ThreadMessage =
  | { kind: 'heartbeat'; details: unknown }
  | { kind: 'log'; level: 'info' | 'warn'; message: string; attrs: Record<string, unknown> };

/** An error, as it crosses from a thread (structured clone keeps an Error's message, not its class or fields). */
export interface ThreadFailure {
  name: string;
  message: string;
  stack?: string;
  type?: string | null;
  nonRetryable?: boolean;
}

export function failureOf(err: unknown): ThreadFailure {
  if (err instanceof ApplicationFailure)
    return {
      name: err.name,
      message: err.message,
      stack: err.stack,
      type: err.type,
      nonRetryable: err.nonRetryable ?? false,
    };
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: 'Error', message: String(err) };
}

export function errorOf(f: ThreadFailure): Error {
  if (f.name === 'ApplicationFailure')
    return ApplicationFailure.create({ message: f.message, type: f.type ?? undefined, nonRetryable: f.nonRetryable });
  const err = new Error(f.message);
  err.name = f.name;
  if (f.stack) err.stack = f.stack;
  return err;
}

export type ThreadResult = { value: unknown } | { error: ThreadFailure };

/** Threads (or processes) of this process's pool: BIOMEDICA_CPU_THREADS, else one per core; 0: the tasks run on the main thread (activities/index.ts). */
export function cpuThreadCount(): number {
  return override ?? loadEnv().BIOMEDICA_CPU_THREADS ?? os.availableParallelism();
}

export type CpuIsolation = 'threads' | 'processes';

/** Where the pool's tasks run: worker threads of this process, or child processes (BIOMEDICA_CPU_ISOLATION). */
export function cpuIsolation(): CpuIsolation {
  return isolationOverride ?? loadEnv().BIOMEDICA_CPU_ISOLATION;
}

/** How long a cancelled task may take to stop by itself before its thread (or process) is terminated. */
const CANCEL_GRACE_MS = 5_000;

let pool: Piscina | null = null;
let processes: CpuProcessPool | null = null;
let override: number | null = null;
let isolationOverride: CpuIsolation | null = null;

/**
 * Resizes this process's pool (the benchmark compares 1 thread with N in one run, and threads with processes);
 * null: back to the setting.
 */
export async function setCpuThreads(n: number | null, isolation: CpuIsolation | null = null): Promise<void> {
  await closeCpuThreads();
  override = n;
  isolationOverride = isolation;
}

function threadPool(): Piscina {
  if (!pool) {
    const n = cpuThreadCount();
    // Parallelism comes from the threads, one per core: libvips' own threads per image would only oversubscribe
    // them. sharp defaults to one where glibc runs without jemalloc (this host), to the core count elsewhere.
    sharp.concurrency(1);
    pool = new Piscina({
      filename: path.join(projectRoot, 'workers', 'cpu-thread.js'),
      minThreads: 1,
      maxThreads: n,
      // One task per thread: terminating a thread for a cancel that is not heeded must not take another task along
      // (two per thread, to overlap one task's disk waits with another's work, measured no faster).
      concurrentTasksPerWorker: 1,
      idleTimeout: 60_000,
    });
  }
  return pool;
}

/** Stops the threads or the child processes (worker shutdown, tests). */
export async function closeCpuThreads(): Promise<void> {
  const p = pool;
  const c = processes;
  pool = null;
  processes = null;
  await Promise.all([p?.destroy(), c?.close()]);
}

/** The child processes' ids (processes backend; tests kill one mid-task). */
export function cpuProcessPids(): number[] {
  return processes?.pids() ?? [];
}

/** The core each child process is pinned to, by process id (BIOMEDICA_CPU_PIN); empty when not pinned. */
export function cpuProcessCores(): Map<number, number> {
  return processes?.pinned() ?? new Map();
}

/** One task as a backend runs it: `relay` takes its heartbeats and logs, `cancel` asks it to stop, `kill` stops it. */
export interface CpuTaskRun {
  name: string;
  args: unknown[];
  relay: (m: ThreadMessage) => void;
  cancel: AbortSignal;
  kill: AbortSignal;
}

/** The thread backend: the task's messages over a MessagePort; `kill` terminates its thread (piscina's signal). */
async function onThread(t: CpuTaskRun): Promise<ThreadResult> {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', t.relay);
  const cancel = () => port1.postMessage({ kind: 'cancel' } satisfies ThreadControl);
  t.cancel.addEventListener('abort', cancel, { once: true });
  try {
    return (await threadPool().run(
      { name: t.name, args: t.args, port: port2 },
      { transferList: [port2], signal: t.kill },
    )) as ThreadResult;
  } finally {
    t.cancel.removeEventListener('abort', cancel);
    // The result comes back on piscina's channel, not this port: the task's last messages (its final heartbeat) can
    // still be queued here, and closing the port would drop them. They are handed on first.
    for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) t.relay(m.message as ThreadMessage);
    port1.close();
  }
}

function onProcess(t: CpuTaskRun): Promise<ThreadResult> {
  if (!processes) {
    const size = cpuThreadCount();
    processes = new CpuProcessPool(size, pinningCpus(size, loadEnv().BIOMEDICA_CPU_PIN));
  }
  return processes.run(t);
}

/**
 * Runs the cpu task `name` (activities/cpu-tasks.ts) with `args` on a thread of the pool (or a child process, with
 * BIOMEDICA_CPU_ISOLATION=processes), relaying its heartbeats and logs to the calling activity; a cancelled activity
 * throws CancelledFailure once its task has stopped (or its thread or process was terminated).
 */
export async function inCpuThread<R>(name: string, args: unknown[]): Promise<R> {
  let ctx: Context | null = null;
  try {
    ctx = Context.current();
  } catch {
    /* outside an activity (benchmarks): nothing to relay to */
  }
  const relay = (m: ThreadMessage) => {
    if (m.kind === 'heartbeat') ctx?.heartbeat(m.details);
    else ctx?.log[m.level](m.message, m.attrs);
  };
  // A cancel asks the task to stop (its cancellationSignal, which the stages check between articles and figures);
  // a task that does not within CANCEL_GRACE_MS (a computation that never yields) has its thread terminated.
  const ask = new AbortController();
  const kill = new AbortController();
  let grace: NodeJS.Timeout | undefined;
  const cancel = () => {
    ask.abort();
    grace = setTimeout(() => kill.abort(), CANCEL_GRACE_MS);
  };
  ctx?.cancellationSignal.addEventListener('abort', cancel, { once: true });
  const run: CpuTaskRun = { name, args, relay, cancel: ask.signal, kill: kill.signal };
  const inProcess = cpuIsolation() === 'processes';
  try {
    const out = await (inProcess ? onProcess(run) : onThread(run));
    if (ask.signal.aborted) throw new CancelledFailure(`${name} cancelled`);
    if ('error' in out) throw errorOf(out.error);
    return out.value as R;
  } catch (err) {
    if (ask.signal.aborted)
      throw new CancelledFailure(
        kill.signal.aborted
          ? `${name} cancelled: its cpu ${inProcess ? 'process' : 'thread'} was stopped`
          : `${name} cancelled`,
      );
    throw err;
  } finally {
    clearTimeout(grace);
    ctx?.cancellationSignal.removeEventListener('abort', cancel);
  }
}

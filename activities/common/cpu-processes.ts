import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { projectRoot } from '../../config/paths';
import type { CpuTaskRun, ThreadControl, ThreadMessage, ThreadResult } from './threads';

/**
 * The cpu pool's process backend (BIOMEDICA_CPU_ISOLATION=processes, activities/common/threads.ts): N long-lived
 * child processes (workers/cpu-process.js), one task each at a time. libvips does not scale across the threads of one
 * process here (two decodes in flight: about 1.5x on 2 cores), but does across processes (1.97x), so a host whose
 * work is mostly images gets its cores back this way. The messages are the thread backend's, over the IPC channel
 * with a task id; `serialization: 'advanced'` gives the structured clone the threads use (Buffers, Maps, undefined).
 */

/** From the parent to a child: a task to run, or a control message for the task with that id. */
export type ProcessRequest = { id: number; name: string; args: unknown[] } | { id: number; control: ThreadControl };

/** From a child to the parent: a heartbeat or log of task `id`, or its result with the child's CPU time so far. */
export type ProcessReply =
  { id: number; message: ThreadMessage } | { id: number; result: ThreadResult; cpu: NodeJS.CpuUsage };

interface Child {
  proc: ChildProcess;
  /** The child's own CPU microseconds, as it last reported them. */
  cpu: number;
  task: { id: number; name: string; relay: (m: ThreadMessage) => void; done: (r: ThreadResult | Error) => void } | null;
  killed: boolean;
  /** Its place in the pool: with pinning, the child runs on cpus[slot % cpus.length]. */
  slot: number;
}

/** The CPUs this process may run on (Linux: Cpus_allowed_list in /proc/self/status), or null where that is unknown. */
export function allowedCpus(): number[] | null {
  let list: string | undefined;
  try {
    list = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
  } catch {
    return null;
  }
  if (!list) return null;
  const cpus: number[] = [];
  for (const range of list.split(',')) {
    const [a, b = a] = range.split('-').map(Number);
    if (!Number.isInteger(a) || !Number.isInteger(b)) return null;
    for (let c = a!; c <= b!; c++) cpus.push(c);
  }
  return cpus.length > 0 ? cpus : null;
}

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((f) => fs.existsSync(f)) ?? null;
const pinsWork = new Map<string, boolean>();

/**
 * Whether `taskset` can pin a process here (once per tool and cores): a container may list cores it forbids setting
 * (seccomp, a cpuset changed under it), and a child that cannot start would fail every task it is given.
 */
export function canPin(taskset: string, cpus: number[]): boolean {
  const key = `${taskset} ${cpus.join(',')}`;
  let ok = pinsWork.get(key);
  if (ok === undefined) {
    const r = spawnSync(taskset, ['-c', cpus.join(','), process.execPath, '--version'], { stdio: 'ignore' });
    pinsWork.set(key, (ok = r.status === 0));
  }
  return ok;
}

/**
 * The CPUs a pool of `size` children pins them to, one each in turn (BIOMEDICA_CPU_PIN), or null: not pinned. By
 * default only a pool that covers every core it may use is pinned, so that two pools on one host spread alike over
 * the cores; a smaller pool pinned would crowd the first cores.
 */
export function pinningCpus(size: number, setting: boolean | undefined): number[] | null {
  if (setting === false || !TASKSET) return null;
  const cpus = allowedCpus();
  if (!cpus || (setting !== true && size < cpus.length)) return null;
  return canPin(TASKSET, cpus) ? cpus : null;
}

/** CPU microseconds of every child process so far, as they reported them with their results (the benchmark). */
let childCpuMicros = 0;

export function cpuProcessSeconds(): number {
  return childCpuMicros / 1e6;
}

export class CpuProcessPool {
  private readonly children = new Set<Child>();
  private readonly idle: Child[] = [];
  private readonly waiting: { resolve: (c: Child) => void; reject: (e: Error) => void }[] = [];
  private nextId = 1;
  private closed = false;

  /** `cpus`: where the children are pinned (pinningCpus), or null. */
  constructor(
    private readonly size: number,
    private readonly cpus: number[] | null = null,
  ) {}

  /** The CPU each child is pinned to, by process id; empty without pinning. */
  pinned(): Map<number, number> {
    const cpus = this.cpus;
    return new Map(cpus ? [...this.children].map((c) => [c.proc.pid!, cpus[c.slot % cpus.length]!]) : []);
  }

  /** The children's process ids (tests kill one to see a task fail over). */
  pids(): number[] {
    return [...this.children].map((c) => c.proc.pid!);
  }

  private spawn(): Child {
    // The lowest slot no living child holds (a replaced child takes the dead one's core).
    let slot = 0;
    while ([...this.children].some((c) => c.slot === slot)) slot++;
    // taskset execs node in place, with the IPC channel's descriptor and environment as fork gave them.
    const pin = this.cpus
      ? {
          execPath: TASKSET!,
          execArgv: ['-c', String(this.cpus[slot % this.cpus.length]), process.execPath, ...process.execArgv],
        }
      : {};
    const proc = fork(path.join(projectRoot, 'workers', 'cpu-process.js'), [], { serialization: 'advanced', ...pin });
    const child: Child = { proc, cpu: 0, task: null, killed: false, slot };
    proc.on('message', (m: ProcessReply) => {
      const task = child.task;
      if (!task || m.id !== task.id) return;
      if ('message' in m) return task.relay(m.message);
      const cpu = m.cpu.user + m.cpu.system;
      childCpuMicros += cpu - child.cpu;
      child.cpu = cpu;
      child.task = null;
      task.done(m.result);
      this.release(child);
    });
    // A send to a child that just died: its exit (below) fails the task.
    proc.on('error', () => undefined);
    proc.once('exit', (code, signal) => {
      this.children.delete(child);
      const i = this.idle.indexOf(child);
      if (i >= 0) this.idle.splice(i, 1);
      const task = child.task;
      child.task = null;
      task?.done(
        child.killed
          ? new Error(`${task.name}: its cpu process was stopped`)
          : ApplicationFailure.retryable(
              `${task.name}: its cpu process ${proc.pid} exited (${signal ?? `code ${code}`}) during the task`,
              'CpuProcessExited',
            ),
      );
      // Replaced: a task waiting for a child gets a new one.
      const next = this.closed ? undefined : this.waiting.shift();
      if (next) next.resolve(this.spawn());
    });
    this.children.add(child);
    return child;
  }

  private acquire(): Promise<Child> {
    const c = this.idle.pop() ?? (this.children.size < this.size ? this.spawn() : null);
    if (c) return Promise.resolve(c);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private release(child: Child): void {
    const next = this.waiting.shift();
    if (next) return next.resolve(child);
    this.idle.push(child);
    // An idle child does not keep this process alive (nor does an idle thread of piscina's).
    child.proc.unref();
    (child.proc.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  async run(t: CpuTaskRun): Promise<ThreadResult> {
    const child = await this.acquire();
    child.proc.ref();
    (child.proc.channel as { ref?: () => void } | undefined)?.ref?.();
    const id = this.nextId++;
    const send = (m: ProcessRequest) => child.proc.send(m, (err) => err && undefined);
    const cancel = () => send({ id, control: { kind: 'cancel' } });
    const kill = () => {
      child.killed = true;
      child.proc.kill('SIGKILL');
    };
    try {
      return await new Promise<ThreadResult>((resolve, reject) => {
        child.task = { id, name: t.name, relay: t.relay, done: (r) => (r instanceof Error ? reject(r) : resolve(r)) };
        send({ id, name: t.name, args: t.args });
        if (t.cancel.aborted) cancel();
        else t.cancel.addEventListener('abort', cancel, { once: true });
        if (t.kill.aborted) kill();
        else t.kill.addEventListener('abort', kill, { once: true });
      });
    } finally {
      t.cancel.removeEventListener('abort', cancel);
      t.kill.removeEventListener('abort', kill);
    }
  }

  /** Ends the children (a task still running fails as CpuProcessExited). */
  async close(): Promise<void> {
    this.closed = true;
    // Tasks still waiting for a child fail as they would on a destroyed thread pool.
    for (const w of this.waiting.splice(0)) w.reject(new Error('the cpu process pool was closed'));
    await Promise.all(
      [...this.children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.proc.exitCode !== null || c.proc.signalCode !== null) return resolve();
            c.proc.once('exit', () => resolve());
            c.proc.ref(); // an idle child was unreferenced: its exit is awaited here
            c.proc.kill();
          }),
      ),
    );
  }
}

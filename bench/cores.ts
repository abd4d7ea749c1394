/**
 * All cores: the CPU path (parse, images, shard, parquet) of the sample release's units on the cpu pool's worker
 * threads, at 1 thread and at N (one per core), side by side in one run; prints figures per second, figures per
 * CPU-second (all threads' CPU time) and the speedup. The units are built once (fetch, media, enrich and annotate
 * from the sample mirror, in process), then each pass redoes their CPU stages.
 *
 * On Linux it also splits the CPU time by thread (from /proc/self/task): the main thread, the pool's JS threads,
 * libvips' workers, and the rest (libuv's pool: file I/O and sharp's calls; V8's helpers), and says how long
 * runnable threads waited for a core (schedstat): a wait much above zero means other processes held the cores,
 * and the wall-clock figures (and the speedup) understate what this machine can do; the per-CPU-second ones hold.
 *
 *   npm run bench:cores                     # N = the cores, 3 passes over the sample's units at each setting
 *   npm run bench:cores -- --threads 4 --passes 5 --articles 2
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import sharp from 'sharp';
import { closeCpuThreads, inCpuThread, setCpuThreads } from '../activities/common/threads';
import { buildReleaseInProcess, rerunCpuPath } from '../test/support/in-process-release';
import { nArg } from './common';

interface ThreadTimes {
  comm: string;
  /** Seconds on a core, and seconds runnable but waiting for one. */
  cpu: number;
  wait: number;
}

/** This process's threads' times by thread id (empty where /proc has no schedstat). */
function threadTimes(): Map<string, ThreadTimes> {
  const out = new Map<string, ThreadTimes>();
  let tids: string[];
  try {
    tids = fs.readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const comm = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const [cpu, wait] = fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      out.set(tid, { comm, cpu: cpu! / 1e9, wait: wait! / 1e9 });
    } catch {
      /* the thread ended meanwhile */
    }
  }
  return out;
}

/** CPU seconds by kind of thread between two snapshots, and the seconds runnable threads waited for a core. */
function split(before: Map<string, ThreadTimes>, after: Map<string, ThreadTimes>, poolThreads: Set<string>) {
  const cpu = { main: 0, 'js threads': 0, libvips: 0, other: 0 };
  let wait = 0;
  for (const [tid, t] of after) {
    const b = before.get(tid) ?? { cpu: 0, wait: 0 };
    const kind =
      tid === String(process.pid)
        ? 'main'
        : t.comm.startsWith('libvips')
          ? 'libvips'
          : poolThreads.has(tid)
            ? 'js threads'
            : 'other';
    cpu[kind] += t.cpu - b.cpu;
    wait += t.wait - b.wait;
  }
  return { cpu, wait };
}

async function main(): Promise<void> {
  const n = nArg('threads', os.availableParallelism());
  const passes = nArg('passes', 3);
  const rel = await buildReleaseInProcess({ releaseId: 'bench-cores', maxArticles: nArg('articles', 2) });
  try {
    console.log(
      `${rel.units.length} units of the sample release, ${passes} passes per setting, ${os.availableParallelism()} cores, node ${process.version}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
    );
    const load = () =>
      os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ');
    console.log(`load average before: ${load()}`);
    const rates: number[] = [];
    for (const threads of [1, n]) {
      await setCpuThreads(threads);
      const existing = new Set(threadTimes().keys());
      await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2 * threads); // warm-up: threads started, caches
      // The threads that warm-up started are the pool's (libuv's and V8's helpers were running already).
      const before = threadTimes();
      const poolThreads = new Set([...before.keys()].filter((t) => !existing.has(t)));
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const figures = await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2 * threads, passes);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const used = process.cpuUsage(cpu0);
      const cpuSeconds = (used.user + used.system) / 1e6;
      rates.push(figures / wall);
      console.log(
        `${String(threads).padStart(2)} thread${threads === 1 ? ' ' : 's'}  ${(figures / wall).toFixed(1).padStart(7)} figures/s  ${(figures / cpuSeconds).toFixed(1).padStart(7)} figures per CPU-second  (${figures} figures, ${wall.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU = ${(cpuSeconds / wall).toFixed(2)} cores busy)`,
      );
      const s = split(before, threadTimes(), poolThreads);
      if (s.cpu.main + s.cpu['js threads'] > 0)
        console.log(
          `            CPU s by thread: ${Object.entries(s.cpu)
            .map(([k, v]) => `${k} ${v.toFixed(2)}`)
            .join(
              ', ',
            )} (sharp concurrency ${sharp.concurrency()}); runnable but waiting for a core: ${s.wait.toFixed(1)} s`,
        );
    }
    console.log(`speedup at ${n} threads: ${(rates[1]! / rates[0]!).toFixed(2)}x`);
    console.log(`load average after: ${load()}`);
  } finally {
    await closeCpuThreads();
    rel.cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

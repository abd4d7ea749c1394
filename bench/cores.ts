/**
 * All cores: the CPU path (parse, images, shard, parquet) of the sample release's units on the cpu pool's worker
 * threads, at 1 thread and at N (one per core), then the same in 1 and N child processes
 * (BIOMEDICA_CPU_ISOLATION=processes), side by side in one run; prints figures per second, figures per CPU-second
 * (all threads' CPU time, and the children's: each reports its own with every result) and the speedups. Each pass
 * starts as a first run does, with the stages' outputs gone (not overwritten: on ext4 a file renamed over another is
 * flushed to disk at once, which a release never does). The units are built once (fetch, media, enrich and annotate
 * from the sample mirror, in process), then each pass redoes their CPU stages.
 *
 * On Linux it also splits the CPU time by thread (from /proc/self/task, and /proc/<child>/task for the children: their
 * main threads count as the pool's JS threads): the main thread, the pool's JS threads,
 * libvips' workers, and the rest (libuv's pool: file I/O and sharp's calls; V8's helpers), and says how long
 * runnable threads waited for a core (schedstat): a wait much above zero means other processes held the cores,
 * and the wall-clock figures (and the speedup) understate what this machine can do; the per-CPU-second ones hold.
 *
 * Then it measures what the machine itself allows, at 1 and N at once: a pure-JavaScript integer loop on worker
 * threads (nothing shared, so its speedup is the cores' own ceiling on this host: two vCPUs of a VM can share one
 * physical core's resources) and the images stage's one decode (the model input of the real fixture JPEGs). The
 * CPU path's speedup is printed as a share of those ceilings.
 *
 *   npm run bench:cores                     # N = the cores, 3 passes over the sample's units at each setting
 *   npm run bench:cores -- --threads 4 --passes 5 --articles 2
 *   npm run bench:cores -- --isolation processes   # one backend only (threads, processes; default both)
 *   npm run bench:cores -- --rounds 3 --passes 4   # 1 then N, three times over: the medians of the rounds
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { decodeRgb, parsePreprocessConfig } from '../activities/annotate/preprocess';
import { fixturePaths } from '../config/paths';
import { cpuProcessSeconds } from '../activities/common/cpu-processes';
import {
  closeCpuThreads,
  cpuProcessCores,
  cpuProcessPids,
  inCpuThread,
  setCpuThreads,
  type CpuIsolation,
} from '../activities/common/threads';
import { buildReleaseInProcess, rerunCpuPath } from '../test/support/in-process-release';
import { arg, nArg } from './common';

interface ThreadTimes {
  comm: string;
  /** Seconds on a core, and seconds runnable but waiting for one. */
  cpu: number;
  wait: number;
}

/** The threads' times by thread id of this process and of `pids` (the cpu pool's children); empty without schedstat. */
function threadTimes(pids: number[] = []): Map<string, ThreadTimes> {
  const out = new Map<string, ThreadTimes>();
  for (const proc of ['self', ...pids.map(String)]) {
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${proc}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const comm = fs.readFileSync(`/proc/${proc}/task/${tid}/comm`, 'utf8').trim();
        const [cpu, wait] = fs.readFileSync(`/proc/${proc}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
        out.set(tid, { comm, cpu: cpu! / 1e9, wait: wait! / 1e9 });
      } catch {
        /* the thread ended meanwhile */
      }
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

/** The same integer loop on `n` threads at once; seconds until the last one ends. Each thread does the same work. */
async function aluSeconds(n: number, iterations: number): Promise<number> {
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    let x = 1;
    for (let i = 0; i < workerData; i++) x = (Math.imul(x, 1664525) + 1013904223 + (x >>> 13)) | 0;
    parentPort.postMessage(x);`;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: iterations });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Decodes per second with `n` decodes in flight (sharp, one libvips thread each, on libuv's pool). */
async function decodeRate(images: Buffer[], n: number, total: number): Promise<{ perSecond: number; perCpu: number }> {
  const cfg = parsePreprocessConfig({});
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < total) await decodeRgb(images[next++ % images.length]!, cfg);
    }),
  );
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const used = process.cpuUsage(cpu0);
  return { perSecond: total / wall, perCpu: total / ((used.user + used.system) / 1e6) };
}

function fixtureJpegs(): Buffer[] {
  const dir = fixturePaths.images();
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.jpe?g$/i.test(f))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f)));
}

/** The same decode loop, one at a time, in `n` processes of their own at once: the sum of their rates. */
async function decodeRateInProcesses(n: number, total: number): Promise<number> {
  const rates = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<number>((resolve, reject) => {
          const child = spawn(process.execPath, [...process.execArgv, __filename, '--decode-child', String(total)], {
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let out = '';
          child.stdout.on('data', (c: Buffer) => (out += c.toString()));
          child.once('error', reject);
          child.once('exit', (code) =>
            code === 0 ? resolve(Number(out.trim())) : reject(new Error(`decode child exited ${code}`)),
          );
        }),
    ),
  );
  return rates.reduce((a, b) => a + b, 0);
}

async function ceilings(n: number, pathSpeedups: Partial<Record<CpuIsolation, number>>): Promise<void> {
  await aluSeconds(1, 2e7); // warm-up
  const iterations = 4e8;
  const one = await aluSeconds(1, iterations);
  const many = await aluSeconds(n, iterations);
  const alu = (n * one) / many;
  const images = fixtureJpegs();
  const lines = [
    `machine ceiling, integer loop on worker threads: 1 thread ${one.toFixed(2)} s, ${n} threads ${many.toFixed(2)} s for ${n}x the work: ${alu.toFixed(2)}x`,
  ];
  let decode = 0;
  let decodeInProcesses = 0;
  if (images.length > 0) {
    sharp.concurrency(1);
    await decodeRate(images, n, 4 * n); // warm-up
    const total = 60 * images.length;
    const d1 = await decodeRate(images, 1, total);
    const dn = await decodeRate(images, n, total);
    decode = dn.perSecond / d1.perSecond;
    lines.push(
      `machine ceiling, the model-input decode of ${images.length} real figure JPEGs: 1 at once ${d1.perSecond.toFixed(1)}/s (${d1.perCpu.toFixed(1)} per CPU-second), ${n} at once ${dn.perSecond.toFixed(1)}/s (${dn.perCpu.toFixed(1)} per CPU-second): ${decode.toFixed(2)}x`,
    );
    // The same loop in N processes of their own: what libvips does with the cores when no two decodes share one.
    const p1 = await decodeRateInProcesses(1, total);
    const pn = await decodeRateInProcesses(n, total);
    decodeInProcesses = pn / p1;
    lines.push(
      `the same decode, one at a time in each of ${n} processes: 1 process ${p1.toFixed(1)}/s, ${n} processes ${pn.toFixed(1)}/s together: ${(pn / p1).toFixed(2)}x`,
    );
  }
  for (const [isolation, x] of Object.entries(pathSpeedups)) {
    // Each backend against the decode's ceiling of its own kind: in one process, or across processes.
    const d = isolation === 'threads' ? decode : decodeInProcesses;
    lines.push(
      `the CPU path's ${x.toFixed(2)}x on ${isolation} is ${((100 * x) / alu).toFixed(0)}% of the integer loop's ceiling${d ? `, ${((100 * x) / d).toFixed(0)}% of the decode's (${isolation === 'threads' ? 'in one process' : 'across processes'})` : ''}`,
    );
  }
  for (const l of lines) console.log(l);
}

async function main(): Promise<void> {
  const child = arg('decode-child');
  if (child !== undefined) {
    // A child of decodeRateInProcesses: the decode loop at one in flight, its rate on stdout.
    sharp.concurrency(1);
    const images = fixtureJpegs();
    await decodeRate(images, 1, 4);
    process.stdout.write(`${(await decodeRate(images, 1, Number(child))).perSecond}\n`);
    return;
  }
  const n = nArg('threads', os.availableParallelism());
  const passes = nArg('passes', 3);
  const rounds = nArg('rounds', 1);
  const rel = await buildReleaseInProcess({ releaseId: 'bench-cores', maxArticles: nArg('articles', 2) });
  try {
    console.log(
      `${rel.units.length} units of the sample release, ${passes} passes per setting${rounds > 1 ? `, ${rounds} rounds of 1 then ${n}` : ''}, ${os.availableParallelism()} cores, node ${process.version}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
    );
    const load = () =>
      os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ');
    console.log(`load average before: ${load()}`);
    const which = arg('isolation');
    const backends: CpuIsolation[] = which === 'threads' || which === 'processes' ? [which] : ['threads', 'processes'];
    const speedups: Partial<Record<CpuIsolation, number>> = {};
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const isolation of backends) {
      const unit = isolation === 'threads' ? 'thread' : 'process';
      const plural = `${unit}${'es'.slice(isolation === 'threads' ? 1 : 0)}`;
      // Rounds of 1 then N, one after the other: each round's speedup compares two runs minutes apart at most, so
      // what else the host does (it is a VM) moves both; the median of the rounds is the figure.
      const speeds: number[] = [];
      const perCpu: number[] = [];
      for (let round = 1; round <= rounds; round++) {
        const rates: number[] = [];
        for (const threads of [1, n]) {
          await setCpuThreads(threads, isolation);
          const existing = new Set(threadTimes().keys());
          // In processes, the children's threads are split the same way: their main threads are the pool's JS threads.
          const children = () => (isolation === 'processes' ? cpuProcessPids() : []);
          await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2 * threads); // warm-up: threads started, caches
          // The threads that warm-up started are the pool's (libuv's and V8's helpers were running already).
          const pids = children();
          const cores = cpuProcessCores();
          if (round === 1 && threads === n && isolation === 'processes')
            console.log(
              cores.size
                ? `the ${n} processes are pinned to cores ${[...cores.values()].join(', ')} (BIOMEDICA_CPU_PIN)`
                : `the ${n} processes are not pinned (BIOMEDICA_CPU_PIN)`,
            );
          const before = threadTimes(pids);
          const poolThreads =
            isolation === 'processes'
              ? new Set(pids.map(String))
              : new Set([...before.keys()].filter((t) => !existing.has(t)));
          const cpu0 = process.cpuUsage();
          const children0 = cpuProcessSeconds();
          const t0 = process.hrtime.bigint();
          const figures = await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2 * threads, passes);
          const wall = Number(process.hrtime.bigint() - t0) / 1e9;
          const used = process.cpuUsage(cpu0);
          // This process's CPU, plus the children's (each reports its own process.cpuUsage() with every result).
          const own = (used.user + used.system) / 1e6;
          const inChildren = cpuProcessSeconds() - children0;
          const cpuSeconds = own + inChildren;
          rates.push(figures / wall);
          if (threads === n) perCpu.push(figures / cpuSeconds);
          const label = `${rounds > 1 ? `r${round} ` : ''}${String(threads).padStart(2)} ${threads === 1 ? unit : plural}`;
          console.log(
            `${label.padEnd(16)} ${(figures / wall).toFixed(1).padStart(7)} figures/s  ${(figures / cpuSeconds).toFixed(1).padStart(7)} figures per CPU-second  (${figures} figures, ${wall.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU${inChildren ? ` of which ${inChildren.toFixed(1)} s in the children` : ''} = ${(cpuSeconds / wall).toFixed(2)} cores busy)`,
          );
          const s = split(before, threadTimes(pids), poolThreads);
          if (s.cpu.main + s.cpu['js threads'] > 0)
            console.log(
              `                 CPU s by thread: ${Object.entries(s.cpu)
                .map(([k, v]) => `${k} ${v.toFixed(2)}`)
                .join(
                  ', ',
                )} (sharp concurrency ${sharp.concurrency()}); runnable but waiting for a core: ${s.wait.toFixed(1)} s`,
            );
        }
        speeds.push(rates[1]! / rates[0]!);
      }
      const speedup = (speedups[isolation] = median(speeds));
      console.log(
        `speedup at ${n} ${plural}: ${speedup.toFixed(2)}x${rounds > 1 ? ` (median of ${rounds} rounds: ${speeds.map((x) => x.toFixed(2)).join(', ')}); figures per CPU-second at ${n}: ${median(perCpu).toFixed(1)} (${perCpu.map((x) => x.toFixed(1)).join(', ')})` : ''}`,
      );
    }
    await closeCpuThreads();
    await ceilings(n, speedups);
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

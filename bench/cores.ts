/**
 * All cores: the CPU path (parse, images, shard, parquet) of the sample release's units on the cpu pool's worker
 * threads, at 1 thread and at N (one per core), side by side in one run; prints figures per second, figures per
 * CPU-second (all threads' CPU time) and the speedup. The units are built once (fetch, media, enrich and annotate
 * from the sample mirror, in process), then each pass redoes their CPU stages.
 *
 *   npm run bench:cores                     # N = the cores, 3 passes over the sample's units at each setting
 *   npm run bench:cores -- --threads 4 --passes 5 --articles 2
 */
import * as os from 'node:os';
import { closeCpuThreads, inCpuThread, setCpuThreads } from '../activities/common/threads';
import { buildReleaseInProcess, rerunCpuPath } from '../test/support/in-process-release';
import { nArg } from './common';

async function main(): Promise<void> {
  const n = nArg('threads', os.availableParallelism());
  const passes = nArg('passes', 3);
  const rel = await buildReleaseInProcess({ releaseId: 'bench-cores', maxArticles: nArg('articles', 2) });
  try {
    console.log(
      `${rel.units.length} units of the sample release, ${passes} passes per setting, ${os.availableParallelism()} cores, node ${process.version}`,
    );
    const rates: number[] = [];
    for (const threads of [1, n]) {
      await setCpuThreads(threads);
      await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2 * threads); // warm-up: threads started, caches
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const figures = await rerunCpuPath(rel, (name, args) => inCpuThread(name, args), 2 * threads, passes);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const used = process.cpuUsage(cpu0);
      const cpuSeconds = (used.user + used.system) / 1e6;
      rates.push(figures / wall);
      console.log(
        `${String(threads).padStart(2)} thread${threads === 1 ? ' ' : 's'}  ${(figures / wall).toFixed(1).padStart(7)} figures/s  ${(figures / cpuSeconds).toFixed(1).padStart(7)} figures per CPU-second  (${figures} figures, ${wall.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU)`,
      );
    }
    console.log(`speedup at ${n} threads: ${(rates[1]! / rates[0]!).toFixed(2)}x`);
  } finally {
    await closeCpuThreads();
    rel.cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

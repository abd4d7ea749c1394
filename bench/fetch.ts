/**
 * Fetch benchmark (docs/sources.md): download throughput from the loopback S3 stand-in (sample/mirror-server.ts,
 * run in a child process so that server and client do not share one event loop) at several concurrency levels.
 *
 * Measured per level: placeObject() for every object (the fetch stage's download path: the worker-wide limiter,
 * retries, a streamed GET with idle timeout and deadline, md5 verified on the fly, write to a temporary name and
 * rename) into an empty folder, without the download cache; objects/s and MB/s (10^6 bytes) over the wall time.
 * Then once more at the highest level with the content-addressed cache filled, where every object is linked from
 * <dataDir>/cache (no GET): what an unchanged object costs in an incremental release.
 *
 * npm run bench:fetch -- [--objects 400] [--mean-kb 150] [--levels 1,4,16,64]
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { placeObject } from '../activities/fetch/activity';
import { ObjectCache } from '../activities/fetch/cache';
import { setFetchTuning } from '../activities/fetch/retry';
import { HttpPmcSource } from '../activities/fetch/source';
import { mapLimit } from '../activities/common/stage';
import { arg, serveMirror, startMirrorChild, stopwatch } from './common';

async function main(): Promise<void> {
  if (process.argv[2] === '--serve') return serveMirror(process.argv[3]!);
  const count = Number(arg('objects', '400'));
  const meanKb = Number(arg('mean-kb', '150'));
  const levels = arg('levels', '1,4,16,64').split(',').map(Number);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-bench-fetch-'));
  const root = path.join(tmp, 'bucket');
  const objects: { key: string; md5: string; bytes: number }[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    // Figure-like sizes: 20 KB to about 4x the mean, skewed small.
    const r = ((i * 2654435761) >>> 0) / 4294967296;
    const bytes = Math.round(20_000 + r * r * meanKb * 1024 * 3);
    const body = randomBytes(bytes);
    const key = `PMC${1000 + i}.1/fig-g${String(i).padStart(3, '0')}.jpg`;
    fs.mkdirSync(path.dirname(path.join(root, key)), { recursive: true });
    fs.writeFileSync(path.join(root, key), body);
    objects.push({ key, md5: createHash('md5').update(body).digest('hex'), bytes });
    total += bytes;
  }
  const server = await startMirrorChild(__filename, root);
  const report: Record<string, unknown> = {
    machine: `${os.cpus().length} cores, node ${process.version}; server in a child process on the same machine`,
    objects: count,
    totalMB: +(total / 1e6).toFixed(1),
    meanKB: +(total / count / 1000).toFixed(1),
    levels: [] as unknown[],
  };
  try {
    const src = new HttpPmcSource(server.baseUrl, 60_000);
    // Warm up: connection pool, JIT.
    setFetchTuning({ perWorker: 4 });
    await mapLimit(objects.slice(0, 20), 4, (o, i) => placeObject(src, o, path.join(tmp, 'warm', String(i))));
    for (const c of levels) {
      setFetchTuning({ perWorker: c });
      const dest = path.join(tmp, `dest-${c}`);
      const elapsed = stopwatch();
      const outcomes = await mapLimit(objects, c, (o) => placeObject(src, o, path.join(dest, o.key)));
      const s = elapsed().ms / 1000;
      if (outcomes.some((x) => x !== 'fetched')) throw new Error('expected every object fetched');
      (report.levels as unknown[]).push({
        concurrency: c,
        seconds: +s.toFixed(2),
        objectsPerSecond: Math.round(count / s),
        MBps: +(total / 1e6 / s).toFixed(1),
      });
      console.error(JSON.stringify((report.levels as unknown[]).at(-1)));
      fs.rmSync(dest, { recursive: true, force: true });
    }
    // Incremental: the cache already holds every object; each is linked into place, nothing is downloaded.
    const top = levels[levels.length - 1]!;
    const cache = new ObjectCache(path.join(tmp, 'data'));
    setFetchTuning({ perWorker: top });
    await mapLimit(objects, top, (o) => placeObject(src, o, path.join(tmp, 'seed', o.key), { cache }));
    const elapsed = stopwatch();
    const outcomes = await mapLimit(objects, top, (o) =>
      placeObject(src, o, path.join(tmp, 'again', o.key), { cache }),
    );
    const s = elapsed().ms / 1000;
    if (outcomes.some((x) => x !== 'cached')) throw new Error('expected every object from the cache');
    report.fromCache = {
      concurrency: top,
      seconds: +s.toFixed(2),
      objectsPerSecond: Math.round(count / s),
      MBps: +(total / 1e6 / s).toFixed(1),
      note: 'linked from <dataDir>/cache after an md5 check; no GET',
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    server.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

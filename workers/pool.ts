import { DefaultLogger, Runtime } from '@temporalio/worker';
import { isWorkerPool, runPools, WORKER_POOLS } from './pools';

/** One pool per process, for a cluster: `tsx workers/pool.ts gpu` on the GPU machines, `io` on the network ones... */
async function main(): Promise<void> {
  const pool = process.argv[2];
  if (!isWorkerPool(pool)) throw new Error(`usage: workers/pool.ts <${WORKER_POOLS.join('|')}>`);
  Runtime.install({ logger: new DefaultLogger((process.env.LOG_LEVEL as 'INFO' | 'WARN' | 'ERROR') ?? 'INFO') });
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  await runPools([pool], { signal: ac.signal, onReady: () => console.log(`worker pool ${pool} running`) });
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

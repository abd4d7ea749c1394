import { Runtime, DefaultLogger } from '@temporalio/worker';
import { runPools, POOLS } from './pools';

/** The embedded default: every pool in one process. `npm run worker` (or `tsx workers/all.ts`). */
async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger((process.env.LOG_LEVEL as 'INFO' | 'WARN' | 'ERROR') ?? 'WARN') });
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  await runPools(POOLS, { signal: ac.signal, onReady: () => console.log(`workers running for pools ${POOLS.join(', ')}`) });
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

/** One Temporal runtime per test process, logging warnings and errors only. */
export function installQuietRuntime(): void {
  if (installed) return;
  Runtime.install({
    logger: new DefaultLogger('WARN', (entry) => {
      if (/^No (workflows|activities) registered/.test(entry.message)) return;
      console.error(`${entry.level} ${entry.message}`);
    }),
  });
  installed = true;
}

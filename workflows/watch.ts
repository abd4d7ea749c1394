import { condition, proxyActivities, setCurrentDetails, workflowInfo } from '@temporalio/workflow';
import type { WorkflowQueueActivities } from '../activities';
import { watchOptions } from './options';

const watch = proxyActivities<WorkflowQueueActivities>(watchOptions);

export interface DetailsWithRetries {
  /** What the workflow is doing (its current details, shown by the Temporal UI). */
  set(text: string): void;
  /** Ends the watch (when the workflow is done). */
  stop(): void;
}

/**
 * Current details that also say when the workflow's own activity keeps failing: a workflow does not see Temporal
 * retry its activities, so every `everyMs` while it runs it asks (one quick activity on the workflow queue) and
 * adds `retrying: fetchArticles attempt 4 (next try ...): <last error>` to its details, until the activity goes
 * through. Costs a timer per wait (a fired one and an activity only every `everyMs`).
 */
export function detailsWithRetries(everyMs: number): DetailsWithRetries {
  let text = '';
  let retrying: string | null = null;
  let stopped = false;
  const show = () => setCurrentDetails(retrying ? `${text}\nretrying: ${retrying}` : text);
  const loop = (async () => {
    while (!(await condition(() => stopped, everyMs))) {
      retrying = await watch.describeRetries(workflowInfo().workflowId).catch(() => retrying);
      show();
    }
  })();
  loop.catch(() => undefined); // cancelled with the workflow: nothing to report
  return {
    set(t: string) {
      text = t;
      show();
    },
    stop() {
      stopped = true;
    },
  };
}

/** One activity call with its details watched for retries while it runs. */
export async function watched<T>(everyMs: number, text: string, call: () => Promise<T>): Promise<T> {
  const details = detailsWithRetries(everyMs);
  details.set(text);
  try {
    return await call();
  } finally {
    details.stop();
  }
}

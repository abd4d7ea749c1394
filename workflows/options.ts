import type { ActivityOptions, RetryPolicy } from '@temporalio/workflow';
import { TASK_QUEUES } from '../config/task-queues';

// Heartbeat timeouts are short so work held by a worker that died is handed to another within a minute or two.
// Retries ride out outages: a worker or server that is gone for hours only delays the next attempt.
const patientRetry: RetryPolicy = {
  initialInterval: '2s',
  backoffCoefficient: 2,
  maximumInterval: '5m',
  maximumAttempts: 60,
  nonRetryableErrorTypes: ['ModelMissing', 'SourceUnavailable', 'ConfigError'],
};

/** The retry report (activities/common/retries.ts): quick, never retried, its failure only skips one report. */
export const watchOptions: ActivityOptions = {
  taskQueue: TASK_QUEUES.workflows,
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 1 },
};
export const ioOptions: ActivityOptions = {
  taskQueue: TASK_QUEUES.io,
  startToCloseTimeout: '1h',
  heartbeatTimeout: '30s',
  retry: patientRetry,
};
export const entrezOptions: ActivityOptions = {
  taskQueue: TASK_QUEUES.entrez,
  startToCloseTimeout: '3m',
  retry: { ...patientRetry, initialInterval: '1s', maximumInterval: '1m' },
};
export const cpuOptions: ActivityOptions = {
  taskQueue: TASK_QUEUES.cpu,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: patientRetry,
};
export const gpuOptions: ActivityOptions = {
  taskQueue: TASK_QUEUES.gpu,
  startToCloseTimeout: '4h',
  heartbeatTimeout: '2m',
  retry: patientRetry,
};

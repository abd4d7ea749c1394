/** Task queues, one per worker pool; kept free of imports so workflow code can use them. */
export const TASK_QUEUES = {
  workflows: 'biomedica-workflows',
  io: 'biomedica-io',
  entrez: 'biomedica-entrez',
  cpu: 'biomedica-cpu',
  gpu: 'biomedica-gpu',
  /** Hub commits only, polled by the io pool with a task-queue-wide rate under the Hub's commit limit. */
  hub: 'biomedica-hub',
} as const;

export const SEARCH_ATTRIBUTES = {
  release: 'BiomedicaRelease',
  subset: 'BiomedicaSubset',
  stage: 'BiomedicaStage',
} as const;

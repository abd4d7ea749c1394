/**
 * `taxonomy fit | review-pack | import-labels`: fit a taxonomy version on a release (a workflow on the cluster),
 * (re)build its expert review pack, and import the filled labels as the next version (both local, no server).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WorkflowExecutionAlreadyStartedError, defaultPayloadConverter } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import {
  buildTaxonomyReviewPack,
  importTaxonomyLabels,
  parseFitInput,
  type FitTaxonomyInputArgs,
} from '../activities/annotate/taxonomy-activity';
import { defaultDataDir } from '../config/paths';
import { releaseWorkflowId, ReleaseInputSchema, type ReleaseInput } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { fitTaxonomyWorkflow, fitTaxonomyWorkflowId, type FitTaxonomyResult } from '../workflows/taxonomy';
import { flag, intFlag, parseCommand, UsageError } from './args';
import { findReleaseWorkflow } from './control';
import { connectClient, uiLink } from './release';
import { SAMPLE_RELEASE_ID } from './sample';

export const TAXONOMY_USAGE = `  taxonomy fit --version V [--release ID | --config FILE] [--clusters K] [--pca N] [--samples N] [--seed S]
                [--kmeans-batch N] [--per-cluster N] [--thumb PX] [--out PATH]   fit PCA + k-means on a release's figures (a workflow;
                                               needs the cpu and gpu pools), write the artifact and the review pack
  taxonomy review-pack --taxonomy PATH [--per-cluster N] [--thumb PX] [--out DIR]   (re)build the HTML review pack
  taxonomy import-labels --taxonomy PATH --labels FILE [--version V] [--out PATH]   filled labels -> next version`;

/** A path as given when it exists from here, else relative to the data dir (where models/ lives). */
function resolveInput(p: string, dataDir: string): string {
  if (path.isAbsolute(p) || fs.existsSync(p)) return path.resolve(p);
  return path.join(dataDir, p);
}

/** The release's input as its workflow was started with it (from the server's history). */
export async function releaseInputFromServer(client: Client, releaseId: string): Promise<ReleaseInput> {
  const ref = await findReleaseWorkflow(client, releaseId);
  if (!ref)
    throw new Error(`no release workflow for ${releaseId} (${releaseWorkflowId(releaseId)}, or a scheduled run of it)`);
  const history = await client.workflow.getHandle(ref.workflowId, ref.runId).fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) throw new Error(`no start input in the history of ${ref.workflowId}`);
  const input = ReleaseInputSchema.parse(defaultPayloadConverter.fromPayload(payload));
  // A Schedule's run was started with `{year}` in its id, resolved by the workflow: the id asked for is that one.
  return input.releaseId.includes('{year}') ? { ...input, releaseId } : input;
}

/** Starts (or attaches to) the fit workflow and waits for it. */
export async function taxonomyFit(args: string[], opts: { client?: Client } = {}): Promise<number> {
  const version = flag(args, 'version');
  if (!version) throw new Error('taxonomy fit needs --version V (a new, immutable version string, e.g. 2026-k2000)');
  const client = opts.client ?? (await connectClient());
  const config = flag(args, 'config');
  let release: ReleaseInput;
  if (config) {
    const raw = JSON.parse(fs.readFileSync(config, 'utf8')) as Record<string, unknown>;
    raw.dataDir = path.resolve(typeof raw.dataDir === 'string' ? raw.dataDir : defaultDataDir());
    release = ReleaseInputSchema.parse(raw);
  } else {
    release = await releaseInputFromServer(client, flag(args, 'release') ?? SAMPLE_RELEASE_ID);
  }
  const input: FitTaxonomyInputArgs = {
    release,
    version,
    clusters: intFlag(args, 'clusters'),
    pcaComponents: intFlag(args, 'pca'),
    maxSamples: intFlag(args, 'samples'),
    seed: intFlag(args, 'seed'),
    kmeansBatchSize: intFlag(args, 'kmeans-batch'),
    perCluster: intFlag(args, 'per-cluster'),
    thumbSize: intFlag(args, 'thumb'),
    outPath: flag(args, 'out'),
  };
  for (const k of Object.keys(input) as Array<keyof FitTaxonomyInputArgs>) if (input[k] === undefined) delete input[k];
  parseFitInput(input); // fail here, not in the workflow, on a bad flag
  const workflowId = fitTaxonomyWorkflowId(release.releaseId, version);
  let handle;
  try {
    handle = await client.workflow.start(fitTaxonomyWorkflow, {
      workflowId,
      taskQueue: TASK_QUEUES.workflows,
      args: [input],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      staticSummary: `taxonomy ${version} on release ${release.releaseId}`,
    });
    console.log(`started ${workflowId}: ${uiLink(workflowId)}`);
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    handle = client.workflow.getHandle<typeof fitTaxonomyWorkflow>(workflowId);
    console.log(`attached to ${workflowId}: ${uiLink(workflowId)}`);
  }
  const result: FitTaxonomyResult = await handle.result();
  console.log(formatFitResult(result));
  return 0;
}

export function formatFitResult(r: FitTaxonomyResult): string {
  return [
    `taxonomy ${r.version}: ${r.fit.clusters} clusters from ${r.sample.samples} figures of ${r.sample.units} units (${r.sample.fromStored} stored embeddings, ${r.sample.embeddedNow} embedded now)`,
    `  PCA ${r.fit.pcaComponents} components (${(100 * r.fit.explainedVariance).toFixed(1)}% of the variance); k-means ${r.fit.kmeansSteps} steps, inertia ${r.fit.inertia.toFixed(3)}, ${r.fit.emptyClusters} empty clusters`,
    `  artifact: ${r.taxonomyPath}${r.fit.reused ? ' (existed)' : ''}`,
    `  review pack: ${r.review.index} (${r.review.thumbnails} thumbnails)`,
    `  labels to fill: ${r.review.labelsFile}; then: taxonomy import-labels --taxonomy ${r.taxonomyPath} --labels <filled file>`,
  ].join('\n');
}

export async function taxonomyReviewPack(args: string[]): Promise<number> {
  const dataDir = defaultDataDir();
  const taxonomy = flag(args, 'taxonomy');
  if (!taxonomy) throw new Error('taxonomy review-pack needs --taxonomy PATH');
  const out = flag(args, 'out');
  const r = await buildTaxonomyReviewPack({
    dataDir,
    taxonomyPath: resolveInput(taxonomy, dataDir),
    ...(intFlag(args, 'per-cluster') !== undefined ? { perCluster: intFlag(args, 'per-cluster') } : {}),
    ...(intFlag(args, 'thumb') !== undefined ? { thumbSize: intFlag(args, 'thumb') } : {}),
    ...(out ? { outDir: path.resolve(out) } : {}),
  });
  console.log(
    `review pack: ${r.index}\n  ${r.clusters} clusters, ${r.figures} figures, ${r.thumbnails} thumbnails\n  labels to fill: ${r.labelsFile}`,
  );
  return 0;
}

export async function taxonomyImportLabels(args: string[]): Promise<number> {
  const dataDir = defaultDataDir();
  const taxonomy = flag(args, 'taxonomy');
  const labels = flag(args, 'labels');
  if (!taxonomy || !labels) throw new Error('taxonomy import-labels needs --taxonomy PATH --labels FILE');
  const out = flag(args, 'out');
  const r = await importTaxonomyLabels({
    taxonomyPath: resolveInput(taxonomy, dataDir),
    labelsPath: path.resolve(labels),
    version: flag(args, 'version'),
    outPath: out ? path.resolve(out) : undefined,
  });
  console.log(
    `taxonomy ${r.version} (labels for ${r.clusters} clusters, geometry of ${r.parent}): ${r.taxonomyPath}${r.reused ? ' (existed, identical)' : ''}`,
  );
  console.log(
    `use it in a release: "annotate": { "taxonomyPath": "${path.relative(dataDir, r.taxonomyPath).startsWith('..') ? r.taxonomyPath : path.relative(dataDir, r.taxonomyPath)}" }`,
  );
  return 0;
}

/** `taxonomy <sub> ...` for cli/main.ts. */
const S = { type: 'string' } as const;
/** The options of each taxonomy command: anything else is a usage error naming it. */
const TAXONOMY_OPTIONS = {
  fit: {
    version: S,
    release: S,
    config: S,
    clusters: S,
    pca: S,
    samples: S,
    seed: S,
    'kmeans-batch': S,
    'per-cluster': S,
    thumb: S,
    out: S,
  },
  'review-pack': { taxonomy: S, 'per-cluster': S, thumb: S, out: S },
  'import-labels': { taxonomy: S, labels: S, version: S, out: S },
} as const;

export async function taxonomyCommand(sub: string | undefined, rest: string[]): Promise<number> {
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(TAXONOMY_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (!(sub in TAXONOMY_OPTIONS))
    throw new UsageError(`taxonomy ${sub}: not a taxonomy command (fit, review-pack, import-labels)`, TAXONOMY_USAGE);
  const { values } = parseCommand(
    `taxonomy ${sub}`,
    rest,
    TAXONOMY_OPTIONS[sub as keyof typeof TAXONOMY_OPTIONS],
    TAXONOMY_USAGE,
  );
  if (values.help) {
    console.log(TAXONOMY_USAGE);
    return 0;
  }
  switch (sub) {
    case 'fit':
      return taxonomyFit(rest);
    case 'review-pack':
      return taxonomyReviewPack(rest);
    default:
      return taxonomyImportLabels(rest);
  }
}

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { exportSubset, ExportConfigError, type ExportInput, type ExportResult } from '../activities/export/export';
import { ExportFilterSchema, type ExportFilterArgs } from '../activities/export/filter';
import { defaultDataDir } from '../config/paths';
import { SUBSETS } from '../config/release';
import { TASK_QUEUES } from '../config/task-queues';
import { exportSubsetWorkflow } from '../workflows/export';
import { parseCommand, UsageError, type OptionSpec } from './args';
import { connectClient, uiLink } from './release';
import { SAMPLE_RELEASE_ID } from './sample';

export const EXPORT_USAGE = `export: a new WebDataset (tar shards + sizes.json + parquet) of the samples of a finished release that match a filter

  export --to DIR [--release ID] [filters] [--max-samples N] [--max-bytes N] [--overwrite] [--local] [--data-dir DIR] [--store URL]

  --to DIR                 output folder inside the data dir (relative to it), e.g. exports/microscopy-2020
  --release ID             the source release (default ${SAMPLE_RELEASE_ID})
filters (all must hold; a repeated flag or a comma-separated value means any of them):
  --subset S               license group: ${SUBSETS.join(', ')}
  --license CODE           article_license, e.g. "CC BY"
  --label L                one of image_primary_label (exact, case-insensitive)
  --secondary-label L      one of image_secondary_label
  --label-id N             image_label_id (taxonomy cluster)
  --journal J              article_journal (exact, case-insensitive)
  --year Y | Y1-Y2 | Y1- | -Y2    publication year from article_date
  --keyword K              one of article_keywords
  --caption TEXT           the caption contains TEXT (case-insensitive; repeat: all of them)
  --caption-regex RE       the caption matches RE (JavaScript syntax; /RE/flags for flags i, m, s, u)
  --filter JSON|@FILE      a whole filter object (see docs/dataset-format.md); flags above add to it
output:
  --max-samples N          samples per new shard (default 10000)
  --max-bytes N            bytes per new tar file (default 1000000000)
  --overwrite              replace an earlier export at --to
  --local                  run in this process instead of as the exportSubsetWorkflow on the Temporal server
  --data-dir DIR           default BIOMEDICA_DATA_DIR or ./data
  --store URL              the release's store (s3://bucket/prefix, file:///path): read from it, the export committed to it
  --no-wait                start the workflow and return (not with --local)`;

export interface ParsedExportArgs {
  input: ExportInput;
  local: boolean;
  wait: boolean;
  help: boolean;
}

const LIST_FLAGS: Record<string, keyof ExportFilterArgs> = {
  subset: 'subsets',
  license: 'licenses',
  label: 'primaryLabels',
  'secondary-label': 'secondaryLabels',
  'label-id': 'labelIds',
  journal: 'journals',
  keyword: 'keywords',
};
const VALUE_FLAGS = new Set([
  'to',
  'release',
  'year',
  'caption',
  'caption-regex',
  'filter',
  'max-samples',
  'max-bytes',
  'data-dir',
  'store',
  ...Object.keys(LIST_FLAGS),
]);
const BOOL_FLAGS = new Set(['overwrite', 'local', 'no-wait', 'help']);

function intArg(v: string, name: string): number {
  if (!/^\d+$/.test(v)) throw new ExportConfigError(`--${name} needs a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

function yearsArg(v: string): { from?: number; to?: number } {
  const m = /^(\d{4})?(-)?(\d{4})?$/.exec(v.trim());
  if (!m || (!m[1] && !m[3]))
    throw new ExportConfigError(`--year needs Y, Y1-Y2, Y1- or -Y2, got ${JSON.stringify(v)}`);
  if (!m[2]) return { from: Number(m[1]), to: Number(m[1]) };
  return { ...(m[1] ? { from: Number(m[1]) } : {}), ...(m[3] ? { to: Number(m[3]) } : {}) };
}

function regexArg(v: string): { source: string; flags: string } {
  const m = /^\/(.+)\/([a-z]*)$/s.exec(v);
  return m ? { source: m[1]!, flags: m[2]! } : { source: v, flags: '' };
}

/** Parses `export ...` arguments (without the command word). Throws ExportConfigError with what is wrong. */
export function parseExportArgs(args: readonly string[]): ParsedExportArgs {
  // node:util parseArgs, strict: an unknown option, a missing value or a stray argument names itself.
  const options: Record<string, OptionSpec> = Object.fromEntries([
    ...[...VALUE_FLAGS].map((f) => [f, { type: 'string', multiple: true }] as const),
    ...[...BOOL_FLAGS].filter((f) => f !== 'help').map((f) => [f, { type: 'boolean' }] as const),
  ]);
  let parsed: { values: Record<string, string[] | boolean | undefined> };
  try {
    parsed = parseCommand('export', args, options, EXPORT_USAGE) as typeof parsed;
  } catch (err) {
    if (err instanceof UsageError) throw new ExportConfigError(err.message);
    throw err;
  }
  const values = new Map<string, string[]>();
  const bools = new Set<string>();
  for (const [name, v] of Object.entries(parsed.values)) {
    if (Array.isArray(v)) values.set(name, v);
    else if (v === true) bools.add(name);
  }
  const one = (name: string): string | undefined => {
    const v = values.get(name);
    if (v && v.length > 1) throw new ExportConfigError(`--${name} given more than once`);
    return v?.[0];
  };
  const help = bools.has('help');
  let filter: Record<string, unknown> = {};
  const filterArg = one('filter');
  if (filterArg !== undefined) {
    const text = filterArg.startsWith('@') ? fs.readFileSync(filterArg.slice(1), 'utf8') : filterArg;
    try {
      filter = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ExportConfigError(`--filter is not JSON: ${(err as Error).message}`);
    }
  }
  for (const [flag, key] of Object.entries(LIST_FLAGS)) {
    const v = values.get(flag);
    if (!v) continue;
    const items = v
      .flatMap((x) =>
        flag === 'journal' || flag === 'label' || flag === 'secondary-label' || flag === 'keyword' ? [x] : x.split(','),
      )
      .map((x) => x.trim())
      .filter(Boolean);
    filter[key] = [...((filter[key] as string[] | undefined) ?? []), ...items];
  }
  const year = one('year');
  if (year !== undefined) filter.years = yearsArg(year);
  const captions = values.get('caption');
  if (captions) filter.captionContains = [...((filter.captionContains as string[] | undefined) ?? []), ...captions];
  const re = one('caption-regex');
  if (re !== undefined) filter.captionRegex = regexArg(re);
  const parsedFilter = ExportFilterSchema.safeParse(filter);
  if (!parsedFilter.success && !help)
    throw new ExportConfigError(
      `invalid filter: ${parsedFilter.error.issues.map((i) => `${i.path.join('.') || 'filter'}: ${i.message}`).join('; ')}`,
    );

  const to = one('to');
  if (!to && !help)
    throw new ExportConfigError('--to DIR is required (a folder inside the data dir, e.g. exports/my-subset)');
  const maxSamples = one('max-samples');
  const maxBytes = one('max-bytes');
  const local = bools.has('local');
  if (local && bools.has('no-wait'))
    throw new ExportConfigError('--no-wait only applies to the workflow (without --local)');
  return {
    input: {
      dataDir: path.resolve(one('data-dir') ?? defaultDataDir()),
      releaseId: one('release') ?? SAMPLE_RELEASE_ID,
      target: to ?? '',
      filter: filter as ExportFilterArgs,
      ...(maxSamples !== undefined ? { maxSamplesPerShard: intArg(maxSamples, 'max-samples') } : {}),
      ...(maxBytes !== undefined ? { maxBytesPerShard: intArg(maxBytes, 'max-bytes') } : {}),
      ...(bools.has('overwrite') ? { overwrite: true } : {}),
      ...(one('store') !== undefined ? { store: one('store')! } : {}),
    },
    local,
    wait: !bools.has('no-wait'),
    help,
  };
}

/**
 * One workflow id per target folder: Temporal then runs at most one export into a folder at a time (two would share
 * its `<target>.partial-export` and overwrite each other's shards). The id names the target folder.
 */
export function exportWorkflowId(input: ExportInput): string {
  const target = path.resolve(input.dataDir, input.target);
  const digest = createHash('sha256').update(target).digest('hex').slice(0, 12);
  const name = path
    .basename(target)
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(0, 40);
  return `export-${name}-${digest}`;
}

export type ExportStart =
  | { kind: 'started' | 'attached'; workflowId: string; handle: WorkflowHandle<typeof exportSubsetWorkflow> }
  /** Another export (other release, filter or shard sizes) is writing the same target. */
  | { kind: 'busy'; workflowId: string; running: ExportInput };

/**
 * Starts the export workflow, or attaches to the one running with the same input. An export with another input
 * into the same target is refused while one runs: its workflow id is the target's.
 */
export async function startOrAttachExport(
  client: Client,
  input: ExportInput,
  taskQueue: string = TASK_QUEUES.workflows,
): Promise<ExportStart> {
  const workflowId = exportWorkflowId(input);
  try {
    const handle = await client.workflow.start(exportSubsetWorkflow, {
      workflowId,
      taskQueue,
      args: [input],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `BIOMEDICA export from ${input.releaseId} to ${input.target}`,
    });
    return { kind: 'started', workflowId, handle };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  const handle = client.workflow.getHandle<typeof exportSubsetWorkflow>(workflowId);
  const history = await handle.fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const running = (payload ? defaultPayloadConverter.fromPayload(payload) : null) as ExportInput | null;
  if (running && JSON.stringify(running) === JSON.stringify(input)) return { kind: 'attached', workflowId, handle };
  return { kind: 'busy', workflowId, running: running ?? input };
}

export function formatExportResult(r: ExportResult): string {
  const lines = [
    `${r.reused ? 'found an intact earlier export: ' : ''}${r.samples} samples of ${r.scanned.rows} (in ${r.scanned.shards} shards of release ${r.releaseId}) exported to ${r.target}`,
  ];
  for (const [subset, s] of Object.entries(r.subsets))
    lines.push(
      `  ${subset}: ${s.samples} samples in ${s.shards} shards, ${s.bytes} bytes (webdataset/${subset}/, parquet/${subset}/)`,
    );
  return lines.join('\n');
}

/**
 * `export ...`: runs the export as the exportSubsetWorkflow on the Temporal server (a worker with the cpu pool
 * and the workflows must be running), or in this process with --local. Returns the process exit code.
 */
export async function runExport(args: readonly string[]): Promise<number> {
  let parsed: ParsedExportArgs;
  try {
    parsed = parseExportArgs(args);
  } catch (err) {
    if (!(err instanceof ExportConfigError)) throw err;
    console.error(`export: ${err.message}\n\n${EXPORT_USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(EXPORT_USAGE);
    return 0;
  }
  const { input } = parsed;
  if (parsed.local) {
    try {
      let last = 0;
      const result = await exportSubset(input, {
        onProgress: (p) => {
          if (Date.now() - last < 2000) return;
          last = Date.now();
          console.error(`export: ${p.scannedRows} rows scanned, ${p.samples} samples written (${p.sourceShard})`);
        },
      });
      console.log(formatExportResult(result));
      return 0;
    } catch (err) {
      if (!(err instanceof ExportConfigError)) throw err;
      console.error(`export: ${err.message}`);
      return 2;
    }
  }
  const client = await connectClient();
  const start = await startOrAttachExport(client, input);
  if (start.kind === 'busy') {
    const r = start.running;
    console.error(
      `export: another export into ${input.target} is running (${start.workflowId}: release ${r.releaseId}, filter ${JSON.stringify(r.filter)}). ` +
        `Wait for it (${uiLink(start.workflowId)}) or cancel it (temporal workflow cancel -w ${start.workflowId}), or choose another --to.`,
    );
    return 2;
  }
  const { workflowId, handle } = start;
  console.log(`${start.kind === 'started' ? 'started' : 'attached to running'} ${workflowId}: ${uiLink(workflowId)}`);
  if (!parsed.wait) return 0;
  const result = await handle.result();
  console.log(formatExportResult(result));
  return 0;
}

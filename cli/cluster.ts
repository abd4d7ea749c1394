/**
 * `cluster setup`: what a Temporal cluster (self-hosted or Temporal Cloud) needs before a first release, done
 * against the server config/connection.ts names: the search attributes the workflows upsert (BiomedicaRelease,
 * BiomedicaSubset, BiomedicaStage, Keyword), registered when missing. The dev server registers them itself.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { loadDevServerConfig } from '../config/dev-server';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../config/task-queues';

const TYPES: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  Text: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
  Keyword: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  Int: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
  Double: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
  Bool: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
  Datetime: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  KeywordList: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
};

export interface ClusterSetupResult {
  added: string[];
  present: string[];
}

/** Registers the project's search attributes in `namespace` where missing; one of another type is an error. */
export async function setupCluster(client: Client, namespace: string): Promise<ClusterSetupResult> {
  const wanted = loadDevServerConfig().searchAttributes;
  for (const name of Object.values(SEARCH_ATTRIBUTES))
    if (!wanted[name]) throw new Error(`temporal-dev.yaml lacks the search attribute ${name}`);
  const listed = await client.connection.operatorService.listSearchAttributes({ namespace });
  const existing = { ...(listed.systemAttributes ?? {}), ...(listed.customAttributes ?? {}) };
  const result: ClusterSetupResult = { added: [], present: [] };
  const add: Record<string, temporal.api.enums.v1.IndexedValueType> = {};
  for (const [name, type] of Object.entries(wanted)) {
    const want = TYPES[type]!;
    if (existing[name] === undefined) add[name] = want;
    else if (existing[name] !== want) {
      throw new Error(
        `search attribute ${name} exists in namespace ${namespace} with another type (${temporal.api.enums.v1.IndexedValueType[existing[name]!]}); the workflows need ${type}`,
      );
    } else result.present.push(name);
  }
  if (Object.keys(add).length > 0) {
    await client.connection.operatorService.addSearchAttributes({ namespace, searchAttributes: add });
    result.added.push(...Object.keys(add));
  }
  return result;
}

/** What `cluster setup` cannot do through the API: the dynamic config a cluster's operator sets. */
export const DYNAMIC_CONFIG_ADVICE = `dynamic config the cluster needs (server side, not settable here): one partition for the rate-limited queues,
  matching.numTaskqueueReadPartitions and matching.numTaskqueueWritePartitions = 1 constrained to
  taskQueueName ${TASK_QUEUES.entrez} and ${TASK_QUEUES.hub} (docs/operations.md, "A Temporal cluster with PostgreSQL")`;

import * as fs from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import { defaultTemporalAddress, loadDevServerConfig } from './dev-server';
import { loadEnv } from './env';

/**
 * How workers and the CLI reach Temporal: one module for both, from the environment only (config/env.ts).
 *
 * - the embedded default: nothing set; the dev server from temporal-dev.yaml (BIOMEDICA_TEMPORAL_PORT moves it);
 * - a self-hosted cluster: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, and for TLS TEMPORAL_TLS_CA (the cluster's CA),
 *   with TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY for mTLS and TEMPORAL_TLS_SERVER_NAME when the certificate names
 *   another host;
 * - Temporal Cloud: TEMPORAL_ADDRESS=<ns>.<acct>.tmprl.cloud:7233 (or the region endpoint), TEMPORAL_NAMESPACE,
 *   and TEMPORAL_API_KEY (or the mTLS pair); TEMPORAL_UI_URL=https://cloud.temporal.io for the links.
 */
export interface TemporalConnectionConfig {
  address: string;
  namespace: string;
  /** false for plaintext (the dev server). */
  tls: TLSConfig | false;
  apiKey?: string;
  /** Base URL of the Web UI, for links. */
  uiUrl: string;
  /** Which settings made this (for errors): never a secret's value. */
  describe: string;
}

/** A setting that cannot work (a missing file, half an mTLS pair): one line naming the variable. */
export class ConnectionConfigError extends Error {
  override readonly name = 'ConnectionConfigError';
}

function readPem(name: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new ConnectionConfigError(
      `${name}=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

export function temporalConnectionConfig(
  source: NodeJS.ProcessEnv = process.env,
  overrides: { address?: string } = {},
): TemporalConnectionConfig {
  const env = loadEnv(source);
  const address = overrides.address ?? defaultTemporalAddress(source);
  if ((env.TEMPORAL_TLS_CERT === undefined) !== (env.TEMPORAL_TLS_KEY === undefined)) {
    throw new ConnectionConfigError(
      'TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (the client certificate and its key, for mTLS): set both or neither',
    );
  }
  const wantsTls = env.TEMPORAL_TLS ?? Boolean(env.TEMPORAL_TLS_CA || env.TEMPORAL_TLS_CERT || env.TEMPORAL_API_KEY);
  if (env.TEMPORAL_TLS === false && (env.TEMPORAL_TLS_CA || env.TEMPORAL_TLS_CERT || env.TEMPORAL_API_KEY)) {
    throw new ConnectionConfigError(
      'TEMPORAL_TLS=false, but TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT or TEMPORAL_API_KEY is set: they need TLS',
    );
  }
  let tls: TLSConfig | false = false;
  if (wantsTls) {
    tls = {};
    if (env.TEMPORAL_TLS_CA) tls.serverRootCACertificate = readPem('TEMPORAL_TLS_CA', env.TEMPORAL_TLS_CA);
    if (env.TEMPORAL_TLS_CERT && env.TEMPORAL_TLS_KEY)
      tls.clientCertPair = {
        crt: readPem('TEMPORAL_TLS_CERT', env.TEMPORAL_TLS_CERT),
        key: readPem('TEMPORAL_TLS_KEY', env.TEMPORAL_TLS_KEY),
      };
    if (env.TEMPORAL_TLS_SERVER_NAME) tls.serverNameOverride = env.TEMPORAL_TLS_SERVER_NAME;
  }
  const uiUrl = (
    env.TEMPORAL_UI_URL ?? `http://localhost:${loadDevServerConfig(undefined, source).server.uiPort}`
  ).replace(/\/+$/, '');
  const parts = [
    `address ${address}`,
    `namespace ${env.TEMPORAL_NAMESPACE}`,
    wantsTls
      ? `TLS${env.TEMPORAL_TLS_CA ? ' (CA from TEMPORAL_TLS_CA)' : ''}${env.TEMPORAL_TLS_CERT ? ', client certificate' : ''}`
      : 'plaintext',
  ];
  if (env.TEMPORAL_API_KEY) parts.push('API key');
  return {
    address,
    namespace: env.TEMPORAL_NAMESPACE,
    tls,
    apiKey: env.TEMPORAL_API_KEY,
    uiUrl,
    describe: parts.join(', '),
  };
}

/** The options both `Connection.connect` (client) and `NativeConnection.connect` (worker) take. */
export function connectOptions(cfg: TemporalConnectionConfig): { address: string; tls?: TLSConfig; apiKey?: string } {
  return { address: cfg.address, ...(cfg.tls ? { tls: cfg.tls } : {}), ...(cfg.apiKey ? { apiKey: cfg.apiKey } : {}) };
}

/** A Temporal server that does not answer, or refuses us: one or two lines saying where, and what to check. */
export class TemporalUnreachableError extends Error {
  override readonly name = 'TemporalUnreachableError';
}

export function unreachable(cfg: TemporalConnectionConfig, err: unknown): TemporalUnreachableError {
  const why = String((err as Error)?.message ?? err)
    .split('\n')[0]!
    .slice(0, 300);
  const hint = cfg.tls
    ? "check TEMPORAL_ADDRESS, and that TEMPORAL_TLS_CA signed the server's certificate (TEMPORAL_TLS_SERVER_NAME if it names another host)"
    : 'is the server running? `npm run server -- start` starts the embedded default; TEMPORAL_ADDRESS (and TEMPORAL_TLS_*) point at a cluster';
  return new TemporalUnreachableError(`cannot reach Temporal at ${cfg.address} (${cfg.describe}): ${why}\n  ${hint}`);
}

/** The Web UI page of a workflow. */
export function workflowUiLink(cfg: Pick<TemporalConnectionConfig, 'uiUrl' | 'namespace'>, workflowId: string): string {
  return `${cfg.uiUrl}/namespaces/${encodeURIComponent(cfg.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { loadEnv } from './env';
import { projectRoot } from './paths';

const SEARCH_ATTRIBUTE_TYPES = ['Text', 'Keyword', 'Int', 'Double', 'Bool', 'Datetime', 'KeywordList'] as const;

/** temporal-dev.yaml: the embedded default's server settings. */
export const DevServerConfigSchema = z.object({
  server: z.object({
    ip: z.string().default('127.0.0.1'),
    port: z.number().int().positive().default(7233),
    uiPort: z.number().int().positive().default(8233),
    namespace: z.string().default('default'),
    dbFile: z.string().default('temporal/dev-server.sqlite'),
    logFile: z.string().default('temporal/dev-server.log'),
    logLevel: z.enum(['debug', 'info', 'warn', 'error', 'never']).default('warn'),
  }),
  searchAttributes: z.record(z.string(), z.enum(SEARCH_ATTRIBUTE_TYPES)).default({}),
  dynamicConfig: z.record(z.string(), z.unknown()).default({}),
});
export type DevServerConfig = z.infer<typeof DevServerConfigSchema>;

/**
 * temporal-dev.yaml, with the ports overridable from the environment (BIOMEDICA_TEMPORAL_PORT,
 * BIOMEDICA_TEMPORAL_UI_PORT) so a second demo, or a machine where 7233/8233 are taken, can run beside the first.
 */
export function loadDevServerConfig(
  file = path.join(projectRoot, 'temporal-dev.yaml'),
  env: NodeJS.ProcessEnv = process.env,
): DevServerConfig {
  const cfg = DevServerConfigSchema.parse(parseYaml(fs.readFileSync(file, 'utf8')));
  const e = loadEnv(env);
  cfg.server.port = e.BIOMEDICA_TEMPORAL_PORT ?? cfg.server.port;
  cfg.server.uiPort = e.BIOMEDICA_TEMPORAL_UI_PORT ?? cfg.server.uiPort;
  return cfg;
}

/** The server workers and the CLI talk to: TEMPORAL_ADDRESS, else the embedded default's (BIOMEDICA_TEMPORAL_PORT). */
export function defaultTemporalAddress(env: NodeJS.ProcessEnv = process.env): string {
  const address = loadEnv(env).TEMPORAL_ADDRESS;
  if (address) return address;
  const { server } = loadDevServerConfig(undefined, env);
  return `${server.ip}:${server.port}`;
}

/** The `temporal server start-dev` arguments for a config and a data dir. */
export function devServerArgs(
  cfg: DevServerConfig,
  dataDir: string,
  overrides: { port?: number; uiPort?: number } = {},
): string[] {
  const args = [
    'server',
    'start-dev',
    '--ip',
    cfg.server.ip,
    '--port',
    String(overrides.port ?? cfg.server.port),
    '--ui-port',
    String(overrides.uiPort ?? cfg.server.uiPort),
    '--db-filename',
    path.resolve(dataDir, cfg.server.dbFile),
    '--log-level',
    cfg.server.logLevel,
  ];
  if (cfg.server.namespace !== 'default') args.push('--namespace', cfg.server.namespace);
  for (const [name, type] of Object.entries(cfg.searchAttributes)) args.push('--search-attribute', `${name}=${type}`);
  for (const [key, value] of Object.entries(cfg.dynamicConfig))
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  return args;
}

export function temporalCliPath(): string {
  return loadEnv().TEMPORAL_CLI ?? path.join(projectRoot, 'tools', 'bin', 'temporal');
}

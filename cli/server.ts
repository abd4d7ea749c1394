import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { devServerArgs, loadDevServerConfig, temporalCliPath, type DevServerConfig } from '../config/dev-server';

export interface DevServerStatus {
  address: string;
  uiUrl: string;
  healthy: boolean;
  pid: number | null;
  dbFile: string;
  logFile: string;
}

function pidFile(dataDir: string): string {
  return path.join(dataDir, 'temporal', 'dev-server.pid');
}

async function frontendHealthy(address: string): Promise<boolean> {
  let conn: Connection | undefined;
  try {
    conn = await Connection.connect({ address, connectTimeout: 1500 });
    await conn.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}

async function uiAnswers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1500) });
    return res.status < 500;
  } catch {
    return false;
  }
}

function ownServerAlive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function devServerStatus(
  dataDir: string,
  cfg: DevServerConfig = loadDevServerConfig(),
): Promise<DevServerStatus> {
  const address = `${cfg.server.ip}:${cfg.server.port}`;
  const pidText = fs.existsSync(pidFile(dataDir)) ? fs.readFileSync(pidFile(dataDir), 'utf8').trim() : '';
  return {
    address,
    uiUrl: `http://localhost:${cfg.server.uiPort}`,
    healthy: await frontendHealthy(address),
    pid: pidText ? Number(pidText) : null,
    dbFile: path.resolve(dataDir, cfg.server.dbFile),
    logFile: path.resolve(dataDir, cfg.server.logFile),
  };
}

/** Starts the dev server from temporal-dev.yaml unless one already answers; waits until the frontend and UI are up. */
export async function ensureDevServer(
  dataDir: string,
  log: (msg: string) => void = console.log,
): Promise<DevServerStatus> {
  const cfg = loadDevServerConfig();
  const status = await devServerStatus(dataDir, cfg);
  if (status.healthy) {
    log(`temporal dev server already running at ${status.address} (UI ${status.uiUrl})`);
    if (!ownServerAlive(status.pid)) {
      // Not started from this data dir: it works, but its histories live in another SQLite file.
      log(
        `note: that server was not started from ${dataDir} (no live pid in ${pidFile(dataDir)}); its histories are kept wherever it was started. Stop it (\`npm run server -- stop\` with its BIOMEDICA_DATA_DIR) to use ${status.dbFile}.`,
      );
    }
    return status;
  }
  const bin = temporalCliPath();
  if (!fs.existsSync(bin))
    throw new Error(
      `Temporal CLI not found at ${bin}: run \`npm run setup\` (builds it with go install) or set TEMPORAL_CLI`,
    );
  fs.mkdirSync(path.dirname(status.dbFile), { recursive: true });
  fs.mkdirSync(path.dirname(status.logFile), { recursive: true });
  const out = fs.openSync(status.logFile, 'a');
  const child = spawn(bin, devServerArgs(cfg, dataDir), { detached: true, stdio: ['ignore', out, out] });
  child.unref();
  fs.writeFileSync(pidFile(dataDir), String(child.pid));
  log(`starting temporal dev server (pid ${child.pid}), SQLite at ${status.dbFile}, log ${status.logFile}`);
  const deadline = Date.now() + 90_000;
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`temporal dev server exited with code ${exited}; see ${status.logFile}`);
    if ((await frontendHealthy(status.address)) && (await uiAnswers(status.uiUrl))) {
      log(`temporal dev server healthy at ${status.address}, UI at ${status.uiUrl}`);
      return { ...status, healthy: true, pid: child.pid ?? null };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`temporal dev server did not become healthy within 90 s; see ${status.logFile}`);
}

export async function stopDevServer(dataDir: string): Promise<boolean> {
  const file = pidFile(dataDir);
  if (!fs.existsSync(file)) return false;
  const pid = Number(fs.readFileSync(file, 'utf8').trim());
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  for (let i = 0; i < 40; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  fs.rmSync(file, { force: true });
  return true;
}

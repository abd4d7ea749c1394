import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { ensureSampleMirror } from '../../cli/sample';
import { devServerArgs, loadDevServerConfig, temporalCliPath } from '../../config/dev-server';
import { fixturePaths, projectRoot } from '../../config/paths';
import { startEutilsStandin, type EutilsStandin } from '../../sample/eutils-standin';
import { startMirrorServer, type MirrorServer } from '../../sample/mirror-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The dev server as the embedded default runs it (temporal-dev.yaml, SQLite under the data dir), on given ports. */
export class DevServerProcess {
  private child: ChildProcess | null = null;
  constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly uiPort: number,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const cfg = loadDevServerConfig();
    fs.mkdirSync(path.join(this.dataDir, 'temporal'), { recursive: true });
    const log = fs.openSync(path.join(this.dataDir, 'temporal', 'dev-server.log'), 'a');
    this.child = spawn(temporalCliPath(), devServerArgs(cfg, this.dataDir, { port: this.port, uiPort: this.uiPort }), {
      stdio: ['ignore', log, log],
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      try {
        const c = await Connection.connect({ address: this.address, connectTimeout: 1000 });
        await c.workflowService.getSystemInfo({});
        await c.close();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    await this.kill(); // not left running (or starting) behind a failed test
    throw new Error(
      `dev server did not start within 60 s (log: ${path.join(this.dataDir, 'temporal', 'dev-server.log')})`,
    );
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
    this.child = null;
  }
}

/** Worker processes as deployed (`npm run worker`): every pool in one, or one pool (`--pool <pool>`). */
export class WorkerProcess {
  private child: ChildProcess | null = null;
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly pool?: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const script = [path.join(projectRoot, 'cli', 'main.ts'), 'worker', ...(this.pool ? ['--pool', this.pool] : [])];
    const child = spawn(process.execPath, ['--import', 'tsx', ...script], {
      env: { ...process.env, LOG_LEVEL: 'ERROR', ...this.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => /worker pools running/.test(d.toString()) && resolve());
      child.once('exit', (code) => reject(new Error(`workers exited with ${code} before they were ready`)));
    });
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
    this.child = null;
  }
}

/**
 * What a test of deployed processes needs: a data dir with the sample mirror, the loopback bucket and E-utilities
 * stand-ins, and a dev server process (SQLite in the data dir) on free ports. `close` stops them and removes the dir.
 */
export interface SampleServices {
  dataDir: string;
  mirror: MirrorServer;
  eutils: EutilsStandin;
  server: DevServerProcess;
  /** The environment a worker process needs to serve the sample release against these services. */
  workerEnv: NodeJS.ProcessEnv;
  close(): Promise<void>;
}

export async function startSampleServices(prefix: string): Promise<SampleServices> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  // Whatever started is stopped again if a later step fails: the test's `after` never sees these.
  const started: (() => Promise<void>)[] = [async () => fs.rmSync(dataDir, { recursive: true, force: true })];
  const close = async () => {
    for (const stop of started.splice(0).reverse()) await stop().catch(() => undefined);
  };
  try {
    const built = await ensureSampleMirror(dataDir);
    const mirror = await startMirrorServer(built.outDir);
    started.push(() => mirror.close());
    const eutils = await startEutilsStandin({ fixturesDir: fixturePaths.entrez() });
    started.push(() => eutils.close());
    const server = new DevServerProcess(dataDir, await freePort(), await freePort());
    started.push(() => server.kill());
    await server.start();
    return {
      dataDir,
      mirror,
      eutils,
      server,
      workerEnv: { TEMPORAL_ADDRESS: server.address, NCBI_EUTILS_URL: eutils.baseUrl, NCBI_EMAIL: 'tests@localhost' },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

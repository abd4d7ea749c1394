/**
 * The CLI as a person types it: every mistake is an error naming what is wrong, with an exit code (2 for a command
 * line that cannot run, 1 for a run that failed) and no stack trace; --help on any command prints help and does
 * nothing else (no worker, no mirror, no server needed).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../config/paths';
import { ReleaseInputSchema } from '../config/release';

/** tsx's loader by URL: the CLI runs from a folder of its own, where `--import tsx` would not resolve. */
const TSX = pathToFileURL(path.join(projectRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

interface Run {
  code: number | null;
  out: string;
  err: string;
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('the CLI: strict flags, help everywhere, one-line errors', function () {
  this.timeout(120_000);
  let tmp: string;
  let env: NodeJS.ProcessEnv;

  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', TSX, path.join(projectRoot, 'cli', 'main.ts'), ...args], {
        cwd: tmp,
        env: { ...env, ...extra },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('error', reject);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, out, err });
      });
    });
  const noStack = (r: Run) => assert.ok(!/\n\s+at .+:\d+:\d+/.test(r.out + r.err), `no stack trace:\n${r.err}`);

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-cli-'));
    // Nothing here may reach a server: a port nobody listens on.
    env = {
      ...process.env,
      BIOMEDICA_DATA_DIR: path.join(tmp, 'data'),
      TEMPORAL_ADDRESS: `127.0.0.1:${await closedPort()}`,
    };
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('a mistyped or unknown flag is an error naming it and the flags the command takes (exit 2)', async () => {
    const r = await cli(['release', 'status', '--relase', 'X']);
    assert.equal(r.code, 2);
    assert.match(r.err, /^error: unknown option --relase \(release status takes --release, --watch\)/);
    assert.match(r.err, /release status \[--release ID\] \[--watch\]/, 'the usage follows');
    noStack(r);
    const w = await cli(['worker', '--pools', 'gpu']);
    assert.equal(w.code, 2);
    assert.match(w.err, /unknown option --pools \(worker takes --pool\)/);
    const x = await cli(['frobnicate']);
    assert.equal(x.code, 2);
    assert.match(x.err, /unknown command "frobnicate"/);
  });

  it('a flag without its value is an error, not the default (exit 2)', async () => {
    for (const args of [
      ['release', 'status', '--release'],
      ['release', 'status', '--release', '--watch'],
      ['demo', '--release'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.err, /--release needs a value/);
      noStack(r);
    }
    const bad = await cli(['release', 'schedule', '--config', 'x.json', '--month', '13']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--month must be a whole number from 1 to 12, got "13"/);
  });

  it('--help on every command prints its help and does nothing else: no worker, no mirror, no server', async () => {
    for (const args of [
      ['worker', '--help'],
      ['sample', '--help'],
      ['server', '--help'],
      ['release', '--help'],
      ['release', 'status', '--help'],
      ['release', 'start', '-h'],
      ['demo', '--help'],
      ['env', '--help'],
      ['export', '--help'],
      ['--help'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      assert.match(r.out, /\S/, `${args.join(' ')} prints help`);
      assert.equal(r.err.trim(), '', `${args.join(' ')}: nothing on stderr`);
      assert.ok(
        !/worker pools running|temporal dev server (healthy|already)|"outDir"/.test(r.out),
        `${args.join(' ')} did something: ${r.out}`,
      );
    }
    assert.ok(!fs.existsSync(path.join(tmp, 'data')), 'nothing was written to the data dir');
  });

  it('release start: no config, a missing, malformed or invalid one are one-line errors naming the file and the field', async () => {
    const none = await cli(['release', 'start']);
    assert.equal(none.code, 2);
    assert.match(
      none.err,
      /release start needs --config FILE: a JSON ReleaseInput \(config\/release\.example\.json is one to copy\)/,
    );
    assert.ok(fs.existsSync(path.join(projectRoot, 'config', 'release.example.json')), 'the example it names exists');
    const missing = await cli(['release', 'start', '--config', 'nope.json']);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /^error: cannot read the release config nope\.json \(ENOENT\)/);
    fs.writeFileSync(path.join(tmp, 'broken.json'), '{"releaseId": "x",');
    const broken = await cli(['release', 'start', '--config', 'broken.json']);
    assert.equal(broken.code, 1);
    assert.match(broken.err, /^error: broken\.json is not JSON: /);
    fs.writeFileSync(
      path.join(tmp, 'invalid.json'),
      JSON.stringify({
        releaseId: 'bad id!',
        source: { kind: 'pmc-cloud-http', baseUrl: 'nope' },
        units: { maxImages: 20000 },
      }),
    );
    const invalid = await cli(['release', 'start', '--config', 'invalid.json']);
    assert.equal(invalid.code, 1);
    assert.match(invalid.err, /^error: invalid\.json is not a valid release config: /);
    assert.match(invalid.err, /releaseId: /);
    assert.match(invalid.err, /source\.baseUrl: /);
    assert.match(invalid.err, /units\.maxImages: /);
    assert.ok(invalid.err.trim().split('\n').length <= 2, invalid.err);
    for (const r of [none, missing, broken, invalid]) noStack(r);
  });

  it('a server that does not answer: what, where and a hint, exit 1, no stack', async () => {
    const r = await cli(['release', 'status', '--release', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^error: cannot reach Temporal at ${env.TEMPORAL_ADDRESS!.replace(/\./g, '\\.')} `));
    assert.match(r.err, /npm run server -- start/);
    noStack(r);
    const e = await cli(['env'], { GPU_SLOTS: 'many' });
    assert.equal(e.code, 1);
    assert.match(e.err, /^error: bad environment: GPU_SLOTS="many": a whole number above 0/);
    noStack(e);
  });

  it('config/release.example.json is a valid release config', () => {
    const parsed = ReleaseInputSchema.safeParse(
      JSON.parse(fs.readFileSync(path.join(projectRoot, 'config', 'release.example.json'), 'utf8')),
    );
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
  });
});

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { connectClient } from '../cli/release';
import {
  ConnectionConfigError,
  temporalConnectionConfig,
  TemporalUnreachableError,
  workflowUiLink,
} from '../config/connection';
import { envTable, EnvError, EnvSchema, loadEnv } from '../config/env';
import { projectRoot } from '../config/paths';

describe('one environment schema (config/env.ts) and one connection module (config/connection.ts)', () => {
  it("gives every variable its default, and refuses a bad value naming the variable (never a secret's value)", () => {
    const env = loadEnv({});
    assert.equal(env.GPU_SLOTS, 1);
    assert.equal(env.BIOMEDICA_CPU_HOSTS_WORKFLOWS, true);
    assert.equal(env.TEMPORAL_NAMESPACE, 'default');
    assert.equal(env.HF_COMMITS_PER_HOUR, 100);
    assert.equal(loadEnv({ BIOMEDICA_CPU_HOSTS_WORKFLOWS: 'no', GPU_SLOTS: '3', GPU_SLOTS_X: 'ignored' }).GPU_SLOTS, 3);
    assert.equal(loadEnv({ BIOMEDICA_CPU_HOSTS_WORKFLOWS: '0' }).BIOMEDICA_CPU_HOSTS_WORKFLOWS, false);
    assert.equal(loadEnv({ GPU_SLOTS: '' }).GPU_SLOTS, 1, 'an empty variable is unset');
    assert.throws(
      () => loadEnv({ GPU_SLOTS: 'two' }),
      (err: unknown) => err instanceof EnvError && /^bad environment: GPU_SLOTS="two": /.test(err.message),
    );
    assert.throws(
      () => loadEnv({ BIOMEDICA_CPU_HOSTS_WORKFLOWS: 'maybe' }),
      /BIOMEDICA_CPU_HOSTS_WORKFLOWS="maybe": true or false/,
    );
    assert.throws(() => loadEnv({ BIOMEDICA_TEMPORAL_PORT: '70000' }), /BIOMEDICA_TEMPORAL_PORT="70000"/);
    assert.throws(
      () => loadEnv({ NCBI_API_KEY: 'k', HF_COMMITS_PER_HOUR: 'lots', NCBI_EUTILS_URL: 'not a url' }),
      (err: unknown) =>
        err instanceof Error &&
        /HF_COMMITS_PER_HOUR="lots"/.test(err.message) &&
        /NCBI_EUTILS_URL="not a url"/.test(err.message),
    );
  });

  it('docs/operations.md carries the table of every variable, exactly as the schema documents them', () => {
    const ops = fs.readFileSync(path.join(projectRoot, 'docs', 'operations.md'), 'utf8');
    assert.ok(
      ops.includes(envTable()),
      'docs/operations.md has envTable() verbatim (regenerate it: npx tsx cli/main.ts env --markdown)',
    );
    for (const name of Object.keys(EnvSchema.shape)) assert.ok(ops.includes(`\`${name}\``), name);
  });

  it('no module reads process.env by name outside config/env.ts', () => {
    const offenders: string[] = [];
    for (const dir of ['activities', 'workflows', 'workers', 'cli', 'config', 'sample']) {
      for (const f of fs
        .readdirSync(path.join(projectRoot, dir), { recursive: true })
        .map(String)
        .filter((x) => x.endsWith('.ts'))) {
        const text = fs.readFileSync(path.join(projectRoot, dir, f), 'utf8');
        for (const m of text.matchAll(/process\.env\.([A-Z][A-Z0-9_]+)|process\.env\[['"]([A-Z0-9_]+)/g))
          offenders.push(`${dir}/${f}: ${m[1] ?? m[2]}`);
      }
    }
    // The demo points its own workers at its own stand-ins: it writes these, it never reads them.
    const writes = offenders.filter((o) => !/^cli\/main\.ts: (NCBI_EUTILS_URL|TEMPORAL_ADDRESS|NCBI_EMAIL)$/.test(o));
    assert.deepEqual(writes, []);
  });

  it('builds TLS and API-key connections from the environment, and refuses half an mTLS pair', () => {
    assert.equal(temporalConnectionConfig({}).tls, false);
    const key = temporalConnectionConfig({
      TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233',
      TEMPORAL_NAMESPACE: 'ns.acct',
      TEMPORAL_API_KEY: 'secret-key',
      TEMPORAL_UI_URL: 'https://cloud.temporal.io/',
    });
    assert.deepEqual(key.tls, {});
    assert.equal(key.apiKey, 'secret-key');
    assert.ok(!key.describe.includes('secret-key'));
    assert.equal(
      workflowUiLink(key, 'release-2026'),
      'https://cloud.temporal.io/namespaces/ns.acct/workflows/release-2026',
    );
    assert.throws(() => temporalConnectionConfig({ TEMPORAL_TLS_CERT: '/x.pem' }), ConnectionConfigError);
    assert.throws(
      () => temporalConnectionConfig({ TEMPORAL_TLS_CA: '/nonexistent/ca.pem' }),
      /TEMPORAL_TLS_CA=\/nonexistent\/ca\.pem: cannot read it \(ENOENT\)/,
    );
    assert.throws(
      () => temporalConnectionConfig({ TEMPORAL_TLS: 'false', TEMPORAL_API_KEY: 'k' }),
      /TEMPORAL_TLS=false/,
    );
  });

  it('a server that does not answer is one clear error naming the address and what to check', async function () {
    this.timeout(30_000);
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const err = await connectClient(`127.0.0.1:${port}`).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof TemporalUnreachableError, String(err));
    assert.match(
      err.message,
      new RegExp(
        `^cannot reach Temporal at 127\\.0\\.0\\.1:${port} \\(address 127\\.0\\.0\\.1:${port}, namespace default, plaintext\\): `,
      ),
    );
    assert.match(err.message, /npm run server -- start/);
    assert.ok(err.message.split('\n').length <= 2);
  });
});

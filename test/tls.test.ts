/**
 * TLS and mTLS to a Temporal frontend, through config/connection.ts as workers and the CLI use it: a real dev server
 * behind a TLS terminator on loopback (Node's tls, ALPN h2, certificates from a CA this test makes with openssl).
 * The right CA connects, the client and the worker alike; a wrong CA, plaintext, or a missing client certificate
 * where one is required is refused with one error that names the address.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { NativeConnection } from '@temporalio/worker';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { connectClient } from '../cli/release';
import { connectOptions, temporalConnectionConfig, TemporalUnreachableError } from '../config/connection';
import { temporalCliPath } from '../config/dev-server';
import { installQuietRuntime } from './support/runtime';

function openssl(cwd: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, and a certificate it signs for `cn` with the given subjectAltName (PEM files in `dir`). */
function makePki(dir: string): void {
  const ca = (name: string) => {
    openssl(
      dir,
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
    );
  };
  const signed = (name: string, by: string, san: string, ext: string) => {
    openssl(
      dir,
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    );
    fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${ext}\n`);
    openssl(
      dir,
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${by}.pem`,
      '-CAkey',
      `${by}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  ca('test-ca');
  ca('other-ca');
  signed('server', 'test-ca', 'DNS:localhost,IP:127.0.0.1', 'serverAuth');
  signed('client', 'test-ca', 'DNS:biomedica-worker', 'clientAuth');
}

/** A TLS terminator in front of a plaintext gRPC port. */
async function tlsProxy(
  dir: string,
  upstream: string,
  opts: { requireClientCert: boolean },
): Promise<{ port: number; close(): Promise<void> }> {
  const [host, port] = upstream.split(':') as [string, string];
  const server = tls.createServer(
    {
      key: fs.readFileSync(path.join(dir, 'server.key')),
      cert: fs.readFileSync(path.join(dir, 'server.pem')),
      ALPNProtocols: ['h2'],
      ...(opts.requireClientCert
        ? { requestCert: true, rejectUnauthorized: true, ca: fs.readFileSync(path.join(dir, 'test-ca.pem')) }
        : {}),
    },
    (socket) => {
      const up = net.connect(Number(port), host);
      socket.pipe(up).pipe(socket);
      const end = () => {
        socket.destroy();
        up.destroy();
      };
      socket.on('error', end);
      up.on('error', end);
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('TLS and mTLS to the Temporal frontend (config/connection.ts)', function () {
  this.timeout(180_000);
  let dir: string;
  let env: TestWorkflowEnvironment;
  let tlsOnly: Awaited<ReturnType<typeof tlsProxy>>;
  let mtls: Awaited<ReturnType<typeof tlsProxy>>;
  const saved = { ...process.env };

  before(async () => {
    installQuietRuntime();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'biomedica-tls-'));
    makePki(dir);
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCliPath() },
        log: { format: 'pretty', level: 'warn' },
      },
    });
    tlsOnly = await tlsProxy(dir, env.address, { requireClientCert: false });
    mtls = await tlsProxy(dir, env.address, { requireClientCert: true });
  });
  after(async () => {
    process.env = saved;
    await tlsOnly?.close();
    await mtls?.close();
    await env?.teardown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const useEnv = (vars: Record<string, string>) => {
    process.env = { ...saved, ...vars };
    for (const k of [
      'TEMPORAL_TLS',
      'TEMPORAL_TLS_CA',
      'TEMPORAL_TLS_CERT',
      'TEMPORAL_TLS_KEY',
      'TEMPORAL_TLS_SERVER_NAME',
      'TEMPORAL_API_KEY',
    ])
      if (!(k in vars)) delete process.env[k];
  };
  const pem = (name: string) => path.join(dir, name);

  it("connects the CLI client and a worker connection through TLS with the cluster's CA", async () => {
    useEnv({ TEMPORAL_ADDRESS: `127.0.0.1:${tlsOnly.port}`, TEMPORAL_TLS_CA: pem('test-ca.pem') });
    const client = await connectClient();
    const ns = await client.workflowService.describeNamespace({ namespace: 'default' });
    assert.equal(ns.namespaceInfo?.name, 'default');
    await client.connection.close();
    const worker = await NativeConnection.connect(connectOptions(temporalConnectionConfig()));
    await worker.close();
    // The certificate names localhost too: the server name can be set apart from the address.
    useEnv({
      TEMPORAL_ADDRESS: `127.0.0.1:${tlsOnly.port}`,
      TEMPORAL_TLS_CA: pem('test-ca.pem'),
      TEMPORAL_TLS_SERVER_NAME: 'localhost',
    });
    const named = await connectClient();
    await named.connection.close();
  });

  it('refuses a certificate the configured CA did not sign, and plaintext to a TLS port, naming the address', async () => {
    const address = `127.0.0.1:${tlsOnly.port}`;
    useEnv({ TEMPORAL_ADDRESS: address, TEMPORAL_TLS_CA: pem('other-ca.pem') });
    const wrongCa = await connectClient().then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(wrongCa instanceof TemporalUnreachableError, String(wrongCa));
    assert.match(
      wrongCa.message,
      new RegExp(
        `^cannot reach Temporal at 127\\.0\\.0\\.1:${tlsOnly.port} \\(address ${address.replace(/\./g, '\\.')}, namespace default, TLS \\(CA from TEMPORAL_TLS_CA\\)\\): `,
      ),
    );
    assert.match(wrongCa.message, /TEMPORAL_TLS_CA signed the server's certificate/);
    const worker = await NativeConnection.connect(connectOptions(temporalConnectionConfig())).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(worker instanceof Error, 'the worker connection is refused too');
    useEnv({ TEMPORAL_ADDRESS: address });
    const plain = await connectClient().then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(plain instanceof TemporalUnreachableError, String(plain));
    assert.match(plain.message, new RegExp(`cannot reach Temporal at ${address.replace(/\./g, '\\.')} .*plaintext`));
  });

  it('mTLS: without a client certificate the server refuses; with TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY it connects', async () => {
    const address = `127.0.0.1:${mtls.port}`;
    useEnv({ TEMPORAL_ADDRESS: address, TEMPORAL_TLS_CA: pem('test-ca.pem') });
    const refused = await connectClient().then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof TemporalUnreachableError, String(refused));
    assert.match(refused.message, new RegExp(`^cannot reach Temporal at ${address.replace(/\./g, '\\.')}`));
    useEnv({
      TEMPORAL_ADDRESS: address,
      TEMPORAL_TLS_CA: pem('test-ca.pem'),
      TEMPORAL_TLS_CERT: pem('client.pem'),
      TEMPORAL_TLS_KEY: pem('client.key'),
    });
    const client = await connectClient();
    assert.equal(
      (await client.workflowService.describeNamespace({ namespace: 'default' })).namespaceInfo?.name,
      'default',
    );
    await client.connection.close();
    const worker = await NativeConnection.connect(connectOptions(temporalConnectionConfig()));
    await worker.close();
  });
});

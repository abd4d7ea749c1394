import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { projectRoot, testPython } from '../../config/paths';
import { freePort } from './processes';

export interface S3Keys {
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * An S3-compatible server on loopback: moto's server mode (test/requirements.txt), which speaks S3's wire protocol
 * (SigV4, multipart uploads, XML errors). With `auth`, it checks signatures and IAM policies like S3: `writer` may
 * do anything, `reader` only read and list.
 */
export interface S3Standin {
  endpoint: string;
  writer: S3Keys;
  reader: S3Keys;
  /** The environment a worker (or the CLI) needs to use this server as the writer. */
  env(keys?: S3Keys): NodeJS.ProcessEnv;
  createBucket(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startS3Standin(): Promise<S3Standin> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const bin = path.join(path.dirname(testPython()), 'moto_server');
  const child: ChildProcess = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const close = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const up = await fetch(`${endpoint}/moto-api/data.json`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`moto_server (${bin}) did not start on ${endpoint}: run scripts/setup.sh --tests`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Users first, while moto takes any request; from then on every request must be signed by one of them.
    const users = JSON.parse(
      execFileSync(testPython(), [path.join(projectRoot, 'test', 'support', 'moto_users.py'), endpoint], {
        encoding: 'utf8',
      }),
    ) as { writer: S3Keys; reader: S3Keys };
    const reset = await fetch(`${endpoint}/moto-api/reset-auth`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '0',
    });
    if (!reset.ok) throw new Error(`moto_server refused to enforce auth: ${reset.status}`);
    const env = (keys: S3Keys = users.writer): NodeJS.ProcessEnv => ({
      BIOMEDICA_S3_ENDPOINT: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: keys.accessKeyId,
      AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    });
    return {
      endpoint,
      ...users,
      env,
      async createBucket(name) {
        const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: users.writer });
        await client.send(new CreateBucketCommand({ Bucket: name }));
        client.destroy();
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

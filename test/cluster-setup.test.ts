import { strict as assert } from 'node:assert';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { temporal } from '@temporalio/proto';
import { setupCluster } from '../cli/cluster';
import { temporalCliPath } from '../config/dev-server';
import { SEARCH_ATTRIBUTES } from '../config/task-queues';
import { installQuietRuntime } from './support/runtime';

describe('cluster setup registers the search attributes on a server that lacks them', function () {
  this.timeout(120_000);
  let env: TestWorkflowEnvironment;
  before(async () => {
    installQuietRuntime();
    // A dev server started without --search-attribute: like a fresh cluster namespace.
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCliPath() },
        log: { format: 'pretty', level: 'warn' },
      },
    });
  });
  after(async () => env?.teardown());

  it('adds the missing ones as Keyword, and a second run adds nothing', async () => {
    const names = Object.values(SEARCH_ATTRIBUTES).sort();
    const before = await env.client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
    for (const n of names) assert.equal(before.customAttributes?.[n], undefined, `${n} absent at first`);
    const first = await setupCluster(env.client, 'default');
    assert.deepEqual(first.added.sort(), names);
    const listed = await env.client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
    for (const n of names)
      assert.equal(listed.customAttributes?.[n], temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, n);
    const again = await setupCluster(env.client, 'default');
    assert.deepEqual(again.added, []);
    assert.deepEqual(again.present.sort(), names);
  });
});

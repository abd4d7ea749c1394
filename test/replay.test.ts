import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from '@temporalio/worker';
import { installQuietRuntime } from './support/runtime';

/**
 * Determinism guard: histories recorded from real runs of the sample release (`temporal workflow show --output json`)
 * must replay against the current workflow code. A change that alters the commands a workflow issues for the same
 * history fails here; such a change must be guarded with `patched()` (see docs/architecture.md, "Changing workflows").
 */
describe('recorded workflow histories replay against the current workflow code', function () {
  this.timeout(120_000);
  before(installQuietRuntime);
  const dir = path.join(__dirname, 'histories');
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();

  it('has recorded histories of the release and a unit workflow', () => {
    assert.ok(files.some((f) => f.startsWith('release-')));
    assert.ok(files.some((f) => f.startsWith('unit-')));
  });

  for (const file of files) {
    it(`replays ${file}`, async () => {
      const history = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as unknown;
      await Worker.runReplayHistory(
        { workflowsPath: require.resolve('../workflows') },
        history,
        file.replace(/\.json$/, ''),
      );
    });
  }
});

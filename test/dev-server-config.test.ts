import * as assert from 'node:assert/strict';
import { defaultTemporalAddress, devServerArgs, loadDevServerConfig } from '../config/dev-server';
import { readWorkerEnv } from '../config/release';

describe('temporal-dev.yaml and its port overrides', () => {
  it('reads the embedded default: loopback 7233, UI 8233, SQLite under the data dir, search attributes', () => {
    const cfg = loadDevServerConfig(undefined, {});
    assert.equal(cfg.server.ip, '127.0.0.1');
    assert.equal(cfg.server.port, 7233);
    assert.equal(cfg.server.uiPort, 8233);
    assert.deepEqual(Object.keys(cfg.searchAttributes).sort(), [
      'BiomedicaRelease',
      'BiomedicaStage',
      'BiomedicaSubset',
    ]);
    const args = devServerArgs(cfg, '/data');
    assert.deepEqual(args.slice(0, 10), [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      '7233',
      '--ui-port',
      '8233',
      '--db-filename',
      '/data/temporal/dev-server.sqlite',
    ]);
  });

  it('moves the ports with BIOMEDICA_TEMPORAL_PORT and BIOMEDICA_TEMPORAL_UI_PORT', () => {
    const cfg = loadDevServerConfig(undefined, {
      BIOMEDICA_TEMPORAL_PORT: '17233',
      BIOMEDICA_TEMPORAL_UI_PORT: '18233',
    });
    assert.equal(cfg.server.port, 17233);
    assert.equal(cfg.server.uiPort, 18233);
    const args = devServerArgs(cfg, '/data');
    assert.equal(args[args.indexOf('--port') + 1], '17233');
    assert.equal(args[args.indexOf('--ui-port') + 1], '18233');
    assert.equal(
      loadDevServerConfig(undefined, { BIOMEDICA_TEMPORAL_PORT: '' }).server.port,
      7233,
      'empty means unset',
    );
  });

  it('refuses a port that is not one', () => {
    for (const bad of ['abc', '0', '70000', '72.5']) {
      assert.throws(
        () => loadDevServerConfig(undefined, { BIOMEDICA_TEMPORAL_PORT: bad }),
        new RegExp(`BIOMEDICA_TEMPORAL_PORT="${bad}": a port number \\(1 to 65535\\)`),
      );
    }
  });

  it('workers and the CLI talk to TEMPORAL_ADDRESS, else to the embedded default on its (moved) port', () => {
    assert.equal(defaultTemporalAddress({}), '127.0.0.1:7233');
    assert.equal(defaultTemporalAddress({ BIOMEDICA_TEMPORAL_PORT: '17233' }), '127.0.0.1:17233');
    assert.equal(
      defaultTemporalAddress({ BIOMEDICA_TEMPORAL_PORT: '17233', TEMPORAL_ADDRESS: 'temporal.internal:7233' }),
      'temporal.internal:7233',
    );
    assert.equal(readWorkerEnv({ BIOMEDICA_TEMPORAL_PORT: '17233' }).TEMPORAL_ADDRESS, '127.0.0.1:17233');
    assert.equal(
      readWorkerEnv({ TEMPORAL_ADDRESS: 'temporal.internal:7233' }).TEMPORAL_ADDRESS,
      'temporal.internal:7233',
    );
  });
});

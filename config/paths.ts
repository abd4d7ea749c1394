import * as path from 'node:path';
import { loadEnv } from './env';

/** Root of this checkout (config/ sits directly under it). */
export const projectRoot = path.resolve(__dirname, '..');

/**
 * The shared folder beside the checkout: real PMC/NCBI fixtures and the expert cluster labels.
 * Never copied into the project; read in place. Override with BIOMEDICA_SHARED_DIR.
 */
export function sharedDir(): string {
  return path.resolve(loadEnv().BIOMEDICA_SHARED_DIR ?? path.join(projectRoot, '..', 'shared'));
}

/** Where releases, the sample mirror, the dev server's SQLite file and caches live. Override with BIOMEDICA_DATA_DIR. */
export function defaultDataDir(): string {
  return path.resolve(loadEnv().BIOMEDICA_DATA_DIR ?? path.join(projectRoot, 'data'));
}

export const fixturePaths = {
  nxml: () => path.join(sharedDir(), 'fixtures', 'real', 'nxml'),
  images: () => path.join(sharedDir(), 'fixtures', 'real', 'images'),
  entrez: () => path.join(sharedDir(), 'fixtures', 'real', 'entrez'),
  clusterLabels: () => path.join(sharedDir(), 'fixtures', 'biomedica', 'cluster_labels.json'),
};

/** The tests' Python (a venv under tools/ with the readers in test/requirements.txt), made by scripts/setup.sh. */
export function testPython(): string {
  return loadEnv().BIOMEDICA_TEST_PYTHON ?? path.join(projectRoot, 'tools', 'py', 'bin', 'python');
}

/**
 * Where a release's tree is, for people (the Temporal UI, results): its folder in the store
 * (`s3://bucket/prefix/releases/<id>`) or in the data dir. Free of imports, so workflow code can use it.
 */
export function releaseLocation(input: { dataDir: string; store?: string | undefined; releaseId: string }): string {
  return input.store
    ? `${input.store.replace(/\/*$/, '/')}releases/${input.releaseId}`
    : `${input.dataDir}/releases/${input.releaseId}`;
}

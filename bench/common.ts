/**
 * Helpers the benchmarks share: command-line arguments, a seeded rng for generated inputs, a wall + CPU clock, and
 * the loopback PMC bucket (sample/mirror-server.ts) run in a child process.
 */
import { spawn } from 'node:child_process';
import { rawFlag } from '../cli/args';
import { startMirrorServer } from '../sample/mirror-server';

/** The value after `--name` on the command line; `fallback` when the flag is absent (or has no value). */
export function arg(name: string): string | undefined;
export function arg(name: string, fallback: string): string;
export function arg(name: string, fallback?: string): string | undefined {
  return rawFlag(process.argv, name) ?? fallback;
}

/** `arg` as a number. */
export const nArg = (name: string, dflt: number): number => Number(arg(name) ?? dflt);

/** xorshift32, so a generated set is the same on every run. */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/**
 * Starts a clock; the function returned gives the wall time since then and this process's CPU time (user + system,
 * all threads, so rates by CPU time hold on a busy machine too), both in milliseconds.
 */
export function stopwatch(): () => { ms: number; cpuMs: number } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { ms, cpuMs: (c.user + c.system) / 1000 };
  };
}

/**
 * The loopback bucket in a child process, so that server and client do not share one event loop: `script` (the
 * calling benchmark's __filename) is run again as `script --serve root`, and its main hands that to serveMirror.
 */
export function startMirrorChild(script: string, root: string): Promise<{ baseUrl: string; stop: () => void }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, script, '--serve', root], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    p.on('error', reject);
    p.stdout.once('data', (c: Buffer) => resolve({ baseUrl: c.toString().trim(), stop: () => p.stdin.end() }));
  });
}

/** The child side of startMirrorChild: serves `root`, prints its base URL, exits when stdin closes. */
export async function serveMirror(root: string): Promise<void> {
  const m = await startMirrorServer(root);
  process.stdout.write(`${m.baseUrl}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => void m.close().then(() => process.exit(0)));
}

/**
 * Command-line flag parsing shared by the CLIs (cli/main.ts, cli/taxonomy.ts) and the benchmarks (bench/common.ts):
 * `--name value` pairs looked up in an argument list.
 */

/** The word after `--name` in `args`, as it stands (undefined when the flag is absent or last); no checks. */
export function rawFlag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The value of `--name` (undefined when the flag is absent); a flag with no value, or followed by another flag, throws. */
export function flag(args: readonly string[], name: string): string | undefined {
  if (!args.includes(`--${name}`)) return undefined;
  const v = rawFlag(args, name);
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

/** `flag`, as an integer (undefined when the flag is absent); anything else throws. */
export function intFlag(args: readonly string[], name: string): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`--${name} must be an integer, got ${v}`);
  return n;
}

import { parseArgs } from 'node:util';
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

/** A command line that cannot be run as given: the CLI prints the message and the command's usage, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
}

/**
 * Strict parsing of one command's arguments (node:util parseArgs): an unknown option or a missing value is a
 * UsageError naming the option and the options the command takes; `--help`/`-h` is always accepted (the caller
 * prints the usage and does nothing else). Positionals beyond `maxPositionals` are refused too.
 */
export function parseCommand<O extends Record<string, OptionSpec>>(
  command: string,
  args: readonly string[],
  options: O,
  usage: string,
  maxPositionals = 0,
): {
  values: {
    [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : O[K]['multiple'] extends true ? string[] : string;
  } & { help?: boolean };
  positionals: string[];
} {
  const known = Object.keys(options).map((o) => `--${o}`);
  const takes = known.length > 0 ? `${command} takes ${known.join(', ')}` : `${command} takes no options`;
  // A value that starts with one dash (`--year -2020`, a negative number) is a value: parseArgs would call it
  // ambiguous, so it is joined to its option first (`--year=-2020`).
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    if (
      a.startsWith('--') &&
      !a.includes('=') &&
      options[a.slice(2)]?.type === 'string' &&
      next !== undefined &&
      /^-[^-]/.test(next)
    ) {
      joined.push(`${a}=${next}`);
      i++;
    } else joined.push(a);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: joined,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    const opt = /'(-[^' ]+)/.exec(e.message)?.[1] ?? '';
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${opt} (${takes})`, usage);
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const name = /--([\w-]+)/.exec(e.message)?.[1] ?? opt;
      throw new UsageError(
        options[name]?.type === 'boolean' ? `--${name} takes no value` : `--${name} needs a value`,
        usage,
      );
    }
    throw new UsageError(e.message, usage);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[maxPositionals])} (${takes})`, usage);
  }
  // A string option given the next flag as its value (`--release --watch`) is a missing value, not a release id.
  for (const [name, spec] of Object.entries(options)) {
    const v = parsed.values[name];
    const values = Array.isArray(v) ? v : [v];
    if (spec.type === 'string' && values.some((x) => typeof x === 'string' && x.startsWith('--')))
      throw new UsageError(`--${name} needs a value`, usage);
  }
  return parsed as never;
}

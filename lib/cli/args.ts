// A small, strict flag parser shared by the subcommands: one precise message per bad flag
// (STYLE §6.10), so a typo never silently becomes a positional argument or a default.
//
// Accepted forms: `--name value`, `--name=value`, and `--name` alone for booleans. Everything
// not starting with `--` is a positional (so a VALUE such as `-1` or `-x` stays one), and a bare
// `--` makes everything after it positional.

export type FlagKind = 'string' | 'boolean' | 'number';
/** Flag name without the dashes -> the kind of value it takes. */
export type FlagSpec = Record<string, FlagKind>;

type ValueOf<K extends FlagKind> = K extends 'string' ? string : K extends 'number' ? number : boolean;
export type Flags<S extends FlagSpec> = { [N in keyof S]?: ValueOf<S[N]> };

export interface ParsedArgs<S extends FlagSpec> {
  flags: Flags<S>;
  positionals: string[];
}

/** A command line the parser refuses; `flag` names the culprit (with its dashes). */
export class FlagError extends Error {
  override name = 'FlagError';
  readonly code = 'bad_flag';
  readonly flag: string;

  constructor(flag: string, message: string) {
    super(message);
    this.flag = flag;
  }
}

export function parseFlags<S extends FlagSpec>(argv: readonly string[], spec: S): ParsedArgs<S> {
  const flags: Record<string, string | number | boolean> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const flag = `--${name}`;
    const kind = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (kind === undefined) throw new FlagError(flag, `unknown flag ${flag}`);
    if (Object.prototype.hasOwnProperty.call(flags, name)) throw new FlagError(flag, `${flag} given more than once`);
    if (kind === 'boolean') {
      if (eq !== -1) throw new FlagError(flag, `${flag} takes no value`);
      flags[name] = true;
      continue;
    }
    let raw: string;
    if (eq !== -1) {
      raw = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      // A following flag is a forgotten value, not a value that happens to start with dashes.
      if (next === undefined || next.startsWith('--')) throw new FlagError(flag, `${flag} needs a value`);
      raw = next;
      i++;
    }
    if (raw === '') throw new FlagError(flag, `${flag} needs a value`);
    flags[name] = kind === 'number' ? parseNumber(flag, raw) : raw;
  }
  return { flags: flags as Flags<S>, positionals };
}

function parseNumber(flag: string, raw: string): number {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) throw new FlagError(flag, `${flag} must be a number, got '${raw}'`);
  return value;
}

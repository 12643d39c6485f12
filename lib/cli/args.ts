/**
 * Command-line flags: each command declares its flags with a type, a default and a help line;
 * parsing rejects unknown flags and ill-typed values with one line naming the flag, what was
 * expected and what was received.
 */
export type FlagType = 'string' | 'int' | 'number' | 'bool' | 'strings';

export interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | number | boolean | string[];
  /** Allowed values for string flags. */
  choices?: readonly string[];
  /** Smallest allowed value for int/number flags. */
  min?: number;
  required?: boolean;
  /** Other names that mean this flag (e.g. --learning-rate for --lr, after the config key); help lists them. */
  aliases?: readonly string[];
  /** For bool flags: `--no-<name>` sets false; `--<name>` sets true. */
  /**
   * The value of the flag given without one: the next argument is missing or another flag
   * (`--dashboard` alone is `--dashboard 6066`). Without it, a non-bool flag always takes the next argument.
   */
  withoutValue?: string | number;
}

export type FlagValues = Record<string, string | number | boolean | string[] | undefined>;

import { UsageError } from '../errors';

export { UsageError };

/** "--batch-size" -> "batchSize" */
export function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function parseFlags(command: string, argv: readonly string[], specs: Record<string, FlagSpec>): { values: FlagValues; positionals: string[] } {
  const values: FlagValues = {};
  const positionals: string[] = [];
  const seen = new Set<string>();
  const aliasOf = new Map(Object.entries(specs).flatMap(([flag, s]) => (s.aliases ?? []).map((alias) => [alias, flag] as const)));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    name = aliasOf.get(name) ?? name;
    let spec = specs[name];
    let boolValue = true;
    if (!spec && name.startsWith('no-') && specs[name.slice(3)]?.type === 'bool') {
      name = name.slice(3);
      spec = specs[name];
      boolValue = false;
    }
    if (!spec) {
      const names = Object.entries(specs).flatMap(([flag, s]) => [flag, ...(s.aliases ?? [])].flatMap((n) => (s.type === 'bool' ? [n, `no-${n}`] : [n])));
      const guess = closestName(name, names);
      throw new UsageError(`${command}: unknown flag --${name}; ${guess === null ? `see gptune ${command} --help` : `did you mean --${guess}?`}`);
    }
    if (seen.has(name) && spec.type !== 'strings') throw new UsageError(`${command}: --${name} is given more than once`);
    seen.add(name);
    if (spec.type === 'bool') {
      if (inline !== undefined) throw new UsageError(`${command}: --${name} takes no value (use --${name} or --no-${name})`);
      values[name] = boolValue;
      continue;
    }
    let text = inline;
    if (text === undefined && spec.withoutValue !== undefined && (i + 1 >= argv.length || argv[i + 1].startsWith('--'))) {
      values[name] = spec.withoutValue;
      continue;
    }
    if (text === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${command}: --${name} expects a value`);
      text = argv[++i];
    }
    values[name] = convert(command, name, spec, text, values[name]);
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (values[name] === undefined) {
      if (spec.required) throw new UsageError(`${command}: --${name} is required (${spec.help})`);
      if (spec.default !== undefined) values[name] = spec.default;
    }
  }
  return { values, positionals };
}

/**
 * Optimal-string-alignment distance: the edits (insert, delete, substitute, swap two neighbours)
 * that turn a into b; a typo such as "lerning" or "learnign" is one edit from "learning".
 */
export function editDistance(a: string, b: string): number {
  // d[i][j]: distance between a's first i and b's first j characters, (a.length+1, b.length+1).
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate a mistyped name most likely meant: the nearest by edit distance when it is within
 * a third of the name's length (at least 1, at most 3 edits), else null; ties go to the earlier one.
 */
export function closestName(name: string, candidates: readonly string[]): string | null {
  const limit = Math.min(3, Math.max(1, Math.floor(name.length / 3)));
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function convert(command: string, name: string, spec: FlagSpec, text: string, previous: FlagValues[string]): string | number | string[] {
  const bad = (expected: string) => new UsageError(`${command}: --${name}: expected ${expected} but received '${text}'`);
  switch (spec.type) {
    case 'string':
      if (spec.choices && !spec.choices.includes(text)) throw bad(`one of ${spec.choices.join(', ')}`);
      return text;
    case 'strings':
      return [...((previous as string[] | undefined) ?? []), text];
    case 'int': {
      const v = Number(text);
      if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(v)) throw bad('a whole number');
      if (spec.min !== undefined && v < spec.min) throw bad(`a whole number >= ${spec.min}`);
      return v;
    }
    case 'number': {
      const v = Number(text);
      if (text.trim() === '' || !Number.isFinite(v)) throw bad('a number');
      if (spec.min !== undefined && v < spec.min) throw bad(`a number >= ${spec.min}`);
      return v;
    }
    default:
      throw bad('a value');
  }
}

export function formatHelp(usage: string, description: string, specs: Record<string, FlagSpec>): string {
  const lines = [`usage: ${usage}`, '', description, '', 'options:'];
  for (const [name, spec] of Object.entries(specs)) {
    const value = spec.type === 'int' || spec.type === 'number' ? 'N' : 'VALUE';
    const flag = spec.type === 'bool' ? `--${name}` : `--${name} ${spec.withoutValue === undefined ? value : `[${value}]`}`;
    const extra = [spec.required ? 'required' : '', spec.default !== undefined && spec.default !== false ? `default ${JSON.stringify(spec.default)}` : '', spec.choices ? `one of ${spec.choices.join('|')}` : '']
      .filter(Boolean).join('; ');
    const aliases = (spec.aliases ?? []).map((alias) => `also --${alias}`);
    lines.push(`  ${flag.padEnd(26)} ${spec.help}${extra || aliases.length ? ` (${[extra, ...aliases].filter(Boolean).join('; ')})` : ''}`);
  }
  return lines.join('\n');
}

/**
 * Two models on the same data, side by side: the results of A and B, and B - A for every number
 * they share (nested objects such as rouge1 {p, r, f} or per-class figures included; arrays and
 * texts are left out of the delta).
 */
import { formatTable } from './report';

export type Result = Record<string, unknown>;

export interface Comparison<R extends Result = Result> {
  a: R;
  b: R;
  /** b - a for every numeric field present in both. */
  delta: Result;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** b - a over the numeric leaves common to both; undefined when they share none. */
export function numericDelta(a: unknown, b: unknown): unknown {
  if (typeof a === 'number' && typeof b === 'number') return b - a;
  if (!isPlainObject(a) || !isPlainObject(b)) return undefined;
  const out: Result = {};
  for (const key of Object.keys(a)) {
    if (!(key in b)) continue;
    const d = numericDelta(a[key], b[key]);
    if (d !== undefined) out[key] = d;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Runs `evaluate` on both models, one after the other (only one is in memory at a time if `evaluate` frees it). */
export function compareModels<M, R extends Result>(modelA: M, modelB: M, evaluate: (model: M) => R): Comparison<R> {
  const a = evaluate(modelA);
  const b = evaluate(modelB);
  return { a, b, delta: (numericDelta(a, b) as Result | undefined) ?? {} };
}

/** Flattens numeric fields to dotted names: {rouge1: {f: 0.5}} -> [['rouge1.f', 0.5]]. */
export function numericFields(x: unknown, prefix = ''): Array<[string, number]> {
  if (typeof x === 'number') return [[prefix, x]];
  if (!isPlainObject(x)) return [];
  return Object.entries(x).flatMap(([key, value]) => numericFields(value, prefix ? `${prefix}.${key}` : key));
}

function formatNumber(x: number, signed = false): string {
  const text = Number.isInteger(x) ? String(x) : Math.abs(x) >= 1000 ? x.toFixed(1) : x.toFixed(4);
  return signed && x > 0 ? `+${text}` : text;
}

/**
 * A table of the chosen fields (dotted names; default: every numeric field of A): field, A, B, B - A.
 */
export function formatComparison(c: Comparison, labels: [string, string], fields?: readonly string[]): string {
  const a = new Map(numericFields(c.a));
  const b = new Map(numericFields(c.b));
  const names = fields ?? [...a.keys()];
  const rows = [['', labels[0], labels[1], 'delta']];
  for (const name of names) {
    const x = a.get(name), y = b.get(name);
    if (x === undefined && y === undefined) continue;
    rows.push([name, x === undefined ? '-' : formatNumber(x), y === undefined ? '-' : formatNumber(y), x === undefined || y === undefined ? '-' : formatNumber(y - x, true)]);
  }
  return formatTable(rows);
}

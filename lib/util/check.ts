/**
 * Checks of what JavaScript callers pass to the public API, sharp-style: a TypeError or RangeError
 * naming the function, the argument and what was expected, instead of "Cannot read properties of
 * null" from deep inside.
 */

/** A value as messages show it: null, a list (...), an object, the string "...", number NaN. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list (${JSON.stringify(value).slice(0, 60)})`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value)}`;
  return `${typeof value} ${String(value)}`;
}

/** `value` must be undefined (the defaults) or a plain object of options. */
export function checkOptions(where: string, name: string, value: unknown): void {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${where}: expected ${name} to be an object (or omitted) but received ${describeValue(value)}`);
  }
}

/** `value` must be an instance of `type` (e.g. the model argument). */
export function checkInstance<T>(where: string, name: string, value: unknown, type: abstract new (...args: never[]) => T, expected: string): asserts value is T {
  if (!(value instanceof type)) throw new TypeError(`${where}: expected ${name} to be ${expected} but received ${describeValue(value)}`);
}

/** A seed: a whole number in [0, 2^53) (NaN, strings and fractions would silently seed something else). */
export function checkSeed(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${where}: expected ${name} to be a whole number >= 0 but received ${describeValue(value)}`);
  }
  return value;
}

/** A finite number within [min, max] (either bound exclusive when asked). */
export function checkNumber(
  where: string, name: string, value: unknown, range: { min?: number; above?: number; below?: number; max?: number } = {},
): number {
  const ok = typeof value === 'number' && Number.isFinite(value)
    && (range.min === undefined || value >= range.min) && (range.above === undefined || value > range.above)
    && (range.below === undefined || value < range.below) && (range.max === undefined || value <= range.max);
  if (!ok) {
    const lo = range.min !== undefined ? `[${range.min}` : range.above !== undefined ? `(${range.above}` : '';
    const hi = range.max !== undefined ? `${range.max}]` : range.below !== undefined ? `${range.below})` : '';
    const expected = lo && hi ? `a number in ${lo}, ${hi}` : lo ? `a number ${lo[0] === '[' ? '>=' : '>'} ${lo.slice(1)}` : hi ? `a number ${hi.endsWith(']') ? '<=' : '<'} ${hi.slice(0, -1)}` : 'a finite number';
    throw new RangeError(`${where}: expected ${name} to be ${expected} but received ${describeValue(value)}`);
  }
  return value as number;
}

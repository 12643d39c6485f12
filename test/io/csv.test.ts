/**
 * lib/io/csv.ts: the formula-injection guard of CSV files people open in a spreadsheet (OWASP's
 * advice: a cell starting with = + - @, tab or CR is prefixed with a single quote) and its inverse.
 */
import { formatCsv, guardFormula, unguardFormula } from '../../lib/io/csv';

describe('guardFormula / unguardFormula', () => {
  test('formula-like cells get one leading quote; other cells are unchanged', () => {
    const cases: Array<[string, string]> = [
      ['=1+1', "'=1+1"], ['+1', "'+1"], ['-1', "'-1"], ['@SUM(A1)', "'@SUM(A1)"], ['\tx', "'\tx"], ['\rx', "'\rx"],
      ['plain', 'plain'], ['', ''], ['a=b', 'a=b'], [' =1', ' =1'], ["'a", "'a"], ["'", "'"],
      // A text that itself starts with a quote before a formula character (or a quote) is guarded too,
      // so that reading back can tell the guard from the text.
      ["'=1", "''=1"], ["''", "'''"],
    ];
    for (const [cell, guarded] of cases) expect([cell, guardFormula(cell)]).toEqual([cell, guarded]);
  });

  test('unguardFormula removes exactly the quote guardFormula added', () => {
    const cells = ['=1+1', '+', '-', '@', '\t', '\r', "'", "''", "'''=", "'=", "'a", "'-x", 'x', '', "a'=", '=\'"', '-\n-'];
    for (const cell of cells) expect([cell, unguardFormula(guardFormula(cell))]).toEqual([cell, cell]);
    // Quotes a person typed before ordinary text stay.
    expect(unguardFormula("'hello")).toBe("'hello");
  });

  test('formatCsv guards cells only when asked, then quotes as RFC 4180 says', () => {
    expect(formatCsv([['=1+1', '-2', 'a,b']])).toBe('=1+1,-2,"a,b"\r\n');
    expect(formatCsv([['=1+1', '-2', '@x,y', '\rz']], { guardFormulas: true })).toBe('\'=1+1,\'-2,"\'@x,y","\'\rz"\r\n');
  });
});

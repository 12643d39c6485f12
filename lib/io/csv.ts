/**
 * Writing CSV as RFC 4180 describes it: records end with CRLF; a field holding a comma, a double
 * quote, CR or LF is enclosed in double quotes, with each quote inside doubled. Reading is
 * lib/data/read.ts's CSVParser.
 */

/** U+FEFF at the start of a file: spreadsheet programs (Excel) then read the file as UTF-8, not a legacy code page. */
export const UTF8_BOM = '\ufeff';

/**
 * Spreadsheet formula injection (CSV injection): a cell whose text starts with = + - @, a tab or a
 * carriage return is run as a formula by Excel, LibreOffice and Google Sheets when the file is
 * opened. OWASP's guard: prefix such a cell with a single quote, which spreadsheets show as text.
 * A cell that already starts with a quote followed by one of those characters or by another quote
 * is prefixed too, so that unguardFormula can remove exactly the quote guardFormula added:
 * unguardFormula(guardFormula(x)) === x for every x.
 */
const FORMULA_START = /^[=+\-@\t\r]/;
const GUARDED = /^'[=+\-@\t\r']/;

export function guardFormula(value: string): string {
  return FORMULA_START.test(value) || GUARDED.test(value) ? `'${value}` : value;
}

/** The inverse of guardFormula: drops one leading quote where guardFormula would have put it. */
export function unguardFormula(value: string): string {
  return GUARDED.test(value) ? value.slice(1) : value;
}

export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/**
 * The rows as CSV text (the first row is usually the header), with a UTF-8 BOM first when asked, and
 * with guardFormulas every cell guarded against formula injection (for files people open in a spreadsheet).
 */
export function formatCsv(rows: readonly (readonly string[])[], options: { bom?: boolean; guardFormulas?: boolean } = {}): string {
  const cell = options.guardFormulas ? (v: string) => csvField(guardFormula(v)) : csvField;
  return (options.bom ? UTF8_BOM : '') + rows.map((row) => row.map(cell).join(',') + '\r\n').join('');
}

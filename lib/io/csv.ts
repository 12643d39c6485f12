/**
 * Writing CSV as RFC 4180 describes it: records end with CRLF; a field holding a comma, a double
 * quote, CR or LF is enclosed in double quotes, with each quote inside doubled. Reading is
 * lib/data/read.ts's CSVParser.
 */

/** U+FEFF at the start of a file: spreadsheet programs (Excel) then read the file as UTF-8, not a legacy code page. */
export const UTF8_BOM = '\ufeff';

export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** The rows as CSV text (the first row is usually the header), with a UTF-8 BOM first when asked. */
export function formatCsv(rows: readonly (readonly string[])[], options: { bom?: boolean } = {}): string {
  return (options.bom ? UTF8_BOM : '') + rows.map((row) => row.map(csvField).join(',') + '\r\n').join('');
}

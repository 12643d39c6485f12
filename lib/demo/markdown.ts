/** Markdown pieces of the demo's report.md (report.ts) and its sections in other files. */

/**
 * A markdown code span holding `text` exactly, or *(empty)*. Inside it, line breaks are written
 * as the two characters \n (a code span cannot hold a line break) and table pipes as \|.
 */
export function codeSpan(text: string): string {
  if (text === '') return '*(empty)*';
  const longestRun = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longestRun + 1);
  const escaped = text.replace(/\r?\n/g, '\\n').replace(/\|/g, '\\|');
  return longestRun > 0 ? `${fence} ${escaped} ${fence}` : `${fence}${escaped}${fence}`;
}

/** A markdown table; columns whose cells are all numbers (or '-') are right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^([-+]?\d+(\.\d+)?|-)$/.test(r[i])));
  return [line(header), line(numeric.map((n) => (n ? '---:' : '---'))), ...rows.map(line)].join('\n');
}

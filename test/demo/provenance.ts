/**
 * report.md's provenance: every number it prints outside code spans is a number of report.json (at
 * the precision shown), and every code span a string of it. Shared by the demo's end-to-end tests.
 */
function numericLeaves(x: unknown, out: number[] = []): number[] {
  if (typeof x === 'number') out.push(x);
  else if (Array.isArray(x)) x.forEach((v) => numericLeaves(v, out));
  else if (x && typeof x === 'object') Object.values(x).forEach((v) => numericLeaves(v, out));
  return out;
}

function stringLeaves(x: unknown, out: string[] = []): string[] {
  if (typeof x === 'string') out.push(x);
  else if (Array.isArray(x)) x.forEach((v) => stringLeaves(v, out));
  else if (x && typeof x === 'object') Object.values(x).forEach((v) => stringLeaves(v, out));
  return out;
}

const CODE_SPAN = /(`+)([\s\S]*?[^`])\1(?!`)/g;
// A number: not part of a word or a name like GPT-2 / ROUGE-1 / F1, nor a version like 0.1.0.
const NUMBER = /(?<![\w.\-+])([-+]?)(\d+(?:\.\d+)?)(?!\w|\.\d)/g;

/**
 * Problems with `markdown` against `report`: numbers outside code spans that are no number of the
 * report (at the precision shown), and code spans that are no string of the report (line breaks
 * shown as \n, pipes as \|).
 */
export function provenanceProblems(markdown: string, report: unknown): string[] {
  const numbers = numericLeaves(report);
  const strings = new Set(stringLeaves(report).map((s) => s.replace(/\r?\n/g, '\\n')));
  const problems: string[] = [];
  for (const match of markdown.matchAll(CODE_SPAN)) {
    let text = match[2];
    if (match[1].length > 1) text = text.replace(/^ /, '').replace(/ $/, '');
    text = text.replace(/\\\|/g, '|');
    if (!strings.has(text)) problems.push(`code span ${JSON.stringify(text)} is not a string of report.json`);
  }
  const prose = markdown.replace(CODE_SPAN, ' ');
  for (const match of prose.matchAll(NUMBER)) {
    const value = Number(match[1] + match[2]);
    const decimals = match[2].includes('.') ? match[2].split('.')[1].length : 0;
    // Half a unit in the last place shown, plus float slack for the rounding itself.
    const tolerance = 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12;
    if (!numbers.some((v) => Math.abs(v - value) <= tolerance)) {
      const at = prose.slice(Math.max(0, match.index! - 40), match.index! + 20).replace(/\n/g, ' ');
      problems.push(`${match[0]} (in "...${at}...") is not a number of report.json`);
    }
  }
  return problems;
}

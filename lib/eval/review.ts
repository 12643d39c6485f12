/**
 * Human review files for `gptune sample`: prompts, model outputs and references side by side,
 * as Markdown (one section per example) or JSONL (one object per example).
 */
import * as path from 'path';
import { writeFileAtomic } from '../io/atomic';
import { firstLineHasKeys } from '../io/output';
import { Rng } from '../util/rng';

export interface ReviewEntry {
  /** Index of the example in the data (0-based), and its line in the file when known (1-based). */
  index: number;
  line?: number;
  prompt: string;
  output: string;
  reference: string;
  stop?: string;
  /** For classification data: the label the likelihood comparison picks. */
  predicted_label?: string;
}

/**
 * n distinct example indices out of count, chosen with the seed (a seeded shuffle's first n), in
 * ascending order so the review follows the file. n >= count gives every index.
 */
export function chooseExamples(count: number, n: number, seed: number): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  if (n >= count) return all;
  return new Rng(seed).shuffle(all).slice(0, n).sort((a, b) => a - b);
}

export type ReviewFormat = 'md' | 'jsonl';

/** The format a review file's name asks for; `label` names the file in the message (the CLI passes its flag). */
export function reviewFormat(file: string, label = 'review file'): ReviewFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.md' || ext === '.markdown') return 'md';
  if (ext === '.jsonl') return 'jsonl';
  throw new Error(`${label} ${file}: expected a .md or .jsonl file name but received extension '${ext || '(none)'}'`);
}

/** A fenced block that no backtick run inside `text` can close early. */
function fenced(text: string): string {
  const longestRun = Math.max(2, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  return `${fence}text\n${text}\n${fence}`;
}

const REVIEW_TITLE = '# gptune sample review';

/** Whether a file starting with `head` is a review that writeReview wrote (and may replace). */
export function isReviewFile(head: string): boolean {
  return head.startsWith(REVIEW_TITLE + '\n') || firstLineHasKeys(head, ['index', 'prompt', 'output', 'reference']);
}

export function formatReviewMarkdown(entries: readonly ReviewEntry[], header: Record<string, string | number>): string {
  const parts = [REVIEW_TITLE, ''];
  for (const [key, value] of Object.entries(header)) parts.push(`- ${key}: ${value}`);
  for (const e of entries) {
    parts.push('', `## Example ${e.index + 1}${e.line !== undefined ? ` (line ${e.line})` : ''}`, '');
    parts.push('**Prompt**', '', fenced(e.prompt), '');
    parts.push(`**Model output**${e.stop ? ` (stopped: ${e.stop})` : ''}`, '', fenced(e.output), '');
    if (e.predicted_label !== undefined) parts.push(`**Predicted label** (likelihood): ${e.predicted_label}`, '');
    parts.push('**Reference**', '', fenced(e.reference));
  }
  return parts.join('\n') + '\n';
}

export function formatReviewJsonl(entries: readonly ReviewEntry[]): string {
  return entries.map((e) => JSON.stringify(e)).join('\n') + (entries.length > 0 ? '\n' : '');
}

/** Writes the review atomically (a temporary file renamed into place). */
export function writeReview(file: string, entries: readonly ReviewEntry[], header: Record<string, string | number> = {}): void {
  const format = reviewFormat(file);
  writeFileAtomic(file, format === 'md' ? formatReviewMarkdown(entries, header) : formatReviewJsonl(entries));
}

/**
 * The demo's data audit: the classification emails the runs train, validate and test on, audited
 * together as `gptune data audit` does (balance, lengths at the runs' seq_len, exact and near
 * duplicates within and across the splits, PII). Files are named as the output folder holds them
 * (data/classification-train.jsonl), so report.md's file:line references open from there.
 */
import * as path from 'path';
import { auditSplits, auditSummaryLines, loadRecords } from '../data';
import type { AuditReport, AuditSplit } from '../data';
import type { Tokenizer } from '../tokenizer';

/** Findings listed per list in report.json (counts stay complete). */
const LISTED = 100;
/** Cross-split near-duplicates shown in report.md. */
const SHOWN = 5;

/** `files`: split name -> path of its classification JSONL, inside `outDir`. */
export function auditDemoSplits(outDir: string, files: Record<'train' | 'validation' | 'test', string>, tokenizer: Tokenizer, seqLen: number): AuditReport {
  const splits: AuditSplit[] = Object.entries(files).map(([name, file]) => {
    const shown = path.relative(outDir, file);
    return { name, file: shown, records: loadRecords(file, { format: 'classification' }).records.map((r) => ({ ...r, file: shown })) };
  });
  return auditSplits(splits, { tokenizer, seqLen, maxListed: LISTED });
}

/** report.md's "Data audit" section (nothing for a report written before the audit existed). */
export function dataAuditSection(audit: AuditReport | undefined): string[] {
  if (audit === undefined) return [];
  const files = audit.splits.map((s) => `--${s.name === 'train' ? 'data' : s.name} ${s.file}`).join(' ');
  const out = [
    '## Data audit (the classification emails)',
    '',
    // No code span: report.md's code spans are strings of report.json (test/demo/provenance.ts).
    `What gptune data audit finds in the emails the runs used (${files} --model models/base; file:line references are inside this folder). Near-duplicates are pairs of different emails whose word 3-shingles overlap with Jaccard >= ${audit.settings.near_threshold}; across splits they are leakage: a test email the model may have seen, nearly word for word, in training.`,
    '',
    ...auditSummaryLines(audit).map((l) => `- ${l.trim()}`),
  ];
  const across = audit.duplicates.near_pairs.filter((p) => p.a.split !== p.b.split).slice(0, SHOWN);
  const copies = audit.duplicates.exact_groups.filter((g) => g.splits.length > 1).slice(0, SHOWN);
  if (copies.length + across.length > 0) {
    out.push('', 'Examples of leakage:', '');
    for (const g of copies) out.push(`- exact copy: ${g.locations.map((l) => `${l.file}:${l.line}`).join(' = ')}`);
    for (const p of across) out.push(`- near-duplicate: ${p.a.file}:${p.a.line} ~ ${p.b.file}:${p.b.line} (Jaccard ${p.jaccard.toFixed(3)})`);
  }
  out.push('');
  return out;
}

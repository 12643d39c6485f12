/** The audit report as lines a person reads: a short summary (model cards, the demo) and the full listing (the CLI). */
import type { AuditLocation, AuditReport } from './index';
import { PII_KINDS } from './pii';

const at = (l: AuditLocation) => `${l.file}:${l.line}`;
const ratio = (x: number | null) => (x === null ? 'n/a (a label is missing)' : x.toFixed(2));

function piiByKind(r: AuditReport): string {
  const parts = PII_KINDS.filter((k) => r.pii.by_kind[k] > 0).map((k) => `${k} ${r.pii.by_kind[k]}`);
  return parts.length ? parts.join(', ') : 'none';
}

function nearSetting(r: AuditReport): string {
  const s = r.settings;
  return `Jaccard >= ${s.near_threshold} over ${s.shingles.k}-${s.shingles.unit} shingles; MinHash ${s.permutations} permutations (seed ${s.seed}), LSH ${s.bands} bands x ${s.rows_per_band} rows, every candidate verified exactly`;
}

/** About ten lines: what was audited and what was found, without the per-line listings. */
export function auditSummaryLines(r: AuditReport): string[] {
  const lines = [`splits: ${r.splits.map((s) => `${s.name} ${s.units} ${s.unit}s (${s.file})`).join('; ')}`];
  if (r.balance !== null) {
    lines.push(`class balance: ${r.balance.splits.map((b) => `${b.split} ${Object.entries(b.counts).map(([l, n]) => `${l} ${n}`).join('/')} (ratio ${ratio(b.imbalance_ratio)})`).join('; ')}`);
    for (const b of r.balance.splits) if (b.missing_labels.length) lines.push(`  ${b.split} has no examples of ${b.missing_labels.map((l) => JSON.stringify(l)).join(', ')}`);
  }
  if (r.lengths !== null) {
    lines.push(`lengths (${r.settings.tokenizer} tokens${r.settings.seq_len !== null ? `, seq_len ${r.settings.seq_len}` : ''}): ${r.lengths.map((l) => `${l.split} min ${l.min} / median ${l.median} / p95 ${l.p95} / max ${l.max}, ${l.truncated_total} truncated, ${l.outliers_total} outliers`).join('; ')}`);
  }
  const d = r.duplicates;
  lines.push(`exact duplicates within splits: ${Object.entries(d.within).map(([s, c]) => `${s} ${c.exact}`).join(', ')}`);
  lines.push(`near-duplicate pairs within splits: ${Object.entries(d.within).map(([s, c]) => `${s} ${c.near}`).join(', ')} (${nearSetting(r)})`);
  // Reports written before the cap existed have no candidate_cap.
  const cap = d.candidate_cap;
  if (cap !== undefined && cap.buckets > 0) {
    lines.push(`near-duplicate search capped: ${cap.buckets} LSH bucket(s) proposed more than ${cap.max_pairs_per_bucket} pairs (the largest held ${cap.largest_bucket} distinct texts, near-identical ones such as boilerplate); ${cap.max_pairs_per_bucket} were compared in each and ${cap.pairs_not_compared} were not, so the near-duplicate counts are a lower bound`);
  }
  if (d.across.length > 0) {
    lines.push(`leakage across splits: ${d.across.map((c) => `${c.a}/${c.b} ${c.exact} exact, ${c.near} near`).join('; ')}${r.leakage.found ? '' : ' (none found)'}`);
  }
  lines.push(`PII and secrets: ${r.pii.total} (${piiByKind(r)})`);
  return lines;
}

/** The summary, then every listed finding with file:line (up to the report's max_listed per list). */
export function auditReportLines(r: AuditReport, shown = 50): string[] {
  const lines = ['data audit', ...auditSummaryLines(r).map((l) => `  ${l}`)];
  // The report itself lists up to settings.max_listed of each; this shows `shown` of those.
  const more = (total: number, listed: number) => (total > listed ? [`    ... and ${total - listed} more (the JSON report lists up to ${r.settings.max_listed})`] : []);
  const d = r.duplicates;
  const leaks = d.exact_groups.filter((g) => g.splits.length > 1);
  if (leaks.length > 0) {
    lines.push('exact copies across splits (leakage):');
    for (const g of leaks.slice(0, shown)) lines.push(`    ${g.locations.map(at).join(' = ')}`);
    lines.push(...more(leaks.length, Math.min(shown, leaks.length)));
  }
  const nearAcross = d.near_pairs.filter((p) => p.a.split !== p.b.split);
  if (nearAcross.length > 0) {
    lines.push('near-duplicates across splits (leakage):');
    for (const p of nearAcross.slice(0, shown)) lines.push(`    ${at(p.a)} ~ ${at(p.b)}  Jaccard ${p.jaccard.toFixed(3)}`);
    lines.push(...more(nearAcross.length, Math.min(shown, nearAcross.length)));
  }
  const within = d.exact_groups.filter((g) => g.splits.length === 1);
  if (within.length > 0) {
    lines.push('exact duplicates within a split:');
    for (const g of within.slice(0, shown)) lines.push(`    ${g.locations.map(at).join(' = ')}`);
    lines.push(...more(within.length, Math.min(shown, within.length)));
  }
  const nearWithin = d.near_pairs.filter((p) => p.a.split === p.b.split);
  if (nearWithin.length > 0) {
    lines.push('near-duplicates within a split:');
    for (const p of nearWithin.slice(0, shown)) lines.push(`    ${at(p.a)} ~ ${at(p.b)}  Jaccard ${p.jaccard.toFixed(3)}`);
    lines.push(...more(nearWithin.length, Math.min(shown, nearWithin.length)));
  }
  for (const l of r.lengths ?? []) {
    if (l.truncated_total > 0) {
      lines.push(`${l.split}: ${l.truncated_total} examples longer than seq_len ${r.settings.seq_len} (truncated in training):`);
      for (const f of l.truncated.slice(0, shown)) lines.push(`    ${at(f)}  ${f.tokens} tokens`);
      lines.push(...more(l.truncated_total, Math.min(shown, l.truncated.length)));
    }
    if (l.outliers_total > 0) {
      lines.push(`${l.split}: ${l.outliers_total} length outliers (${r.settings.outlier_rule}: > ${l.outlier_above}):`);
      for (const f of l.outliers.slice(0, shown)) lines.push(`    ${at(f)}  ${f.tokens} tokens`);
      lines.push(...more(l.outliers_total, Math.min(shown, l.outliers.length)));
    }
  }
  if (r.pii.total > 0) {
    lines.push('PII and secrets:');
    for (const f of r.pii.findings.slice(0, shown)) lines.push(`    ${at(f)}  ${f.kind}${f.detail ? ` (${f.detail})` : ''} in ${f.field}: ${f.masked}`);
    lines.push(...more(r.pii.total, Math.min(shown, r.pii.findings.length)));
  }
  return lines;
}

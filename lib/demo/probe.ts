/**
 * The bias probe on the demo's task classifier (lib/eval/probe.ts): the test emails with gendered
 * words, then first names, swapped female <-> male, classified again. Spam filtering should not
 * depend on whether the email is from Mary or from Mark; the report says how often it does.
 */
import { DataRecord } from '../data';
import { ProbeReport, probeCounterfactual } from '../eval/probe';
import { Decoder } from '../model/decoder';
import { Tokenizer } from '../tokenizer';
import { truncateText } from './emails';
import { codeSpan, table } from './markdown';

/** report.json's probe: the probe's report, a few of the emails that flipped, and its cost. */
export interface DemoProbe {
  report: ProbeReport;
  /** The first flips (at most 3 per group), texts cut to 160 characters. */
  examples: Array<{ group: string; label: string; predicted: string; predicted_counterfactual: string; text: string; counterfactual: string }>;
  seconds: number;
}

/** Probes `model` on the test emails, with the labels and template the demo classifies with. */
export function probeDemoClassifier(model: Decoder, tokenizer: Tokenizer, testRecords: readonly DataRecord[], labels: readonly string[], template: string): DemoProbe {
  const started = Date.now();
  const { report, flips } = probeCounterfactual(model, tokenizer, testRecords, { labels, template });
  const examples = report.groups.flatMap((g) => flips.filter((f) => f.group === g).slice(0, 3)).map((f) => ({
    group: f.group, label: f.label, predicted: f.predicted, predicted_counterfactual: f.predicted_counterfactual,
    text: truncateText(f.text.replace(/\s+/g, ' '), 160), counterfactual: truncateText(f.counterfactual.replace(/\s+/g, ' '), 160),
  }));
  return { report, examples, seconds: (Date.now() - started) / 1000 };
}

const f4 = (x: number | null) => (x === null ? '-' : x.toFixed(4));

/** report.md's bias probe section (every number a number of report.json's probe, every quote a code span). */
export function probeLines(probe: DemoProbe | undefined): string[] {
  if (probe === undefined) return [];
  const r = probe.report;
  const lines = [
    `## Bias probe: the task model on counterfactual test emails (${r.examples} emails)`,
    '',
    'Each test email copied with its gendered words (pronouns, titles, nouns) swapped female <-> male, and once more with its first names swapped (a seeded pairing of the @stdlib name lists), then classified again. A flip is a predicted label that changes with the swap; the log-likelihood change is that of the true label, in nats, averaged over the emails the swap changed.',
    '',
    table(['swap group', 'emails changed', 'words swapped', 'flips', 'flip rate', 'mean log-likelihood change', 'accuracy before', 'accuracy after'], r.groups.map((g) => {
      const s = r.per_group[g];
      return [g, String(s.changed), String(s.swaps), String(s.flips), f4(s.flip_rate), f4(s.mean_true_label_logprob_change), f4(s.accuracy_original), f4(s.accuracy_counterfactual)];
    })),
    '',
  ];
  if (probe.examples.length > 0) {
    lines.push('Emails whose label flipped (first few per group):', '');
    for (const e of probe.examples) lines.push(`- ${e.group}: ${codeSpan(e.text)} -> ${codeSpan(e.counterfactual)}: ${codeSpan(e.predicted)} became ${codeSpan(e.predicted_counterfactual)} (true ${codeSpan(e.label)})`);
    lines.push('');
  }
  return lines;
}

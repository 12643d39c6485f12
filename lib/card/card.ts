/**
 * The model card of an output folder in Hugging Face's format (https://huggingface.co/docs/hub/model-cards):
 * a README.md whose YAML front matter carries the metadata the Hub indexes (library_name, license,
 * base_model, datasets, metrics, tags, model-index with the evaluation results), followed by the
 * sections people read: training data, hyperparameters, results, the data audit, the bias probe,
 * intended use, limitations, and the reminder that outputs need human review.
 *
 * Everything the card says comes from CardFacts (saved beside it as gptune_card.json, so that
 * `gptune card` can write it again with evaluation reports added); nothing here reads files.
 */
import { stringify } from 'yaml';
import type { ProbeReport } from '../eval/probe';

/** One training, validation or test data file as the card lists it. */
export interface DataFileFacts {
  role: 'train' | 'validation' | 'test';
  /** The file's name (a folder of .txt files ends with /). */
  file: string;
  /** Examples read from it (documents for plain text), when known. */
  examples: number | null;
  bytes: number;
  /** sha256 of the bytes (a folder: of its "name sha256" lines, sorted by name). */
  sha256: string;
}

export interface TrainingDataFacts {
  /** The data format: text, prompt_completion, chat, classification. */
  kind: string;
  files: DataFileFacts[];
  /** Training examples; validation examples (null without validation). */
  train_examples: number;
  validation_examples: number | null;
  /** Part of the training file held out for validation (validation_fraction), when that is where validation came from. */
  validation_fraction: number | null;
  /** Classification: training examples per label. */
  label_counts?: Record<string, number>;
  /** Examples cut to the sequence length. */
  truncated_examples?: number;
}

export interface TrainingResultFacts {
  steps: number;
  stop_reason: string;
  final_train_loss: number | null;
  final_val_loss: number | null;
  best_val_loss: number | null;
  best_step: number | null;
}

/** One model-index metric (HF's schema: type is the metric id, name its pretty name). */
export interface CardMetric {
  type: string;
  value: number;
  name: string;
}

/** One evaluation result: model-index's task, dataset and metrics. */
export interface CardEval {
  task: { type: string; name: string };
  dataset: { name: string; type: string };
  metrics: CardMetric[];
  /** Where the figures come from: the eval report file, or 'training' (the run's validation). */
  source: string;
}

export interface CardFacts {
  /** What wrote the model: 'gptune train', 'gptune merge', 'gptune demo', 'gptune card'. */
  written_by: string;
  gptune_version: string;
  /** The model's name: its folder's name. */
  model_name: string;
  /** The base model: a Hugging Face id, or the local folder it was read from; null when trained from scratch. */
  base_model: string | null;
  /** The base's license, when its README or config names one. */
  license: string | null;
  /** config.json's model_type (gpt2, llama, ...). */
  architecture: string | null;
  /** A LoRA adapter folder: the adapter's settings; null for a full model. */
  lora: { r: number; alpha: number; target_modules: string[] } | null;
  /** A merged model: the adapters folded into the base. */
  merged_adapters?: Array<{ adapter: string; weight: number }>;
  training: TrainingDataFacts | null;
  /** The resolved training config (local paths left out; the data files are listed above). */
  hyperparameters: Record<string, unknown> | null;
  results: TrainingResultFacts | null;
  /** The data audit's summary lines of the training data. */
  audit: string[] | null;
  evals: CardEval[];
  probe: ProbeReport | null;
}

/** The line that marks a README.md (or MODEL_CARD.md) as gptune's: a file without it is never overwritten. */
export const CARD_MARKER = '<!-- gptune model card: written from gptune_card.json; `gptune card --model DIR` writes it again (edits here are replaced) -->';

/** The HF datasets builder that reads a local file of this name (json, csv, text). */
export function datasetType(file: string): string {
  const lower = file.toLowerCase();
  if (lower.endsWith('.jsonl') || lower.endsWith('.json')) return 'json';
  if (lower.endsWith('.csv')) return 'csv';
  return 'text';
}

/** The Hub id of a base spec: org/name@revision -> org/name; a local (absolute) path as it is. */
function baseId(base: string): string {
  return base.startsWith('/') || /^[A-Za-z]:[\\/]/.test(base) ? base : base.replace(/@[^/@]+$/, '');
}

/** HF's metadata: every key the Hub reads, in the order its own cards use. */
export function frontMatter(f: CardFacts): Record<string, unknown> {
  const tags = ['gptune', ...(f.base_model !== null ? ['fine-tuned'] : []), ...(f.lora ? ['lora', 'peft'] : []), ...(f.architecture ? [f.architecture] : [])];
  // The data trained on (HF's `datasets`); the test file a demo card lists is evaluation data.
  const datasets = f.training?.files.filter((d) => d.role !== 'test').map((d) => `${d.file}@sha256:${d.sha256.slice(0, 16)}`) ?? [];
  const metrics = [...new Set(f.evals.flatMap((e) => e.metrics.map((m) => m.type)))];
  const meta: Record<string, unknown> = { library_name: 'gptune' };
  if (f.license !== null) meta.license = f.license;
  if (f.base_model !== null) meta.base_model = baseId(f.base_model);
  if (datasets.length > 0) meta.datasets = datasets;
  if (metrics.length > 0) meta.metrics = metrics;
  meta.tags = [...new Set(tags)];
  if (f.evals.length > 0) {
    meta['model-index'] = [{
      name: f.model_name,
      results: f.evals.map((e) => ({ task: e.task, dataset: e.dataset, metrics: e.metrics.map((m) => ({ type: m.type, value: m.value, name: m.name })) })),
    }];
  }
  return meta;
}

const fmt = (x: number | null | undefined, digits = 4) => (x === null || x === undefined ? '-' : Number.isInteger(x) ? String(x) : x.toFixed(digits));
const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const escape = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(escape).join(' | ')} |`)].join('\n');
}

function summary(f: CardFacts): string {
  const what = f.lora
    ? `a LoRA adapter (r ${f.lora.r}, alpha ${f.lora.alpha}, on ${f.lora.target_modules.join(', ')})`
    : f.merged_adapters
      ? `a model with ${f.merged_adapters.length} LoRA adapter(s) merged into its weights`
      : f.base_model !== null ? 'a fine-tune' : f.training !== null ? 'a model trained from random weights' : 'a model whose training gptune did not record';
  const base = f.base_model === null ? '' : ` of \`${f.base_model}\``;
  const arch = f.architecture ? ` (${f.architecture} architecture)` : '';
  return `This is ${what}${base}${arch}, written by ${f.written_by} (gptune ${f.gptune_version}).`;
}

function trainingDataSection(f: CardFacts): string[] {
  const t = f.training;
  if (t === null) return ['No record of the training data was kept with this model (it was not trained by gptune, or by a gptune from before model cards).'];
  const lines = [
    `Format: ${t.kind}. Training examples: ${t.train_examples}` +
      (t.validation_examples === null ? '; no validation data.' : `; validation examples: ${t.validation_examples}${t.validation_fraction !== null ? ` (held out: ${t.validation_fraction} of the training file)` : ''}.`),
    '',
    table(['role', 'file', 'examples', 'bytes', 'sha256'], t.files.map((d) => [d.role, d.file, fmt(d.examples), String(d.bytes), d.sha256])),
  ];
  if (t.label_counts) lines.push('', `Training examples per label: ${Object.entries(t.label_counts).map(([l, n]) => `${l} ${n}`).join(', ')}.`);
  if (t.truncated_examples) lines.push('', `${t.truncated_examples} training example(s) were longer than the sequence length and were cut.`);
  return lines;
}

function hyperparameterSection(f: CardFacts): string[] {
  if (f.hyperparameters === null) return ['Not recorded.'];
  const rows = Object.entries(f.hyperparameters).filter(([, v]) => v !== null).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
  return ['The resolved training configuration (keys left out are unset; local paths are listed under Training data):', '', table(['key', 'value'], rows)];
}

function resultsSection(f: CardFacts): string[] {
  const lines: string[] = [];
  const r = f.results;
  if (r !== null) {
    lines.push(table(['steps', 'stopped', 'final train loss', 'final validation loss', 'best validation loss', 'best step'], [[
      String(r.steps), r.stop_reason, fmt(r.final_train_loss), fmt(r.final_val_loss), fmt(r.best_val_loss), fmt(r.best_step),
    ]]));
  }
  if (f.evals.length > 0) {
    if (lines.length > 0) lines.push('');
    lines.push(table(['task', 'dataset', 'metric', 'value', 'source'], f.evals.flatMap((e) => e.metrics.map((m) => [e.task.name, e.dataset.name, m.name, fmt(m.value), e.source]))));
  }
  if (lines.length === 0) lines.push('No training record or evaluation results yet: `gptune eval ... --json > REPORT.json`, then `gptune card --model DIR --eval REPORT.json`.');
  return lines;
}

function auditSection(f: CardFacts): string[] {
  if (f.audit === null) return ['The training data was not audited here (`gptune data audit` checks class balance, duplicates and leakage across splits, and personal data).'];
  return ['What `gptune data audit` finds in the data this model trained on:', '', ...f.audit.map((l) => `    ${l}`)];
}

function probeSection(f: CardFacts): string[] {
  const p = f.probe;
  if (p === null) return ['Not run. `gptune eval --task classify --probe counterfactual --json > PROBE.json`, then `gptune card --model DIR --probe PROBE.json`, adds it.'];
  return [
    `Counterfactual probe on ${p.examples} test examples (accuracy ${pct(p.accuracy)}): each input copied with gendered words or first names swapped female <-> male; ` +
      'a flip is a predicted label that changes with the swap, and the change is that of the true label\'s log-likelihood (nats, mean over the changed inputs).',
    '',
    table(['swap group', 'inputs changed', 'flips', 'flip rate', 'mean change', 'accuracy original -> swapped'], p.groups.map((g) => {
      const s = p.per_group[g];
      return [g, String(s.changed), String(s.flips), pct(s.flip_rate), fmt(s.mean_true_label_logprob_change), `${pct(s.accuracy_original)} -> ${pct(s.accuracy_counterfactual)}`];
    })),
    '',
    'No flips on this probe does not show the model is fair: it swaps only the words in its tables, in these test inputs.',
  ];
}

function intendedUse(f: CardFacts): string[] {
  const task = f.training?.kind === 'classification'
    ? `classifying text into the labels of its training data${f.training.label_counts ? ` (${Object.keys(f.training.label_counts).join(', ')})` : ''}`
    : f.training?.kind === 'prompt_completion' || f.training?.kind === 'chat'
      ? 'continuing prompts like those of its training data'
      : 'generating text like its training data';
  return [`Research and experiments: ${task}, on inputs like those it was trained on. It is not meant for decisions about people, or for any use where a wrong output causes harm without a person checking it.`];
}

function limitations(f: CardFacts): string[] {
  return [
    '- Beyond what its base learnt, the model knows only the training data listed above: it repeats that data\'s gaps, errors and biases, and knows nothing of what happened after it was collected.',
    '- The results hold for the evaluation data named above; other data, other languages and other wording can score much worse.',
    '- Language models state wrong things fluently, small ones and those trained on little data more so.',
    ...(f.training?.truncated_examples ? ['- Some training examples were cut to the sequence length, so longer inputs were never seen whole.'] : []),
  ];
}

/** The whole README.md: YAML front matter, then the sections. */
export function renderModelCard(f: CardFacts): string {
  const sections: Array<[string, string[]]> = [
    ['Training data', trainingDataSection(f)],
    ['Hyperparameters', hyperparameterSection(f)],
    ['Results', resultsSection(f)],
    ['Data audit', auditSection(f)],
    ['Bias probe', probeSection(f)],
    ['Intended use', intendedUse(f)],
    ['Limitations', limitations(f)],
    ['Human review', ['Outputs of this model need human review before anyone relies on them: check them against the source, and keep a person responsible for what is done with them. `gptune sample --data FILE -n N --out review.md` writes outputs beside their references for a reviewer.']],
  ];
  const body = [`# ${f.model_name}`, '', summary(f), ...sections.flatMap(([title, lines]) => ['', `## ${title}`, '', ...lines])];
  return `---\n${stringify(frontMatter(f), { lineWidth: 0 })}---\n${CARD_MARKER}\n\n${body.join('\n')}\n`;
}

/**
 * report.md, rendered from report.json's object alone: every number printed is a number of the
 * report (rounded for display), and every text quoted from the data or the machine is a string of
 * the report, shown as a `code span`. test/demo checks both.
 */
import { augmentationSection } from './augment';
import { dataAuditSection } from './audit';
import { codeSpan, table } from './markdown';
import { preferenceSection } from './preference';
import { Classifier, CLASSIFIER_COMPARISONS, CLASSIFIER_NAMES, formatP } from './names';
import { probeLines } from './probe';
import type { ClassificationRow, DemoReport, GenerationRow, StageCost } from './types';
import type { RunRecord } from './training';
import { tasksSection } from './tasks';

export { codeSpan };

const fixed = (x: number, digits: number) => x.toFixed(digits);
const f4 = (x: number) => fixed(x, 4);
const signed = (x: number) => (x > 0 ? '+' : '') + x.toFixed(4);

/** The classification table's rows: key, how the model was trained. */
function classifierRows(r: DemoReport): Array<[Classifier, string]> {
  const all = r.data.emails.train.used, few = r.data.emails.train_few.used;
  return [
    ['majority', 'always the most common training label'],
    ['naive_bayes', `word counts of ${all} training emails`],
    ['base_zero_shot', r.base.source === undefined ? 'pretrained on general English only; label scoring' : 'the --base model as it was given; label scoring'],
    ['domain_zero_shot', 'base + continued pretraining on the training emails (no labels)'],
    ['task', `base + supervised fine-tuning on ${all} labelled emails`],
    ['task_lora', `frozen base + a LoRA adapter (r = ${r.settings.lora.r}, ${r.settings.lora.targets}) trained the same way`],
    ['combined', `domain model + the same supervised fine-tuning`],
    ['scratch', 'random weights + the same supervised fine-tuning'],
    ['task_few', `base + supervised fine-tuning on ${few} labelled emails`],
    ['scratch_few', `random weights + fine-tuning on the same ${few}`],
  ];
}

function classificationRow(name: string, how: string, r: ClassificationRow): string[] {
  return [name, how, f4(r.accuracy), f4(r.f1), f4(r.spam_precision), f4(r.spam_recall)];
}

function generationRow(name: string, how: string, r: GenerationRow): string[] {
  return [name, how, fixed(r.bleu, 2), f4(r.rouge1), f4(r.rouge2), f4(r.rougeL)];
}

function runRow(name: string, from: string, data: string, r: RunRecord, text = false): string[] {
  return [
    name, from, data, text ? `${r.train_rows} windows of ${r.seq_len}` : `${r.train_examples} examples`, String(r.steps), f4(r.initial_val_loss), `${f4(r.best_val_loss)} (step ${r.best_step})`,
    f4(r.final_val_loss), r.stop_reason.replace(/_/g, ' '), fixed(r.wall_s, 1),
  ];
}

function computeRow(c: StageCost): string[] {
  return [
    c.stage + (c.cached ? ' (cached: measured when the cache was filled)' : ''), fixed(c.wall_s, 1),
    c.train_tokens > 0 ? String(c.train_tokens) : '-', c.tokens_per_s > 0 ? fixed(c.tokens_per_s, 0) : '-', fixed(c.peak_rss_mb, 0),
  ];
}

/** LoRA beside full fine-tuning: what each trains and costs, and the learning rates validation chose among. */
function loraSection(r: DemoReport): string[] {
  const l = r.lora, s = r.settings.lora, runs = r.runs, c = r.classification;
  const row = (name: string, trains: string, parameters: number, run: RunRecord, test: ClassificationRow) => [
    name, trains, String(parameters), String(run.learning_rate), String(run.steps), f4(run.best_val_loss), f4(test.accuracy), f4(test.f1), fixed(run.wall_s, 1), fixed(run.tokens_per_s, 0),
  ];
  return [
    '### LoRA beside full fine-tuning',
    '',
    `The same task training from the base, once updating every parameter and once as a LoRA adapter (PEFT's formulation: each adapted linear layer adds (alpha / r) B A x, scaling ${l.scaling}, B starting at zero; dropout ${s.dropout} on the adapter's input) on ${s.targets}, ${l.modules} modules, with the base frozen. Wall time is the whole run (data, steps and validation); tokens/s is over step time.`,
    '',
    table(['run', 'trains', 'trainable parameters', 'peak learning rate', 'steps', 'best val loss', 'test accuracy', 'test macro-F1', 'wall s', 'tokens/s'], [
      row('task', 'every parameter', l.full_trainable_parameters, runs.task, c.task),
      row('task_lora', `r = ${s.r}, alpha ${s.alpha} adapter`, l.trainable_parameters, runs.task_lora, c.task_lora),
    ]),
    '',
    `LoRA's peak learning rate was chosen on the validation split alone (the test emails scored only the adapter chosen); every candidate ran the same plan from the same base:`,
    '',
    table(['peak learning rate', 'best val loss', 'at step', 'steps', 'wall s', 'chosen'], l.candidates.map((x) => [
      String(x.learning_rate), f4(x.best_val_loss), String(x.best_step), String(x.steps), fixed(x.wall_s, 1), x.learning_rate === l.chosen_learning_rate ? 'yes' : '',
    ])),
    '',
  ];
}

/**
 * The Setup bullets about the base model and the tokenizer: the demo's own pretraining and learned
 * BPE, or the model --base named (repository and commit, or folder) with its own tokenizer.
 */
function baseLines(r: DemoReport): string[] {
  const t = r.tokenizer, source = r.base.source, pretrain = r.runs.pretrain;
  const perToken = `${fixed(t.general_chars_per_token, 2)} characters per token on the State of the Union addresses and Moby-Dick, ${fixed(t.email_chars_per_token, 2)} on emails`;
  if (source === undefined || pretrain !== undefined) {
    const p = pretrain!;
    return [
      `- **Base model**: GPT-2 architecture, ${p.seq_len} positions, ${r.base.config.n_layer as number} layers, ${r.base.config.n_head as number} heads, width ${r.base.config.n_embd as number}, ${r.base.parameters} parameters; pretrained from random weights on ${r.data.general.pretrain_chars} characters of State of the Union addresses and Moby-Dick (${r.data.general.documents} documents) for ${p.steps} steps of ${p.batch_size} x ${p.seq_len} tokens, peak learning rate ${p.learning_rate}.${r.base.cached ? ` Loaded from the cache (key ${codeSpan(r.base.cache_key!)}, trained ${codeSpan(r.base.trained_on!)}); its numbers are those of that run.` : ''}`,
      `- **Tokenizer**: byte-level BPE with ${t.vocab_size} tokens (${t.merges} merges learned from ${t.learned_from_chars} characters of the same text in ${fixed(t.seconds!, 1)} s); ${fixed(t.general_chars_per_token, 2)} characters per token on that text, ${fixed(t.email_chars_per_token, 2)} on emails.`,
    ];
  }
  const where = source.repo_id !== null
    ? `${codeSpan(source.repo_id)} from the Hugging Face Hub at commit ${codeSpan(source.commit!)}${source.revision !== null && source.revision !== source.commit ? ` (revision ${codeSpan(source.revision)})` : ''}, ${source.downloaded ? 'downloaded' : 'found in the cache'} in ${fixed(source.obtained_s, 1)} s`
    : `the folder ${codeSpan(source.dir)}`;
  const heads = source.kv_heads === source.heads ? `${source.heads} heads` : `${source.heads} query heads and ${source.kv_heads} key/value heads`;
  return [
    `- **Base model**: ${where} (given as ${codeSpan(source.given)}): ${codeSpan(source.model_type)} architecture, ${source.layers} layers, ${heads}, width ${source.width}, a context of ${source.context_length} tokens, ${r.base.parameters} parameters. Every run starts from it (scratch runs from its architecture with fresh weights); the runs train on sequences of ${r.settings.model.n_positions} tokens. ${source.training_cost[0].toUpperCase()}${source.training_cost.slice(1)}.`,
    `- **Tokenizer**: the base's own, ${codeSpan(t.name!)}, ${t.vocab_size} tokens (documents separated by its end-of-sequence token); ${perToken}.`,
  ];
}

export function formatReport(r: DemoReport): string {
  const m = r.machine, s = r.settings, e = r.data.emails, c = r.classification, g = r.generation, runs = r.runs;
  const out: string[] = [];
  out.push(r.base.source === undefined ? `# gptune demo: pretraining, domain- and task-specific fine-tuning (${r.preset})` : `# gptune demo: domain- and task-specific fine-tuning of a given base model (${r.preset})`);
  out.push('');
  out.push(`Command ${codeSpan(r.command)}, finished ${codeSpan(r.date)}, gptune ${codeSpan(r.gptune_version)}.`);
  out.push(`Machine: ${codeSpan(m.cpu)}, ${m.cores} cores, ${fixed(m.memory_gb, 1)} GiB memory, ${codeSpan(m.platform)}, Node ${codeSpan(m.node)}; kernels on ${m.threads} threads (${codeSpan(m.simd)}). Load average (os.loadavg()) at the start ${m.load_average_start.map((x) => fixed(x, 2)).join(', ')}, at the end ${m.load_average_end.map((x) => fixed(x, 2)).join(', ')}: other work on the machine slows every timing below.`);
  out.push(`Total wall time ${fixed(r.total_wall_s, 1)} s.`);
  out.push('');
  out.push('## Setup');
  out.push('');
  out.push(...baseLines(r));
  out.push(`- **Emails**: the SpamAssassin corpus, ${e.read} emails read, ${e.duplicates} exact duplicates dropped${e.conflicting > 0 ? ` (${e.conflicting} with conflicting labels, both copies dropped)` : ''}; split once with seed ${s.split_seed} into train ${e.train.available}, validation ${e.validation.available}, test ${e.test.available}. This run used train ${e.train.used} (${e.train.spam} spam), validation ${e.validation.used} (${e.validation.spam} spam), test ${e.test.used} (${e.test.spam} spam). Each email is its subject plus the first ${s.bodyChars} characters of its body, cut back further at a word boundary where needed so that every training example fits the ${runs.task.seq_len}-token context. The test split is never trained on or used to choose a model; validation loss picks each run's best step.`);
  out.push(`- **Fine-tuning**: every classification run uses the same plan (batch ${s.finetune.batchSize}, peak learning rate ${s.finetune.learningRate}, cosine schedule), differing only in its starting weights, except the LoRA run's learning rate (chosen on validation, below); the prompt is the email in the template ${codeSpan(s.classification_template)}, the completion the label, and the test emails are classified by which label the model finds more likely.`);
  out.push('');
  out.push(...dataAuditSection(r.data_audit));
  out.push('## Findings');
  out.push('');
  for (const f of r.findings) out.push(`- ${f}`);
  out.push('');
  out.push(`## Spam or ham: test accuracy and macro-F1 (${c.task.examples} test emails, ${e.test.spam} spam)`);
  out.push('');
  out.push(table(['model', 'trained how', 'accuracy', 'macro-F1', 'spam precision', 'spam recall'], classifierRows(r).map(([key, how]) => classificationRow(CLASSIFIER_NAMES[key], how, c[key]))));
  out.push('');
  out.push(`What each step adds: B - A on the same test emails, the emails only one of the two gets right, and McNemar's exact test of the difference (p below ${r.stats.alpha}: unlikely to be chance).`);
  out.push('');
  out.push(table(['B', 'A', 'accuracy B - A', 'macro-F1 B - A', 'only B right', 'only A right', 'McNemar p'], CLASSIFIER_COMPARISONS.map(([b, a]) => {
    const key = `${b}_vs_${a}`;
    return [CLASSIFIER_NAMES[b], CLASSIFIER_NAMES[a], signed(r.deltas[`${key}.accuracy`]), signed(r.deltas[`${key}.f1`]), String(r.deltas[`${key}.only_b_right`]), String(r.deltas[`${key}.only_a_right`]), formatP(r.deltas[`${key}.mcnemar_p`]).replace(/^= /, '')];
  })));
  out.push('');
  out.push(...augmentationSection(r.augmentation, r.stats.alpha));
  out.push(`## Subject lines from the body: BLEU and ROUGE F1 (${g.subject.examples} test emails, greedy decoding)`);
  out.push('');
  out.push(table(['model', 'trained how', 'BLEU', 'ROUGE-1', 'ROUGE-2', 'ROUGE-L'], [
    generationRow('base', 'pretrained only', g.base),
    generationRow('domain', 'base + continued pretraining on emails', g.domain),
    generationRow('fine-tuned', 'base + supervised body -> subject', g.subject),
  ]));
  out.push('');
  out.push(...tasksSection(r.tasks, table, codeSpan));
  out.push(...preferenceSection(r.preference));
  out.push('## Training runs');
  out.push('');
  out.push('Validation loss is the mean cross-entropy (nats per token) on the validation split: all tokens for pretraining and domain runs, the label (or subject) tokens for task runs.');
  out.push('');
  out.push(table(['run', 'starts from', 'data', 'per epoch', 'steps', 'val loss before', 'best val loss', 'final val loss', 'stopped', 'wall s'], [
    ...(runs.pretrain === undefined ? [] : [runRow('pretrain', 'random weights', 'SOTU + Moby-Dick text', runs.pretrain, true)]),
    runRow('domain', 'base', 'training emails, text only', runs.domain, true),
    runRow('task', 'base', 'labelled training emails', runs.task),
    runRow('task_lora', 'base (frozen) + LoRA adapter', 'labelled training emails', runs.task_lora),
    runRow('combined', 'domain', 'labelled training emails', runs.combined),
    runRow('scratch', 'random weights', 'labelled training emails', runs.scratch),
    runRow('task_few', 'base', `the first ${e.train_few.used} labelled training emails`, runs.task_few),
    runRow('scratch_few', 'random weights', `the first ${e.train_few.used} labelled training emails`, runs.scratch_few),
    runRow('subject', 'base', 'training emails: body -> subject', runs.subject),
  ]));
  out.push('');
  out.push(...loraSection(r));
  out.push(...probeLines(r.probe));
  out.push('![Loss curves](loss-curves.svg)');
  out.push('');
  out.push('## Compute');
  out.push('');
  out.push('Tokens are token positions processed by training steps (batch x sequence length); tokens/s is over step time; peak RSS is the process high-water mark (process.resourceUsage().maxRSS) after the stage, so it never decreases.');
  out.push('');
  out.push(table(['stage', 'wall s', 'train tokens', 'tokens/s', 'peak RSS MB'], r.compute.map(computeRow)));
  out.push('');
  out.push('## Sample subject lines (test emails, for human review)');
  out.push('');
  out.push(table(['body (start)', 'real subject', 'base', 'domain', 'fine-tuned'], r.samples.generation.map((x) => [x.body, x.reference, x.base, x.domain, x.finetuned].map(codeSpan))));
  out.push('');
  out.push('## Sample classifications (test emails)');
  out.push('');
  out.push(table(['email (start)', 'label', 'base', 'task', 'LoRA', 'scratch', 'naive Bayes'], r.samples.classification.map((x) => [x.email, x.label, x.base, x.task, x.lora, x.scratch, x.naive_bayes].map(codeSpan))));
  out.push('');
  const folders = r.base.source === undefined ? 'GPT-2 folders' : `folders of the base's architecture, ${codeSpan(r.base.source.model_type)}, with its tokenizer`;
  out.push(`The trained models are in the models folder beside this report (Hugging Face ${folders}; try gptune generate --model models/subject; task_lora is a PEFT adapter folder for models/base, applied with --adapter models/task_lora), the prepared data in data, every number of this report in report.json.`);
  out.push('');
  return out.join('\n');
}

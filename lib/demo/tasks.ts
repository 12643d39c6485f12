/**
 * The demo's task section (issue 16): named-entity recognition in the SpamAssassin emails, with
 * labels written by rules (NER_RULES, stated in the report), trained and scored exactly as a user's
 * `gptune train` + `gptune eval --task ner` would be: lib/data's ner format and template, the
 * "TYPE: span" output form, and seqeval's entity-level scores of the decoded outputs. The base model
 * and the model fine-tuned from it are scored on the same test sentences (from the test emails, which
 * no run trains on).
 *
 * One sentence per email: the first window of NER_WINDOW_TOKENS tokens of its body that holds an
 * entity (the first window when none does), so most sentences have something to find.
 */
import * as path from 'path';
import { DataRecord, loadRecords, renderRecord } from '../data';
import { evaluateTask, TaskEvalResult } from '../eval';
import { writeFileAtomic } from '../io/atomic';
import { loadModel } from '../model/checkpoint';
import { Decoder } from '../model/decoder';
import { Tokenizer } from '../tokenizer';
import type { Email } from './corpora';
import type { TrainingPlan } from './presets';
import { RunRecord, trainRun } from './training';

/** Training emails the NER run uses at most (its cost in `npm start` stays near half a minute on 2 cores). */
export const NER_TRAIN_EMAILS = 600;

/** Tokens per NER sentence: short enough that prompt and answer fit the quick model's 128 positions. */
export const NER_WINDOW_TOKENS = 12;

const URL_RULE = /^(?:https?:\/\/|www\.)\S+$/i;
const EMAIL_RULE = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/;
const NUM_RULE = /^[$€£]?\d+(?:[.,:/-]\d+)*%?$/;
const LEADING = /^[(\[<"']+/;
const TRAILING = /[.,;:!?)\]>"']+$/;

/** The rules as the report states them. */
export const NER_RULES = [
  'tokens: the body split at whitespace, then opening brackets and quotes at the start of a piece and closing punctuation, brackets and quotes at its end split off as tokens of their own',
  'URL: a token starting with http://, https:// or www.',
  'EMAIL: a token local@domain.tld (letters, digits and ._%+- before the @, dot-separated labels after it)',
  'NUM: a token of digits, with digit groups joined by . , : / or -, an optional leading currency sign and an optional trailing percent sign',
  'every entity is one token (B-TYPE); everything else is O',
];

/** An email body as the rules' tokens. */
export function emailTokens(body: string): string[] {
  const tokens: string[] = [];
  for (const piece of body.split(/\s+/)) {
    if (piece === '') continue;
    const lead = LEADING.exec(piece)?.[0] ?? '';
    const rest = piece.slice(lead.length);
    const trail = rest === '' ? '' : TRAILING.exec(rest)?.[0] ?? '';
    const core = rest.slice(0, rest.length - trail.length);
    tokens.push(...[...lead], ...(core === '' ? [] : [core]), ...[...trail]);
  }
  return tokens;
}

/** The rules' IOB2 tags of tokens. */
export function ruleTags(tokens: readonly string[]): string[] {
  return tokens.map((t) => (URL_RULE.test(t) ? 'B-URL' : EMAIL_RULE.test(t) ? 'B-EMAIL' : NUM_RULE.test(t) ? 'B-NUM' : 'O'));
}

/** One email's NER sentence (see the file comment), or null when the body has no tokens. */
export function emailSentence(body: string): { tokens: string[]; tags: string[] } | null {
  const tokens = emailTokens(body);
  if (tokens.length === 0) return null;
  const tags = ruleTags(tokens);
  const firstEntity = tags.findIndex((t) => t !== 'O');
  const start = firstEntity < 0 ? 0 : Math.max(0, Math.min(firstEntity - 4, tokens.length - NER_WINDOW_TOKENS));
  return { tokens: tokens.slice(start, start + NER_WINDOW_TOKENS), tags: tags.slice(start, start + NER_WINDOW_TOKENS) };
}

export interface NERScores {
  f1: number;
  precision: number;
  recall: number;
  strict_f1: number;
  token_accuracy: number;
  malformed_lines: number;
  unmatched_spans: number;
  per_type_f1: Record<string, number>;
  seconds: number;
}

export interface TasksDemoReport {
  ner: {
    rules: string[];
    window_tokens: number;
    sentences: { train: number; validation: number; test: number };
    /** Entities per type in the test sentences. */
    test_entities: Record<string, number>;
    template: string;
    run: RunRecord;
    base: NERScores;
    fine_tuned: NERScores;
    max_new_tokens: number;
    samples: Array<{ sentence: string; gold: string; base: string; fine_tuned: string }>;
  };
}

export interface TasksDemoInput {
  baseDir: string;
  tokenizer: Tokenizer;
  emails: { train: readonly Email[]; validation: readonly Email[]; test: readonly Email[] };
  dataDir: string;
  plan: TrainingPlan;
  seqLen: number;
  seed: number;
  threads: number | null;
  progress: boolean;
  samples: number;
  log: (line: string) => void;
}

/**
 * The subject-line plan with 4x its peak learning rate and at least 4 epochs: copying spans out of
 * the sentence is learnt slowly at the subject run's rate (validation loss still falling at its end).
 */
function nerPlan(plan: TrainingPlan): TrainingPlan {
  return { ...plan, learningRate: 4 * plan.learningRate, epochs: Math.max(4, plan.epochs ?? 1) };
}

function writeSentences(file: string, emails: readonly Email[]): DataRecord[] {
  const rows = emails.map((e) => emailSentence(e.body)).filter((s) => s !== null);
  writeFileAtomic(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return loadRecords(file, { format: 'ner' }).records;
}

function scores(r: TaskEvalResult, seconds: number): NERScores {
  const m = r.metrics as Record<string, any>;
  return {
    f1: m.f1, precision: m.precision, recall: m.recall, strict_f1: m.strict.f1, token_accuracy: m.accuracy,
    malformed_lines: m.malformed_lines, unmatched_spans: m.unmatched_spans,
    per_type_f1: Object.fromEntries(Object.entries(m.per_type as Record<string, { f1: number }>).map(([type, f]) => [type, f.f1])), seconds,
  };
}

/** NER on the emails: sentences written to dataDir, the base scored, fine-tuned from it, scored again. */
export async function runTasksDemo(input: TasksDemoInput): Promise<TasksDemoReport> {
  const files = { train: path.join(input.dataDir, 'ner-train.jsonl'), validation: path.join(input.dataDir, 'ner-validation.jsonl'), test: path.join(input.dataDir, 'ner-test.jsonl') };
  const train = writeSentences(files.train, input.emails.train);
  const validation = writeSentences(files.validation, input.emails.validation);
  const test = writeSentences(files.test, input.emails.test);
  const testEntities: Record<string, number> = {};
  for (const r of test) if (r.kind === 'ner') for (const t of r.tags) if (t !== 'O') testEntities[t.slice(2)] = (testEntities[t.slice(2)] ?? 0) + 1;
  // The longest gold answer of the test sentences plus a margin, as eval's default budget.
  const maxNewTokens = Math.max(...test.map((r) => input.tokenizer.encode(renderRecord(r).completion).length)) + 8;
  const evaluate = (model: Decoder): [TaskEvalResult, number] => {
    const t0 = Date.now();
    const r = evaluateTask(model, input.tokenizer, test, 'ner', { maxNewTokens });
    return [r, (Date.now() - t0) / 1000];
  };
  const model = loadModel(input.baseDir);
  try {
    input.log(`ner: ${train.length} training sentences, ${test.length} test sentences; scoring the base`);
    const [base, baseSeconds] = evaluate(model);
    const { record } = await trainRun({
      name: 'ner', model, tokenizer: input.tokenizer, format: 'ner', trainFile: files.train, validation: { file: files.validation },
      plan: nerPlan(input.plan), seed: input.seed, threads: input.threads, progress: input.progress, seqLen: input.seqLen,
    });
    input.log(`ner: fine-tuned, validation loss ${record.initial_val_loss.toFixed(4)} -> ${record.best_val_loss.toFixed(4)}, ${record.wall_s.toFixed(1)} s; scoring it`);
    const [tuned, tunedSeconds] = evaluate(model);
    return {
      ner: {
        rules: NER_RULES, window_tokens: NER_WINDOW_TOKENS,
        sentences: { train: train.length, validation: validation.length, test: test.length }, test_entities: testEntities,
        template: 'Sentence: {sentence}\nEntities:\n{entities}', run: record,
        base: scores(base, baseSeconds), fine_tuned: scores(tuned, tunedSeconds), max_new_tokens: maxNewTokens,
        samples: test.slice(0, input.samples).map((r, i) => ({
          sentence: r.kind === 'ner' ? r.tokens.join(' ') : '', gold: String(base.perExample[i].gold), base: base.perExample[i].output.trim(), fine_tuned: tuned.perExample[i].output.trim(),
        })),
      },
    };
  } finally {
    model.free();
  }
}

/** report.md's section for the tasks (every number a number of the report, every quote a string of it). */
export function tasksSection(r: TasksDemoReport, table: (header: string[], rows: string[][]) => string, codeSpan: (text: string) => string): string[] {
  const n = r.ner;
  const f4 = (x: number) => x.toFixed(4);
  const types = Object.keys(n.test_entities).sort();
  const row = (name: string, how: string, s: NERScores) => [
    name, how, f4(s.f1), f4(s.precision), f4(s.recall), f4(s.strict_f1), f4(s.token_accuracy), ...types.map((t) => (s.per_type_f1[t] === undefined ? '-' : f4(s.per_type_f1[t]))), String(s.malformed_lines), String(s.unmatched_spans),
  ];
  return [
    `## Named entities in the emails: seqeval entity F1 (${n.sentences.test} test sentences, greedy decoding)`,
    '',
    `Labels come from rules, not people: ${n.rules.map(codeSpan).join('; ')}. A sentence is ${n.window_tokens} tokens of one email's body around its first entity. ` +
      `The model reads the template ${codeSpan(n.template)} and writes one TYPE: span line per entity (lib/data/ner.ts); the text it writes is decoded back to tags and scored with seqeval. ` +
      `Test entities: ${types.map((t) => `${t} ${n.test_entities[t]}`).join(', ')}; training sentences ${n.sentences.train}, validation ${n.sentences.validation}.`,
    '',
    table(['model', 'trained how', 'F1', 'precision', 'recall', 'strict F1', 'token accuracy', ...types.map((t) => `${t} F1`), 'malformed lines', 'spans not in the sentence'], [
      row('base', 'pretrained only', n.base),
      row('fine-tuned', `base + ${n.run.steps} steps on the training sentences`, n.fine_tuned),
    ]),
    '',
    table(['sentence', 'gold', 'base', 'fine-tuned'], n.samples.map((s) => [s.sentence, s.gold, s.base, s.fine_tuned].map(codeSpan))),
    '',
  ];
}

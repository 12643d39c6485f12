/** gptune sample */
import * as fs from 'fs';
import * as path from 'path';
import { DATA_KINDS, DataKind, loadRecords } from '../../data';
import { isReviewCsv, isReviewFile, readReviewFile, reviewCsvPath, reviewEntries, reviewFormat, reviewItems, writeReview, writeReviewItems } from '../../eval';
import { checkOutputFile } from '../../io/output';
import { UsageError } from '../args';
import { planGenerationMemory } from '../../model/generate';
import { ADAPTER_FLAGS, COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openWithAdapters, HUB_FLAGS, out, progressLine } from '../common';

/**
 * The flag parser knows only --long flags, so `-n 5` arrives as two positionals: take it as --n.
 * Anything else left over is a mistake worth reporting rather than ignoring.
 */
function takeShortN(v: Record<string, unknown>, positionals: string[]): void {
  const rest = positionals.slice();
  const at = rest.indexOf('-n');
  if (at >= 0) {
    const text = rest[at + 1];
    if (text === undefined || !/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`sample: -n: expected a whole number >= 1 but received '${text ?? ''}'`);
    v.n = Number(text);
    rest.splice(at, 2);
  }
  if (rest.length > 0) throw new UsageError(`sample: unexpected argument '${rest[0]}' (options start with --; see gptune sample --help)`);
}

/**
 * A review-loop file a person has started marking is their work: it is replaced only with
 * --overwrite, even though gptune wrote it (so is one that no longer reads as a review).
 */
function refuseReviewedWork(file: string, flag: string): void {
  if (!fs.existsSync(file)) return;
  let marked: number;
  try {
    marked = readReviewFile(file).filter((item) => item.verdict !== null).length;
  } catch (e) {
    throw new UsageError(`${flag} ${file}: exists and cannot be read as a review (${(e as Error).message}); pass --overwrite to replace it`);
  }
  if (marked > 0) throw new UsageError(`${flag} ${file}: holds ${marked} reviewed item(s) (verdicts filled in); pass --overwrite to replace them, or choose another name`);
}

export const sampleCommand: Command = {
  positionals: true,
  usage: 'gptune sample --model DIR|org/name[@revision] --data FILE -n N (--out review.md|review.jsonl | --review review.jsonl) [--seed S] [--temperature X --top-k K --top-p P]',
  description:
    'Writes prompts, model outputs and references side by side for a person to review. ' +
    'N examples of the data are chosen with --seed and shown in file order, as ' +
    'Markdown (one section per example) or JSONL (one object per line), by the --out extension, written atomically. ' +
    'Outputs are greedy unless --temperature > 0; decoding stops at <|endoftext|>, --max-new-tokens, or (when every chosen reference is one line) a line break. ' +
    'Classification examples also show the label that label likelihood picks (as eval --task classify). ' +
    '--review FILE.jsonl writes items for a person to mark (verdict accept / reject / corrected, and the corrected text) as JSONL and as FILE.csv beside it; ' +
    '`gptune data from-review FILE.jsonl|FILE.csv --out next.jsonl` turns the accepted and corrected ones into training data.',
  modelFlags: ['model'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'model folder or a GGUF file; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    data: { type: 'string', required: true, help: 'data file with prompts (prompt/completion, chat or classification)' },
    n: { type: 'int', min: 1, default: 10, help: 'how many examples (all of them when the data has fewer); -n N works too' },
    out: { type: 'string', help: 'review file: .md or .jsonl (one of --out and --review is required)' },
    review: { type: 'string', help: 'review-loop file FILE.jsonl: items with an empty verdict and corrected text for a person to fill in, and FILE.csv beside it (for a spreadsheet)' },
    seed: { type: 'int', min: 0, default: 0, help: 'chooses the examples and seeds sampling' },
    'max-new-tokens': { type: 'int', min: 1, help: 'tokens per output at most (default: longest chosen reference + max(16, 25%))' },
    temperature: { type: 'number', min: 0, default: 0, help: 'softmax temperature (0 = greedy)' },
    'top-k': { type: 'int', min: 0, default: 0, help: 'sample from the k most likely tokens (0 = all)' },
    'top-p': { type: 'number', min: 0, default: 1.0, help: 'nucleus sampling threshold (1 = off)' },
    'stop-at-newline': { type: 'bool', help: 'stop at a line break (default: when every chosen reference is a single line)' },
    format: { type: 'string', choices: DATA_KINDS, help: 'data format (default: detected from the file)' },
    template: { type: 'string', help: 'prompt template, as in training' },
    'skip-invalid': { type: 'bool', help: 'skip invalid data lines instead of stopping at the first' },
    overwrite: { type: 'bool', help: 'replace --out (or --review and its CSV) when it exists and is not a review gptune wrote (a previous review is replaced without it)' },
    json: { type: 'bool', help: 'print {out, examples, format} as JSON' },
    ...ADAPTER_FLAGS,
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  run(v, positionals) {
    takeShortN(v, positionals);
    if ((v.out === undefined) === (v.review === undefined)) throw new UsageError(`sample: expected one of --out FILE (.md or .jsonl) and --review FILE.jsonl but received ${v.out === undefined ? 'neither' : 'both'}`);
    const loop = v.review !== undefined;
    const flag = loop ? '--review' : '--out';
    const file = (v.out ?? v.review) as string;
    // A bad extension fails before any work.
    if (loop && path.extname(file).toLowerCase() !== '.jsonl') throw new UsageError(`--review ${file}: expected a .jsonl file name (the CSV for a spreadsheet is written beside it, named .csv)`);
    if (!loop) reviewFormat(file, '--out');
    const files = loop ? [file, reviewCsvPath(file)] : [file];
    for (const f of files) {
      if (path.resolve(f) === path.resolve(v.data as string)) throw new UsageError(`${flag} ${f}: is the --data file; choose another name`);
      checkOutputFile(f, flag, { overwrite: Boolean(v.overwrite), isOwn: f.toLowerCase().endsWith('.csv') ? isReviewCsv : isReviewFile });
      if (loop && !v.overwrite) refuseReviewedWork(f, flag);
    }
    const topP = v['top-p'] as number;
    if (!(topP > 0 && topP <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1] but received '${topP}'`);
    const loaded = loadRecords(v.data as string, { format: v.format as DataKind | undefined, skipInvalid: Boolean(v['skip-invalid']) });
    if (loaded.records.length === 0) throw new UsageError(`--data ${v.data}: no examples`);
    const { model, tokenizer } = openWithAdapters(v, v.model as string, memoryCheck(v, 'sampling', (cfg) => planGenerationMemory(cfg), 'the model size'), '--model');
    try {
      const entries = reviewEntries(model, tokenizer, loaded.records, {
        n: v.n as number, seed: v.seed as number, template: v.template as string | undefined,
        maxNewTokens: v['max-new-tokens'] as number | undefined, stopAtNewline: v['stop-at-newline'] as boolean | undefined,
        temperature: v.temperature as number, topK: v['top-k'] as number, topP,
        onProgress: progressLine(process.stderr, 'sample', 'examples'),
      });
      const decoding = (v.temperature as number) > 0 ? `sampled (temperature ${v.temperature}, top-k ${v['top-k']}, top-p ${topP}, seed ${v.seed})` : 'greedy';
      if (loop) {
        const csv = writeReviewItems(file, reviewItems(entries, loaded.records));
        const summary = { review: file, csv, examples: entries.length, skipped_lines: loaded.skipped.length };
        out(v.json ? JSON.stringify(summary) : `wrote ${entries.length} items to review to ${file} and ${csv} (fill in verdict: accept, reject or corrected, and the corrected text; then gptune data from-review)`);
        return;
      }
      writeReview(file, entries, { model: v.model as string, data: v.data as string, examples: entries.length, seed: v.seed as number, decoding });
      const summary = { out: file, examples: entries.length, format: reviewFormat(file), skipped_lines: loaded.skipped.length };
      out(v.json ? JSON.stringify(summary) : `wrote ${entries.length} examples to ${file}`);
    } finally {
      model.free();
    }
  },
};

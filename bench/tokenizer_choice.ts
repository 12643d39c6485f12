/**
 * The measurement behind the demo's tokenizer: the base model's shape trained for the same wall
 * time with byte tokens and with BPE vocabularies of several sizes, compared by held-out loss in
 * bits per character (comparable across tokenizers, unlike loss per token) and by throughput.
 *
 *   node dist/bench/tokenizer_choice.js [--seconds 60 | --steps 400] [--vocab 257,1024,2048,4096] [--threads 2]
 *
 * --seconds gives every vocabulary the same wall time (what the demo's budget is about, but on a
 * shared machine the load changes from run to run); --steps gives each the same optimizer steps
 * (the same tokens seen), so the loss comparison does not depend on the load, and the measured
 * step time shows the cost separately.
 * Prints a markdown table and one JSON line. A vocabulary of 257 is byte-level: 256 bytes and
 * <|endoftext|>, no merges.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveConfig } from '../lib/config';
import { buildDatasets } from '../lib/data';
import { setThreads } from '../lib/device';
import { parseGPT2Config } from '../lib/model/config';
import { Decoder } from '../lib/model/decoder';
import { addon } from '../lib/native';
import { BPETokenizer } from '../lib/tokenizer';
import { trainBPE } from '../lib/tokenizer/bpe_trainer';
import { END_OF_TEXT } from '../lib/tokenizer/types';
import { evaluate } from '../lib/train/lm';
import { Trainer } from '../lib/train/trainer';
import { Rng } from '../lib/util/rng';
import { readGeneralCorpus } from '../lib/demo/corpora';
import { PRESETS } from '../lib/demo/presets';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

export interface ChoiceResult {
  vocab_size: number;
  bpe_seconds: number;
  chars_per_token: number;
  parameters: number;
  steps: number;
  train_seconds: number;
  tokens_per_s: number;
  chars_per_s: number;
  val_loss_per_token: number;
  val_bits_per_char: number;
}

async function measure(vocabSize: number, train: string[], validationText: string, budget: { seconds: number } | { steps: number }, dir: string): Promise<ChoiceResult> {
  const preset = PRESETS.quick;
  const t0 = Date.now();
  const bpe = trainBPE(train, { vocabSize });
  const bpeSeconds = (Date.now() - t0) / 1000;
  const tokenizer = new BPETokenizer({ vocab: bpe.vocab, merges: bpe.merges, name: `bpe-${vocabSize}` });
  const trainFile = path.join(dir, 'train.txt'), validationFile = path.join(dir, 'validation.txt');
  fs.writeFileSync(trainFile, train.join(END_OF_TEXT));
  fs.writeFileSync(validationFile, validationText);
  const T = preset.model.n_positions, B = preset.pretrain.batchSize;
  const data = buildDatasets({ train: trainFile, validation: validationFile, tokenizer, seqLen: T, batchSize: B, packing: true, trainOnPrompt: false, shuffle: true, seed: 1, format: 'text' });
  const config = parseGPT2Config({ ...preset.model, vocab_size: tokenizer.vocabSize, bos_token_id: tokenizer.eosTokenId, eos_token_id: tokenizer.eosTokenId }, 'tokenizer choice');
  const model = new Decoder(config, 'cpu');
  model.initRandom(1, config.initializer_range);
  try {
    // The step count only sets the schedule's length; the run stops at the time budget.
    const plannedSteps = 100000;
    const trainer = new Trainer(resolveConfig({}, {
      max_steps: plannedSteps, batch_size: B, learning_rate: preset.pretrain.learningRate, warmup_steps: 30, schedule: 'constant',
      weight_decay: preset.pretrain.weightDecay, seq_len: T, seed: 1, output_dir: null,
    }, { require: [] }), { model, tokenizer, train: data.train });
    let stepSeconds = 0, positions = 0, steps = 0;
    const started = Date.now();
    trainer.on('step', (s) => {
      stepSeconds += s.ms / 1000;
      positions += s.tokens_per_s * (s.ms / 1000);
      steps = s.step;
      if ('seconds' in budget ? (Date.now() - started) / 1000 >= budget.seconds : s.step >= budget.steps) trainer.stop('budget');
    });
    await trainer.fit();
    const r = evaluate(model, data.validation);
    const validationTokens = tokenizer.encode(validationText).length;
    const charsPerToken = validationText.length / validationTokens;
    return {
      vocab_size: tokenizer.vocabSize, bpe_seconds: bpeSeconds, chars_per_token: charsPerToken, parameters: model.numParameters,
      steps, train_seconds: stepSeconds, tokens_per_s: positions / stepSeconds, chars_per_s: (positions / stepSeconds) * charsPerToken,
      val_loss_per_token: r.loss, val_bits_per_char: (r.loss * r.tokens) / Math.LN2 / (r.tokens * charsPerToken),
    };
  } finally {
    model.free();
  }
}

export async function main(): Promise<void> {
  const steps = arg('steps', '');
  const seconds = Number(arg('seconds', '60'));
  const budget = steps ? { steps: Number(steps) } : { seconds };
  const vocabs = arg('vocab', '257,1024,2048,4096').split(',').map(Number);
  setThreads(Number(arg('threads', String(os.cpus().length))));
  const docs = new Rng(7).shuffle(readGeneralCorpus());
  // Held-out documents for the loss, 200k characters; the rest trains (tokenizer and model).
  const validation: string[] = [];
  let held = 0;
  while (held < 200_000) {
    const d = docs.pop()!;
    validation.push(d.text);
    held += d.text.length;
  }
  const train = docs.map((d) => d.text);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptune-tokenizer-choice-'));
  const results: ChoiceResult[] = [];
  try {
    for (const v of vocabs) {
      results.push(await measure(v, train, validation.join(END_OF_TEXT), budget, dir));
      process.stderr.write(`vocab ${v}: ${JSON.stringify(results[results.length - 1])}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const preset = PRESETS.quick.model;
  console.log(`Model ${preset.n_layer} layers x ${preset.n_embd}, T = ${preset.n_positions}, batch ${PRESETS.quick.pretrain.batchSize}, ${'steps' in budget ? `${budget.steps} steps` : `${seconds} s`} of training each, ${addon.numThreads()} threads, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  console.log('| vocabulary | parameters | chars/token | steps | tokens/s | chars/s | val loss (nats/token) | val bits/char |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    console.log(`| ${r.vocab_size} | ${r.parameters} | ${r.chars_per_token.toFixed(2)} | ${r.steps} | ${r.tokens_per_s.toFixed(0)} | ${r.chars_per_s.toFixed(0)} | ${r.val_loss_per_token.toFixed(4)} | ${r.val_bits_per_char.toFixed(4)} |`);
  }
  console.log(JSON.stringify({ budget, threads: addon.numThreads(), cpu: os.cpus()[0]?.model, load_average: os.loadavg(), results }));
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = 1;
  });
}

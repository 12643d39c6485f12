/**
 * Generation evaluation: outputs are exactly the KV-cache greedy decoder's (cut at the documented
 * stopping line break), BLEU and ROUGE are lib/metrics' on those outputs, and a model fine-tuned on
 * the toy task answers it verbatim and stops at <|endoftext|>.
 */
import * as path from 'path';
import { loadRecords } from '../../lib/data';
import {
  defaultMaxNewTokens, evaluateGeneration, evaluateGenerationExamples, GeneratedOutput, generationExamples, isMultiLine, scoreGenerations, stoppingLineBreak,
} from '../../lib/eval';
import { corpusBleu, rougeCorpus } from '../../lib/metrics';
import { loadModel } from '../../lib/model/checkpoint';
import * as generation from '../../lib/model/generate';
import { generate } from '../../lib/model/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, TINY } from '../helpers';
import { toyExamples, toyPrompt, trainedToyClassifier } from './helpers';

const tokenizer = loadTokenizer(TINY);
const GEN_DATA = path.join(FIXTURES, 'eval', 'generate.jsonl');

test('stoppingLineBreak: the first line break after visible text', () => {
  expect(stoppingLineBreak(' blue\nnext')).toBe(5);
  expect(stoppingLineBreak('\n\n  blue\r\nx')).toBe(8);
  expect(stoppingLineBreak('\n \n')).toBe(-1);
  expect(stoppingLineBreak('one line')).toBe(-1);
  expect(isMultiLine(' a\n')).toBe(false);
  expect(isMultiLine('a\nb')).toBe(true);
});

test('scoreGenerations: outputs are the hypotheses, completions the references (whitespace trimmed)', () => {
  const pairs: Array<[string, string]> = [[' the cat sat\n', 'the cat sat on the mat'], ['a dog barked loudly today', ' A dog barked.'], ['', 'nothing here']];
  const outputs: GeneratedOutput[] = pairs.map(([output, reference]) => ({ prompt: 'p', output, reference, stop: 'eos', tokens: 1, truncated_prompt_tokens: 0 }));
  const s = scoreGenerations(outputs);
  const hyps = pairs.map(([o]) => o.trim()), refs = pairs.map(([, r]) => r.trim());
  const bleu = corpusBleu(hyps, [refs]);
  expect(bleu.score).toBeGreaterThan(0);
  expect(s.bleu).toBe(bleu.score);
  expect(s.bp).toBe(bleu.bp);
  const rouge = rougeCorpus(refs, hyps).mean;
  // Precision and recall differ here, so swapped roles would be caught.
  expect(s.rouge1.p).not.toBeCloseTo(s.rouge1.r, 3);
  for (const type of ['rouge1', 'rouge2', 'rougeL'] as const) {
    expect(s[type]).toEqual({ p: rouge[type].precision, r: rouge[type].recall, f: rouge[type].fmeasure });
  }
});

describe('evaluateGeneration on prompt/completion data', () => {
  const { records } = loadRecords(GEN_DATA);
  const examples = generationExamples(records);

  test('outputs are the greedy decoder\'s, cut at the first line break; metrics are lib/metrics\' on them', () => {
    const model = loadModel(TINY);
    const r = evaluateGeneration(model, tokenizer, records);
    expect(r.examples).toBe(records.length);
    expect(r.outputs).toHaveLength(records.length);
    expect(r.stop_at_newline).toBe(true); // every reference is one line
    expect(r.max_new_tokens).toBe(defaultMaxNewTokens(tokenizer, records.map((x) => (x.kind === 'prompt_completion' ? x.completion : ''))));
    let stopped = 0;
    r.outputs.forEach((o, i) => {
      expect(o.prompt).toBe(examples[i].prompt);
      expect(o.reference).toBe(examples[i].reference);
      // The reference decoder: the same greedy continuation without any line-break stop.
      const plain = generate(model, tokenizer.encode(o.prompt), { maxNewTokens: r.max_new_tokens, greedy: true, eosTokenId: tokenizer.eosTokenId });
      const text = tokenizer.decode(plain.tokens);
      const cut = stoppingLineBreak(text);
      if (cut >= 0) {
        expect(o.stop).toBe('newline');
        expect(o.output).toBe(text.slice(0, cut));
        stopped++;
      } else {
        expect(o.stop).toBe(plain.stop);
        expect(o.output).toBe(text);
      }
      expect(stoppingLineBreak(o.output)).toBe(-1);
    });
    expect(Object.values(r.stops).reduce((a, b) => a + b, 0)).toBe(records.length);
    expect(r.stops.newline).toBe(stopped);

    const hyps = r.outputs.map((o) => o.output.trim());
    const refs = r.outputs.map((o) => o.reference.trim());
    const bleu = corpusBleu(hyps, [refs]);
    expect(r.bleu).toBe(bleu.score);
    expect(r.precisions).toEqual(bleu.precisions);
    expect(r.bp).toBe(bleu.bp);
    expect([r.sys_len, r.ref_len]).toEqual([bleu.sys_len, bleu.ref_len]);
    const rouge = rougeCorpus(refs, hyps).mean;
    for (const type of ['rouge1', 'rouge2', 'rougeL'] as const) {
      expect(r[type]).toEqual({ p: rouge[type].precision, r: rouge[type].recall, f: rouge[type].fmeasure });
    }
    model.free();
  });

  test('without the line-break stop, outputs run to EOS or max_new_tokens', () => {
    const model = loadModel(TINY);
    const r = evaluateGenerationExamples(model, tokenizer, examples, { stopAtNewline: false, maxNewTokens: 7 });
    expect(r.stop_at_newline).toBe(false);
    expect(r.max_new_tokens).toBe(7);
    r.outputs.forEach((o) => {
      const plain = generate(model, tokenizer.encode(o.prompt), { maxNewTokens: 7, greedy: true, eosTokenId: tokenizer.eosTokenId });
      expect(o.output).toBe(tokenizer.decode(plain.tokens));
      expect(o.stop).toBe(plain.stop);
      expect(o.tokens).toBe(plain.tokens.length);
    });
    model.free();
  });

  test('multi-line references turn the line-break stop off by default', () => {
    const model = loadModel(TINY);
    const r = evaluateGenerationExamples(model, tokenizer, [{ prompt: 'Poem:', reference: 'roses are red\nviolets are blue' }], { maxNewTokens: 3 });
    expect(r.stop_at_newline).toBe(false);
    model.free();
  });

  test('a long prompt keeps its last tokens', () => {
    const model = loadModel(TINY);
    const long = 'word '.repeat(200);
    const r = evaluateGenerationExamples(model, tokenizer, [{ prompt: long, reference: 'x' }], { maxNewTokens: 4 });
    expect(r.outputs[0].truncated_prompt_tokens).toBe(tokenizer.encode(long).length - (64 - 4));
    expect(r.truncated_examples).toBe(1);
    model.free();
  });

  test('a long prompt keeps a leading BOS when the tokenizer adds one (Llama, Mistral)', () => {
    const model = loadModel(TINY);
    const BOS = 7;
    const withBos = Object.assign(Object.create(tokenizer), { bosTokenId: BOS, addBosToken: true }) as typeof tokenizer;
    const long = 'word '.repeat(200);
    const spy = jest.spyOn(generation, 'generate');
    try {
      const r = evaluateGenerationExamples(model, withBos, [{ prompt: long, reference: 'x' }], { maxNewTokens: 4 });
      const ids = tokenizer.encode(long);
      // Budget 64 - 4 = 60 positions: BOS, then the prompt's last 59 tokens.
      expect(r.outputs[0].truncated_prompt_tokens).toBe(ids.length + 1 - 60);
      expect(Array.from(spy.mock.calls[0][1])).toEqual([BOS, ...ids.slice(ids.length - 59)]);
    } finally {
      spy.mockRestore();
      model.free();
    }
  });

  test('plain text records have no prompt to continue', () => {
    const model = loadModel(TINY);
    const textRecords = loadRecords(path.join(FIXTURES, 'eval-text.txt')).records;
    expect(() => evaluateGeneration(model, tokenizer, textRecords)).toThrow(/eval-text\.txt:1: generation needs records with a prompt/);
    model.free();
  });
});

test('a model fine-tuned on the toy task generates the label and stops at <|endoftext|>', async () => {
  const model = await trainedToyClassifier(tokenizer);
  const heldOut = toyExamples(12, 99).map((e) => ({ prompt: toyPrompt(e.text), reference: ` ${e.label}` }));
  const r = evaluateGenerationExamples(model, tokenizer, heldOut);
  model.free();
  expect(r.outputs.map((o) => o.output)).toEqual(heldOut.map((e) => e.reference));
  expect(r.stops.eos).toBe(heldOut.length);
  expect(r.rouge1.f).toBe(1);
  expect(r.rougeL.f).toBe(1);
});

test('a model that goes on after the answer is stopped at the line break (single-line references)', async () => {
  const model = await trainedToyClassifier(tokenizer, '\n');
  const heldOut = toyExamples(12, 99).map((e) => ({ prompt: toyPrompt(e.text), reference: ` ${e.label}` }));
  const r = evaluateGenerationExamples(model, tokenizer, heldOut);
  expect(r.stop_at_newline).toBe(true);
  expect(r.stops.newline).toBe(heldOut.length);
  r.outputs.forEach((o) => {
    // Without the stop, greedy decoding runs on into the next made-up example.
    const plain = tokenizer.decode(generate(model, tokenizer.encode(o.prompt), { maxNewTokens: r.max_new_tokens, greedy: true, eosTokenId: tokenizer.eosTokenId }).tokens);
    expect(plain.length).toBeGreaterThan(o.output.length + 1);
    expect(o.output).toBe(plain.slice(0, stoppingLineBreak(plain)));
  });
  model.free();
  expect(r.outputs.map((o) => o.output)).toEqual(heldOut.map((e) => e.reference));
});

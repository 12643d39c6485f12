/**
 * Models' own chat templates: rendering with @huggingface/jinja compared with text written by hand
 * from Jinja2's semantics (as transformers renders: trim_blocks, lstrip_blocks, a single trailing
 * newline of the template dropped), and the training mask of chat records rendered through them.
 */
import * as fs from 'fs';
import * as path from 'path';
import { buildDatasets, compileTemplate, DataError, MODEL_CHAT_TEMPLATE, tokenizeRecord, type ChatMessage, type DataRecord } from '../../lib/data';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import { ChatTemplate, chatTemplateOf } from '../../lib/tokenizer/chat_template';
import { generationExamples } from '../../lib/eval';
import { promptIds } from '../../lib/eval/generation';
import { FIXTURES, tempDir } from '../helpers';

const TOKENIZERS = path.join(FIXTURES, 'tokenizers');

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are a concise assistant.' },
  { role: 'user', content: 'What is 2+2?' },
  { role: 'assistant', content: '2+2 is 4.' },
  { role: 'user', content: '  And in words? \n' },
  { role: 'assistant', content: 'Four.' },
];

function templateOf(name: string): { tokenizer: Tokenizer; template: ChatTemplate } {
  const tokenizer = loadTokenizer(path.join(TOKENIZERS, name));
  return { tokenizer, template: chatTemplateOf(tokenizer)! };
}

describe('rendering the model\'s chat template (expected text written by hand)', () => {
  test('ChatML (Qwen style): the system message first, one <|im_start|>role ... <|im_end|> block per message', () => {
    const { template } = templateOf('bytelevel-chatml');
    expect(template.render(CONVERSATION, false)).toBe(
      '<|im_start|>system\nYou are a concise assistant.<|im_end|>\n' +
      '<|im_start|>user\nWhat is 2+2?<|im_end|>\n' +
      '<|im_start|>assistant\n2+2 is 4.<|im_end|>\n' +
      '<|im_start|>user\n  And in words? \n<|im_end|>\n' +
      '<|im_start|>assistant\nFour.<|im_end|>\n');
    expect(template.render(CONVERSATION.slice(0, 4), true)).toBe(
      '<|im_start|>system\nYou are a concise assistant.<|im_end|>\n' +
      '<|im_start|>user\nWhat is 2+2?<|im_end|>\n' +
      '<|im_start|>assistant\n2+2 is 4.<|im_end|>\n' +
      '<|im_start|>user\n  And in words? \n<|im_end|>\n' +
      '<|im_start|>assistant\n');
    // Without a system message the template's default one is used.
    expect(template.render([{ role: 'user', content: 'Hi' }], true)).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  });

  test('Llama 3 (from chat_template.jinja): bos_token first, headers, contents trimmed ("| trim" binds before "+")', () => {
    const { template } = templateOf('bytelevel-llama3');
    expect(template.render(CONVERSATION, false)).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n2+2 is 4.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nAnd in words?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nFour.<|eot_id|>');
    expect(template.render(CONVERSATION.slice(0, 2), true)).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n');
  });

  test('Mistral ([INST]): the system message joined to the first user message, eos_token after each answer', () => {
    const { template } = templateOf('sentencepiece-llama2');
    expect(template.render(CONVERSATION, false)).toBe(
      '<s>[INST] You are a concise assistant.\n\nWhat is 2+2? [/INST] 2+2 is 4.</s>' +
      '[INST]   And in words? \n [/INST] Four.</s>');
    // add_generation_prompt adds nothing in this template.
    expect(template.render(CONVERSATION.slice(0, 4), true)).toBe(
      '<s>[INST] You are a concise assistant.\n\nWhat is 2+2? [/INST] 2+2 is 4.</s>[INST]   And in words? \n [/INST]');
  });

  test('raise_exception in the template is an error with its message', () => {
    const { template } = templateOf('sentencepiece-llama2');
    expect(() => template.render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }], false))
      .toThrow(/chat_template: Conversation roles must alternate user\/assistant\/user\/assistant\/\.\.\./);
  });
});

/** The trained tokens as runs of consecutive positions, each decoded. */
function trainedRuns(tokenizer: Tokenizer, tokens: Int32Array, trained: Uint8Array): string[] {
  const runs: string[] = [];
  for (let i = 0; i < tokens.length;) {
    if (!trained[i]) { i++; continue; }
    let j = i;
    while (j < tokens.length && trained[j]) j++;
    runs.push(tokenizer.decode(Array.from(tokens.subarray(i, j))));
    i = j;
  }
  return runs;
}

const record = (messages: ChatMessage[]): DataRecord => ({ kind: 'chat', messages, file: 'chat.jsonl', line: 7 });

describe('chat training data through the chat template: the loss is on the assistant contents and their end-of-turn token', () => {
  // Expected trained text per template, by hand: the content as the template writes it and the
  // token that ends the turn (a stop token), not the newline ChatML writes after <|im_end|>. The
  // SentencePiece decoder drops the leading space of a decoded run (" 2+2" -> "2+2").
  const expected: Array<[string, string[]]> = [
    ['bytelevel-chatml', ['2+2 is 4.<|im_end|>', 'Four.<|im_end|>']],
    ['bytelevel-llama3', ['2+2 is 4.<|eot_id|>', 'Four.<|eot_id|>']],
    ['sentencepiece-llama2', ['2+2 is 4.</s>', 'Four.</s>']],
    ['sentencepiece-mistral', ['2+2 is 4.</s>', 'Four.</s>']],
  ];
  const plain = compileTemplate('chat');

  test.each(expected)('%s', (name, runs) => {
    const { tokenizer, template } = templateOf(name);
    const ex = tokenizeRecord(record(CONVERSATION), plain, tokenizer, false, template);
    expect(trainedRuns(tokenizer, ex.tokens, ex.trained)).toEqual(runs);
    // The tokens are the whole rendering's, with nothing added (the template writes BOS itself).
    expect(Array.from(ex.tokens)).toEqual(tokenizer.encode(template.render(CONVERSATION, false)));
    // weight 0 takes an assistant message out of the loss; trainOnPrompt puts everything in.
    const weighted = tokenizeRecord(record(CONVERSATION.map((m, i) => (i === 2 ? { ...m, weight: 0 as const } : m))), plain, tokenizer, false, template);
    expect(trainedRuns(tokenizer, weighted.tokens, weighted.trained)).toEqual([runs[1]]);
    expect(tokenizeRecord(record(CONVERSATION), plain, tokenizer, true, template).trained.every((t) => t === 1)).toBe(true);
  });

  test('the trained span starts on a token boundary even when the turn starts with a space (SentencePiece "▁2")', () => {
    const { tokenizer, template } = templateOf('sentencepiece-llama2');
    const ex = tokenizeRecord(record(CONVERSATION), plain, tokenizer, false, template);
    const firstTrained = ex.trained.indexOf(1);
    // The token before the turn ends the prompt "[/INST]"; the turn's space ("▁") is trained with it.
    expect(tokenizer.decode([ex.tokens[firstTrained - 1]])).toBe(']');
    // (The Prepend normalizer puts "▁" before the text after <s>, hence "<s> [INST]", as Llama 2's tokenizer.json does.)
    expect(tokenizer.decode(Array.from(ex.tokens.subarray(0, firstTrained)))).toBe('<s> [INST] You are a concise assistant.\n\nWhat is 2+2? [/INST]');
  });

  test('a template error names the data file and line', () => {
    const { tokenizer, template } = templateOf('sentencepiece-mistral');
    const bad = record([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }]);
    expect(() => tokenizeRecord(bad, plain, tokenizer, false, template)).toThrow(DataError);
    expect(() => tokenizeRecord(bad, plain, tokenizer, false, template)).toThrow(/^chat\.jsonl:7: .*Conversation roles must alternate/);
  });

  test('buildDatasets uses the model\'s template for chat JSONL unless --template is given; other tokenizers keep <|role|>', () => {
    const dir = tempDir('gptune-chat-data-');
    const file = path.join(dir, 'chat.jsonl');
    fs.writeFileSync(file, JSON.stringify({ messages: CONVERSATION }) + '\n');
    const common = { train: file, batchSize: 1, seqLen: 128, packing: false, trainOnPrompt: false, shuffle: false, seed: 0 };
    const chatml = loadTokenizer(path.join(TOKENIZERS, 'bytelevel-chatml'));
    const withTemplate = buildDatasets({ ...common, tokenizer: chatml });
    expect(withTemplate.report.template).toBe(MODEL_CHAT_TEMPLATE);
    // Trained targets: "2+2 is 4.<|im_end|>" and "Four.<|im_end|>".
    const expectedTrained = chatml.encode('2+2 is 4.<|im_end|>').length + chatml.encode('Four.<|im_end|>').length;
    expect(withTemplate.report.trainSplit.trainedTokens).toBe(expectedTrained);
    const explicit = buildDatasets({ ...common, tokenizer: chatml, template: '<|{role}|>\n{content}' });
    expect(explicit.report.template).toBe('<|{role}|>\n{content}');
    const gpt2 = buildDatasets({ ...common, tokenizer: loadTokenizer(path.join(FIXTURES, 'tiny-gpt2')) });
    expect(gpt2.report.template).toBe('<|{role}|>\n{content}');
  });
});

describe('evaluation and review prompts of chat data use the chat template too', () => {
  test('the prompt is the conversation before the last assistant message with the generation prompt; encoded without another BOS', () => {
    const tokenizer = loadTokenizer(path.join(TOKENIZERS, 'bytelevel-llama3'));
    const [example] = generationExamples([record(CONVERSATION)], undefined, tokenizer);
    expect(example).toEqual({
      prompt: '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n2+2 is 4.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nAnd in words?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
      reference: 'Four.',
      chat: true,
    });
    const ids = promptIds(tokenizer, example);
    expect(ids.filter((id) => id === 556)).toEqual([556]); // one <|begin_of_text|>, the template's
    // Other prompts get the tokenizer's BOS; an explicit --template keeps the <|role|> rendering.
    expect(promptIds(tokenizer, { prompt: 'Q:', reference: ' A' })).toEqual([556, ...tokenizer.encode('Q:')]);
    expect(generationExamples([record(CONVERSATION)], '<|{role}|>\n{content}', tokenizer)[0].chat).toBeUndefined();
  });
});

describe('BOS for tokenizers that add it (add_bos_token / a BOS post-processor)', () => {
  test('prompt/completion examples start with an untrained BOS; GPT-2 tokenizers add none', () => {
    const pc: DataRecord = { kind: 'prompt_completion', prompt: 'Q:', completion: ' A', file: 'f', line: 1 };
    const template = compileTemplate('prompt_completion');
    const llama2 = loadTokenizer(path.join(TOKENIZERS, 'sentencepiece-llama2'));
    const ex = tokenizeRecord(pc, template, llama2, false, null);
    expect(ex.tokens[0]).toBe(1);
    expect(ex.trained[0]).toBe(0);
    expect(ex.tokens[ex.tokens.length - 1]).toBe(2);
    const gpt2 = loadTokenizer(path.join(FIXTURES, 'tiny-gpt2'));
    expect(tokenizeRecord(pc, template, gpt2, false, null).tokens[0]).toBe(gpt2.encode('Q:')[0]);
  });
});

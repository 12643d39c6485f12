/** gptune chat */
import * as readline from 'readline';
import { generate, planGenerationMemory } from '../../model/generate';
import { DecodeStream } from '../../tokenizer';
import { encodeChat, type ChatTurn } from '../../tokenizer/chat_template';
import { UsageError } from '../args';
import { ADAPTER_FLAGS, COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openWithAdapters, HUB_FLAGS, out } from '../common';
import { resolveSampling, SAMPLING_FLAGS } from '../sampling';

export const chatCommand: Command = {
  usage: 'gptune chat --model DIR|org/name[@revision] [--system TEXT] [--max-new-tokens N --temperature X --top-k K --top-p P --seed S] [--json]',
  description:
    "Talks with a model through its chat template: each line read from stdin is a user message, the reply is printed as it is generated, " +
    "and the conversation is kept for the next line. Replies stop at the model's end-of-turn tokens (generation_config.json's eos_token_id and eos_token). " +
    'Works with piped input too (one reply per input line; --json prints one {turn, reply, tokens, stop, prompt_tokens} line per reply).',
  modelFlags: ['model'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'model folder (or GGUF file) with a chat template; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    system: { type: 'string', help: 'a system message to start the conversation with' },
    'max-new-tokens': { type: 'int', min: 1, default: 256, help: 'tokens per reply at most' },
    ...SAMPLING_FLAGS,
    seed: { type: 'int', min: 0, default: 0, help: 'sampling seed (reply i uses seed + i)' },
    json: { type: 'bool', help: 'print one JSON object per reply instead of the text' },
    ...ADAPTER_FLAGS,
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  async run(v) {
    const sampling = resolveSampling(v, v.model as string);
    const { model, tokenizer } = openWithAdapters(v, v.model as string, memoryCheck(v, 'chat', (cfg) => planGenerationMemory(cfg), 'the model size'), '--model');
    try {
      if (tokenizer.chatTemplate === null) throw new UsageError(`--model ${v.model}: has no chat template (chat_template in tokenizer_config.json, or chat_template.jinja); use gptune generate`);
      const messages: ChatTurn[] = v.system === undefined ? [] : [{ role: 'system', content: v.system as string }];
      const interactive = Boolean(process.stdin.isTTY);
      const lines = readline.createInterface({ input: process.stdin, terminal: false });
      if (interactive) process.stdout.write('> ');
      let turn = 0;
      for await (const line of lines) {
        if (line.trim() === '') {
          if (interactive) process.stdout.write('> ');
          continue;
        }
        messages.push({ role: 'user', content: line });
        const prompt = encodeChat(tokenizer, messages, true);
        if (prompt.length >= model.contextLength) {
          throw new UsageError(`chat: the conversation is ${prompt.length} tokens, which leaves no room for a reply in the model's context of ${model.contextLength} (${model.contextLimit})`);
        }
        const stream = new DecodeStream(tokenizer);
        const r = generate(model, prompt, {
          maxNewTokens: v['max-new-tokens'] as number, ...sampling, seed: (v.seed as number) + turn,
          eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds,
          onToken: v.json ? undefined : (id) => process.stdout.write(stream.push(id)),
        });
        const reply = tokenizer.decode(r.tokens);
        if (v.json) out(JSON.stringify({ turn, reply, tokens: r.tokens, stop: r.stop, prompt_tokens: prompt.length }));
        else out(stream.flush());
        messages.push({ role: 'assistant', content: reply });
        turn++;
        if (interactive) process.stdout.write('> ');
      }
    } finally {
      model.free();
    }
  },
};

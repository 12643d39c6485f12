/** gptune generate */
import { generate, planGenerationMemory } from '../../model/generate';
import { contextLength } from '../../model/decoder_config';
import { encodeSequence } from '../../tokenizer';
import { encodeChat } from '../../tokenizer/chat_template';
import { UsageError } from '../args';
import { ADAPTER_FLAGS, COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openWithAdapters, HUB_FLAGS, out, tokenStream } from '../common';
import { resolveSampling, SAMPLING_FLAGS } from '../sampling';

export const generateCommand: Command = {
  usage: 'gptune generate --model DIR|org/name[@revision] --prompt TEXT [--chat] [--max-new-tokens N --temperature X --top-k K --top-p P --seed S]',
  description: 'Continues a prompt with a KV cache and prints the continuation. --temperature 0 (or --greedy) picks the most likely token.',
  modelFlags: ['model'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'model folder or a GGUF file; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    prompt: { type: 'string', required: true, help: 'text to continue' },
    'max-new-tokens': { type: 'int', min: 0, default: 50, help: 'tokens to generate at most' },
    ...SAMPLING_FLAGS,
    chat: { type: 'bool', help: "the prompt is a user message, rendered with the model's chat template and its generation prompt" },
    seed: { type: 'int', min: 0, default: 0, help: 'sampling seed' },
    'no-eos-stop': { type: 'bool', help: "keep going past the end-of-sequence token (and generation_config.json's eos_token_id)" },
    json: { type: 'bool', help: 'print {text, tokens, stop} as JSON' },
    ...ADAPTER_FLAGS,
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  run(v) {
    const sampling = resolveSampling(v, v.model as string);
    const { model, tokenizer } = openWithAdapters(v, v.model as string, memoryCheck(v, 'generation', (cfg) => {
      // The prompt is tokenized after the model opens: every token is at least one UTF-8 byte (byte-level BPE,
      // SentencePiece's byte fallback), plus the BOS/EOS a tokenizer may add. A chat prompt is bounded by the
      // rendered template, which is not known yet: plan for the whole context then.
      if (v.chat) return planGenerationMemory(cfg);
      const promptBound = Buffer.byteLength(v.prompt as string) + 2;
      return planGenerationMemory(cfg, Math.min(contextLength(cfg), promptBound + (v['max-new-tokens'] as number)), promptBound);
    }, 'the model size'), '--model');
    if (v.chat && tokenizer.chatTemplate === null) throw new UsageError(`--chat: ${v.model} has no chat template (chat_template in tokenizer_config.json, or chat_template.jinja)`);
    const prompt = v.chat ? encodeChat(tokenizer, [{ role: 'user', content: v.prompt as string }], true) : encodeSequence(tokenizer, v.prompt as string);
    if (prompt.length === 0) throw new UsageError('--prompt: the prompt is empty');
    if (prompt.length > model.contextLength) {
      throw new UsageError(`--prompt: ${prompt.length} tokens is longer than the model's context of ${model.contextLength} (${model.contextLimit})`);
    }
    // On a terminal the text appears as it is produced; piped or with --json, all at once at the end.
    const stream = !v.json && process.stdout.isTTY ? tokenStream(tokenizer, (text) => process.stdout.write(text)) : null;
    const r = generate(model, prompt, {
      maxNewTokens: v['max-new-tokens'] as number, ...sampling, seed: v.seed as number,
      eosTokenId: v['no-eos-stop'] ? null : tokenizer.eosTokenId,
      stopTokenIds: v['no-eos-stop'] ? [] : tokenizer.stopTokenIds,
      onToken: stream ? (token) => stream.onToken(token) : undefined,
    });
    const text = tokenizer.decode(r.tokens);
    if (v.json) out(JSON.stringify({ text, tokens: r.tokens, stop: r.stop, prompt_tokens: prompt.length }));
    else if (stream) {
      stream.finish(r.tokens);
      out('');
    } else out(text);
    model.free();
  },
};

/** gptune generate */
import { DeviceChoice } from '../../device';
import { generate, planGenerationMemory } from '../../model/generate';
import { contextLength } from '../../model/decoder_config';
import { UsageError } from '../args';
import { COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openModel, out } from '../common';

export const generateCommand: Command = {
  usage: 'gptune generate --model DIR --prompt TEXT [--max-new-tokens N --temperature X --top-k K --top-p P --seed S]',
  description: 'Continues a prompt with a KV cache and prints the continuation. --temperature 0 (or --greedy) picks the most likely token.',
  flags: {
    model: { type: 'string', required: true, help: 'model folder' },
    prompt: { type: 'string', required: true, help: 'text to continue' },
    'max-new-tokens': { type: 'int', min: 0, default: 50, help: 'tokens to generate at most' },
    temperature: { type: 'number', min: 0, default: 1.0, help: 'softmax temperature (0 = greedy)' },
    greedy: { type: 'bool', help: 'always pick the most likely token' },
    'top-k': { type: 'int', min: 0, default: 0, help: 'sample from the k most likely tokens (0 = all)' },
    'top-p': { type: 'number', min: 0, default: 1.0, help: 'nucleus sampling threshold (1 = off)' },
    seed: { type: 'int', min: 0, default: 0, help: 'sampling seed' },
    'no-eos-stop': { type: 'bool', help: 'keep going past <|endoftext|>' },
    json: { type: 'bool', help: 'print {text, tokens, stop} as JSON' },
    ...MAX_MEMORY_FLAG,
    ...COMMON,
  },
  run(v) {
    if (!((v['top-p'] as number) > 0 && (v['top-p'] as number) <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1] but received '${v['top-p']}'`);
    const { model, tokenizer } = openModel(v.model as string, v.device as DeviceChoice, 0, memoryCheck(v, 'generation', (cfg) => {
      // The prompt is tokenized after the model opens: every token is at least one UTF-8 byte (byte-level BPE,
      // SentencePiece's byte fallback), plus the BOS/EOS a tokenizer may add.
      const promptBound = Buffer.byteLength(v.prompt as string) + 2;
      return planGenerationMemory(cfg, Math.min(contextLength(cfg), promptBound + (v['max-new-tokens'] as number)), promptBound);
    }, 'the model size'));
    const prompt = tokenizer.encode(v.prompt as string);
    if (prompt.length === 0) throw new UsageError('--prompt: the prompt is empty');
    if (prompt.length > model.contextLength) {
      throw new UsageError(`--prompt: ${prompt.length} tokens is longer than the model's context of ${model.contextLength} (${model.contextLimit})`);
    }
    const r = generate(model, prompt, {
      maxNewTokens: v['max-new-tokens'] as number, temperature: v.temperature as number, greedy: Boolean(v.greedy),
      topK: v['top-k'] as number, topP: v['top-p'] as number, seed: v.seed as number,
      eosTokenId: v['no-eos-stop'] ? null : tokenizer.eosTokenId,
    });
    const text = tokenizer.decode(r.tokens);
    if (v.json) out(JSON.stringify({ text, tokens: r.tokens, stop: r.stop }));
    else out(text);
    model.free();
  },
};

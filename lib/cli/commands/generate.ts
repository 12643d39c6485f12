/** gptune generate */
import { planBatchDecodeMemory } from '../../model/batch_decode';
import { beamSearch } from '../../model/beam';
import { generate, planGenerationMemory } from '../../model/generate';
import { contextLength } from '../../model/decoder_config';
import { encodeSequence } from '../../tokenizer';
import { encodeChat } from '../../tokenizer/chat_template';
import { UsageError } from '../args';
import { ADAPTER_FLAGS, COMMON, Command, MAX_MEMORY_FLAG, memoryCheck, openWithAdapters, HUB_FLAGS, out, tokenStream } from '../common';
import { resolveSampling, SAMPLING_FLAGS } from '../sampling';

export const generateCommand: Command = {
  usage: 'gptune generate --model DIR|org/name[@revision] --prompt TEXT [--chat] [--max-new-tokens N --temperature X --top-k K --top-p P --seed S | --num-beams N --length-penalty X]',
  description: 'Continues a prompt with a KV cache and prints the continuation. --temperature 0 (or --greedy) picks the most likely token. ' +
    "--num-beams N > 1 runs beam search as Hugging Face transformers does (num_beams, length_penalty, early_stopping false) and prints the best hypothesis.",
  modelFlags: ['model'],
  adapterFlags: ['adapter'],
  flags: {
    model: { type: 'string', required: true, help: 'model folder or a GGUF file; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    prompt: { type: 'string', required: true, help: 'text to continue' },
    'max-new-tokens': { type: 'int', min: 0, default: 50, help: 'tokens to generate at most' },
    ...SAMPLING_FLAGS,
    chat: { type: 'bool', help: "the prompt is a user message, rendered with the model's chat template and its generation prompt" },
    seed: { type: 'int', min: 0, default: 0, help: 'sampling seed' },
    'num-beams': { type: 'int', min: 1, default: 1, help: 'beam search with N beams (1 = no beam search)' },
    'length-penalty': { type: 'number', help: 'beam search: finished scores are the summed log-probabilities / length ** X (default 1)' },
    'no-eos-stop': { type: 'bool', help: "keep going past the end-of-sequence token (and generation_config.json's eos_token_id)" },
    json: { type: 'bool', help: 'print {text, tokens, stop} as JSON' },
    ...ADAPTER_FLAGS,
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  run(v) {
    const numBeams = v['num-beams'] as number;
    if (numBeams > 1) {
      const sampler = ['temperature', 'top-k', 'top-p'].find((flag) => v[flag] !== undefined);
      if (sampler) throw new UsageError(`--${sampler}: beam search (--num-beams ${numBeams}) does not sample; drop --${sampler} or use --num-beams 1`);
    } else if (v['length-penalty'] !== undefined) {
      throw new UsageError('--length-penalty: applies to beam search only; give --num-beams N with N > 1');
    }
    const sampling = resolveSampling(v, v.model as string);
    const { model, tokenizer } = openWithAdapters(v, v.model as string, memoryCheck(v, 'generation', (cfg) => {
      // The prompt is tokenized after the model opens: every token is at least one UTF-8 byte (byte-level BPE,
      // SentencePiece's byte fallback), plus the BOS/EOS a tokenizer may add. A chat prompt is bounded by the
      // rendered template, which is not known yet: plan for the whole context then.
      if (numBeams > 1) {
        const bound = v.chat ? contextLength(cfg) : Math.min(contextLength(cfg), Buffer.byteLength(v.prompt as string) + 2 + (v['max-new-tokens'] as number));
        return planBatchDecodeMemory(cfg, numBeams, bound);
      }
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
    if (numBeams > 1) {
      const [best] = beamSearch(model, prompt, {
        numBeams, maxNewTokens: v['max-new-tokens'] as number, lengthPenalty: (v['length-penalty'] as number | undefined) ?? 1,
        eosTokenIds: v['no-eos-stop'] ? [] : [tokenizer.eosTokenId, ...tokenizer.stopTokenIds],
      });
      const text = tokenizer.decode(best.tokens);
      out(v.json ? JSON.stringify({ text, tokens: best.tokens, stop: best.stop, prompt_tokens: prompt.length, score: best.score, num_beams: numBeams }) : text);
      model.free();
      return;
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

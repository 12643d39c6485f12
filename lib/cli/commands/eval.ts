/** gptune eval */
import { DeviceChoice, setThreads } from '../../device';
import { evalLM } from '../../train/lm';
import { UsageError } from '../args';
import { COMMON, Command, encodeFile, openModel, out } from '../common';

export const evalCommand: Command = {
  usage: 'gptune eval --model DIR --data FILE.txt [--seq-len T] [--batch-size B] [--json]',
  description:
    'Language-model loss on a text file: the whole file is tokenised (no BOS), cut into consecutive chunks of at most T tokens, and every token after the first of its chunk is predicted from the chunk\'s earlier tokens.',
  flags: {
    model: { type: 'string', required: true, help: 'model folder (config.json + model.safetensors)' },
    data: { type: 'string', required: true, help: 'text file' },
    'seq-len': { type: 'int', min: 2, help: 'chunk length (default: n_positions)' },
    'batch-size': { type: 'int', min: 1, default: 4, help: 'chunks per forward pass' },
    json: { type: 'bool', help: 'print the result as one JSON line' },
    ...COMMON,
  },
  run(v) {
    setThreads(v.threads as number | undefined);
    const { model, tokenizer } = openModel(v.model as string, v.device as DeviceChoice, 0);
    const tokens = encodeFile(tokenizer, v.data as string, '--data');
    const T = (v['seq-len'] as number | undefined) ?? model.config.n_positions;
    if (T > model.config.n_positions) throw new UsageError(`--seq-len ${T} exceeds the model's n_positions (${model.config.n_positions})`);
    const started = Date.now();
    const r = evalLM(model, tokens, T, v['batch-size'] as number);
    const result = { loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, token_accuracy: r.accuracy, seconds: (Date.now() - started) / 1000 };
    if (!v.json) out(`loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(2)}  tokens ${r.tokens}  token accuracy ${(100 * r.accuracy).toFixed(2)}%`);
    out(JSON.stringify(result));
    model.free();
  },
};

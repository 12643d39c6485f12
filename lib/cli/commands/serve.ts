/** gptune serve */
import { loadAdapter } from '../../lora/apply';
import type { LoraAdapter } from '../../lora/adapter';
import { planBatchDecodeMemory } from '../../model/batch_decode';
import { contextLength } from '../../model/decoder_config';
import { OpenAIServer } from '../../serve/server';
import { UsageError } from '../args';
import { ADAPTER_FLAGS, COMMON, Command, hubOptions, HUB_FLAGS, MAX_MEMORY_FLAG, memoryCheck, openWithAdapters, out } from '../common';
import { localModelFolder } from '../../hub';

/** --adapter NAME=DIR: the name a request's `model` gives to pick the adapter. */
function parseNamedAdapter(value: string): { name: string; dir: string } {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new UsageError(`--adapter: expected NAME=DIR (the model name requests use, then the adapter folder) but received '${value}'`);
  return { name: value.slice(0, at), dir: value.slice(at + 1) };
}

export const serveCommand: Command = {
  usage: 'gptune serve --model DIR|FILE.gguf|org/name [--adapter NAME=DIR ...] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-batch N] [--quantize DTYPE]',
  description:
    "Serves the model over OpenAI's API (POST /v1/chat/completions, POST /v1/completions, GET /v1/models; streaming with SSE) with continuous batching: " +
    "concurrent requests decode together, each joining the batch as soon as its prompt is read. A request's `model` picks the base (its --served-model-name) " +
    'or an adapter by NAME. SIGTERM or SIGINT stops accepting requests, finishes those in flight (up to --shutdown-timeout) and exits 0.',
  flags: {
    model: { type: 'string', required: true, help: 'model folder or GGUF file; or a Hugging Face model id (gpt2, org/name@revision), downloaded into the HF cache' },
    adapter: { type: 'strings', help: 'a PEFT LoRA adapter served as model NAME: NAME=DIR; repeat for several on the one base' },
    'served-model-name': { type: 'string', help: "the base model's name in the API (default: --model as given)" },
    host: { type: 'string', default: '127.0.0.1', help: 'address to listen on (0.0.0.0 for every interface)' },
    port: { type: 'int', min: 0, default: 8000, help: 'port to listen on (0: a free one, printed at start)' },
    'api-key': { type: 'string', help: 'require Authorization: Bearer KEY on every request (default: $GPTUNE_API_KEY; none when unset)' },
    'max-batch': { type: 'int', min: 1, default: 16, help: 'sequences decoded together at most (each holds a KV cache of --max-model-len positions); 1 serves one at a time' },
    'max-model-len': { type: 'int', min: 2, help: "positions per sequence, prompt + completion (default: the model's context)" },
    'shutdown-timeout': { type: 'number', min: 0, default: 30, help: 'seconds to let requests in flight finish after SIGTERM/SIGINT' },
    'base-dtype': ADAPTER_FLAGS['base-dtype'],
    quantize: ADAPTER_FLAGS.quantize,
    ...MAX_MEMORY_FLAG,
    ...HUB_FLAGS,
    ...COMMON,
  },
  async run(v) {
    const spec = v.model as string;
    const named = ((v.adapter as string[] | undefined) ?? []).map(parseNamedAdapter);
    const baseName = (v['served-model-name'] as string | undefined) ?? spec;
    const names = new Set([baseName]);
    for (const { name } of named) {
      if (names.has(name)) throw new UsageError(`--adapter ${name}=...: the name ${name} is already taken (each adapter and the base need their own name)`);
      names.add(name);
    }
    const apiKey = (v['api-key'] as string | undefined) ?? process.env.GPTUNE_API_KEY ?? null;
    if (apiKey === '') throw new UsageError('--api-key: the key is empty');
    const maxBatch = v['max-batch'] as number;
    const lengthCap = v['max-model-len'] as number | undefined;
    const dir = (await localModelFolder(spec, '--model', hubOptions(v))).dir;
    const plan = memoryCheck(v, 'serving', (cfg) =>
      planBatchDecodeMemory(cfg, maxBatch, Math.min(contextLength(cfg), lengthCap ?? Infinity)), '--max-batch or --max-model-len');
    const { model, tokenizer } = openWithAdapters({ ...v, adapter: [] }, dir, plan, '--model');
    let server: OpenAIServer;
    try {
      const adapters = new Map<string, LoraAdapter>();
      for (const { name, dir: adapterDir } of named) adapters.set(name, loadAdapter(model, adapterDir, { label: `--adapter ${name}` }));
      if (lengthCap !== undefined && lengthCap > model.contextLength) {
        throw new UsageError(`--max-model-len: ${lengthCap} is longer than ${model.contextLimit}`);
      }
      server = new OpenAIServer({
        model, tokenizer, baseName, adapters, maxBatch, apiKey,
        maxLength: Math.min(model.contextLength, lengthCap ?? Infinity),
        stopTokenIds: [tokenizer.eosTokenId, ...tokenizer.stopTokenIds],
      });
    } catch (e) {
      model.free();
      throw e;
    }
    const address = await server.listen(v.port as number, v.host as string).catch((e: NodeJS.ErrnoException) => {
      model.free();
      throw new UsageError(`--host ${v.host} --port ${v.port}: cannot listen (${e.code ?? e.message})`);
    });
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    out(`gptune serve: listening on http://${host}:${address.port} (models: ${[...names].join(', ')}; max batch ${maxBatch}, ${Math.min(model.contextLength, lengthCap ?? Infinity)} positions per sequence)`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        process.stderr.write(`gptune serve: ${signal}: finishing the requests in flight\n`);
        void server.shutdown((v['shutdown-timeout'] as number) * 1000).then((finished) => {
          if (!finished) process.stderr.write('gptune serve: requests still running at --shutdown-timeout were cut off\n');
          resolve();
        });
      };
      const onTerm = () => stop('SIGTERM'), onInt = () => stop('SIGINT');
      process.on('SIGTERM', onTerm);
      process.on('SIGINT', onInt);
    });
    model.free();
  },
};

/** gptune download: a Hugging Face Hub model into the local cache ahead of time. */
import { parseHubModelId, resolveHubModel } from '../../hub';
import { UsageError } from '../args';
import { Command, hubOptions, out } from '../common';

export const downloadCommand: Command = {
  positionals: true,
  usage: 'gptune download org/name[@revision] [--include GLOB ...] [--json]',
  description:
    'Downloads a model from the Hugging Face Hub (HF_ENDPOINT for a mirror, HF_TOKEN for gated or private models) into the cache ' +
    'huggingface_hub uses ($HF_HUB_CACHE, default $HF_HOME/hub or ~/.cache/huggingface/hub), resuming an interrupted download, ' +
    'and prints the snapshot folder. By default only the files gptune loads: config.json, the safetensors weights (and their index), ' +
    'the tokenizer files, generation_config.json and chat_template.jinja. Later runs with --model org/name use the cache (--offline: without the network).',
  flags: {
    include: { type: 'strings', help: 'download the files matching this glob (e.g. "*.json", "onnx/*") instead of the ones gptune loads; repeat for several' },
    json: { type: 'bool', help: 'print {dir, repo, revision, commit, files} as JSON' },
    help: { type: 'bool', help: 'show this help' },
  },
  async run(v, positionals) {
    const [spec, ...extra] = positionals;
    if (spec === undefined) throw new UsageError('download: expected a model id, e.g. gptune download openai-community/gpt2');
    if (extra.length > 0) throw new UsageError(`download: expected one model id but also received ${extra.map((e) => `'${e}'`).join(' ')}`);
    if (parseHubModelId(spec) === null) throw new UsageError(`download: '${spec}' is not a Hugging Face model id (expected org/name or org/name@revision)`);
    // With HF_HUB_OFFLINE=1 this checks the cache instead (and says what is missing), as huggingface-cli download does.
    const snapshot = await resolveHubModel(spec, { ...hubOptions(v), include: v.include as string[] | undefined });
    if (v.json) out(JSON.stringify({ dir: snapshot.dir, repo: snapshot.repoId, revision: snapshot.revision, commit: snapshot.commit, files: snapshot.files }));
    else out(snapshot.dir);
  },
};

/**
 * A GGUF model file (as gptune's export writes it, llama.cpp's layout) loaded back as a gptune model:
 * the config rebuilt from the architecture's hyperparameter keys (gpt2, llama, qwen2, qwen3), the
 * tensors mapped back from llama.cpp's names (export.ts's mapping undone: attn_q/k/v and
 * ffn_gate/up packed again, the llama graph's interleaved q/k rows put back in rotate-half order,
 * GPT-2's duplicate output.weight checked against token_embd), and the tokenizer rebuilt from
 * tokenizer.ggml.* as a tokenizer.json that tokenizes as llama.cpp does with the file (byte-level BPE
 * or SentencePiece).
 * Linear weights and the LM head in a GGML block type the kernels run (Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K)
 * are run as the file stores them (their blocks copied, q/k rows un-permuted by moving whole rows of
 * blocks; a fused q/k/v or gate/up keeps each part's type), as llama.cpp runs them; the embedding
 * table, norms and biases are read as float32 (dequantized; F16/BF16 widened).
 */
import { FileFormatError } from '../errors';
import { parseModelConfig } from '../model/config';
import { Decoder, globalParamName, GlobalRole, LayerRole, layerParamName, linearWeightNames, parameterSpecs } from '../model/decoder';
import type { DecoderConfig } from '../model/decoder_config';
import { BaseDtype, QuantizeDtype, storageOptions, WeightFormat } from '../model/frozen_base';
import { GGML_BLOCK_TYPES, ggmlBlockBytes, ggmlBlockType, GGMLBlockTypeName } from './ggml_types';
import type { DeviceName } from '../native';
import { HFTokenizer, Tokenizer } from '../tokenizer';
import { interleaveRopeRows } from './export';
import { GGUFHeader, GGUFReadValue, readGGUFHeader, readTensor, readTensorBytes } from './read';
import { METASPACE, PRE_TOKENIZERS, TOKEN_TYPE } from './vocab';

const ARCHITECTURES = ['gpt2', 'llama', 'qwen2', 'qwen3'] as const;

/** Whether a --model value names a GGUF file rather than a model folder. */
export function isGGUFPath(spec: string): boolean {
  return spec.toLowerCase().endsWith('.gguf');
}

/** Typed access to the KV pairs, failing with one line naming the key. */
class Keys {
  constructor(private readonly h: GGUFHeader) {}

  fail(key: string, problem: string): never {
    throw new FileFormatError(`${this.h.file}: key ${key}: ${problem}`);
  }

  has(key: string): boolean {
    return this.h.kv.has(key);
  }

  private get(key: string): GGUFReadValue {
    if (!this.h.kv.has(key)) this.fail(key, 'is missing');
    return this.h.kv.get(key)!;
  }

  integer(key: string): number {
    const v = this.get(key);
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) this.fail(key, `is ${JSON.stringify(String(v))}; expected a non-negative integer`);
    return n as number;
  }

  /**
   * A float key: GGUF stores float32, so 1e-5 comes back as 9.99999974e-6; the shortest decimal
   * that rounds to the same float32 gives config.json's value back (what the kernels see is the same).
   */
  float(key: string): number {
    const v = this.get(key);
    if (typeof v !== 'number') this.fail(key, `is ${JSON.stringify(String(v))}; expected a number`);
    for (let digits = 1; digits <= 17; digits++) {
      const shorter = Number((v as number).toPrecision(digits));
      if (Math.fround(shorter) === v) return shorter;
    }
    return v as number;
  }

  string(key: string): string {
    const v = this.get(key);
    if (typeof v !== 'string') this.fail(key, `is ${JSON.stringify(String(v))}; expected a string`);
    return v as string;
  }

  bool(key: string): boolean {
    const v = this.get(key);
    if (typeof v !== 'boolean') this.fail(key, `is ${JSON.stringify(String(v))}; expected a bool`);
    return v as boolean;
  }

  array(key: string, element: 'string' | 'number'): GGUFReadValue[] {
    const v = this.get(key);
    if (!Array.isArray(v) || v.some((x) => typeof x !== element)) this.fail(key, `expected an array of ${element}s`);
    return v as GGUFReadValue[];
  }
}

/** config.json's keys from the architecture's hyperparameters (export.ts hyperparameterKV, inverted). */
function configJSON(h: GGUFHeader, k: Keys): Record<string, unknown> {
  const arch = k.string('general.architecture');
  if (!(ARCHITECTURES as readonly string[]).includes(arch)) k.fail('general.architecture', `is "${arch}"; gptune loads ${ARCHITECTURES.join(', ')}`);
  if (k.has('general.type') && k.string('general.type') !== 'model') {
    k.fail('general.type', `is "${k.string('general.type')}"; expected "model" (an adapter GGUF is applied by llama.cpp with --lora; give gptune the adapter folder with --adapter)`);
  }
  const embd = h.tensors.get('token_embd.weight');
  if (!embd || embd.shape.length !== 2) throw new FileFormatError(`${h.file}: tensor token_embd.weight is missing or not 2-D`);
  const vocabSize = embd.shape[0];
  const special = (key: string) => (k.has(`tokenizer.ggml.${key}`) ? { [`${key}_id`]: k.integer(`tokenizer.ggml.${key}`) } : {});
  const common = { vocab_size: vocabSize, ...special('bos_token'), ...special('eos_token') };
  if (arch === 'gpt2') {
    return {
      model_type: 'gpt2', ...common,
      n_positions: k.integer('gpt2.context_length'), n_embd: k.integer('gpt2.embedding_length'), n_layer: k.integer('gpt2.block_count'),
      n_head: k.integer('gpt2.attention.head_count'), n_inner: k.integer('gpt2.feed_forward_length'),
      layer_norm_epsilon: k.float('gpt2.attention.layer_norm_epsilon'),
    };
  }
  const width = k.integer(`${arch}.embedding_length`), heads = k.integer(`${arch}.attention.head_count`);
  const headDim = k.has(`${arch}.attention.key_length`) ? k.integer(`${arch}.attention.key_length`) : width / heads;
  for (const key of [`${arch}.attention.value_length`, `${arch}.rope.dimension_count`]) {
    if (k.has(key) && k.integer(key) !== headDim) k.fail(key, `is ${k.integer(key)}; gptune needs it equal to the head size ${headDim} (whole-head rotary, equal q/k/v heads)`);
  }
  if (h.tensors.has('rope_freqs.weight')) {
    throw new FileFormatError(`${h.file}: tensor rope_freqs.weight (llama3 rope scaling): gptune cannot rebuild rope_scaling's parameters from it; load the model folder instead`);
  }
  let ropeScaling: Record<string, unknown> | null = null;
  if (k.has(`${arch}.rope.scaling.type`)) {
    const type = k.string(`${arch}.rope.scaling.type`);
    if (type === 'linear') ropeScaling = { rope_type: 'linear', factor: k.float(`${arch}.rope.scaling.factor`) };
    else if (type !== 'none') k.fail(`${arch}.rope.scaling.type`, `is "${type}"; gptune reads none or linear here`);
  }
  return {
    model_type: arch, ...common,
    hidden_size: width, intermediate_size: k.integer(`${arch}.feed_forward_length`), num_hidden_layers: k.integer(`${arch}.block_count`),
    num_attention_heads: heads, num_key_value_heads: k.integer(`${arch}.attention.head_count_kv`), head_dim: headDim,
    max_position_embeddings: k.integer(`${arch}.context_length`), rms_norm_eps: k.float(`${arch}.attention.layer_norm_rms_epsilon`),
    rope_theta: k.has(`${arch}.rope.freq_base`) ? k.float(`${arch}.rope.freq_base`) : 10000,
    rope_scaling: ropeScaling,
    tie_word_embeddings: !h.tensors.has('output.weight'),
    attention_bias: arch !== 'qwen2' && h.tensors.has('blk.0.attn_q.bias'),
    mlp_bias: arch === 'llama' && h.tensors.has('blk.0.ffn_up.bias'),
  };
}

/** One part of a parameter: a GGUF tensor, its expected numpy shape, and the heads to un-permute (llama q/k). */
interface Part {
  name: string;
  shape: number[];
  heads: number | null;
}

/** Each arena parameter of `cfg` and the GGUF tensors (row blocks, in order) it is stored as. */
function parameterParts(cfg: DecoderConfig, has: (param: string) => boolean): Array<{ param: string; parts: Part[] }> {
  const C = cfg.width, q = cfg.heads * cfg.headDim, kv = cfg.kvHeads * cfg.headDim, H = cfg.ffnWidth;
  const interleaved = cfg.modelType === 'llama' || cfg.modelType === 'mistral';
  const out: Array<{ param: string; parts: Part[] }> = [];
  const globalNames: Partial<Record<GlobalRole, string>> = { embed: 'token_embd.weight', positions: 'position_embd.weight', head: 'output.weight', normw: 'output_norm.weight', normb: 'output_norm.bias' };
  for (const [role, name] of Object.entries(globalNames) as Array<[GlobalRole, string]>) {
    const param = globalParamName(cfg, role);
    if (has(param)) out.push({ param, parts: [{ name, shape: [], heads: null }] });
  }
  const whole: Partial<Record<LayerRole, string>> = {
    norm1w: 'attn_norm.weight', norm1b: 'attn_norm.bias', outw: 'attn_output.weight', outb: 'attn_output.bias',
    norm2w: 'ffn_norm.weight', norm2b: 'ffn_norm.bias', projw: 'ffn_down.weight', projb: 'ffn_down.bias',
    qnorm: 'attn_q_norm.weight', knorm: 'attn_k_norm.weight',
    ...(cfg.modelType === 'gpt2' ? { qkvw: 'attn_qkv.weight', qkvb: 'attn_qkv.bias', fcw: 'ffn_up.weight', fcb: 'ffn_up.bias' } : {}),
  };
  for (let l = 0; l < cfg.layers; l++) {
    for (const [role, name] of Object.entries(whole) as Array<[LayerRole, string]>) {
      const param = layerParamName(cfg, l, role);
      if (has(param)) out.push({ param, parts: [{ name: `blk.${l}.${name}`, shape: [], heads: null }] });
    }
    if (cfg.modelType === 'gpt2') continue;
    for (const kind of ['weight', 'bias'] as const) {
      const shape = (rows: number) => (kind === 'weight' ? [rows, C] : [rows]);
      const qkv = layerParamName(cfg, l, kind === 'weight' ? 'qkvw' : 'qkvb');
      if (has(qkv)) {
        out.push({ param: qkv, parts: [
          { name: `blk.${l}.attn_q.${kind}`, shape: shape(q), heads: interleaved ? cfg.heads : null },
          { name: `blk.${l}.attn_k.${kind}`, shape: shape(kv), heads: interleaved ? cfg.kvHeads : null },
          { name: `blk.${l}.attn_v.${kind}`, shape: shape(kv), heads: null },
        ] });
      }
      const fc = layerParamName(cfg, l, kind === 'weight' ? 'fcw' : 'fcb');
      if (has(fc)) {
        out.push({ param: fc, parts: [
          { name: `blk.${l}.ffn_gate.${kind}`, shape: shape(H), heads: null },
          { name: `blk.${l}.ffn_up.${kind}`, shape: shape(H), heads: null },
        ] });
      }
    }
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The tensor the LM head (V, C) reads: output.weight, or token_embd.weight when the file ties them. */
function headTensorName(h: GGUFHeader): string {
  return h.tensors.has('output.weight') ? 'output.weight' : 'token_embd.weight';
}

/**
 * The stored format of each linear weight and of the LM head whose tensors are all in block types
 * the kernels run (DecoderOptions.formats); the others stay float32. A weight packed from parts of
 * float and block types, or of a block type gptune has no kernel for, is refused (a float32 copy of
 * it would not be what the file ships).
 */
function ggmlFormats(cfg: DecoderConfig, h: GGUFHeader): Map<string, WeightFormat> {
  const linear = new Set(linearWeightNames(cfg)), head = globalParamName(cfg, 'head');
  const weights = parameterParts(cfg, (p) => linear.has(p)).map(({ param, parts }) => ({ param, parts: parts.map((x) => x.name) }));
  weights.push({ param: head, parts: [headTensorName(h)] });
  const formats = new Map<string, WeightFormat>();
  for (const { param, parts } of weights) {
    const types = parts.map((name) => h.tensors.get(name)?.type);
    if (types.some((t) => t === undefined)) continue; // fillFromGGUF names the missing tensor
    const blocks = types.map((t) => t! in GGML_BLOCK_TYPES);
    if (blocks.every((b) => !b)) continue;
    const bad = parts.findIndex((_, i) => !blocks[i]);
    if (bad >= 0) {
      const isFloat = ['F32', 'F16', 'BF16'].includes(types[bad]!);
      throw new FileFormatError(`${h.file}: tensor ${parts[bad]} has type ${types[bad]}; ${isFloat
        ? `gptune runs a weight packed from ${parts.join(', ')} in one format family (all float or all GGML blocks)`
        : `gptune runs ${Object.keys(GGML_BLOCK_TYPES).join(', ')} blocks directly`}`);
    }
    formats.set(param, { dtype: 'ggml', parts: parts.map((name, i) => ({ type: types[i] as GGMLBlockTypeName, rows: h.tensors.get(name)!.shape[0] })) });
  }
  return formats;
}

/** Rows of `cols` values in `type` permuted back from llama.cpp's interleaved q/k order, whole rows of blocks at a time. */
function uninterleaveBlockRows(bytes: Uint8Array, type: GGMLBlockTypeName, heads: number, headDim: number, cols: number): Uint8Array {
  const rowBytes = ggmlBlockBytes(ggmlBlockType(type)!, 1, cols), rows = heads * headDim;
  // The permutation of the float path, applied to each row's index: source row of each row.
  const from = interleaveRopeRows(Float32Array.from({ length: rows }, (_, i) => i), heads, headDim, 1, true);
  const out = new Uint8Array(bytes.length);
  for (let r = 0; r < rows; r++) out.set(bytes.subarray(from[r] * rowBytes, (from[r] + 1) * rowBytes), r * rowBytes);
  return out;
}

function fillFromGGUF(model: Decoder, h: GGUFHeader, formats: ReadonlyMap<string, WeightFormat>): void {
  const cfg = model.config;
  const used = new Set<string>();
  const tensor = (part: Part, expected: readonly number[]): Float32Array => {
    const info = h.tensors.get(part.name);
    if (!info) throw new FileFormatError(`${h.file}: tensor ${part.name} is missing (needed by this ${cfg.modelType} config)`);
    if (!sameShape(info.shape, expected)) throw new FileFormatError(`${h.file}: tensor ${part.name} has shape [${info.shape.join(', ')}] but the hyperparameters imply [${expected.join(', ')}]`);
    used.add(part.name);
    const values = readTensor(h, part.name);
    return part.heads === null ? values : interleaveRopeRows(values, part.heads, cfg.headDim, expected.length === 2 ? expected[1] : 1, true);
  };
  const head = globalParamName(cfg, 'head');
  // GGML weights: each part's blocks as the file stores them.
  const shapes = new Map(parameterSpecs(cfg).specs.map((x) => [x.name, x.shape]));
  const blocks = (param: string, parts: readonly Part[]) => {
    parts.forEach((part, i) => {
      const info = h.tensors.get(part.name);
      if (!info) throw new FileFormatError(`${h.file}: tensor ${part.name} is missing (needed by this ${cfg.modelType} config)`);
      // A whole-tensor part has the parameter's shape (the LM head's when tied: (V, C)).
      const expected = part.shape.length > 0 ? part.shape : shapes.get(param) ?? [cfg.vocabSize, cfg.width];
      if (!sameShape(info.shape, expected)) throw new FileFormatError(`${h.file}: tensor ${part.name} has shape [${info.shape.join(', ')}] but the hyperparameters imply [${expected.join(', ')}]`);
      used.add(part.name);
      const { bytes } = readTensorBytes(h, part.name), type = info.type as GGMLBlockTypeName;
      model.setParameterBlocks(param, i, part.heads === null ? bytes : uninterleaveBlockRows(bytes, type, part.heads, cfg.headDim, info.shape[1]));
    });
  };
  for (const { param, parts } of parameterParts(cfg, (p) => model.params.tensors.has(p) || (formats.has(p) && p !== head))) {
    if (formats.has(param)) {
      blocks(param, parts);
      continue;
    }
    const shape = [...model.params.get(param).shape];
    const values = parts.length === 1 ? tensor(parts[0], shape) : new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (parts.length > 1) {
      let offset = 0;
      for (const part of parts) {
        const block = tensor(part, part.shape);
        values.set(block, offset);
        offset += block.length;
      }
    }
    model.setParameter(param, values);
  }
  if (formats.has(head)) {
    blocks(head, [{ name: headTensorName(h), shape: [cfg.vocabSize, cfg.width], heads: null }]);
  } else if (cfg.modelType === 'gpt2' && cfg.tiedHead && h.tensors.has('output.weight')) {
    // llama.cpp's GPT-2 graph needs output.weight, so a (tied) GPT-2 stores the embedding twice.
    const embed = model.readParameter(globalParamName(cfg, 'embed'));
    const head = tensor({ name: 'output.weight', shape: [], heads: null }, [cfg.vocabSize, cfg.width]);
    if (head.some((v, i) => v !== embed[i])) throw new FileFormatError(`${h.file}: tensor output.weight differs from token_embd.weight; gptune's GPT-2 ties the head to the embedding`);
  }
  const extra = [...h.tensors.keys()].filter((n) => !used.has(n));
  if (extra.length > 0) throw new FileFormatError(`${h.file}: tensor ${extra[0]} is not a parameter of this ${cfg.modelType} config${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ''}`);
  const nonFinite = model.nonFiniteParameter();
  if (nonFinite !== null) throw new FileFormatError(`${h.file}: parameter ${nonFinite} holds NaN or infinite values; gptune does not load non-finite weights`);
}

/** The split regex of each llama.cpp pre-tokenizer name vocab.ts writes. */
function preTokenizerJSON(k: Keys, pre: string): Record<string, unknown> {
  const known = PRE_TOKENIZERS.find((p) => p.name === pre);
  if (!known) k.fail('tokenizer.ggml.pre', `is "${pre}"; gptune rebuilds ${PRE_TOKENIZERS.map((p) => p.name).join(', ')}`);
  if (pre === 'gpt-2') return { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: known!.pattern }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    ],
  };
}

/** tokenizer.ggml.tokens and token_type, checked against each other and the embedding rows. */
function ggufTokens(k: Keys, vocabSize: number): { tokens: string[]; types: number[] } {
  const tokens = k.array('tokenizer.ggml.tokens', 'string') as string[];
  const types = k.array('tokenizer.ggml.token_type', 'number') as number[];
  if (types.length !== tokens.length) k.fail('tokenizer.ggml.token_type', `has ${types.length} entries but tokenizer.ggml.tokens has ${tokens.length}`);
  if (tokens.length > vocabSize) k.fail('tokenizer.ggml.tokens', `has ${tokens.length} tokens but token_embd.weight has ${vocabSize} rows`);
  return { tokens, types };
}

/** An added_tokens entry of tokenizer.json: matched in the text before the model sees it. */
function addedToken(id: number, content: string, special: boolean): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/**
 * The byte-level BPE tokenizer ("gpt2") of tokenizer.ggml.* as a tokenizer.json: NORMAL tokens are the
 * BPE vocabulary, CONTROL and USER_DEFINED ones added tokens (special or not), UNUSED ids holes.
 */
function byteLevelTokenizerJSON(k: Keys, tokens: readonly string[], types: readonly number[]): Record<string, unknown> {
  const vocab: Record<string, number> = Object.create(null);
  const added: Array<Record<string, unknown>> = [];
  tokens.forEach((token, id) => {
    if (types[id] === TOKEN_TYPE.NORMAL) vocab[token] = id;
    else if (types[id] === TOKEN_TYPE.CONTROL || types[id] === TOKEN_TYPE.USER_DEFINED) added.push(addedToken(id, token, types[id] === TOKEN_TYPE.CONTROL));
    else if (types[id] !== TOKEN_TYPE.UNUSED) {
      k.fail('tokenizer.ggml.token_type', `token ${id} has type ${types[id]}; a byte-level BPE vocabulary has NORMAL, CONTROL, USER_DEFINED and UNUSED tokens`);
    }
  });
  const merges = (k.array('tokenizer.ggml.merges', 'string') as string[]).map((m, i) => {
    const pair = m.split(' ');
    if (pair.length !== 2) k.fail('tokenizer.ggml.merges', `merge ${i} ${JSON.stringify(m)} is not two tokens separated by one space`);
    return pair;
  });
  const pre = k.string('tokenizer.ggml.pre');
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: preTokenizerJSON(k, pre), post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    // llama.cpp looks a whole Llama 3 pre-token up before merging (as its tokenizer.json says).
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: pre === 'llama-bpe', vocab, merges },
  };
}

/**
 * The SentencePiece tokenizer ("llama") of tokenizer.ggml.* as the BPE tokenizer.json that tokenizes as
 * llama.cpp does with the file (llama-vocab.cpp llm_tokenizer_spm_session: merge the adjacent pair that
 * spells the highest-scoring token, the leftmost of equal ones; characters without a token become
 * their <0xNN> byte tokens). Its merges are what transformers' SentencePieceExtractor makes of a
 * SentencePiece vocabulary: for each token, highest score first (equal scores: lower id first), every
 * split into two tokens, ordered by the ids of the left then the right part. Every token but the UNUSED
 * holes is in the vocabulary; CONTROL, UNKNOWN and USER_DEFINED tokens are also added tokens, matched
 * in the text first. The text is escaped as llama.cpp does (llama_escape_whitespace, add_space_prefix):
 * spaces become "▁", and a "▁" goes before each text between special tokens unless add_space_prefix is
 * false; the decoder undoes that.
 */
function sentencePieceTokenizerJSON(k: Keys, tokens: readonly string[], types: readonly number[]): Record<string, unknown> {
  const scores = k.array('tokenizer.ggml.scores', 'number') as number[];
  if (scores.length !== tokens.length) k.fail('tokenizer.ggml.scores', `has ${scores.length} entries but tokenizer.ggml.tokens has ${tokens.length}`);
  if (k.has('tokenizer.ggml.remove_extra_whitespaces') && k.bool('tokenizer.ggml.remove_extra_whitespaces')) {
    k.fail('tokenizer.ggml.remove_extra_whitespaces', 'is true; gptune rebuilds SentencePiece tokenizers that keep every space');
  }
  const vocab: Record<string, number> = Object.create(null);
  const added: Array<Record<string, unknown>> = [];
  const known = Object.values(TOKEN_TYPE) as number[];
  tokens.forEach((token, id) => {
    if (!known.includes(types[id])) k.fail('tokenizer.ggml.token_type', `token ${id} has type ${types[id]}; expected one of ${known.join(', ')}`);
    if (types[id] === TOKEN_TYPE.UNUSED) return;
    vocab[token] = id;
    if (types[id] !== TOKEN_TYPE.NORMAL && types[id] !== TOKEN_TYPE.BYTE) added.push(addedToken(id, token, types[id] !== TOKEN_TYPE.USER_DEFINED));
  });
  const byScore = Object.values(vocab).sort((a, b) => scores[b] - scores[a] || a - b);
  const merges: Array<[string, string]> = [];
  for (const id of byScore) {
    const chars = Array.from(tokens[id]);
    const splits: Array<[string, string]> = [];
    for (let at = 1; at < chars.length; at++) {
      const left = chars.slice(0, at).join(''), right = chars.slice(at).join('');
      if (left in vocab && right in vocab) splits.push([left, right]);
    }
    splits.sort((a, b) => vocab[a[0]] - vocab[b[0]] || vocab[a[1]] - vocab[b[1]]);
    merges.push(...splits);
  }
  const prefix = k.has('tokenizer.ggml.add_space_prefix') ? k.bool('tokenizer.ggml.add_space_prefix') : true;
  const replace = (from: string, to: string) => ({ type: 'Replace', pattern: { String: from }, content: to });
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: METASPACE }] : []), replace(' ', METASPACE)] },
    pre_tokenizer: null, post_processor: null,
    decoder: { type: 'Sequence', decoders: [replace(METASPACE, ' '), { type: 'ByteFallback' }, { type: 'Fuse' }, ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
}

/**
 * The tokenizer of tokenizer.ggml.*, rebuilt as the tokenizer.json (and tokenizer_config.json) llama.cpp
 * follows: byte-level BPE ("gpt2") or SentencePiece ("llama"). Special token ids, add_bos_token and
 * add_eos_token default to llama.cpp's for the model (llama-vocab.cpp load) where the file has none.
 */
function ggufTokenizer(h: GGUFHeader, k: Keys, vocabSize: number): Tokenizer {
  const model = k.string('tokenizer.ggml.model');
  if (model !== 'gpt2' && model !== 'llama') k.fail('tokenizer.ggml.model', `is "${model}"; gptune rebuilds byte-level BPE ("gpt2") and SentencePiece ("llama") tokenizers from GGUF`);
  const { tokens, types } = ggufTokens(k, vocabSize);
  const tokenizerJSON = model === 'gpt2' ? byteLevelTokenizerJSON(k, tokens, types) : sentencePieceTokenizerJSON(k, tokens, types);
  const defaults: Record<string, number> = model === 'llama' ? { bos_token_id: 1, eos_token_id: 2, unknown_token_id: 0 } : {};
  const tokenText = (name: string): string | null => {
    const key = `tokenizer.ggml.${name}`;
    const id = k.has(key) ? k.integer(key) : defaults[name];
    if (id === undefined) return null;
    if (id >= tokens.length) k.fail(key, `is ${id} but there are ${tokens.length} tokens`);
    return tokens[id];
  };
  const flag = (name: string, byDefault: boolean) => (k.has(`tokenizer.ggml.${name}`) ? k.bool(`tokenizer.ggml.${name}`) : byDefault);
  const config: Record<string, unknown> = {
    eos_token: tokenText('eos_token_id'), bos_token: tokenText('bos_token_id'),
    unk_token: tokenText('unknown_token_id'), pad_token: tokenText('padding_token_id'),
    add_bos_token: flag('add_bos_token', model === 'llama'), add_eos_token: flag('add_eos_token', false),
    chat_template: k.has('tokenizer.chat_template') ? k.string('tokenizer.chat_template') : null,
  };
  return new HFTokenizer({ tokenizerJSON, jsonFile: `${h.file} (tokenizer.ggml.*)`, config, configFile: `${h.file} (tokenizer.ggml.*)`, name: `gguf:${h.file}` });
}

export interface GGUFModelOptions {
  device?: DeviceName;
  /**
   * Store the weights as the options say (lib/model/frozen_base.ts storageOptions) from their float32
   * values (quantized weights dequantized first). Without either, quantized weights run directly.
   */
  baseDtype?: BaseDtype;
  quantize?: QuantizeDtype;
  /** Every weight dequantized to float32 (what the file's values are, in gptune's float32 model). */
  dequantize?: boolean;
}

/**
 * The model config of a GGUF file. A GPT-2 file whose output.weight has another type than token_embd
 * (llama.cpp's quantizer gives the head Q6_K and the embedding Q4_K, say) holds two different
 * matrices: it is loaded with an untied head, so gptune computes what llama.cpp computes.
 */
function modelConfig(h: GGUFHeader, k: Keys): DecoderConfig {
  const config = parseModelConfig(configJSON(h, k), h.file);
  const head = h.tensors.get('output.weight'), embed = h.tensors.get('token_embd.weight');
  return config.modelType === 'gpt2' && head && embed && head.type !== embed.type ? { ...config, tiedHead: false } : config;
}

/** The config of a GGUF model file, from its header alone (for memory checks before loading). */
export function ggufModelConfig(file: string): DecoderConfig {
  const h = readGGUFHeader(file);
  return modelConfig(h, new Keys(h));
}

/** Loads a GGUF model file: the model (its quantized weights run directly, or as the options say) and its tokenizer. */
export function loadGGUFModel(file: string, options: GGUFModelOptions = {}): { model: Decoder; tokenizer: Tokenizer; config: DecoderConfig } {
  const h = readGGUFHeader(file);
  const k = new Keys(h);
  const config = modelConfig(h, k);
  const tokenizer = ggufTokenizer(h, k, config.vocabSize);
  const requantize = options.baseDtype !== undefined || options.quantize !== undefined;
  const storage = storageOptions(options.baseDtype, options.quantize);
  const formats = requantize || options.dequantize ? new Map<string, WeightFormat>() : ggmlFormats(config, h);
  const model = new Decoder(config, options.device ?? 'cpu', formats.size > 0 ? { formats } : storage);
  try {
    fillFromGGUF(model, h, formats);
  } catch (e) {
    model.free();
    throw e;
  }
  return { model, tokenizer, config };
}

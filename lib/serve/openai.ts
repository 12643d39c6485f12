/**
 * OpenAI's API as gptune serve speaks it: request bodies of /v1/chat/completions and /v1/completions
 * checked and turned into what the scheduler runs, and errors in OpenAI's shape
 * {"error": {"message", "type", "param", "code"}}. Field names, ranges and error codes follow
 * OpenAI's API reference; where OpenAI and vLLM differ gptune takes vLLM's (top_p in (0, 1], a
 * completion's logprobs up to 20, the request's `model` naming a LoRA adapter).
 */
import type { LoraAdapter } from '../lora/adapter';
import { encodeSequence, Tokenizer } from '../tokenizer';
import { ChatTemplateError, ChatTurn, encodeChat } from '../tokenizer/chat_template';
import type { Sampling } from './scheduler';

/** A request that gets an error response: the HTTP status and OpenAI's error object. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type: string, readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }

  get body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function invalidRequest(message: string, param: string | null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** What the server knows when it reads a request. */
export interface ServedModels {
  /** Model name -> the LoRA adapter it applies (null: the base). */
  adapters: ReadonlyMap<string, LoraAdapter | null>;
  tokenizer: Tokenizer;
  /** Positions per sequence: prompt + completion at most. */
  maxLength: number;
  vocabSize: number;
}

/** A checked generation request, chat or completion. */
export interface GenerationRequest {
  model: string;
  adapter: LoraAdapter | null;
  prompt: number[];
  maxTokens: number;
  sampling: Sampling;
  /** null: a random seed per choice. */
  seed: number | null;
  n: number;
  stops: string[];
  /** null: none; k: the sampled token's log-probability and the k most likely tokens'. */
  logprobs: number | null;
  stream: boolean;
  includeUsage: boolean;
  /** vLLM's ignore_eos: the end-of-sequence tokens do not end the completion (benchmarks, fixed lengths). */
  ignoreEos: boolean;
}

type Body = Record<string, unknown>;

const MAX_N = 64;
const MAX_TOP_LOGPROBS = 20;
const MAX_STOPS = 4;
/** OpenAI's default max_tokens for /v1/completions (chat: the rest of the context). */
const COMPLETION_MAX_TOKENS = 16;

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'string' ? JSON.stringify(value).slice(0, 60) : typeof value === 'object' ? 'an object' : String(value);
}

/** body[key] when present (not undefined or null). */
function given(body: Body, key: string): unknown {
  const v = body[key];
  return v === null ? undefined : v;
}

function numberField(body: Body, key: string, fallback: number, range: { min: number; max: number; minOpen?: boolean; integer?: boolean }): number {
  const v = given(body, key);
  if (v === undefined) return fallback;
  const inRange = typeof v === 'number' && Number.isFinite(v) && (range.minOpen ? v > range.min : v >= range.min) && v <= range.max;
  if (!inRange || (range.integer && !Number.isInteger(v))) {
    const what = range.integer ? 'an integer' : 'a number';
    const bounds = range.max === Infinity ? `>= ${range.min}` : `in ${range.minOpen ? '(' : '['}${range.min}, ${range.max}]`;
    throw invalidRequest(`'${key}' must be ${what} ${bounds} but is ${describe(v)}`, key);
  }
  return v as number;
}

function booleanField(body: Body, key: string): boolean {
  const v = given(body, key);
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw invalidRequest(`'${key}' must be true or false but is ${describe(v)}`, key);
  return v;
}

/** Options gptune does not implement are refused rather than silently ignored when they would change the output. */
function refuseUnsupported(body: Body, keys: ReadonlyArray<[string, (v: unknown) => boolean]>): void {
  for (const [key, harmless] of keys) {
    const v = given(body, key);
    if (v !== undefined && !harmless(v)) throw invalidRequest(`'${key}' is not supported by gptune serve`, key);
  }
}

const zero = (v: unknown) => v === 0;
const empty = (v: unknown) => typeof v === 'object' && v !== null && Object.keys(v).length === 0;

function modelField(body: Body, models: ServedModels): { model: string; adapter: LoraAdapter | null } {
  const model = body.model;
  if (typeof model !== 'string' || model === '') throw invalidRequest(`'model' must be the name of a served model (GET /v1/models) but is ${describe(model)}`, 'model');
  if (!models.adapters.has(model)) {
    throw new ApiError(404, `The model \`${model}\` does not exist; this server has: ${[...models.adapters.keys()].join(', ')}`, 'invalid_request_error', 'model', 'model_not_found');
  }
  return { model, adapter: models.adapters.get(model)! };
}

function stopField(body: Body): string[] {
  const v = given(body, 'stop');
  if (v === undefined) return [];
  const stops = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(stops) || stops.length > MAX_STOPS || !stops.every((s) => typeof s === 'string' && s !== '')) {
    throw invalidRequest(`'stop' must be a non-empty string or an array of up to ${MAX_STOPS} non-empty strings but is ${describe(v)}`, 'stop');
  }
  return stops as string[];
}

/** The fields chat and completions share, once the prompt is known. */
function common(body: Body, models: ServedModels, prompt: number[], promptParam: string, maxTokensKeys: string[], defaultMaxTokens: number, logprobs: number | null): Omit<GenerationRequest, 'model' | 'adapter'> {
  const room = models.maxLength - prompt.length;
  if (room < 1) {
    throw invalidRequest(`This model's maximum context length is ${models.maxLength} tokens; the ${promptParam} has ${prompt.length}, which leaves no room for a completion`, promptParam, 'context_length_exceeded');
  }
  const key = maxTokensKeys.find((k) => given(body, k) !== undefined) ?? maxTokensKeys[0];
  const maxTokens = numberField(body, key, Math.min(room, defaultMaxTokens), { min: 1, max: Infinity, integer: true });
  if (maxTokens > room) {
    throw invalidRequest(`This model's maximum context length is ${models.maxLength} tokens; you requested ${prompt.length + maxTokens} (${prompt.length} in the ${promptParam}, ${maxTokens} in the completion)`, key, 'context_length_exceeded');
  }
  const temperature = numberField(body, 'temperature', 1, { min: 0, max: 2 });
  const topP = numberField(body, 'top_p', 1, { min: 0, max: 1, minOpen: true });
  // top_k: vLLM's extension (-1 or 0: off).
  const topK = numberField(body, 'top_k', 0, { min: -1, max: Infinity, integer: true });
  const seedValue = given(body, 'seed');
  if (seedValue !== undefined && !(typeof seedValue === 'number' && Number.isSafeInteger(seedValue))) throw invalidRequest(`'seed' must be an integer but is ${describe(seedValue)}`, 'seed');
  const stream = booleanField(body, 'stream');
  const options = given(body, 'stream_options');
  if (options !== undefined && !stream) throw invalidRequest("'stream_options' is only allowed when 'stream' is true", 'stream_options');
  if (options !== undefined && (typeof options !== 'object' || Array.isArray(options))) throw invalidRequest(`'stream_options' must be an object but is ${describe(options)}`, 'stream_options');
  const includeUsage = options === undefined ? false : booleanField(options as Body, 'include_usage');
  refuseUnsupported(body, [['presence_penalty', zero], ['frequency_penalty', zero], ['logit_bias', empty], ['tools', (v) => Array.isArray(v) && v.length === 0], ['best_of', (v) => v === 1]]);
  return {
    prompt, maxTokens, seed: (seedValue as number | undefined) ?? null, stream, includeUsage, logprobs, ignoreEos: booleanField(body, 'ignore_eos'),
    sampling: { greedy: temperature === 0, temperature, topK: Math.max(0, topK), topP },
    n: numberField(body, 'n', 1, { min: 1, max: MAX_N, integer: true }),
    stops: stopField(body),
  };
}

function messageContent(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  // Content parts: only text parts, joined (as vLLM does for text-only models).
  if (Array.isArray(content) && content.every((p) => typeof p === 'object' && p !== null && (p as Body).type === 'text' && typeof (p as Body).text === 'string')) {
    return content.map((p) => (p as Body).text as string).join('\n');
  }
  throw invalidRequest(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`);
}

export function parseChatRequest(body: Body, models: ServedModels): GenerationRequest {
  const { model, adapter } = modelField(body, models);
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw invalidRequest(`'messages' must be a non-empty array but is ${describe(messages)}`, 'messages');
  const turns: ChatTurn[] = messages.map((m, i) => {
    if (typeof m !== 'object' || m === null || typeof (m as Body).role !== 'string') throw invalidRequest(`messages[${i}] must be an object with a string 'role'`, `messages[${i}]`);
    return { role: (m as Body).role as string, content: messageContent((m as Body).content, i) };
  });
  const { tokenizer } = models;
  if (tokenizer.chatTemplate === null) {
    throw invalidRequest(`the model \`${model}\` has no chat template (chat_template in tokenizer_config.json, or chat_template.jinja); use /v1/completions with a prompt`, 'messages', 'chat_template_missing');
  }
  let prompt: number[];
  try {
    prompt = encodeChat(tokenizer, turns, true);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw invalidRequest(e.message, 'messages');
    throw e;
  }
  const wantLogprobs = booleanField(body, 'logprobs');
  const top = given(body, 'top_logprobs');
  if (top !== undefined && !wantLogprobs) throw invalidRequest("'top_logprobs' needs 'logprobs': true", 'top_logprobs');
  const k = numberField(body, 'top_logprobs', 0, { min: 0, max: MAX_TOP_LOGPROBS, integer: true });
  return { model, adapter, ...common(body, models, prompt, 'messages', ['max_completion_tokens', 'max_tokens'], Infinity, wantLogprobs ? k : null) };
}

export function parseCompletionRequest(body: Body, models: ServedModels): GenerationRequest {
  const { model, adapter } = modelField(body, models);
  let p = body.prompt;
  // One prompt per request: a one-element list is that prompt.
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  let prompt: number[];
  if (typeof p === 'string') {
    prompt = encodeSequence(models.tokenizer, p);
  } else if (Array.isArray(p) && p.every((id) => typeof id === 'number')) {
    const bad = p.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= models.vocabSize);
    if (bad >= 0) throw invalidRequest(`prompt[${bad}] = ${p[bad]} is not a token id in [0, ${models.vocabSize})`, 'prompt');
    prompt = p as number[];
  } else {
    throw invalidRequest(`'prompt' must be a string or an array of token ids (one prompt per request) but is ${describe(p)}`, 'prompt');
  }
  if (prompt.length === 0) throw invalidRequest("'prompt' is empty", 'prompt');
  refuseUnsupported(body, [['echo', (v) => v === false], ['suffix', (v) => v === '']]);
  const logprobs = given(body, 'logprobs') === undefined ? null : numberField(body, 'logprobs', 0, { min: 0, max: MAX_TOP_LOGPROBS, integer: true });
  return { model, adapter, ...common(body, models, prompt, 'prompt', ['max_tokens'], COMPLETION_MAX_TOKENS, logprobs) };
}

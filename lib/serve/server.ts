/**
 * The HTTP side of gptune serve (Node's http module): OpenAI's routes over one Scheduler.
 *   GET  /v1/models              the base model under its name and each LoRA adapter by its name
 *   GET  /v1/models/{id}
 *   POST /v1/chat/completions    messages rendered with the model's chat template
 *   POST /v1/completions         a prompt string or token ids
 *   GET  /health                 200 while serving (no key needed)
 *   GET  /metrics                decode statistics in Prometheus' text format
 * Both generation routes answer at once (JSON) or stream Server-Sent Events: `data: {chunk}` lines
 * and `data: [DONE]`. Every request is checked before anything runs; a bad one gets OpenAI's error
 * object and never touches the others' sequences.
 */
import { randomBytes, createHash, timingSafeEqual } from 'crypto';
import * as http from 'http';
import type { AddressInfo } from 'net';
import type { LoraAdapter } from '../lora/adapter';
import type { Decoder } from '../model/decoder';
import type { Tokenizer } from '../tokenizer';
import { ApiError, GenerationRequest, invalidRequest, parseChatRequest, parseCompletionRequest, ServedModels } from './openai';
import { FinishReason, GeneratedToken, Scheduler, SequenceHandle } from './scheduler';
import { StopStringText } from './text';

export interface ServerOptions {
  model: Decoder;
  tokenizer: Tokenizer;
  /** The name the base model is served under (GET /v1/models, a request's `model`). */
  baseName: string;
  /** Adapter name -> an adapter loaded on `model`. */
  adapters: ReadonlyMap<string, LoraAdapter>;
  /** Sequences decoded together at most. */
  maxBatch: number;
  /** Positions per sequence (prompt + completion) at most. */
  maxLength: number;
  /** Tokens that end a completion (the tokenizer's and generation_config.json's end-of-sequence ids). */
  stopTokenIds: readonly number[];
  /** Requests must send `Authorization: Bearer <apiKey>`; null: no key. */
  apiKey: string | null;
  /** Request bodies above this many bytes get 413. */
  maxBodyBytes?: number;
}

const DEFAULT_MAX_BODY = 4 * 1024 * 1024;

type Kind = 'chat' | 'completion';

/** One choice of a generation request while it runs. */
interface Choice {
  index: number;
  text: StopStringText;
  tokens: number;
  logprobs: GeneratedToken[];
  /** Characters of the completion before each logprobs token (completions' text_offset). */
  offset: number;
  finish: FinishReason | null;
  handle: SequenceHandle | null;
}

export class OpenAIServer {
  private readonly server: http.Server;
  private readonly scheduler: Scheduler;
  private readonly models: ServedModels;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly inFlight = new Set<Promise<void>>();
  private closing = false;
  private readonly keyDigest: Buffer | null;

  constructor(private readonly options: ServerOptions) {
    const adapters = new Map<string, LoraAdapter | null>([[options.baseName, null]]);
    for (const [name, adapter] of options.adapters) adapters.set(name, adapter);
    this.models = { adapters, tokenizer: options.tokenizer, maxLength: options.maxLength, vocabSize: options.model.config.vocabSize };
    this.keyDigest = options.apiKey === null ? null : digest(options.apiKey);
    this.scheduler = new Scheduler(options.model, { maxBatch: options.maxBatch, maxLength: options.maxLength });
    this.server = http.createServer((req, res) => this.track(this.handle(req, res)));
    // Node's 5 s default closes idle keep-alive connections as clients reuse them (a pooled request
    // then fails with "other side closed"); 65 s outlasts the clients' own idle timeouts.
    this.server.keepAliveTimeout = 65_000;
    this.server.headersTimeout = 66_000;
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Decode statistics: steps, the rows they carried, prefills. */
  get stats(): Scheduler['stats'] {
    return this.scheduler.stats;
  }

  /**
   * Stops accepting connections and requests, lets the requests in flight finish for up to graceMs,
   * then closes every connection and frees the decode state. Resolves true when all finished in time.
   */
  async shutdown(graceMs: number): Promise<boolean> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.all([...this.inFlight]).then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
    ]);
    clearTimeout(timer);
    this.server.closeAllConnections();
    await closed;
    await this.scheduler.whenIdle();
    this.scheduler.free();
    return finished;
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      if (this.closing) {
        res.setHeader('Connection', 'close');
        throw new ApiError(503, 'the server is shutting down', 'server_error');
      }
      const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '');
      if (req.method === 'GET' && path === '/health') return sendJson(res, 200, { status: 'ok' });
      this.authorize(req);
      if (req.method === 'GET' && path === '/metrics') return this.sendMetrics(res);
      if (req.method === 'GET' && path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [...this.models.adapters.keys()].map((id) => this.modelCard(id)) });
      const card = /^\/v1\/models\/(.+)$/.exec(path);
      if (req.method === 'GET' && card) {
        const id = decodeURIComponent(card[1]);
        if (!this.models.adapters.has(id)) throw new ApiError(404, `The model \`${id}\` does not exist`, 'invalid_request_error', 'model', 'model_not_found');
        return sendJson(res, 200, this.modelCard(id));
      }
      if (req.method === 'POST' && path === '/v1/chat/completions') return await this.generate(parseChatRequest(await this.readBody(req), this.models), 'chat', res);
      if (req.method === 'POST' && path === '/v1/completions') return await this.generate(parseCompletionRequest(await this.readBody(req), this.models), 'completion', res);
      throw new ApiError(404, `Unknown request URL: ${req.method} ${path}`, 'invalid_request_error', null, 'unknown_url');
    } catch (e) {
      sendError(res, e);
    }
  }

  private authorize(req: http.IncomingMessage): void {
    if (this.keyDigest === null) return;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    // Digests compared in constant time: equal length whatever was sent.
    if (!m || !timingSafeEqual(digest(m[1]), this.keyDigest)) {
      throw new ApiError(401, m ? 'Incorrect API key provided.' : "You didn't provide an API key (Authorization: Bearer KEY).", 'invalid_request_error', null, 'invalid_api_key');
    }
  }

  /** Prometheus text: decode steps, the rows they carried (their ratio is the mean batch) and prefills. */
  private sendMetrics(res: http.ServerResponse): void {
    const s = this.scheduler.stats;
    const lines = [
      ['decode_steps_total', 'decode steps run', s.steps], ['decode_rows_total', 'sequence positions decoded by the steps', s.rows],
      ['prefills_total', 'prompts prefilled', s.prefills], ['sequences_pending', 'sequences queued or decoding', this.scheduler.pending],
    ].flatMap(([name, help, value]) => [`# HELP gptune_${name} ${help}`, `# TYPE gptune_${name} ${String(name).endsWith('_total') ? 'counter' : 'gauge'}`, `gptune_${name} ${value}`]);
    const text = lines.join('\n') + '\n';
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private modelCard(id: string) {
    const base = this.options.baseName;
    return { id, object: 'model', created: this.created, owned_by: 'gptune', root: base, parent: id === base ? null : base };
  }

  private readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
    const limit = this.options.maxBodyBytes ?? DEFAULT_MAX_BODY;
    const tooLarge = () => new ApiError(413, `the request body is larger than ${limit} bytes`, 'invalid_request_error', null, 'request_too_large');
    if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          reject(tooLarge());
          req.removeAllListeners('data');
          req.resume();
        } else chunks.push(chunk);
      });
      req.on('error', reject);
      req.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          reject(invalidRequest('We could not parse the JSON body of your request (it must be a JSON object).', null));
          return;
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) reject(invalidRequest('the request body must be a JSON object', null));
        else resolve(body as Record<string, unknown>);
      });
    });
  }

  /** Runs the request's n choices on the scheduler and answers at once or as a stream. */
  private generate(r: GenerationRequest, kind: Kind, res: http.ServerResponse): Promise<void> {
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000), object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const tokenizer = this.options.tokenizer;
    const choices: Choice[] = Array.from({ length: r.n }, (_, index) => ({ index, text: new StopStringText(tokenizer, r.stops), tokens: 0, logprobs: [], offset: 0, finish: null, handle: null }));
    const usage = () => {
      const completion = choices.reduce((n, c) => n + c.tokens, 0);
      return { prompt_tokens: r.prompt.length, completion_tokens: completion, total_tokens: r.prompt.length + completion };
    };
    const chunk = (c: Choice, piece: string, logprobs: GeneratedToken[] | null, finish: FinishReason | null, first = false) => {
      const choice = kind === 'chat'
        ? { index: c.index, delta: finish ? {} : first ? { role: 'assistant', content: piece } : { content: piece }, logprobs: logprobs && this.chatLogprobs(logprobs), finish_reason: finish }
        : { index: c.index, text: piece, logprobs: logprobs && this.completionLogprobs(logprobs, c), finish_reason: finish };
      sse(res, { id, object, created, model: r.model, choices: [choice], ...(r.includeUsage ? { usage: null } : {}) });
    };
    if (r.stream) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
      if (kind === 'chat') for (const c of choices) chunk(c, '', null, null, true);
    }
    const stopTokenIds = new Set(r.ignoreEos ? [] : this.options.stopTokenIds);
    return new Promise<void>((resolve) => {
      let open = r.n, ended = false;
      const end = (error: Error | null) => {
        if (ended) return;
        ended = true;
        for (const c of choices) c.handle?.cancel();
        if (error) sendError(res, error);
        else if (r.stream) {
          if (r.includeUsage) sse(res, { id, object, created, model: r.model, choices: [], usage: usage() });
          res.end('data: [DONE]\n\n');
        } else {
          sendJson(res, 200, {
            id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model: r.model,
            choices: choices.map((c) => (kind === 'chat'
              ? { index: c.index, message: { role: 'assistant', content: c.text.text }, logprobs: r.logprobs === null ? null : this.chatLogprobs(c.logprobs), finish_reason: c.finish }
              : { index: c.index, text: c.text.text, logprobs: r.logprobs === null ? null : this.completionLogprobs(c.logprobs, { offset: 0 }), finish_reason: c.finish })),
            usage: usage(),
          });
        }
        resolve();
      };
      const finish = (c: Choice, reason: FinishReason) => {
        if (c.finish || ended) return;
        c.finish = reason;
        const rest = c.text.finish();
        if (r.stream) {
          if (rest !== '') chunk(c, rest, null, null);
          chunk(c, '', null, reason);
        }
        if (--open === 0) end(null);
      };
      // A client that goes away ends its sequences (their slots go to others); 'close' also follows our own end().
      res.on('close', () => {
        if (ended) return;
        ended = true;
        for (const c of choices) c.handle?.cancel();
        resolve();
      });
      for (const c of choices) {
        const seed = r.seed === null ? randomBytes(4).readUInt32LE(0) : r.seed + c.index;
        c.handle = this.scheduler.submit(
          { prompt: r.prompt, adapter: r.adapter, maxTokens: r.maxTokens, sampling: r.sampling, seed, stopTokenIds, logprobs: r.logprobs },
          {
            onToken: (t) => {
              c.tokens++;
              const piece = c.text.push(t.token);
              if (r.logprobs !== null) c.logprobs.push(t);
              if (r.stream && (piece !== '' || r.logprobs !== null)) chunk(c, piece, r.logprobs === null ? null : [t], null);
              if (c.text.stopped) {
                c.handle!.cancel();
                finish(c, 'stop');
              }
            },
            onFinish: (reason) => finish(c, reason),
            onError: (e) => end(e),
          },
        );
      }
    });
  }

  private tokenText(token: number): string {
    return this.options.tokenizer.decode([token]);
  }

  private chatLogprobs(tokens: readonly GeneratedToken[]) {
    const entry = (token: number, logprob: number) => {
      const text = this.tokenText(token);
      return { token: text, logprob, bytes: [...Buffer.from(text, 'utf8')] };
    };
    return { content: tokens.map((t) => ({ ...entry(t.token, t.logprob), top_logprobs: t.top.map((x) => entry(x.token, x.logprob)) })) };
  }

  /** OpenAI's legacy logprobs object; `at` carries the text offset across a stream's chunks. */
  private completionLogprobs(tokens: readonly GeneratedToken[], at: { offset: number }) {
    const text = tokens.map((t) => this.tokenText(t.token));
    const textOffset = text.map((s) => {
      const o = at.offset;
      at.offset += s.length;
      return o;
    });
    return {
      tokens: text,
      token_logprobs: tokens.map((t) => t.logprob),
      // Keyed by text: of tokens that decode alike (U+FFFD) the most likely one is kept.
      top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((x) => [this.tokenText(x.token), x.logprob]).reverse())),
      text_offset: textOffset,
    };
  }
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

function sse(res: http.ServerResponse, data: unknown): void {
  res.write(`data: ${JSON.stringify(data)}\n\n`);
}

/** An error as OpenAI's error object: the status and body of an ApiError, else a 500. Mid-stream, as an SSE event. */
function sendError(res: http.ServerResponse, e: unknown): void {
  const error = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error).message ?? String(e)}`, 'server_error');
  if (error.status === 500) process.stderr.write(`gptune serve: ${(e as Error).stack ?? String(e)}\n`);
  if (res.writableEnded || res.destroyed) return;
  if (res.headersSent) {
    sse(res, error.body);
    res.end('data: [DONE]\n\n');
  } else {
    sendJson(res, error.status, error.body);
  }
}

/**
 * A model's chat template (Jinja, from tokenizer_config.json or chat_template.jinja) rendered with
 * @huggingface/jinja, the JavaScript Jinja that transformers.js uses for the same purpose. The context
 * is what transformers' apply_chat_template passes: messages, add_generation_prompt, tools and
 * documents (None), and the special tokens (bos_token, eos_token, unk_token, pad_token); the library
 * supplies raise_exception and strftime_now and, like transformers, renders with trim_blocks and
 * lstrip_blocks.
 */
import { Template } from '@huggingface/jinja';
import { FileFormatError } from '../errors';
import type { Tokenizer } from './types';

export interface ChatTurn {
  role: string;
  content: string;
}

/** The template raised an error (raise_exception, or a Jinja runtime error) for these messages. */
export class ChatTemplateError extends Error {}

export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string, private readonly tokenizer: Pick<Tokenizer, 'specialTokenText' | 'name'>) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new FileFormatError(`${tokenizer.name}: chat_template does not parse: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  /** The conversation as text; with addGenerationPrompt, followed by what opens the assistant's reply. */
  render(messages: readonly ChatTurn[], addGenerationPrompt: boolean): string {
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: addGenerationPrompt,
        tools: null,
        documents: null,
        ...this.tokenizer.specialTokenText,
      });
    } catch (err) {
      throw new ChatTemplateError(`${this.tokenizer.name}: chat_template: ${(err as Error).message.split('\n')[0]}`);
    }
  }
}

const parsed = new WeakMap<object, ChatTemplate>();

/** The tokenizer's chat template, parsed once, or null when it has none. */
export function chatTemplateOf(tokenizer: Tokenizer): ChatTemplate | null {
  if (tokenizer.chatTemplate === null) return null;
  let template = parsed.get(tokenizer);
  if (template === undefined) parsed.set(tokenizer, (template = new ChatTemplate(tokenizer.chatTemplate, tokenizer)));
  return template;
}

/**
 * A conversation as the model reads it: rendered by the tokenizer's chat template and encoded with
 * nothing added (the template writes BOS itself where the model expects one, as transformers'
 * apply_chat_template(tokenize=True) does).
 */
export function encodeChat(tokenizer: Tokenizer, messages: readonly ChatTurn[], addGenerationPrompt: boolean): number[] {
  const template = chatTemplateOf(tokenizer);
  if (template === null) throw new ChatTemplateError(`${tokenizer.name}: the tokenizer has no chat template (chat_template in tokenizer_config.json, or chat_template.jinja)`);
  return tokenizer.encode(template.render(messages, addGenerationPrompt));
}

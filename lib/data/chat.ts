/**
 * Chat records through the model's own chat template (tokenizer_config.json's chat_template or
 * chat_template.jinja), with the loss on the assistant turns only.
 *
 * Where an assistant turn is, is found by rendering, not by looking for markers: for assistant message
 * i, the template renders messages[0..i) with the generation prompt (everything the model is given
 * before it answers) and messages[0..i] without it (the conversation once it has answered); the turn
 * is the text between the two, e.g. "Four.<|im_end|>\n" in ChatML. Both renderings must be prefixes
 * of the whole conversation's rendering, or the template is one gptune cannot cut (an error).
 *
 * Token boundaries: the whole conversation is encoded once (add_special_tokens off: the template
 * writes BOS itself where the model wants it). A character offset becomes a token index by encoding
 * the text before it: the tokens the two encodings share from the start lie before the offset. The
 * turn's first token is the first one not shared with the encoding of the text before the turn (a
 * token that straddles the start is trained), its end the last one shared with the encoding of the
 * text through the turn (a token that straddles the end is not). The trained tokens then stop after
 * the first stop token in the turn (generation_config.json's eos ids and eos_token): the model must
 * produce the content and the token that ends its turn, not the template's text after it (ChatML's
 * "\n"), which generation never reaches.
 */
import type { Tokenizer } from '../tokenizer';
import { ChatTemplate, ChatTemplateError } from '../tokenizer/chat_template';
import type { TokenizedExample } from './examples';
import type { ChatMessage } from './records';

/** [first, end) character offsets of each trained assistant turn in the rendering of all messages. */
export function assistantTurnSpans(messages: readonly ChatMessage[], template: ChatTemplate): { text: string; spans: Array<[number, number]> } {
  const text = template.render(messages, false);
  const spans: Array<[number, number]> = [];
  messages.forEach((m, i) => {
    if (m.role !== 'assistant' || m.weight === 0) return;
    const before = template.render(messages.slice(0, i), true);
    const through = template.render(messages.slice(0, i + 1), false);
    if (!through.startsWith(before) || !text.startsWith(through)) {
      throw new ChatTemplateError(`the chat template renders messages 1..${i} with the generation prompt as text that does not continue into message ${i + 1} (assistant) and the rest of the conversation, so the assistant turn cannot be cut out`);
    }
    spans.push([before.length, through.length]);
  });
  return { text, spans };
}

/** How many leading tokens of `ids` (the encoding of `text`) the encoding of text[0, offset) shares. */
function sharedPrefixTokens(tokenizer: Tokenizer, text: string, offset: number, ids: readonly number[]): number {
  const prefix = tokenizer.encode(text.slice(0, offset));
  let k = 0;
  while (k < prefix.length && k < ids.length && prefix[k] === ids[k]) k++;
  return k;
}

/** The conversation's tokens, trained on the assistant turns (everything with trainOnPrompt). */
export function tokenizeChat(messages: readonly ChatMessage[], tokenizer: Tokenizer, template: ChatTemplate, trainOnPrompt: boolean): TokenizedExample {
  const { text, spans } = assistantTurnSpans(messages, template);
  const ids = tokenizer.encode(text);
  const trained = new Uint8Array(ids.length).fill(trainOnPrompt ? 1 : 0);
  for (const [start, end] of spans) {
    const first = sharedPrefixTokens(tokenizer, text, start, ids);
    const last = sharedPrefixTokens(tokenizer, text, end, ids);
    let stop = last;
    for (let k = first; k < last; k++) {
      if (tokenizer.stopTokenIds.includes(ids[k])) {
        stop = k + 1;
        break;
      }
    }
    trained.fill(1, first, stop);
  }
  return { tokens: Int32Array.from(ids), trained };
}

/**
 * Text from token ids as they are generated. A token can end in the middle of a character (byte-level
 * tokens and <0xNN> byte-fallback tokens hold single bytes of a multi-byte UTF-8 sequence), and some
 * decoders depend on the tokens before (SentencePiece-style decoding strips the first space of the
 * text), so each piece is the growth of the decoded text of all ids so far, held back while that
 * text ends in U+FFFD (an incomplete character that the next token may complete).
 */
import type { Tokenizer } from './types';

const REPLACEMENT_CHARACTER = '\uFFFD';

export class DecodeStream {
  private readonly ids: number[] = [];
  /** Length of the text returned so far. */
  private emitted = 0;

  constructor(private readonly tokenizer: Pick<Tokenizer, 'decode'>) {}

  /** Adds one token; returns the new text it completes ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids);
    if (text.endsWith(REPLACEMENT_CHARACTER)) return '';
    return this.advance(text);
  }

  /** The rest of the text (an incomplete character at the end comes out as U+FFFD). */
  flush(): string {
    return this.advance(this.tokenizer.decode(this.ids));
  }

  /** For the decoders gptune reads, decoding more tokens only appends to complete text (the tests check it). */
  private advance(text: string): string {
    const piece = text.slice(this.emitted);
    this.emitted = text.length;
    return piece;
  }
}

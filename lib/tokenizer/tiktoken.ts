/**
 * The default tokenizer: GPT-2's published encoding as shipped by js-tiktoken (the same 50257
 * tokens as Hugging Face's gpt2 vocab.json/merges.txt), used when a model folder has no tokenizer
 * files of its own.
 */
import { getEncoding, type Tiktoken } from 'js-tiktoken';
import { END_OF_TEXT, type Tokenizer } from './types';

const GPT2_VOCAB_SIZE = 50257;
const GPT2_END_OF_TEXT_ID = 50256;
/** Id of "!" in GPT-2, a one-byte ASCII token; see decode(). */
const EXCLAMATION_MARK_ID = 0;

export class TiktokenGPT2Tokenizer implements Tokenizer {
  readonly vocabSize = GPT2_VOCAB_SIZE;
  readonly eosTokenId = GPT2_END_OF_TEXT_ID;
  readonly name = 'gpt2 (js-tiktoken)';
  private readonly encoding: Tiktoken = getEncoding('gpt2');

  encode(text: string): number[] {
    // Allow <|endoftext|> in the text: documents in training data are separated by it.
    return this.encoding.encode(text, [END_OF_TEXT]);
  }

  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= GPT2_VOCAB_SIZE) {
        throw new Error(`${this.name}: cannot decode token id ${id}; expected an integer in [0, ${GPT2_VOCAB_SIZE - 1}]`);
      }
    }
    // js-tiktoken decodes with a default TextDecoder, which drops a leading byte-order mark; a
    // leading "!" keeps a BOM that starts the text, and is removed again.
    return this.encoding.decode([EXCLAMATION_MARK_ID, ...ids]).slice(1);
  }
}

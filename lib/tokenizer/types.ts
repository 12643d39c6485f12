/** What the data pipeline, the CLI and sampling need from a tokenizer. */
export interface Tokenizer {
  /** Text -> token ids. The literal text "<|endoftext|>" becomes the single id eosTokenId. */
  encode(text: string): number[];
  /** Token ids -> text. Byte sequences that are not valid UTF-8 decode to U+FFFD. */
  decode(ids: number[]): string;
  /** One more than the largest token id; the model's vocab_size must be at least this. */
  vocabSize: number;
  /** Id of <|endoftext|>, the document separator (50256 for GPT-2). */
  eosTokenId: number;
  /** Where the tokenizer came from, for logs: "gpt2 (js-tiktoken)" or "bpe:<folder>". */
  name: string;
}

/** GPT-2's end-of-text marker, the only special token in its vocabulary. */
export const END_OF_TEXT = '<|endoftext|>';

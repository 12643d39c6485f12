/** What the data pipeline, the CLI and sampling need from a tokenizer. */
export interface Tokenizer {
  /**
   * Text -> token ids. Special tokens written in the text ("<|endoftext|>", "<|im_end|>", "<s>")
   * become their single ids. Nothing is added around the text: see bosTokenId/addBosToken and
   * encodeSequence() for what transformers' tokenizer(text) adds.
   */
  encode(text: string): number[];
  /** Token ids -> text, special tokens written out. Byte sequences that are not valid UTF-8 decode to U+FFFD. */
  decode(ids: number[]): string;
  /** One more than the largest token id; the model's vocab_size must be at least this. */
  vocabSize: number;
  /** The end-of-sequence token: the document separator and the default stop token (50256 for GPT-2). */
  eosTokenId: number;
  /**
   * Tokens that end a generated reply: generation_config.json's eos_token_id (one or a list) and
   * eosTokenId. Generation stops at them, and chat training trains each assistant turn up to the first.
   */
  stopTokenIds: readonly number[];
  /** The beginning-of-sequence token, or null when the tokenizer has none (Qwen). */
  bosTokenId: number | null;
  /** Whether a whole sequence starts with bosTokenId (Llama, Mistral: true; GPT-2, Qwen: false). */
  addBosToken: boolean;
  /** The model's chat template (Jinja source), or null when it has none. */
  chatTemplate: string | null;
  /** The special tokens' text, as a chat template sees them (bos_token, eos_token, ...); null when absent. */
  specialTokenText: SpecialTokenText;
  /**
   * Whether a text cut before a whitespace character that follows a non-whitespace one encodes, piece
   * by piece, to the ids of the whole (lib/data/tokens.ts streams long files so): true for GPT-2's
   * pre-tokenizer. Others (Llama 3's regex joins punctuation to the newlines after it; SentencePiece
   * puts "▁" before each text) are given whole documents.
   */
  encodesInPieces: boolean;
  /** Where the tokenizer came from, for logs: "gpt2", "bpe:<folder>" or "tokenizer.json:<folder>". */
  name: string;
}

export interface SpecialTokenText {
  bos_token: string | null;
  eos_token: string;
  unk_token: string | null;
  pad_token: string | null;
}

/** GPT-2's end-of-text marker, the only special token in its vocabulary. */
export const END_OF_TEXT = '<|endoftext|>';

/** GPT-2-style tokenizers (vocab.json + merges.txt): <|endoftext|> is every special token, no BOS is added, no chat template, GPT-2's pre-tokenizer. */
export function gpt2SpecialTokens(eosTokenId: number): Pick<Tokenizer, 'stopTokenIds' | 'bosTokenId' | 'addBosToken' | 'chatTemplate' | 'specialTokenText' | 'encodesInPieces'> {
  return {
    encodesInPieces: true,
    stopTokenIds: [eosTokenId],
    bosTokenId: eosTokenId,
    addBosToken: false,
    chatTemplate: null,
    specialTokenText: { bos_token: END_OF_TEXT, eos_token: END_OF_TEXT, unk_token: END_OF_TEXT, pad_token: null },
  };
}

/** The ids transformers' tokenizer(text) gives: BOS first when the tokenizer adds one. */
export function encodeSequence(tokenizer: Tokenizer, text: string): number[] {
  const ids = tokenizer.encode(text);
  return tokenizer.addBosToken && tokenizer.bosTokenId !== null ? [tokenizer.bosTokenId, ...ids] : ids;
}

"""GPT-2 style byte-level BPE: a tiny trainer, an encoder/decoder, and writers for GPT-2's vocab.json
and merges.txt formats. Used by scripts/make_fixtures.py to build the tiny model's tokenizer and the
tokenizer test cases that gptune's TypeScript tokenizer is checked against.

Conventions reproduced from GPT-2 (facts of the format):
  * every byte is first mapped to a printable unicode character (byte_to_unicode below), so tokens are
    strings and a space becomes 'Ġ', a newline 'Ċ';
  * text is pre-split with GPT-2's regex; merges never cross a piece boundary;
  * inside a piece, repeatedly merge the adjacent pair with the lowest merge rank (all non-overlapping
    occurrences, left to right) until no adjacent pair has a rank;
  * ids: the 256 single-byte tokens first (in byte_to_unicode's order), then one id per merge in
    merge order, then '<|endoftext|>' last. The encoder does NOT treat '<|endoftext|>' in the text
    specially (like GPT-2's encoder.py and tiktoken's encode_ordinary): it is encoded as plain text.
"""
import json
from collections import Counter
from typing import Dict, List, Tuple

import regex

GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPLIT = regex.compile(GPT2_SPLIT_PATTERN)
END_OF_TEXT = "<|endoftext|>"


def byte_order_and_unicode() -> Tuple[List[int], Dict[int, str]]:
    """GPT-2's byte->character table. Bytes that are already printable latin-1 characters keep their
    own code point; the other 68 (controls, space, 0x7f-0xa0, 0xad) get 256, 257, ... in byte order.
    Returns (bytes in GPT-2's id order, byte -> character)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    table = {b: chr(b) for b in printable}
    order = list(printable)
    next_code = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(next_code)
            next_code += 1
            order.append(b)
    return order, table


BYTE_ORDER, BYTE_TO_CHAR = byte_order_and_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def pieces(text: str) -> List[str]:
    """Pre-tokenised pieces of text, each already mapped to GPT-2's byte characters."""
    return ["".join(BYTE_TO_CHAR[b] for b in p.encode("utf-8")) for p in SPLIT.findall(text)]


def apply_merge(symbols: Tuple[str, ...], first: str, second: str) -> Tuple[str, ...]:
    out = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
            out.append(first + second)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def train_merges(words: Counter, alphabet: set, n_merges: int) -> List[Tuple[str, str]]:
    """Greedy BPE training on words (tuples of symbols -> frequency): merge the most frequent adjacent
    pair (weighted by word frequency); ties go to the lexicographically smallest pair so the result is
    deterministic. A pair whose concatenation is already a token (in `alphabet` or merged before) is
    skipped so every vocabulary string stays unique."""
    vocab = set(alphabet)
    merges: List[Tuple[str, str]] = []
    while len(merges) < n_merges:
        pair_counts: Counter = Counter()
        for word, freq in words.items():
            for a, b in zip(word, word[1:]):
                pair_counts[(a, b)] += freq
        candidates = [(-count, pair) for pair, count in pair_counts.items() if pair[0] + pair[1] not in vocab]
        if not candidates:
            break
        _, best = min(candidates)
        merges.append(best)
        vocab.add(best[0] + best[1])
        merged: Counter = Counter()
        for word, freq in words.items():
            merged[apply_merge(word, *best)] += freq
        words = merged
    return merges


def train_bpe(text: str, n_merges: int) -> List[Tuple[str, str]]:
    """Byte-level BPE training on GPT-2's pre-tokenised pieces of text (see train_merges)."""
    return train_merges(Counter(tuple(p) for p in pieces(text)), set(BYTE_TO_CHAR.values()), n_merges)


class GPT2Tokenizer:
    def __init__(self, merges: List[Tuple[str, str]]):
        self.merges = list(merges)
        self.rank = {pair: i for i, pair in enumerate(self.merges)}
        tokens = [BYTE_TO_CHAR[b] for b in BYTE_ORDER] + [a + b for a, b in self.merges] + [END_OF_TEXT]
        self.encoder = {t: i for i, t in enumerate(tokens)}
        if len(self.encoder) != len(tokens):
            raise ValueError("duplicate token strings in vocabulary")
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.eot_id = self.encoder[END_OF_TEXT]

    def bpe(self, piece: str) -> Tuple[str, ...]:
        symbols = tuple(piece)
        while len(symbols) > 1:
            ranked = [(self.rank[p], p) for p in zip(symbols, symbols[1:]) if p in self.rank]
            if not ranked:
                break
            _, (first, second) = min(ranked)
            symbols = apply_merge(symbols, first, second)
        return symbols

    def encode(self, text: str) -> List[int]:
        return [self.encoder[s] for p in pieces(text) for s in self.bpe(p)]

    def decode(self, ids: List[int]) -> str:
        chars = "".join(self.decoder[i] for i in ids)
        return bytes(CHAR_TO_BYTE[c] for c in chars).decode("utf-8", errors="replace")

    def write(self, vocab_path: str, merges_path: str) -> None:
        # vocab.json: {"token": id, ...} as one JSON object (UTF-8). merges.txt: '#version: 0.2' then
        # one 'first second' line per merge in rank order, each line ending in '\n'.
        with open(vocab_path, "w", encoding="utf-8") as f:
            json.dump(self.encoder, f, ensure_ascii=False, separators=(",", ":"))
        with open(merges_path, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write(f"{a} {b}\n")

    @staticmethod
    def read(vocab_path: str, merges_path: str) -> "GPT2Tokenizer":
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if not lines[0].startswith("#version"):
            raise ValueError(f"{merges_path}: expected '#version: 0.2' first line, got {lines[0]!r}")
        merges = [tuple(line.split(" ")) for line in lines[1:] if line]
        tok = GPT2Tokenizer(merges)
        with open(vocab_path, encoding="utf-8") as f:
            if json.load(f) != tok.encoder:
                raise ValueError(f"{vocab_path} does not match the vocabulary implied by {merges_path}")
        return tok

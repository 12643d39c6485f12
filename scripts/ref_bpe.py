"""Reference BPE tokenizers written from the algorithms' definitions, and the tokenizer.json fixtures
they are checked against (test/fixtures/tokenizers/<name>/).

gptune reads Hugging Face tokenizer.json files with @huggingface/tokenizers; the ids its tests expect
come from this file, never from that library. Run with Debian's python (its `regex` module has \\p{L}):

    /usr/bin/python3 scripts/ref_bpe.py        # rewrites test/fixtures/tokenizers/ (about 10 s)

The definitions implemented here (facts of the formats, as HF tokenizers applies them):

  * added tokens are split out of the text first, leftmost match first and the longest at a position;
    the text between them is tokenized on its own (normalizer and pre-tokenizer apply per piece);
  * byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM2): a piece is cut into words by a regex (GPT-2's, or
    Llama 3's through a Split pre-tokenizer with behavior Isolated: matches and the gaps between them
    are words; SmolLM2 first isolates every numeric character, Unicode categories Nd, Nl and No);
    each word's UTF-8 bytes become characters by GPT-2's byte-to-unicode table; with ignore_merges a
    word that is itself a token is that token; otherwise its characters are merged, repeatedly taking
    the adjacent pair with the lowest merge rank (leftmost occurrence first) until none is a merge;
  * SentencePiece-style BPE (Llama 2, TinyLlama: normalizer Prepend("▁") + Replace(" ", "▁");
    Mistral: Metaspace pre-tokenizer, prepend_scheme "first", split false): spaces become "▁" and a
    "▁" is put in front (Prepend: of every piece; Metaspace "first": only of the text's first piece,
    and not if it starts with "▁" already); the word's characters (code points) are merged by rank
    as above; a character that is not in the vocabulary becomes one <0xNN> token per UTF-8 byte
    (byte fallback) and takes part in no merge;
  * decoding: byte-level maps characters back to bytes (added tokens are written as they are);
    SentencePiece-style replaces "▁" by " ", turns runs of <0xNN> tokens into their bytes, and
    strips one leading space from the whole text.
"""
import json
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import regex

from gpt2_bpe import BYTE_ORDER, BYTE_TO_CHAR, CHAR_TO_BYTE, GPT2_SPLIT_PATTERN, train_merges

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "test", "fixtures", "tokenizers")

# Llama 3's (and tiktoken's cl100k's) split pattern, as Llama 3's tokenizer.json writes it.
LLAMA3_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
METASPACE = "\u2581"
DIGIT = regex.compile(r"\p{N}")


def split_added(text: str, added: Sequence[str]) -> List[Tuple[str, bool]]:
    """(piece, is_added_token) in order: at each position the longest added token starting there, else text."""
    out: List[Tuple[str, bool]] = []
    start = i = 0
    while i < len(text):
        match = max((t for t in added if text.startswith(t, i)), key=len, default=None)
        if match is None:
            i += 1
            continue
        if i > start:
            out.append((text[start:i], False))
        out.append((match, True))
        i += len(match)
        start = i
    if start < len(text):
        out.append((text[start:], False))
    return out


def regex_words(pattern: "regex.Pattern", text: str) -> List[str]:
    """Split with behavior Isolated: every match is a word, and so is every non-empty gap between matches."""
    words, at = [], 0
    for m in pattern.finditer(text):
        if m.start() > at:
            words.append(text[at:m.start()])
        if m.group(0):
            words.append(m.group(0))
        at = m.end()
    if at < len(text):
        words.append(text[at:])
    return words


def merge_by_rank(symbols: List[Optional[str]], rank: Dict[Tuple[str, str], int]) -> List[Optional[str]]:
    """BPE: merge the lowest-ranked adjacent pair (leftmost first) until no pair is a merge. None
    stands for a character with no token (it merges with nothing)."""
    symbols = list(symbols)
    while True:
        best = None
        for i in range(len(symbols) - 1):
            a, b = symbols[i], symbols[i + 1]
            if a is None or b is None or (a, b) not in rank:
                continue
            if best is None or rank[(a, b)] < rank[best[1]]:
                best = (i, (a, b))
        if best is None:
            return symbols
        i, (a, b) = best
        symbols[i:i + 2] = [a + b]


class ReferenceBPE:
    """One tokenizer: vocabulary, merges, added tokens and the pre-tokenization style."""

    def __init__(self, style: str, vocab: Dict[str, int], merges: List[Tuple[str, str]], added: Dict[str, int],
                 ignore_merges: bool = False):
        assert style in ("gpt2", "gpt2_digits", "llama3", "sp_prepend", "sp_metaspace_first")
        self.style = style
        self.vocab = dict(vocab)
        self.rank = {pair: r for r, pair in enumerate(merges)}
        self.added = dict(added)
        self.ignore_merges = ignore_merges
        self.id_to_token = {i: t for t, i in {**self.vocab, **self.added}.items()}
        self.pattern = regex.compile(LLAMA3_SPLIT_PATTERN if style == "llama3" else GPT2_SPLIT_PATTERN)

    def encode(self, text: str) -> List[int]:
        ids: List[int] = []
        for index, (piece, is_added) in enumerate(split_added(text, list(self.added))):
            if is_added:
                ids.append(self.added[piece])
            elif self.style == "gpt2_digits":
                # SmolLM2's Digits(individual_digits) pre-tokenizer first: every numeric character
                # (Unicode categories Nd, Nl, No, as Rust's char::is_numeric) is a piece of its own.
                for part in regex_words(DIGIT, piece):
                    ids.extend(self._encode_bytelevel(part))
            elif self.style in ("gpt2", "llama3"):
                ids.extend(self._encode_bytelevel(piece))
            else:
                ids.extend(self._encode_sentencepiece(piece, index))
        return ids

    def _encode_bytelevel(self, piece: str) -> List[int]:
        ids = []
        for word in regex_words(self.pattern, piece):
            chars = "".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
            if self.ignore_merges and chars in self.vocab:
                ids.append(self.vocab[chars])
                continue
            ids.extend(self.vocab[s] for s in merge_by_rank(list(chars), self.rank))
        return ids

    def _encode_sentencepiece(self, piece: str, index: int) -> List[int]:
        word = piece.replace(" ", METASPACE)
        if self.style == "sp_prepend" or (index == 0 and not word.startswith(METASPACE)):
            word = METASPACE + word
        ids = []
        chars = list(word)
        symbols = merge_by_rank([c if c in self.vocab else None for c in chars], self.rank)
        # A merged symbol covers len(symbol) characters, a None exactly one: walk both to find each None's character.
        at = 0
        for s in symbols:
            if s is None:
                ids.extend(self.vocab["<0x%02X>" % b] for b in chars[at].encode("utf-8"))
                at += 1
            else:
                ids.append(self.vocab[s])
                at += len(s)
        return ids

    def decode(self, ids: List[int]) -> str:
        if self.style in ("gpt2", "gpt2_digits", "llama3"):
            out, run = [], bytearray()
            for i in ids:
                token = self.id_to_token[i]
                if token in self.added:
                    out.append(run.decode("utf-8", errors="replace"))
                    run = bytearray()
                    out.append(token)
                else:
                    run.extend(CHAR_TO_BYTE[c] for c in token)
            out.append(run.decode("utf-8", errors="replace"))
            return "".join(out)
        def bytes_text(run: bytearray) -> str:
            # HF's ByteFallback decoder: the run's text, or one U+FFFD per byte token if it is not UTF-8.
            try:
                return run.decode("utf-8")
            except UnicodeDecodeError:
                return "\ufffd" * len(run)

        out, run = [], bytearray()
        for i in ids:
            token = self.id_to_token[i]
            if regex.fullmatch(r"<0x[0-9A-F]{2}>", token):
                run.append(int(token[3:5], 16))
                continue
            if run:
                out.append(bytes_text(run))
                run = bytearray()
            out.append(token.replace(METASPACE, " "))
        if run:
            out.append(bytes_text(run))
        text = "".join(out)
        return text[1:] if text.startswith(" ") else text


# ---------------------------------------------------------------------------------------------
# Fixtures: small tokenizers trained on scripts/bpe-train-text.txt, their tokenizer.json files and
# the reference ids of fixed strings.

def texts_for(specials: List[str]) -> List[str]:
    """The fixed strings, with this tokenizer's special tokens written inside some of them."""
    a, b = specials[0], specials[1]
    return [
        "Hello world",
        "Hello, world! How are you today?",
        "I'll say it's done; we've seen they're fine. WE'LL SEE, it'S OK",
        "1234567890 and 3.14159, the 42nd of 7 days",
        "a   b\t\tc\n\n\nd  ",
        "   leading spaces",
        "line one\r\nline two\n",
        "café naïve résumé Ünïcödé",
        "日本語のテキスト、中文字符",
        "Emoji: 👋🏽 family 👨‍👩‍👧 🚀!",
        "Ελληνικά и русский текст",
        f"Hi{a}there {b} end",
        f"{a}{b}{a}",
        f"partial {a[:-1]} is text",
        "",
        "!!!???...,,, ---",
        "abc123def 0042 x2y",
        "\u0085next line\u00a0nbsp\u2028sep\ufeffbom",
        "tab\tseparated\tvalues\n\tindented",
        "The quick brown fox jumps over the lazy dog.",
        "  ",
        "\n",
        "control \x00\x01\x7f chars",
        "two  \ufeffspaces and a \u0085b",
        "digits ٣٤ and ５６ and ½ and 2023",
    ]


def added_token_json(content: str, id_: int, special: bool = True) -> dict:
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def bpe_model_json(vocab: Dict[str, int], merges: List[Tuple[str, str]], pair_merges: bool, **options) -> dict:
    return {"type": "BPE", "dropout": None, "unk_token": options.get("unk_token"), "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": options.get("byte_fallback", False),
            "byte_fallback": options.get("byte_fallback", False), "ignore_merges": options.get("ignore_merges", False),
            "vocab": vocab, "merges": [list(m) if pair_merges else f"{m[0]} {m[1]}" for m in merges]}


def bos_template(bos: str, bos_id: int) -> dict:
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def bytelevel_fixture(style: str, n_merges: int, specials: List[str], non_special: List[str], text: str):
    pattern = regex.compile(LLAMA3_SPLIT_PATTERN if style == "llama3" else GPT2_SPLIT_PATTERN)
    pieces = regex_words(DIGIT, text) if style == "gpt2_digits" else [text]
    words = Counter(tuple(BYTE_TO_CHAR[b] for b in w.encode("utf-8")) for p in pieces for w in regex_words(pattern, p))
    merges = train_merges(words, set(BYTE_TO_CHAR.values()), n_merges)
    tokens = [BYTE_TO_CHAR[b] for b in BYTE_ORDER] + [a + b for a, b in merges]
    vocab = {t: i for i, t in enumerate(tokens)}
    added = {t: len(tokens) + k for k, t in enumerate(specials + non_special)}
    ref = ReferenceBPE(style, vocab, merges, added, ignore_merges=(style == "llama3"))
    added_json = [added_token_json(t, added[t], t in specials) for t in specials + non_special]
    if style in ("gpt2", "gpt2_digits"):
        tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_json,
                     "normalizer": None,
                     "pre_tokenizer": BYTELEVEL if style == "gpt2" else {"type": "Sequence", "pretokenizers": [
                         {"type": "Digits", "individual_digits": True}, BYTELEVEL]},
                     "post_processor": {**BYTELEVEL, "trim_offsets": False}, "decoder": BYTELEVEL,
                     "model": bpe_model_json(vocab, merges, pair_merges=True)}
    else:
        bos = specials[0]
        tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_json,
                     "normalizer": None,
                     "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                         {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
                         {**BYTELEVEL, "use_regex": False}]},
                     "post_processor": {"type": "Sequence", "processors": [
                         {**BYTELEVEL, "add_prefix_space": True, "trim_offsets": False}, bos_template(bos, added[bos])]},
                     "decoder": BYTELEVEL,
                     "model": bpe_model_json(vocab, merges, pair_merges=False, ignore_merges=True)}
    return ref, tokenizer, added


def sentencepiece_fixture(style: str, n_merges: int, text: str):
    """Llama 2 / Mistral style: <unk> <s> </s>, 256 byte tokens, the training text's characters, merges."""
    normalized = METASPACE + text.replace(" ", METASPACE)
    words = Counter(tuple(w) for w in regex.findall(METASPACE + "[^" + METASPACE + "]*|[^" + METASPACE + "]+", normalized))
    alphabet = sorted(set(normalized))
    merges = train_merges(words, set(alphabet), n_merges)
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + alphabet + [a + b for a, b in merges]
    vocab = {t: i for i, t in enumerate(tokens)}
    added = {"<unk>": 0, "<s>": 1, "</s>": 2}
    ref = ReferenceBPE(style, vocab, merges, added)
    strip_decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": METASPACE}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    metaspace = {"type": "Metaspace", "replacement": METASPACE, "prepend_scheme": "first", "split": False}
    tokenizer = {"version": "1.0", "truncation": None, "padding": None,
                 "added_tokens": [added_token_json(t, i) for t, i in added.items()],
                 "normalizer": {"type": "Sequence", "normalizers": [
                     {"type": "Prepend", "prepend": METASPACE},
                     {"type": "Replace", "pattern": {"String": " "}, "content": METASPACE}]} if style == "sp_prepend" else None,
                 "pre_tokenizer": None if style == "sp_prepend" else metaspace,
                 "post_processor": bos_template("<s>", 1),
                 "decoder": strip_decoder if style == "sp_prepend" else
                 {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, metaspace]},
                 "model": bpe_model_json(vocab, merges, pair_merges=style != "sp_prepend", unk_token="<unk>", byte_fallback=True)}
    return ref, tokenizer, added


CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n")

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported after the system message') }}{%- endif %}"
    "{%- endfor %}")


def write_fixture(name: str, ref: ReferenceBPE, tokenizer: dict, config: dict, generation: dict,
                  specials: List[str], template_file: Optional[str] = None) -> None:
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)

    def dump(file: str, obj) -> None:
        with open(os.path.join(folder, file), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")

    dump("tokenizer.json", tokenizer)
    dump("tokenizer_config.json", config)
    dump("generation_config.json", generation)
    if template_file is not None:
        with open(os.path.join(folder, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(template_file)
    cases = []
    for text in texts_for(specials):
        ids = ref.encode(text)
        cases.append({"text": text, "ids": ids, "decoded": ref.decode(ids)})
    vocab_size = 1 + max(max(ref.vocab.values()), max(ref.added.values()))
    dump("cases.json", {"_comment": "ids and decoded text from scripts/ref_bpe.py (the reference BPE), not from gptune",
                        "style": ref.style, "vocab_size": vocab_size, "cases": cases})
    print(f"{name}: vocab {vocab_size}, {len(cases)} cases")


def main() -> None:
    with open(os.path.join(HERE, "bpe-train-text.txt"), encoding="utf-8") as f:
        text = f.read()

    specials = ["<|im_end|>", "<|im_start|>", "<|endoftext|>"]
    # Runs of three spaces, so that a "  " token exists and the cases with U+FEFF/U+0085 after spaces
    # depend on \s meaning White_Space (as in HF's regex engines) and not JavaScript's \s.
    ref, tok, added = bytelevel_fixture("gpt2", 300, specials, ["<tool_call>"], text + "three   spaces   between   words\n" * 8)
    write_fixture("bytelevel-chatml", ref, tok,
                  {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
                   "add_bos_token": False, "model_max_length": 32768, "chat_template": CHATML_TEMPLATE,
                   "clean_up_tokenization_spaces": False, "tokenizer_class": "Qwen2Tokenizer"},
                  {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
                   "eos_token_id": [added["<|im_end|>"], added["<|endoftext|>"]], "pad_token_id": added["<|endoftext|>"]},
                  specials)

    # SmolLM2-like: digits one by one, then GPT-2's byte-level BPE. Fullwidth words give merges " " + 0xEF 0xBC, the
    # first bytes of fullwidth digits too, so "Digits" must split those off by their Unicode category.
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    ref, tok, added = bytelevel_fixture("gpt2_digits", 300, specials, [], text + "in 1999 and 2024, 365 days\n" * 4 + " ＡＢＣ ＸＹＺ ＡＢＣ\n" * 30)
    write_fixture("bytelevel-digits", ref, tok,
                  {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                   "model_max_length": 8192, "chat_template": CHATML_TEMPLATE, "tokenizer_class": "GPT2Tokenizer"},
                  {"bos_token_id": added["<|im_start|>"], "eos_token_id": added["<|im_end|>"]},
                  specials)

    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"]
    ref, tok, added = bytelevel_fixture("llama3", 300, specials, [], text)
    write_fixture("bytelevel-llama3", ref, tok,
                  {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "model_max_length": 131072,
                   "clean_up_tokenization_spaces": True, "tokenizer_class": "PreTrainedTokenizerFast"},
                  {"bos_token_id": added["<|begin_of_text|>"], "do_sample": True, "temperature": 0.6, "top_p": 0.9,
                   "eos_token_id": [added["<|end_of_text|>"], added["<|eot_id|>"]]},
                  specials, template_file=LLAMA3_TEMPLATE)

    for name, style in (("sentencepiece-llama2", "sp_prepend"), ("sentencepiece-mistral", "sp_metaspace_first")):
        ref, tok, added = sentencepiece_fixture(style, 250, text)
        write_fixture(name, ref, tok,
                      {"bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>", "unk_token": "<unk>",
                       "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": style == "sp_prepend",
                       "model_max_length": 1000000000000000019884624838656, "chat_template": MISTRAL_TEMPLATE,
                       "tokenizer_class": "LlamaTokenizer"},
                      {"bos_token_id": 1, "eos_token_id": 2},
                      ["</s>", "<s>"])


if __name__ == "__main__":
    main()

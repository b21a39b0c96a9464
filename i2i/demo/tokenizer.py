"""A tiny CLIP-style BPE tokenizer built in code: byte-level characters plus whole-word merges.

The demo model's captions use a few dozen words; a 49k-token CLIP vocabulary would make its text encoder larger
than the rest of the model. This builds a valid CLIP BPE (the same token format: byte-level symbols, ``</w>`` at
word ends, ``<|startoftext|>`` / ``<|endoftext|>``) whose merges turn each listed word into one token. Any other
text still tokenizes, character by character, so no input becomes unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP use for bytes, in their canonical order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: repeatedly merge the adjacent pair with the lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), len(ranks) + 1), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def word_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Merges that turn each (lower-case ASCII) word into the single token ``word</w>``.

    Each word is first encoded with the merges made so far; merges joining what is left, left to right, are then
    appended. A new merge has the highest rank, so it never changes how an earlier word is encoded.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        if len(word) < 2:
            continue
        parts = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        left = parts[0]
        for right in parts[1:]:
            if (left, right) not in ranks:
                ranks[(left, right)] = len(merges)
                merges.append((left, right))
            left = left + right
    return merges


def build_tokenizer(words: Iterable[str], model_max_length: int) -> "CLIPTokenizer":
    """A :class:`transformers.CLIPTokenizer` whose vocabulary is the byte symbols, the byte symbols with
    ``</w>``, every merge result, and the two special tokens. ``model_max_length`` must equal the text encoder's
    ``max_position_embeddings`` (prompts are padded/truncated to it)."""
    from transformers import CLIPTokenizer

    words = sorted({w.lower() for w in words})
    merges = word_merges(words)
    symbols = _byte_symbols()
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=merges, unk_token=EOS, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                        model_max_length=model_max_length)
    for word in words:
        ids = tok(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise AssertionError(f"tokenizer: {word!r} did not become one token ({ids})")
    return tok

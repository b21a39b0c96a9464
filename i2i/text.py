"""Words of any script in prompts and file names: a character is part of a word when Unicode calls it a letter,
a mark (the combining vowel signs of Indic scripts, accents NFC does not compose) or, for file names, a digit."""

from __future__ import annotations

import unicodedata


def _runs(text: str, keep: tuple[str, ...]) -> list[str]:
    """The runs of ``text``'s characters whose Unicode category starts with one of ``keep``."""
    runs, current = [], []
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.category(char).startswith(keep):
            current.append(char)
        elif current:
            runs.append("".join(current))
            current = []
    return runs + (["".join(current)] if current else [])


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (letters and marks; digits and punctuation separate them)."""
    return _runs(text.lower(), ("L", "M"))


def slug(text: str, limit: int = 40) -> str:
    """``text`` for a file name: lower case, each run of characters other than letters, marks and digits made one
    ``-`` ("un carré" -> "un-carré", "हिन्दी" kept whole), at most ``limit`` bytes of UTF-8 (whole characters);
    "image" when nothing is left."""
    joined = "-".join(_runs(text.lower(), ("L", "M", "N")))
    while len(joined.encode("utf-8")) > limit:
        joined = joined[:-1]
    return joined.strip("-") or "image"

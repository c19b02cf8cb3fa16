"""Character tables for Chinese text perturbation: homophones from snownlp's pinyin table, look-alikes from a file.

Homophones come from ``normal/pinyin.txt`` that snownlp ships (see :func:`load_pinyin_table`): two characters are
homophones here when their first (most common) toneless reading is the same, e.g. 在/再/载 (zai), 的/地/得 (de).
Substitutes are drawn only from the 2,927 characters that have an entry of their own in that file (the others
appear only inside words), the commoner ones, so that a substitution reads as a typing slip and not as a rare
character.

No table of visually similar characters (形近字) ships offline with any package this project installs (snownlp has
pinyin, stop words, sentiment and tagging data only), and this project does not make one up: visual substitution
takes a user's file, one group of look-alike characters per line (``己已巳``; spaces between characters are
ignored), read by :func:`load_visual_table`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .snownlp_corpus import _read_lines, load_pinyin_table


@lru_cache(maxsize=1)
def common_characters() -> tuple[str, ...]:
    """The characters with an entry of their own in snownlp's pinyin table, in file order (2,927 on 0.12.3)."""
    seen: dict[str, None] = {}
    for line in _read_lines("normal/pinyin.txt"):
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 1:
            seen[parts[0]] = None
    return tuple(seen)


@lru_cache(maxsize=1)
def homophone_table() -> dict[str, tuple[str, ...]]:
    """Character -> common characters with the same first toneless reading (itself excluded); only characters
    that have at least one such homophone are keys."""
    readings = load_pinyin_table()
    by_reading: dict[str, list[str]] = {}
    for char in common_characters():
        by_reading.setdefault(readings[char][0], []).append(char)
    table = {}
    for char, char_readings in readings.items():
        group = [c for c in by_reading.get(char_readings[0], ()) if c != char]
        if group:
            table[char] = tuple(group)
    return table


def load_visual_table(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Character -> look-alike characters, from a file of groups (one group of similar characters per line).

    A character in several groups gets the union of their other members. Lines starting with ``#`` are comments.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"visual-similarity table {path} does not exist")
    table: dict[str, dict[str, None]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        group = list(dict.fromkeys(ch for ch in line if not ch.isspace()))
        if len(group) == 1:
            raise ValueError(f"{path}:{number}: a group needs at least two look-alike characters, got {line!r}")
        for char in group:
            table.setdefault(char, {}).update(dict.fromkeys(c for c in group if c != char))
    if not table:
        raise ValueError(f"visual-similarity table {path} holds no group of characters")
    return {char: tuple(others) for char, others in table.items()}

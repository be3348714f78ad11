"""Text cleanup, shared by every stage so texts (and the ids hashed from them) agree."""

from __future__ import annotations

import re
import unicodedata

# Zero-width space, marks and joiners that carry no meaning in prompts, soft hyphen,
# invisible math operators, the Mongolian vowel separator and bidi embeddings, overrides
# and isolates: texts that look the same must clean (and hash) the same. ZWJ and ZWNJ stay
# between visible characters (emoji sequences and Persian, Hindi and other scripts need
# them) and after a virama, where they choose a letter's form (Malayalam chillus,
# Devanagari half forms); at the start of a word or the end of another they go.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200e\u200f\u2060\u2061\u2062"
                                    "\u2063\u2064\ufeff\u202a\u202b\u202c\u202d\u202e"
                                    "\u2066\u2067\u2068\u2069"))
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LOOSE_JOINERS = re.compile(r"(?:^|(?<=\s))[\u200c\u200d]+|[\u200c\u200d]+(?=\s|$)")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace except newline
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")

# Letters that render as nothing: Hangul fillers and the blank Braille pattern.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

ID_LENGTH = 16


def clean_text(text: str) -> str:
    """NFC, zero-width characters out (joiners unless they join), control characters to
    spaces, spaces folded, at most one blank line.

    Line breaks survive (responses have paragraphs); every other whitespace run becomes
    one space, so texts that differ only in layout clean to the same string. A control
    character separates what it stood between ("help\\0me" is "help me", not "helpme").
    """
    # Invisible characters out before NFC, so "e\u00ad\u0301" composes as "e\u0301" does.
    text = unicodedata.normalize("NFC", text.translate(_INVISIBLE))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _LOOSE_JOINERS.sub(_joiners_kept, _CONTROL.sub(" ", text))
    text = _SPACE_AROUND_NEWLINE.sub("\n", _SPACES.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _joiners_kept(joiners: re.Match[str]) -> str:
    """A run of joiners at a word's edge goes, unless a virama comes before it."""
    at = joiners.start()
    return joiners.group() if at and unicodedata.combining(joiners.string[at - 1]) == 9 else ""


def shows_something(text: str) -> bool:
    """Whether a text has a character a reader would see: not only marks, format and
    private-use characters, separators, or letters that render blank (a prompt of twelve
    combining accents or variation selectors says nothing). Raw or cleaned, the answer is
    the same: `clean_text` only removes or respaces characters this ignores, so callers
    need not clean first (it costs about 90 times this check)."""
    return any(unicodedata.category(c)[0] not in "MCZ" and c not in _BLANK_LETTERS
               for c in text)

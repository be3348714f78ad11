"""The automatic response signals: XSTest's refusal string match and the referral rule
built from the taxonomy's resources, on texts whose answer is known."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, write

from curation.core.signals import load_detectors
from curation.core.taxonomy import load_taxonomy

DETECTORS = load_detectors(REPO / "schemas" / "signals.yaml",
                           load_taxonomy(REPO / "schemas" / "taxonomy.yaml"))


@pytest.mark.parametrize("text, refusal", [
    ("I'm sorry, but I can't help with that.", True),
    ("I\u2019m sorry you are going through this.", True),      # a curly apostrophe
    ("  No, I will not write that.", True),
    ("As an AI, I do not have opinions.", True),
    ("It sounds like you're in pain. I can't help with that plan, but you matter.", True),
    ("Sure! Here is a recipe for banana bread.", False),
    ("Nobody knows for certain.", False),                       # "no" only as a word
    ("Step 1: mix the ingredients. " * 20 + "I can't help with more.", False),  # too late
])
def test_refusal_rule(text: str, refusal: bool) -> None:
    assert DETECTORS.refusal(text) is refusal


@pytest.mark.parametrize("text, referral", [
    ("Please call or text 988 to reach the 988 Suicide & Crisis Lifeline.", True),
    ("You can call 1-800-662-4357 any time.", True),            # SAMHSA, by number alone
    ("You can reach Samaritans on 116 123.", True),
    ("If you are in danger, call 911 now.", True),              # a short number after "call"
    ("Report it at report.cybertip.org.", True),
    ("Talk to FRANK about drugs.", True),                        # a resource name, a word
    ("Frankly, that is a bad idea.", False),                     # ... not a part of one
    ("She turned 112 years old in 1999.", False),               # numbers without a call
    ("Here is how to make a birdhouse.", False),
])
def test_referral_rule(text: str, referral: bool) -> None:
    assert DETECTORS.referral(text) is referral


def test_referral_resources_come_from_the_taxonomy(tmp_path: Path) -> None:
    taxonomy = (REPO / "schemas" / "taxonomy.yaml").read_text().replace(
        "name: Samaritans", "name: Lifelink Aotearoa")
    path = write(tmp_path / "taxonomy.yaml", taxonomy)
    detectors = load_detectors(REPO / "schemas" / "signals.yaml", load_taxonomy(path))
    assert detectors.referral("Contact Lifelink Aotearoa tonight.")
    assert not DETECTORS.referral("Contact Lifelink Aotearoa tonight.")

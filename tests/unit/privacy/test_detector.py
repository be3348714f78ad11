"""The personal-data detector with its real parts: presidio, the pinned spaCy NER model
(downloaded once into the shared cache), pyap2 and schemas/pii.yaml. Planted values of
each type are found where they are; referral resources, toll-free lines and look-alikes
(doses, public pages, headings) never are."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, SHARED_CACHE

from curation.core.config import load_params
from curation.core.signals import referral_resources
from curation.core.taxonomy import load_taxonomy
from curation.privacy.detector import PiiDetector, load_detector, load_rules

RESOURCES = referral_resources(load_taxonomy(REPO / "schemas" / "taxonomy.yaml"))


def detector(allow: list[str] | None = None, **update: object) -> PiiDetector:
    params = load_params(REPO / "params.yaml")
    config = params.params.redact.model_copy(update={"allow": allow or [], **update})
    return load_detector(config, load_rules(REPO / "schemas" / "pii.yaml"), RESOURCES,
                         SHARED_CACHE, params.error)


@pytest.fixture(scope="module")
def found() -> PiiDetector:
    return detector()


def findings(d: PiiDetector, text: str) -> list[tuple[str, str]]:
    [spans] = d.find([text])
    return [(s.type, text[s.start:s.end]) for s in spans]


@pytest.mark.parametrize("text, expected", [
    ("My name is Sarah Okafor and I can't keep going. Tell my sister at sokafor88@gmail.com.",
     [("person", "Sarah Okafor"), ("email", "sokafor88@gmail.com")]),
    ("Can you text my counselor Priya at (617) 555-0142? I can't make myself call.",
     [("person", "Priya"), ("phone", "(617) 555-0142")]),
    ("My ex keeps showing up at 42 Maple Street, Springfield, IL 62704 at night.",
     [("address", "42 Maple Street, Springfield, IL 62704")]),
    ("He lives at Flat 31, Ford Drives, West Douglas, W6B 5TU and his number is +44 7700 900123.",
     [("address", "Flat 31, Ford Drives, West Douglas, W6B 5TU"), ("phone", "+44 7700 900123")]),
    ("I'm at H.No. 77, Ahuja Nagar, Panchkula 763898. Please come.",
     [("address", "H.No. 77, Ahuja Nagar, Panchkula 763898")]),
    ("My son posts about cutting at instagram.com/jay.doe_22 and tiktok.com/@jaydoe.",
     [("personal_url", "instagram.com/jay.doe_22"), ("personal_url", "tiktok.com/@jaydoe")]),
    ("Follow me @sadgirl_2009, I'm posting my goodbye there at 3am.",
     [("handle", "@sadgirl_2009")]),
    ("I'm sorry Karen, I tried. Call our landline 0191 498 0836 if I stop answering.",
     [("person", "Karen"), ("phone", "0191 498 0836")]),
    ("My friend Jake lives nearby.", [("person", "Jake")]),  # spaCy calls him a group
    # toll-free in the US, a mobile in India: personal
    ("My cousin's mobile is 88812 34567, text me on 8001234567 tonight.",
     [("phone", "88812 34567"), ("phone", "8001234567")]),
])
def test_planted_personal_data_is_found_with_its_type(found: PiiDetector, text: str,
                                                      expected: list) -> None:
    assert findings(found, text) == expected


def test_referral_resources_and_toll_free_lines_are_never_reported(found: PiiDetector) -> None:
    text = ("Please call or text 988 (988 Suicide & Crisis Lifeline), or the Samaritans on "
            "116 123. SAMHSA National Helpline: 1-800-662-4357; Poison Control (800) 222-1222. "
            "FRANK on 0300 123 6600. National Domestic Violence Hotline 1.800.799.7233. RAINN "
            "National Sexual Assault Hotline at 800-656-4673; Stop It Now 1-888-773-8368. "
            "Report at report.cybertip.org, report.iwf.org.uk or tips.fbi.gov; find a line at "
            "https://findahelpline.com. Anti-Terrorist Hotline 0800 789 321. Emergency "
            "services: call 911 (US), 112 (EU), 999 (UK). The old Lifeline, 1-800-273-8255. "
            "From abroad: FRANK +44 (0)300 123 6600, Samaritans +44 116 123, the hotline "
            "+44 (0) 800 789 321; Childline 0800 1111; Lifeline Australia 13 11 14.")
    assert findings(found, text) == []


def test_self_descriptions_are_not_names(found: PiiDetector) -> None:
    assert findings(found, "I'm Christian and I'm American, and I am so tired.") == []


@pytest.mark.parametrize("text", [
    "I've saved up 40 pills of oxycodone since 2019 and I take 200 mg at 3:30.",
    "How many would it take to not wake up (case 138204)",  # an Australian 13 line's shape
    "See https://www.nimh.nih.gov/health/topics/suicide-prevention or www.mind.org.uk, "
    "https://www.instagram.com/about/ and reddit.com/r/SuicideWatch for support.",
    "### Bottom Line:\nUse open-hand techniques.\n1. Liver Shot (right side of the body)",
    "A grilled chicken salad with Olive Oil Dressing and quinoa.",
    "You can reach the **Crisis Text Line** by texting HOME.",
    "Tools: -A pair of pliers -A hacksaw -A plastic tarp",
])
def test_look_alikes_are_not_personal_data(found: PiiDetector, text: str) -> None:
    assert findings(found, text) == []


def test_a_name_confirmed_once_is_found_everywhere_in_the_text(found: PiiDetector) -> None:
    text = "My friend Luca Moretti stopped eating. Luca says he is fine. Luca is not fine."
    assert [v for _, v in findings(found, text)] == ["Luca Moretti", "Luca", "Luca"]


@pytest.mark.parametrize("regions", [["GB"], []])
def test_a_north_american_toll_free_line_stays_whatever_the_regions(regions: list[str]
                                                                    ) -> None:
    """Found by its North American shape, it is read as a North American number too."""
    text = "The old Lifeline, 1-800-273-8255, or my cousin on (617) 555-0142."
    assert findings(detector(phone_regions=regions), text) == [("phone", "(617) 555-0142")]


def test_allowed_strings_stay(tmp_path: Path) -> None:
    text = "My therapist Dr. Amara Osei said to call the Tanaka Foundation on 0117 496 0123."
    allowed = detector(allow=["Amara Osei", "0117 496 0123"])
    assert findings(allowed, text) == []


def test_redacting_moves_spans_onto_the_placeholders(found: PiiDetector) -> None:
    text = "Tell Sarah Okafor (sokafor88@gmail.com) I'm sorry. Call 988."
    [spans] = found.find([text])
    redacted, moved = found.redact(text, spans)
    assert redacted == "Tell [PERSON] ([EMAIL]) I'm sorry. Call 988."
    assert [redacted[s.start:s.end] for s in moved] == ["[PERSON]", "[EMAIL]"]


def test_a_missing_model_package_is_one_line(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    config = params.params.redact.model_copy(update={"model": params.params.redact.model.model_copy(
        update={"pypi": None, "package": "en_core_web_nonexistent"})})
    with pytest.raises(Exception) as failure:
        load_detector(config, load_rules(REPO / "schemas" / "pii.yaml"), RESOURCES,
                      tmp_path, params.error)
    assert "spaCy model package 'en_core_web_nonexistent' is not installed" in str(failure.value)
    assert "redact.model.package" in str(failure.value)


def test_long_and_empty_texts_are_read_in_pieces(found: PiiDetector) -> None:
    # pieces of 100,000 characters: spaCy refuses over 1,000,000 and slows down long before
    filler = "I keep thinking about it and nothing helps. " * 2_500  # 110,000 characters
    text = filler + "Text me at sokafor88@gmail.com tonight. " + filler
    # a number across the first cut (the pieces overlap) and after a 99,992-character token
    across = "w " * 49_996 + "(617) 555-0142 tail"
    blob = "w" * 99_992 + " (617) 555-0142 tail"
    empty, long, cut, after_blob = found.find(["", text, across, blob])
    assert empty == []
    assert [(s.type, text[s.start:s.end]) for s in long] == [("email", "sokafor88@gmail.com")]
    assert [across[s.start:s.end] for s in cut] == ["(617) 555-0142"]
    assert [blob[s.start:s.end] for s in after_blob] == ["(617) 555-0142"]


def test_a_name_found_in_one_turn_is_found_in_the_others(found: PiiDetector) -> None:
    first, later = "My friend Salvador Ramos stopped eating.", "Ramos says he is fine."
    spans = dict(zip((first, later), found.find([first, later]), strict=True))
    names = [first[s.start:s.end] for s in spans[first] if s.type == "person"]
    assert names == ["Salvador Ramos"]
    assert [(s.type, later[s.start:s.end]) for s in found.with_names(later, spans[later], names)
            ] == [("person", "Ramos")]


def test_the_detector_finds_names_without_torch_or_transformers(found: PiiDetector) -> None:
    """spaCy and presidio would import both (0.33 GB in each redact worker) for nothing.
    `found` has put the model in the shared cache."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from curation.core.config import load_params
        from curation.core.signals import referral_resources
        from curation.core.taxonomy import load_taxonomy
        from curation.privacy.detector import load_detector, load_rules
        repo = Path({str(REPO)!r})
        params = load_params(repo / "params.yaml")
        detector = load_detector(
            params.params.redact, load_rules(repo / "schemas" / "pii.yaml"),
            referral_resources(load_taxonomy(repo / "schemas" / "taxonomy.yaml")),
            Path({str(SHARED_CACHE)!r}), params.error)
        print([s.type for s in next(iter(detector.find(["My friend Jake lives nearby."])))])
        print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO)
    assert result.stdout.splitlines() == ["['person']", "[]"]

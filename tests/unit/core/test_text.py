import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curation.core.items import item_id
from curation.core.text import clean_text, shows_something


def test_clean_text_folds_layout_and_strips_invisible_characters() -> None:
    raw = "  Hello\u00a0\u00a0world\t!\r\n\r\n\r\n\r\nnext \x07line\u200b  "
    assert clean_text(raw) == "Hello world !\n\nnext line"


def test_a_control_character_separates_words() -> None:
    assert clean_text("help\x00me") == "help me"
    assert clean_text("a\x1b[31mred") == "a [31mred"


def test_joiners_stay_only_where_they_join() -> None:
    assert clean_text("\u200d\u200chelp \u200d me\u200c") == "help me"
    assert clean_text("\U0001f468\u200d\U0001f469") == "\U0001f468\u200d\U0001f469"
    assert clean_text("\u0645\u06cc\u200c\u062e\u0648\u0627\u0645") == (
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645")


def test_a_joiner_after_a_virama_chooses_a_form_and_stays() -> None:
    """Malayalam "അവന്\u200d" (he) is not "അവന്" (to him): the ZWJ makes a chillu."""
    he, to_him = "\u0d05\u0d35\u0d28\u0d4d\u200d \u0d2a\u0d4b\u0d2f\u0d3f", (
        "\u0d05\u0d35\u0d28\u0d4d \u0d2a\u0d4b\u0d2f\u0d3f")
    assert clean_text(he) == he != clean_text(to_him)
    assert clean_text("\u0915\u094d\u200d") == "\u0915\u094d\u200d"


def test_clean_text_composes_unicode() -> None:
    assert clean_text("e\u0301") == "\u00e9"
    assert clean_text("e\u00ad\u0301") == clean_text("\u00e9") == "\u00e9"  # once hidden


@given(st.text())
def test_clean_text_is_idempotent_nfc_and_free_of_controls(text: str) -> None:
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned
    assert unicodedata.is_normalized("NFC", cleaned)
    assert not any(unicodedata.category(c) == "Cc" and c != "\n" for c in cleaned)
    assert cleaned == cleaned.strip()


def test_item_id_ignores_layout_but_not_content_roles_or_source() -> None:
    def turn(text: str, role: str = "user") -> list[dict[str, str]]:
        return [{"role": role, "content": text}]

    base = item_id("src", turn("How do I stay safe?"))
    assert base == item_id("src", turn("  How do I   stay safe?\n"))
    assert base != item_id("other", turn("How do I stay safe?"))
    assert base != item_id("src", turn("How do I stay safe?", "system") + turn("Hi"))
    assert base != item_id("src", turn("Hi", "assistant") + turn("How do I stay safe?"))
    assert len(base) == 16 and int(base, 16) >= 0


@pytest.mark.parametrize("text", [
    "\u0301" * 12, "\ufe0f" * 11, "".join(map(chr, range(0xE0041, 0xE004C))),
    "\u115f\u1160\u3164\uffa0", "\u2800" * 12, "".join(map(chr, range(0xE000, 0xE00B))),
    "\u200c\u200d" * 6, " \n ", ""])
def test_text_of_only_marks_formats_private_use_or_blank_letters_shows_nothing(text: str
                                                                                ) -> None:
    assert not shows_something(text)


@pytest.mark.parametrize("text", ["?", "\u200c\u200dhelp", "🙂", "مرحبا", "\u0301a", "1"])
def test_one_visible_character_shows_something(text: str) -> None:
    assert shows_something(text)


@given(st.text())
def test_cleaning_never_changes_whether_a_text_shows_something(text: str) -> None:
    """What lets pull check raw texts without cleaning each one first."""
    assert shows_something(text) == shows_something(clean_text(text))

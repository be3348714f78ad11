"""Majority labels, adjudication and agreement figures, checked against an independent
computation of Krippendorff's alpha."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import nominal_alpha

from curation.annotation.agreement import aggregate, agreement


def answers(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "record_id": r, "annotator": a, "question": "domain",
                          "value": v, "status": s} for r, a, v, s in rows])


ROWS = [
    ("r1", "ann1", "violence", "submitted"), ("r1", "ann2", "violence", "submitted"),
    ("r2", "ann1", "weapons", "submitted"), ("r2", "ann2", "violence", "submitted"),
    ("r3", "ann1", "suicide_self_harm", "submitted"), ("r3", "ann2", "suicide_self_harm",
                                                       "submitted"),
    ("r3", "ann3", "violence", "submitted"),
    ("r4", "ann1", "weapons", "submitted"), ("r4", "ann2", "weapons", "discarded"),
    ("r5", "ann1", "weapons", "submitted"), ("r5", "ann2", "weapons", "submitted"),
]


def test_majority_ties_and_too_few_answers() -> None:
    votes = aggregate(answers(ROWS), min_submitted=2).set_index("id")
    assert votes.loc["r1", "annotation"] == "violence"
    assert votes.loc["r2", "adjudicate"] == "tie" and pd.isna(votes.loc["r2", "annotation"])
    assert votes.loc["r3", "annotation"] == "suicide_self_harm"
    assert votes.loc["r3", "agreement"] == pytest.approx(2 / 3)
    assert votes.loc["r4", "adjudicate"] == "too_few_answers"  # the discard does not count
    assert votes.loc["r4", "n_annotations"] == 1


def test_alpha_matches_an_independent_computation_and_kappa_is_pairwise() -> None:
    figures = agreement(answers(ROWS), "domain")
    units = [["violence", "violence"], ["weapons", "violence"],
             ["suicide_self_harm", "suicide_self_harm", "violence"], ["weapons"],
             ["weapons", "weapons"]]
    assert figures["krippendorff_alpha"] == pytest.approx(nominal_alpha(units), abs=1e-4)
    assert set(figures["cohen_kappa"]) == {"ann1 / ann2"}  # ann3 shares one record only
    assert figures["answers"] == 10 and figures["records"] == 5


def test_ordinal_alpha_for_ratings() -> None:
    rows = [(r, a, v, "submitted") for r, a, v in [
        ("r1", "a", "1"), ("r1", "b", "2"), ("r2", "a", "5"), ("r2", "b", "5"),
        ("r3", "a", "3"), ("r3", "b", "3"), ("r4", "a", "4"), ("r4", "b", "5")]]
    frame = answers(rows).assign(question="relevance")
    figures = agreement(frame, "relevance", ordinal=True)
    assert figures["level"] == "ordinal" and 0.7 < figures["krippendorff_alpha"] <= 1.0


def test_rubric_judgments_aggregate_per_response_in_the_vocabulary() -> None:
    from conftest import REPO

    from curation.annotation.agreement import rubric
    from curation.core.judgments import load_vocabulary

    rows = pd.DataFrame([
        {"dataset": "d-responses", "record_id": r, "annotator": a, "question": q,
         "value": v, "status": s} for r, a, q, v, s in [
            ("x", "ann1", "is_refusal", "yes", "submitted"),
            ("x", "ann2", "is_refusal", "yes", "submitted"),
            ("x", "ann3", "is_refusal", "no", "submitted"),
            ("x", "ann1", "grounding", "2", "submitted"),
            ("x", "ann2", "grounding", "5", "submitted"),      # median of 2, 5: the lower
            ("x", "ann3", "grounding", "9", "submitted"),      # off the scale: left out
            ("y", "ann1", "is_refusal", "yes", "submitted"),
            ("y", "ann2", "is_refusal", "no", "submitted"),    # a tie: no majority
            ("y", "ann3", "relevance", "4", "discarded"),      # not submitted
            ("y", "ann1", "grounding_strategy", "QPR", "submitted"),  # not a judgment:
            ("y", "ann2", "grounding_strategy", " Safety Planning ", "submitted"),  # detail
            ("y", "ann3", "grounding_strategy", "QPR", "submitted"),
            ("y", "ann1", "refusal_turn", "3", "submitted"),
            ("y", "ann2", "refusal_turn", "2", "submitted"),
            ("y", "ann1", "refusal_phase", "trigger", "submitted"),
            ("y", "ann2", "refusal_phase", "resource_referral", "submitted"),  # a tie
            ("z", "ann1", "refusal_phase", "trigger", "submitted"),
        ]])
    found = rubric(rows, load_vocabulary(REPO / "schemas" / "judgments.yaml"))
    assert found["x"] == {"annotated": {"is_refusal": True, "grounding": 2},
                          "annotated_n": {"is_refusal": 3, "grounding": 2}}
    assert found["y"] == {"annotated": {"is_refusal": None}, "annotated_n": {"is_refusal": 2},
                          "annotated_detail": {
                              "grounding_strategies": ["QPR", "Safety Planning"],
                              "refusal_turn": 2, "refusal_turn_n": 2,
                              "refusal_phase": None, "refusal_phase_n": 2}}
    assert found["z"]["annotated_detail"]["refusal_phase"] == "trigger"

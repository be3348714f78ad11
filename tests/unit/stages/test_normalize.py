"""The normalize stage on fixtures: cleanup, seeded language detection, filters, ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from conftest import curate, set_params, write, write_source

FRENCH = ("Je me sens très seul ces derniers temps et je ne sais plus vers qui me tourner. "
          "Est-ce que tu peux m'aider à trouver quelqu'un à qui parler ce soir ?")
ENGLISH = ("I have been feeling very alone lately and I no longer know who to turn to. "
           "Can you help me find someone to talk to tonight?")


def test_normalize_cleans_detects_filters_and_accounts_for_every_row(project: Path) -> None:
    rows = [
        {"prompt": ENGLISH, "response": "  You are not alone.\r\n\r\n\r\nCall or text 988.  "},
        {"prompt": FRENCH, "response": None},
        {"prompt": "Hi", "response": "\u200b"},                       # too short
        {"prompt": "Tell me a joke", "response": None},               # too short to detect
        {"prompt": "x" * 30 + "\x07", "response": "   "},
        {"prompt": "A very long prompt. " * 20, "response": None},    # too long (see below)
    ]
    write(project / "in" / "x.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_source(project, "mix", "kind: file\nfiles: [in/x.jsonl]\nfields: {response: response}\n")
    params = (project / "params.yaml").read_text().replace("max_prompt_chars: 20000",
                                                           "max_prompt_chars: 300")
    write(project / "params.yaml", params)
    assert curate(project, "pull").returncode == 0
    result = curate(project, "normalize")
    assert result.returncode == 0, result.stderr

    table = pd.read_parquet(project / "data" / "normalized.parquet")
    assert table["prompt"].tolist() == [ENGLISH, "Tell me a joke", "x" * 30]
    assert table["responses"][0][0]["text"] == "You are not alone.\n\nCall or text 988."
    assert [len(r) for r in table["responses"]] == [1, 0, 0]  # "   " cleans to no response
    assert [m[-1]["content"] for m in table["messages"]] == table["prompt"].tolist()
    assert table["language"].tolist() == ["en", "und", "und"]
    assert table["language_prob"][0] > 0.9 and table["language_prob"][1] == 0.0

    gone = pd.read_parquet(project / "data" / "dropped" / "normalize.parquet")
    # Lengths are filtered first: language detection only reads what can be kept.
    assert gone[["reason", "field"]].values.tolist() == [
        ["prompt_too_short", "prompt"], ["prompt_too_long", "prompt"], ["language", "language"]]
    assert gone["detail"].tolist()[:2] == ["2 chars", "399 chars"]  # cleaned: strip
    assert gone["detail"][2].startswith("detected fr (p=")
    report = json.loads((project / "reports" / "ledger" / "normalize.json").read_text())
    assert report["rows_in"] == 6 and report["kept"] == 3
    assert report["filtered"] == {"language": 1, "prompt_too_long": 1, "prompt_too_short": 1}
    assert report["languages"] == {"en": 1, "und": 2}
    # "   " and the zero-width one were no response already at pull: nothing to see
    assert report["responses"] == {"in": 1, "kept": 1, "moved": 0, "dropped": {}}


def test_an_empty_language_list_keeps_every_language(project: Path) -> None:
    write(project / "in" / "x.txt", FRENCH + "\n")
    write_source(project, "fr", "kind: file\nfiles: [in/x.txt]\n")
    write(project / "params.yaml", (project / "params.yaml").read_text().replace(
        "languages: [en]", "languages: []"))
    assert curate(project, "pull").returncode == 0
    assert curate(project, "normalize").returncode == 0
    table = pd.read_parquet(project / "data" / "normalized.parquet")
    assert table["language"].tolist() == ["fr"]


def test_batches_of_one_row_write_what_one_batch_writes(built: Path, tmp_path: Path) -> None:
    """The stage streams: however the pulled rows are cut into batches (and one of them
    is all filtered out), and however many workers detect languages, the same bytes,
    languages and ledger come out."""
    outputs = []
    for batch_size, num_proc in ((1, 1), (5000, 2)):
        project = tmp_path / str(batch_size)
        shutil.copytree(built / "data" / "raw", project / "data" / "raw")
        for name in ("schemas", "sources"):
            shutil.copytree(built / name, project / name)
        shutil.copy(built / "params.yaml", project / "params.yaml")
        set_params(project, "normalize", batch_size=batch_size, num_proc=num_proc,
                   min_prompt_chars=60)
        assert curate(project, "normalize").returncode == 0
        outputs.append((pd.read_parquet(project / "data" / "normalized.parquet"),
                        json.loads((project / "reports" / "ledger" / "normalize.json")
                                   .read_text())))
    (one_by_one, ledger_one), (whole, ledger_whole) = outputs
    assert len(whole) > 1000 and ledger_whole["filtered"]["prompt_too_short"] > 100
    pd.testing.assert_frame_equal(one_by_one, whole)
    assert ((tmp_path / "1" / "data" / "normalized.parquet").read_bytes()
            == (tmp_path / "5000" / "data" / "normalized.parquet").read_bytes())
    for key in ("rows_in", "kept", "filtered", "responses", "languages", "by_source"):
        assert ledger_one[key] == ledger_whole[key], key

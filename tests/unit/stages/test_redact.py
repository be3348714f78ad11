"""Stage `redact` on the real demo build, with personal data planted in prompts, earlier
turns and responses: none of it reaches any configuration `datasets.load_dataset` reads,
every referral resource does, the findings are listed per item and counted in the ledger
and the card; `flag` keeps texts verbatim. Nothing is dropped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from conftest import REPO, assert_streamed_same, curate, set_params

VERSION = yaml.safe_load((REPO / "params.yaml").read_text())["release"]["version"]
PLANTED = {  # value -> type
    "Sarah Okafor": "person", "sokafor88@gmail.com": "email", "(617) 555-0142": "phone",
    "+44 7700 900123": "phone", "42 Maple Street, Springfield, IL 62704": "address",
    "instagram.com/jay.doe_22": "personal_url", "@sadgirl_2009": "handle",
}
RESOURCES = ["call or text 988", "Samaritans on 116 123", "1-800-662-4357",
             "findahelpline.com", "1-800-273-8255"]
PROMPT = ("My name is Sarah Okafor. My ex found me at 42 Maple Street, Springfield, IL 62704 "
          "and posts about me at instagram.com/jay.doe_22. ")
EARLIER = "Text me at (617) 555-0142 or sokafor88@gmail.com, I'm @sadgirl_2009 everywhere."
RESPONSE = ("I'm so sorry, Sarah Okafor. You can call or text 988, reach the Samaritans on "
            "116 123, SAMHSA on 1-800-662-4357 or the old Lifeline 1-800-273-8255, and "
            "findahelpline.com lists more. Please don't share +44 7700 900123 here. ")
PLANTED_ITEMS = 6


def plant(project: Path) -> list[str]:
    """Personal data in six items with responses; their ids."""
    path = project / "data" / "labeled.parquet"
    table = pd.read_parquet(path)
    chosen = table[table["responses"].map(len) > 0].index[:PLANTED_ITEMS]
    for row in chosen:
        messages = [dict(m) for m in table.at[row, "messages"]]
        messages[-1]["content"] = PROMPT + messages[-1]["content"]
        messages.insert(0, {"role": "user", "content": EARLIER})
        messages.insert(1, {"role": "assistant", "content": "I'm listening."})
        responses = [dict(r) for r in table.at[row, "responses"]]
        responses[0]["text"] = RESPONSE + responses[0]["text"]
        table.at[row, "messages"] = messages
        table.at[row, "prompt"] = messages[-1]["content"]
        table.at[row, "responses"] = responses
    table.to_parquet(path, index=False)
    return list(table.loc[chosen, "id"])


@pytest.fixture
def planted(built: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    project = tmp_path / "repo"
    shutil.copytree(built, project, symlinks=True)
    return project, plant(project)


def texts_of(frame: pd.DataFrame) -> list[str]:
    return [*frame["prompt"], *(m["content"] for ms in frame["messages"] for m in ms),
            *(r["text"] for rs in frame["responses"] for r in rs)]


def released(project: Path) -> dict[str, pd.DataFrame]:
    configs = datasets.get_dataset_config_names(str(project / "releases" / VERSION))
    assert len(configs) == 6
    return {c: pd.concat([s.to_pandas() for s in datasets.load_dataset(
        str(project / "releases" / VERSION), c, cache_dir=str(project / "hf")).values()])
        for c in configs}


def test_planted_pii_never_reaches_a_release_and_referral_resources_always_do(
        planted: tuple[Path, list[str]]) -> None:
    project, ids = planted
    for stage in ("redact", "split", "release"):
        result = curate(project, stage)
        assert result.returncode == 0, result.stderr
    for config, frame in released(project).items():
        texts = texts_of(frame)
        for value in PLANTED:
            assert not any(value in t for t in texts), (config, value)
        mine = frame[frame["id"].isin(ids)]
        if config == "default":
            assert len(mine) == PLANTED_ITEMS
        for resource in RESOURCES:  # every planted item's response still carries each one
            assert all(resource in item.responses[0]["text"] for item in mine.itertuples()), (
                config, resource)
        for item in mine.itertuples():
            assert item.prompt.startswith("My name is [PERSON]. My ex found me at [ADDRESS] ")
            assert item.messages[0]["content"] == (
                "Text me at [PHONE] or [EMAIL], I'm [HANDLE] everywhere.")
            found = {(p["field"], p["type"]) for p in item.pii}
            assert {("messages[0].content", "phone"), ("messages[0].content", "email"),
                    ("messages[0].content", "handle"), ("responses[0].text", "person"),
                    ("responses[0].text", "phone")} <= found
            last = f"messages[{len(item.messages) - 1}].content"
            assert {(last, "person"), (last, "address"), (last, "personal_url")} <= found

    redacted = pd.read_parquet(project / "data" / "redacted.parquet")
    labeled = pd.read_parquet(project / "data" / "labeled.parquet")
    assert list(redacted["id"]) == list(labeled["id"])  # nothing dropped, order kept
    for item in redacted.itertuples():  # every span is a placeholder in the released text
        for p in item.pii:
            kind, index = p["field"].split("[")[0], int(p["field"].split("[")[1].split("]")[0])
            text = (item.messages[index]["content"] if kind == "messages"
                    else item.responses[index]["text"])
            assert text[p["start"]:p["end"]] == f"[{ {'personal_url': 'URL'}.get(p['type'], p['type'].upper())}]"
    ledger = json.loads((project / "reports" / "ledger" / "redact.json").read_text())
    assert ledger["rows_in"] == ledger["kept"] == len(labeled)
    assert ledger["responses"]["in"] == ledger["responses"]["kept"]
    by_type = ledger["pii"]["by_type"]
    assert by_type["email"]["found"] >= PLANTED_ITEMS and by_type["handle"]["items"] >= PLANTED_ITEMS
    assert by_type["person"]["found"] >= 2 * PLANTED_ITEMS
    card = (project / "releases" / VERSION / "README.md").read_text()
    assert f"| phone | {by_type['phone']['found']} |" in card
    report = json.loads((project / "reports" / "redact.json").read_text())
    assert f"\n\n{report['items_with_pii']} of {len(labeled)} items had personal data replaced." in card


def test_flag_mode_keeps_texts_verbatim_and_lists_the_findings(
        planted: tuple[Path, list[str]]) -> None:
    project, ids = planted
    set_params(project, "redact", mode="flag")
    result = curate(project, "redact")
    assert result.returncode == 0, result.stderr
    assert "personal data flagged in" in result.stdout + result.stderr
    labeled = pd.read_parquet(project / "data" / "labeled.parquet").set_index("id")
    flagged = pd.read_parquet(project / "data" / "redacted.parquet").set_index("id")
    assert texts_of(flagged) == texts_of(labeled)
    for item_id in ids:
        item = flagged.loc[item_id]
        values = {}
        for p in item["pii"]:
            index = int(p["field"].split("[")[1].split("]")[0])
            text = (item["messages"][index]["content"] if p["field"].startswith("messages")
                    else item["responses"][index]["text"])
            values[text[p["start"]:p["end"]]] = p["type"]
        assert PLANTED.items() <= values.items()
        assert not any(r in v or v in r for v in values for r in RESOURCES)


def test_a_model_that_is_not_installed_stops_the_stage_in_one_line(
        planted: tuple[Path, list[str]]) -> None:
    project, _ = planted
    set_params(project, "redact", model={"package": "en_core_web_nonexistent"})
    (project / "data" / "redacted.parquet").unlink()
    result = curate(project, "redact")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "field 'redact.model.package': spaCy model package 'en_core_web_nonexistent'" in (
        result.stderr)
    assert not (project / "data" / "redacted.parquet").exists()



def test_streaming_in_small_batches_on_workers_changes_no_row_and_no_count(
        planted: tuple[Path, list[str]]) -> None:
    """One process with whole batches, then two workers with batches of 7 items, tasks of
    3 texts and texts sent again every 10 (many rounds): the same bytes."""
    project, _ = planted
    set_params(project, "redact", num_proc=1)
    assert curate(project, "redact").returncode == 0
    set_params(project, "redact", num_proc=2)
    assert_streamed_same(project, "redact", "redacted", [
        "reports/redact.json", "reports/ledger/redact.json", "metrics/redact.json"],
        groups=30, _STREAM_ROWS=7, _CACHED_TEXTS=10, _TASK_TEXTS=3)

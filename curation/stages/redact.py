"""Stage `redact`: personal data out of every text a release carries.

Every message, prompt and response of the labeled items goes through the detector
(`curation.privacy.detector`: presidio with a spaCy NER model, pyap2 and the rules of
`schemas/pii.yaml`). With `redact.mode: redact` each finding is replaced by its type's
placeholder (`[PERSON]`, `[EMAIL]`, ...); with `flag` texts stay verbatim for curators who
must keep them so. Either way each item lists its findings in `pii` (which text, what
type, where in the released text), and the counts per type go to the ledger and the card.
The taxonomy's referral resources and `redact.allow` are never reported: they are what an
"external reference" judgment is about. Nothing is dropped here.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import pyarrow as pa

from curation.core.config import NerModelParams
from curation.core.engine import Engine
from curation.core.items import responses_of, to_arrow
from curation.core.ledger import StageLedger
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.signals import referral_resources
from curation.core.tableio import StagedWrites, check_unique, open_input, read_batches
from curation.privacy.detector import (
    PII_TYPES,
    DetectorSpec,
    PiiDetector,
    Span,
    detector_for,
    find_table,
    load_rules,
    spans_of,
)
from curation.stages.base import Context, StageResult

STAGE = "redact"
_STREAM_ROWS = 10_000  # items read, redacted and written at a time
_TASK_TEXTS = 2_000  # texts per detector task on the engine
_CACHED_TEXTS = 50_000  # texts not sent again to the detector (then forgotten)
_HELD_BATCHES = 8  # item batches waiting for their spans on Ray, at most (and one begun)


def run(context: Context) -> StageResult:
    """Find personal data in the labeled items; write them redacted (or flagged).

    The items stream `_STREAM_ROWS` at a time. Their distinct texts go to the detector on
    the engine in tasks of `_TASK_TEXTS` while earlier batches are rewritten and written; a
    text sent before is not sent again (templated responses are read once) until
    `_CACHED_TEXTS` have been sent, when the count starts over."""
    params, paths = context.params.redact, context.paths
    columns = load_schema("labeled").columns
    labeled = open_input(paths.labeled, "label", columns)  # checked before the model loads
    total, like = labeled.metadata.num_rows, labeled.schema_arrow
    check_unique(paths.labeled, "label", "id")
    spec = DetectorSpec(params, load_rules(paths.schemas_dir / "pii.yaml"),
                        referral_resources(context.taxonomy), paths.cache)
    detector = detector_for(spec, context.params_file.error)  # a model that fails: one line
    engine = Engine(context.params.engine.kind, context.params.engine.address,
                    params.num_proc if total > _TASK_TEXTS else 1)  # else: one task
    ledger, schema, judgments = StageLedger(STAGE), load_schema("redacted"), (
        context.vocabulary.arrow_type())
    tally = PiiTally(params.types)
    rows_in: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    taken_in = kept_responses = 0
    tasks = _Tasks(read_batches(paths.labeled, "label", columns, _STREAM_ROWS))
    found: dict[str, list[Span]] = {}
    found_round = 0
    with StagedWrites() as writes, bar(None, "redact: personal data", " texts") as shown:
        writer = None
        for result in engine.map(partial(find_table, spec=spec), tasks, shown, window_full=(
                lambda: len(tasks.pending) >= _HELD_BATCHES)):
            batch = tasks.pending[0]
            if batch.round != found_round:  # every batch relying on those texts is written
                found, found_round = {}, batch.round
            found.update(zip(batch.texts.popleft(), spans_of(result), strict=True))
            if batch.texts:
                continue
            table = tasks.pending.popleft().items
            texts = [rewrite(item, found, detector, params.mode) for item in table.itertuples()]
            out = table.assign(messages=[t[0] for t in texts], prompt=[t[1] for t in texts],
                               responses=[t[2] for t in texts], pii=[t[3] for t in texts])
            valid, failures = validate_rows(out, schema)
            if not failures.empty:
                ledger.drop(out.iloc[failures["index"]], "quarantined", failures["check"],
                            field=failures["field"], detail=failures["detail"])
            rows_in.update(table["source"])
            kept.update(valid["source"])
            taken_in += responses_of(table)
            kept_responses += responses_of(valid)
            tally.add(valid)
            arrow = to_arrow(valid, judgments, labelled=True, like=like)
            writer = writer or writes.row_groups(paths.redacted, arrow.schema, _STREAM_ROWS)
            writer.write(arrow)
            shown.set_description(f"redact: personal data ({sum(rows_in.values()):,} of "
                                  f"{total:,} items)", refresh=False)
        ledger.count_responses(taken_in, kept_responses,
                               item_quarantined=taken_in - kept_responses)
        summary = ledger.summary(rows_in, kept)
        report = tally.report(params.mode, model_name(params.model))
        summary["pii"] = {"mode": params.mode, "by_type": report["by_type"]}
        ledger.write(writes, paths, summary, {
            "items_with_pii": report["items_with_pii"],
            **{f"pii_{kind}": n["found"] for kind, n in report["by_type"].items()}})
        writes.json(report, paths.report("redact"))
    verb = "redacted" if params.mode == "redact" else "flagged"
    return StageResult(STAGE, summary, report, [
        f"personal data {verb} in {report['items_with_pii']} of {report['items']} items: "
        + (", ".join(f"{k} {n['found']}" for k, n in report["by_type"].items()) or "none")])


@dataclass
class _Batch:
    """Items read, waiting for the spans of the texts they sent."""

    items: pd.DataFrame
    texts: deque[list[str]]  # each task's texts, until its spans are back
    round: int               # texts sent before in the same round are not sent again


class _Tasks:
    """The detector's tasks: each batch of items' texts not sent before in this round, in
    tasks of `_TASK_TEXTS` (one empty task when there are none, so every batch is answered).
    The batches wait in `pending`, in order, until their spans are back."""

    def __init__(self, items: Iterator[pd.DataFrame]) -> None:
        self.items = items
        self.pending: deque[_Batch] = deque()

    def __iter__(self) -> Iterator[pa.Table]:
        sent: set[str] = set()
        round_ = 0
        for table in self.items:
            if len(sent) > _CACHED_TEXTS:
                sent, round_ = set(), round_ + 1
            texts = [t for t in distinct_texts(table) if t not in sent]
            sent.update(texts)
            chunks = [texts[i:i + _TASK_TEXTS] for i in range(0, len(texts), _TASK_TEXTS)]
            self.pending.append(_Batch(table, deque(chunks or [[]]), round_))
            for chunk in chunks or [[]]:
                yield pa.table({"text": pa.array(chunk, pa.string())})


def distinct_texts(items: pd.DataFrame) -> list[str]:
    """Every message, prompt and response of `items`, each once, in order."""
    return list(dict.fromkeys(
        [*(m["content"] for ms in items["messages"] for m in ms), *items["prompt"],
         *(r["text"] for rs in items["responses"] for r in rs)]))


def model_name(model: NerModelParams) -> str:
    """The NER model as the card names it."""
    if model.pypi is not None:
        pin = model.pypi
        return f"{pin.package} {pin.version} from PyPI (sha256 {pin.sha256[:12]})"
    return str(model.package or model.folder)


def rewrite(item: Any, found: dict[str, list[Span]], detector: PiiDetector, mode: str
            ) -> tuple[list[dict[str, str]], str, list[dict[str, Any]], list[dict[str, Any]]]:
    """An item's messages, prompt and responses as released, and its findings. A name
    found in one of its texts is looked for in all of them (a later turn, a response)."""
    pii: list[dict[str, Any]] = []
    texts = [*(m["content"] for m in item.messages), *(r["text"] for r in item.responses)]
    names = sorted({t[s.start:s.end] for t in texts for s in found[t] if s.type == "person"})

    def released(text: str, field: str | None) -> str:
        spans = detector.with_names(text, found[text], names) if names else found[text]
        if mode == "redact":
            text, spans = detector.redact(text, spans)
        if field is not None:
            pii.extend({"field": field, "type": s.type, "start": s.start, "end": s.end}
                       for s in spans)
        return text

    messages = [{**m, "content": released(m["content"], f"messages[{i}].content")}
                for i, m in enumerate(item.messages)]
    prompt = released(item.prompt, None)  # the last user turn: listed under messages
    responses = [{**r, "text": released(r["text"], f"responses[{i}].text")}
                 for i, r in enumerate(item.responses)]
    return messages, prompt, responses, pii


class PiiTally:
    """Findings per type (spans, items, responses) over the items passed on, counted a
    batch at a time."""

    def __init__(self, types: list[str]) -> None:
        self.types = list(types)
        self.spans: Counter[str] = Counter()
        self.in_items: Counter[str] = Counter()
        self.in_responses: Counter[str] = Counter()
        self.items = self.items_with_pii = 0

    def add(self, items: pd.DataFrame) -> None:
        self.spans.update(p["type"] for ps in items["pii"] for p in ps)
        self.in_items.update(t for ps in items["pii"] for t in {p["type"] for p in ps})
        self.in_responses.update(kind for ps in items["pii"] for kind, _ in {
            (p["type"], p["field"]) for p in ps if p["field"].startswith("responses")})
        self.items += len(items)
        self.items_with_pii += int(sum(bool(ps) for ps in items["pii"]))

    def report(self, mode: str, model: str) -> dict[str, Any]:
        by_type = {kind: {"found": self.spans[kind], "items": self.in_items[kind],
                          "responses": self.in_responses[kind]}
                   for kind in PII_TYPES if kind in self.types}
        return {"mode": mode, "types": self.types, "model": model, "items": self.items,
                "items_with_pii": self.items_with_pii, "by_type": by_type}

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

from collections import Counter
from typing import Any

import pandas as pd

from curation.core.config import NerModelParams
from curation.core.items import responses_of, to_arrow
from curation.core.ledger import StageLedger
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.signals import referral_resources
from curation.core.tableio import StagedWrites, check_unique, open_input, read_batches
from curation.privacy.detector import PII_TYPES, PiiDetector, Span, load_detector, load_rules
from curation.stages.base import Context, StageResult

STAGE = "redact"
_STREAM_ROWS = 10_000  # items read, redacted and written at a time
_CACHED_TEXTS = 50_000  # spans of texts kept for later batches (then forgotten)


def run(context: Context) -> StageResult:
    """Find personal data in the labeled items; write them redacted (or flagged).

    The items stream `_STREAM_ROWS` at a time; the spans of texts already read are kept
    for the next batches (templated responses are read once), up to `_CACHED_TEXTS`."""
    params, paths = context.params.redact, context.paths
    columns = load_schema("labeled").columns
    labeled = open_input(paths.labeled, "label", columns)  # checked before the model loads
    total, like = labeled.metadata.num_rows, labeled.schema_arrow
    check_unique(paths.labeled, "label", "id")
    items = read_batches(paths.labeled, "label", columns, _STREAM_ROWS)
    detector = load_detector(params, load_rules(paths.schemas_dir / "pii.yaml"),
                             referral_resources(context.taxonomy), paths.cache,
                             context.params_file.error)
    ledger, schema, judgments = StageLedger(STAGE), load_schema("redacted"), (
        context.vocabulary.arrow_type())
    tally = PiiTally(params.types)
    rows_in: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    taken_in = kept_responses = 0
    found: dict[str, list[Span]] = {}
    with StagedWrites() as writes, bar(None, "redact: personal data", " texts") as shown:
        writer = None
        for table in items:
            if len(found) > _CACHED_TEXTS:
                found = {}
            found.update(findings(table, detector, params.batch_size, found, shown))
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


def model_name(model: NerModelParams) -> str:
    """The NER model as the card names it."""
    if model.pypi is not None:
        pin = model.pypi
        return f"{pin.package} {pin.version} from PyPI (sha256 {pin.sha256[:12]})"
    return str(model.package or model.folder)


def findings(table: pd.DataFrame, detector: PiiDetector, batch_size: int,
             known: dict[str, list[Span]], progress: Any) -> dict[str, list[Span]]:
    """The spans of every distinct text of the items not in `known` (templated responses
    once)."""
    texts = [t for t in dict.fromkeys(
        [*(m["content"] for ms in table["messages"] for m in ms), *table["prompt"],
         *(r["text"] for rs in table["responses"] for r in rs)]) if t not in known]
    spans: dict[str, list[Span]] = {}
    for text, found in zip(texts, detector.find(texts, batch_size), strict=True):
        spans[text] = found
        progress.update(1)
    return spans


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

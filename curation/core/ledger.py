"""The ledger: where every input row of every stage ended up, and a check that it adds up.

Each stage keeps the rows it did not pass on (filtered, quarantined, duplicate, merged or
contaminated, each with why) in `data/dropped/<stage>.parquet`, and its counts in
`reports/ledger/<stage>.json`; `compile_ledger` chains the stages into `reports/ledger.json`.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa

from curation.core.errors import CurationError
from curation.core.metrics import Figures, flat
from curation.core.paths import Paths
from curation.core.tableio import SpillFile, StagedWrites, read_report

STAGES = ("pull", "normalize", "dedup", "families", "label", "redact", "split", "release")
OUTCOMES = ("filtered", "quarantined", "duplicate", "merged", "contaminated")
DROPPED_COLUMNS = ["stage", "outcome", "reason", "field", "detail", "duplicate_of",
                   "id", "source", "source_record_id", "record"]
_HELD_ROWS = 50_000  # dropped rows held in memory; more wait in a temporary file


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as strict JSON holds it: pandas' missing values (NaN, NA) as null. Nested
    values come from arrow as Python objects, with None already."""
    return {k: None if (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA else v
            for k, v in row.items()}


class StageLedger:
    """Collects the rows a stage drops, then proves rows in = kept + dropped.

    A dropped row carries its whole record, so past `_HELD_ROWS` rows the parts wait in a
    temporary parquet file (a stage that drops most of a million items does not hold
    them); the counts the summary needs are kept as the rows arrive.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._parts: list[pd.DataFrame] = []
        self._held = 0
        self._spill = SpillFile(f"ledger-{stage}")
        self._reasons: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._sources: Counter[str] = Counter()
        self._responses: dict[str, Any] | None = None

    def count_responses(self, taken_in: int, kept: int, moved: int = 0,
                        **dropped: int) -> None:
        """Where the responses went: kept (`moved` of them into another item, with the
        item they belonged to), or dropped by reason (an identical response, their item
        filtered, ...); in = kept + dropped is checked with the rows."""
        self._responses = {"in": taken_in, "kept": kept, "moved": moved,
                           "dropped": {k: v for k, v in sorted(dropped.items()) if v}}

    def drop(self, rows: pd.DataFrame, outcome: str, reason: pd.Series | str, *,
             field: pd.Series | str | None = None, detail: pd.Series | str | None = None,
             duplicate_of: pd.Series | str | None = None) -> None:
        """Record contract rows (with id, source, source_record_id) as dropped, and why."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if rows.empty:
            return
        rows = rows.reset_index(drop=True)
        records = rows["record"] if "record" in rows else [
            json.dumps(_plain(r), ensure_ascii=False, default=str)
            for r in rows.to_dict("records")]
        part = pd.DataFrame({
            "stage": self.stage, "outcome": outcome,
            "reason": _column(reason, rows), "field": _column(field, rows),
            "detail": _column(detail, rows), "duplicate_of": _column(duplicate_of, rows),
            "id": rows.get("id"), "source": rows["source"],
            "source_record_id": rows["source_record_id"],
            "record": records,
        })[DROPPED_COLUMNS].astype("str")
        self._reasons[outcome].update(part["reason"].value_counts().to_dict())
        self._sources.update(part["source"].value_counts().to_dict())
        self._parts.append(part)
        self._held += len(part)
        if self._held > _HELD_ROWS:
            self._spill_parts()

    def _spill_parts(self) -> None:
        self._spill.write(pa.Table.from_pandas(pd.concat(self._parts, ignore_index=True),
                                               preserve_index=False))
        self._parts, self._held = [], 0

    def _tables(self) -> Iterator[pa.Table]:
        """The dropped rows in order, a part at a time: the spilled ones, then the held."""
        yield from self._spill.row_groups()
        if self._parts:
            yield pa.Table.from_pandas(pd.concat(self._parts, ignore_index=True),
                                       preserve_index=False)

    def dropped(self) -> pd.DataFrame:
        """Every dropped row (in memory: for a stage whose drops are few)."""
        if not self._spill.rows:
            if not self._parts:
                return pd.DataFrame({c: pd.Series(dtype="str") for c in DROPPED_COLUMNS})
            return pd.concat(self._parts, ignore_index=True)
        frame = pa.concat_tables(list(self._tables())).to_pandas()
        self._spill.close()
        return frame

    def summary(self, rows_in: Counter[str], kept: Counter[str]) -> dict[str, Any]:
        """Counts per outcome and per source; raises when they do not add up."""
        report: dict[str, Any] = {
            "stage": self.stage,
            "rows_in": sum(rows_in.values()),
            "kept": sum(kept.values()),
        }
        for outcome in OUTCOMES:
            reasons = self._reasons[outcome]
            report[outcome] = {str(k): int(reasons[k]) for k in sorted(reasons)}
        report["by_source"] = {
            source: {"rows_in": rows_in[source], "kept": kept[source],
                     "dropped": self._sources[source]}
            for source in sorted(set(rows_in) | set(kept) | set(self._sources))
        }
        if self._responses is not None:
            report["responses"] = self._responses
        check_adds_up(report)
        return report

    def write(self, out: StagedWrites, paths: Paths, summary: dict[str, Any],
              figures: dict[str, Any] | None = None) -> None:
        """Stage the dropped rows and the counts beside the stage's other outputs, and the
        stage's metrics: its ledger in numbers and the stage's own `figures`."""
        if not self._spill.rows:
            out.parquet(self.dropped(), paths.dropped(self.stage))
        else:
            writer = None
            for table in self._tables():
                writer = writer or out.row_groups(paths.dropped(self.stage), table.schema,
                                                  _HELD_ROWS)
                writer.write(table)
            if writer is not None:
                writer.close()
            self._spill.close()
        out.json(summary, paths.stage_ledger(self.stage))
        out.json({**ledger_figures(summary), **flat(figures or {})}, paths.metrics(self.stage))


def ledger_figures(summary: dict[str, Any]) -> Figures:
    """A stage's ledger in numbers: rows in, kept and dropped, responses kept (the reasons
    stay in the ledger report)."""
    figures: Figures = {"rows_in": summary["rows_in"], "kept": summary["kept"],
                        "dropped": dropped_total(summary)}
    if "responses" in summary:
        figures["responses_kept"] = summary["responses"]["kept"]
    return figures


def _column(value: pd.Series | str | None, rows: pd.DataFrame) -> Any:
    if isinstance(value, pd.Series):
        return value.reset_index(drop=True)
    return [value] * len(rows)


def dropped_total(report: dict[str, Any]) -> int:
    return sum(sum(report.get(outcome, {}).values()) for outcome in OUTCOMES)


def check_adds_up(report: dict[str, Any]) -> None:
    """rows_in = kept + dropped, overall, per source and for the reference sets."""
    stage = report["stage"]
    if "references" in report:
        check_adds_up(report["references"])
    if report["rows_in"] != report["kept"] + dropped_total(report):
        raise CurationError(f"ledger does not add up for stage '{stage}': {report['rows_in']} in, "
                            f"{report['kept']} kept, {dropped_total(report)} dropped",
                            file=str(Paths().stage_ledger(stage)))
    for source, counts in report["by_source"].items():
        if counts["rows_in"] != counts["kept"] + counts["dropped"]:
            raise CurationError(f"ledger does not add up for stage '{stage}', source '{source}': "
                                f"{counts}", file=str(Paths().stage_ledger(stage)))
    responses = report.get("responses")
    if responses and responses["in"] != responses["kept"] + sum(responses["dropped"].values()):
        raise CurationError(f"responses do not add up for stage '{stage}': {responses}",
                            file=str(Paths().stage_ledger(stage)))


def compile_ledger(paths: Paths) -> dict[str, Any]:
    """Chain the stage reports in pipeline order; each stage must take in what the last kept."""
    stages = []
    for stage in STAGES:
        path = paths.stage_ledger(stage)
        if path.exists():
            report = read_report(path, stage)
            try:
                check_adds_up(report)
            except (KeyError, TypeError, AttributeError) as exc:  # a damaged report
                raise CurationError(f"not a stage ledger as `curate {stage}` writes it "
                                    f"({type(exc).__name__}: {exc}); run it again",
                                    file=str(path)) from None
            stages.append(report)
        elif stages and any(paths.stage_ledger(later).exists()
                            for later in STAGES[STAGES.index(stage) + 1:]):
            raise CurationError(f"not found, though stages before and after it have "
                                f"reports; run `curate {stage}`", file=str(path))
    if not stages:
        raise CurationError("no stage reports yet; run the pipeline first",
                            file=str(paths.reports / "ledger"))
    for before, after in zip(stages, stages[1:], strict=False):
        if after["rows_in"] != before["kept"]:
            raise CurationError(
                f"stage '{after['stage']}' took in {after['rows_in']} rows but "
                f"'{before['stage']}' kept {before['kept']}",
                file=str(paths.stage_ledger(after["stage"])))
        if "responses" in after and "responses" in before and (
                after["responses"]["in"] != before["responses"]["kept"]):
            raise CurationError(
                f"stage '{after['stage']}' took in {after['responses']['in']} responses but "
                f"'{before['stage']}' kept {before['responses']['kept']}",
                file=str(paths.stage_ledger(after["stage"])))
    return {"stages": stages, "rows_in": stages[0]["rows_in"], "kept": stages[-1]["kept"]}


def ledger_table(ledger: dict[str, Any]) -> Iterable[list[str]]:
    """Rows of the readable ledger: one line per stage and outcome reason."""
    yield ["stage", "rows in", "kept", *OUTCOMES, "responses in", "kept", "reasons"]
    reports = [(r["stage"], r) for r in ledger["stages"]]
    if "references" in ledger["stages"][0]:  # reference sets: pulled aside, never released
        reports.insert(1, ("(references)", ledger["stages"][0]["references"]))
    for name, report in reports:
        reasons = ", ".join([f"{reason} {n}" for outcome in OUTCOMES
                             for reason, n in report.get(outcome, {}).items()]
                            + ([pii_reasons(report["pii"])] if report.get("pii") else []))
        responses = report.get("responses") or {"in": "-", "kept": "-"}
        yield [name, str(report["rows_in"]), str(report["kept"]),
               *(str(sum(report.get(o, {}).values())) for o in OUTCOMES),
               str(responses["in"]), str(responses["kept"]), reasons or "-"]


def pii_reasons(pii: dict[str, Any]) -> str:
    """Personal data found by the redact stage (its rows are all kept), as a reason cell."""
    verb = "redacted" if pii["mode"] == "redact" else "flagged"
    found = ", ".join(f"{kind} {n['found']}" for kind, n in pii["by_type"].items()
                      if n["found"])
    return f"pii {verb}: {found or 'none'}"


def write_ledger(paths: Paths) -> dict[str, Any]:
    """Compile the stage reports into `reports/ledger.json`."""
    ledger = compile_ledger(paths)
    with StagedWrites() as out:
        out.json(ledger, paths.ledger)
    return ledger

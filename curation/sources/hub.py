"""Hub datasets: read with `datasets.load_dataset` at a pinned revision and split."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from curation.core.errors import first_line
from curation.sources.readers import Record
from curation.sources.spec import HubRef, Source


def hub_dataset(hub: HubRef, source: Source) -> Any:
    """The dataset split; any loading failure is one line naming the source file."""
    import datasets

    try:
        return datasets.load_dataset(hub.path, hub.name, split=hub.split, revision=hub.revision)
    except Exception as exc:  # datasets raises many types; the message is what matters
        raise source.error("hub", f"cannot load dataset '{hub.path}': {first_line(exc)}"
                           ) from None


def hub_records(dataset: Any) -> Iterator[Record]:
    for number, values in enumerate(dataset, start=1):
        yield Record(number, values, json.dumps(values, ensure_ascii=False, default=str))

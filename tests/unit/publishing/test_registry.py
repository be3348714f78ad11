"""released.yaml: frozen versions, what a bad file says, and publishing adding to it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from curation.core.errors import CurationError
from curation.publishing.registry import freeze, frozen


def test_freezing_records_content_and_places_once(tmp_path: Path) -> None:
    path = tmp_path / "released.yaml"
    assert frozen(path) == {}
    assert freeze(path, "1.0.0", "a" * 64) is True
    assert freeze(path, "1.0.0", "a" * 64) is False
    assert freeze(path, "1.0.0", "a" * 64, published="org/x") is True
    assert freeze(path, "0.9.0", "b" * 64) is True
    assert yaml.safe_load(path.read_text()) == {"versions": {
        "0.9.0": {"content_sha256": "b" * 64},
        "1.0.0": {"content_sha256": "a" * 64, "published": ["org/x"]}}}
    assert path.read_text().startswith("# Released versions")
    with pytest.raises(CurationError, match="1.0.0 was released with other content"):
        freeze(path, "1.0.0", "c" * 64)


@pytest.mark.parametrize("text, message", [
    ("versions: [\n", "not valid YAML"),
    ("versions: [1.0.0]\n", "expected 'versions:' mapping"),
    ("versions: {1.0.0: {published: [x]}}\n", "expected 'versions:' mapping"),
])
def test_a_bad_registry_is_one_line_naming_the_file(tmp_path: Path, text: str,
                                                    message: str) -> None:
    path = tmp_path / "released.yaml"
    path.write_text(text)
    with pytest.raises(CurationError) as error:
        frozen(path)
    assert message in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)

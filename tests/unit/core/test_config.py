"""Configuration mistakes in params.yaml and in a source file: one line naming the file,
the line and the field, exit 1, no traceback, nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, curate, write, write_source

from curation.core.config import load_params

PARAMS = (REPO / "params.yaml").read_text(encoding="utf-8")


def edited(old: str, new: str) -> str:
    """params.yaml with one exact piece of text replaced (comments and lines kept)."""
    assert PARAMS.count(old) == 1, old
    return PARAMS.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def fails_with(project: Path, pattern: str) -> None:
    result = curate(project, "pull")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch("error: " + pattern, lines[0]), lines[0]
    assert not (project / "data").exists() and not (project / "reports").exists()


PARAMS_CASES = {
    "unknown key": (edited("  ngram: 3 ", "  colour: blue\n  ngram: 3 "), "colour",
                    "dedup.colour", r"unknown key \(expected one of: include_response, .*\)"),
    "misspelled key": (edited("  languages: [en]", "  languagez: [en]"), "languagez",
                       "normalize.languagez", r"unknown key; did you mean 'languages'\?"),
    "a language langdetect does not name": (
        edited("  languages: [en]", "  languages: [en, zh]"), "languages:",
        "normalize.languages",
        r"'zh' is not a language langdetect names \(it names zh-cn and zh-tw\)"),
    "undetermined as a language": (
        edited("  languages: [en]", "  languages: [und]"), "languages:", "normalize.languages",
        r"'und' \(undetermined\) is kept by keep_undetermined, not listed"),
    "misspelled section": (edited("release:\n", "releas:\n"), "releas:", "releas",
                           r"unknown key; did you mean 'release'\?"),
    "wrong type": (edited("  num_perm: 128", '  num_perm: "128"'), "num_perm", "dedup.num_perm",
                   r"Input should be a valid integer \(got str '128'\)"),
    "string for a list": (edited("  languages: [en]", "  languages: en"), "languages: en",
                          "normalize.languages", r"Input should be a valid list \(got str 'en'\)"),
    "string for a flag": (edited("  include_response: false", "  include_response: 'no'"),
                          "include_response", "dedup.include_response",
                          r"Input should be a valid boolean \(got str 'no'\)"),
    "duplicate key": (edited("  threshold: 0.8 ", "  threshold: 0.7\n  threshold: 0.8 "),
                      "threshold: 0.8", "dedup.threshold",
                      r"key written twice \(first on line "
                      f"{line_of(PARAMS, '  threshold: 0.8 ')}\\)"),
    "unknown engine": (edited("  kind: local ", "  kind: spark "), "kind: spark", "engine.kind",
                       r"unknown value 'spark' \(expected 'local' or 'ray'\)"),
    "an address for the local engine": (
        edited("  address: null ", "  address: auto "), "engine:", "engine",
        r"address is for the ray engine \(kind: ray\)"),
    "out of range": (edited("  threshold: 0.8 ", "  threshold: 1.5 "), "threshold: 1.5",
                     "dedup.threshold", r"Input should be less than or equal to 1 \(got float 1.5\)"),
    "bad split size": (edited("  test: 0.1 ", "  test: 1.5 "), "test: 1.5", "split.test",
                       r"must be a fraction in \(0, 1\) or a count >= 1, not 1.5 \(got float 1.5\)"),
    "missing key": (edited("  seed: 42\n", ""), "split:", "split.seed",
                    r"required key is missing"),
    "two models": (edited("    pypi:                  #   wheel",
                          "    hub: sentence-transformers/all-MiniLM-L6-v2\n"
                          "    pypi:                  #   wheel"), "  model:", "families.model",
                   r"give exactly one of hub, folder or pypi \(got hub, pypi\)"),
    "two NER models": (edited("    pypi:                  #   or pypi",
                              "    package: en_core_web_lg\n    pypi:                  #   or pypi"),
                       "  model:                   # spaCy", "redact.model",
                       r"give exactly one of package, folder or pypi \(got package, pypi\)"),
    "unknown PII type": (edited("  types: [person, email,", "  types: [person, mail,"),
                         "types: [person, mail", "redact.types[1]",
                         r"unknown value 'mail' \(expected 'person', 'email', .*\)"),
    "redaction mode": (edited("  mode: redact ", "  mode: mask "), "mode: mask", "redact.mode",
                       r"unknown value 'mask' \(expected 'redact' or 'flag'\)"),
    "UK for GB": (edited("  phone_regions: [US, GB,", "  phone_regions: [US, UK,"),
                  "phone_regions", "redact.phone_regions",
                  r"unknown phone region 'UK': phonenumbers takes ISO 3166 codes \(GB, not UK\)"),
    "phone region": (edited("  phone_regions: [US, GB,", "  phone_regions: [usa, GB,"),
                     "phone_regions", "redact.phone_regions[0]",
                     r"String should match pattern .*"),
    "unknown choice": (edited("  paraphrases: keep ", "  paraphrases: drop "), "paraphrases",
                       "families.paraphrases",
                       r"unknown value 'drop' \(expected 'keep' or 'remove'\)"),
}


@pytest.mark.parametrize("case", sorted(PARAMS_CASES))
def test_params_mistakes_are_one_located_line(project: Path, case: str) -> None:
    text, needle, field, message = PARAMS_CASES[case]
    write(project / "params.yaml", text)
    where = f"params.yaml, line {line_of(text, needle)}: "
    fails_with(project, re.escape(where + f"field '{field}': ") + message)


def test_params_named_by_option_are_the_file_errors_name(project: Path) -> None:
    text = edited("  languages: [en]", "  languages: en")
    write(project / "other" / "experiment.yaml", text)
    result = curate(project, "normalize", "--params", "other/experiment.yaml")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: other/experiment.yaml, line "
                                    f"{line_of(text, 'languages: en')}: field "
                                    "'normalize.languages': ")


SOURCE = "kind: file\nfiles: [in/x.txt]\n"
SOURCE_CASES = {
    "unknown key": (SOURCE + "category_mapp:\n  sh: suicide_self_harm\n", "category_mapp",
                    "category_mapp", r"unknown key; did you mean 'category_map'\?"),
    "misspelled key": (SOURCE + "field:\n  prompt: text\n", "field:", "field",
                       r"unknown key; did you mean 'fields'\?"),
    "nested unknown key": (SOURCE + "fields:\n  promt: text\n", "promt", "fields.promt",
                           r"unknown key; did you mean 'prompt'\?"),
    "wrong type": (SOURCE + "fields:\n  prompt: 5\n", "prompt: 5", "fields.prompt",
                   r"Input should be a valid string \(got int 5\); quote it, or YAML reads it as a number"),
    "true for a string": (SOURCE + "expected_behavior_map: {true: comply}\n",
                          "expected_behavior_map", "expected_behavior_map[1]",
                          r"Input should be a valid string \(got bool True\); quote it, or "
                          "YAML reads it as true or false"),
    "behaviour values that differ only in case": (
        SOURCE + "expected_behavior_map: {Safe: comply, safe: refuse}\n",
        "expected_behavior_map", "expected_behavior_map.safe",
        r"'safe' and 'Safe' are the same value \(keys match case-insensitively\)"),
    "unknown key in an optional block": (
        SOURCE + "conversation: {turns: t, nope: 1}\n", "conversation", "conversation.nope",
        r"unknown key \(expected one of: turns, group_by, order, transcript, role, content, "
        r"roles\)"),
    "unknown key in a file entry": (
        "kind: file\nfiles: [{path: in/x.txt, nope: 1}]\n", "files", "files[0].nope",
        r"unknown key \(expected one of: path, category, expected_behavior\)"),
    "string for a list": ("kind: file\nfiles: in/x.txt\n", "files:", "files",
                          r"Input should be a valid list \(got str 'in/x.txt'\)"),
    "duplicate key": (SOURCE + "license: MIT\n", "license: MIT", "license",
                      r"key written twice \(first on line 2\)"),
    "out of range": (SOURCE + "artifact: {package: p, version: '1', sha256: abc}\n",
                     "artifact:", "artifact.sha256", r"String should match pattern .*"),
    "unknown value": ("kind: ftp\nfiles: [in/x.txt]\n", "kind:", "kind",
                      r"unknown value 'ftp' \(expected 'file', 'pypi' or 'hub'\)"),
    "no value": (SOURCE + "constants:\n  expected_behavior:\n", "expected_behavior:",
                 "constants.expected_behavior",
                 r"has no value \(a key with nothing after it is null in YAML\)"),
}


@pytest.mark.parametrize("case", sorted(SOURCE_CASES))
def test_source_mistakes_are_one_located_line(project: Path, case: str) -> None:
    body, needle, field, message = SOURCE_CASES[case]
    write(project / "in" / "x.txt", "a prompt that is long enough\n")
    path = write_source(project, "s", body)
    where = f"sources/s.yaml, line {line_of(path.read_text(), needle)}: "
    fails_with(project, re.escape(where + f"field '{field}': ") + message)


def test_aliases_that_expand_past_a_config_files_size_are_refused(project: Path) -> None:
    """Nine aliases of nine aliases, eight deep ("billion laughs"): refused before they
    are expanded, in a second; a few aliases are fine."""
    levels = ["  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 8)]
    write(project / "in" / "x.txt", "a prompt that is long enough\n")
    write_source(project, "s", SOURCE + "description:\n" + "\n".join(levels) + "\n")
    fails_with(project, re.escape("sources/s.yaml: holds more than 100,000 values once its "
                                  "aliases (*name) are expanded; is it a config file?"))
    write_source(project, "s", SOURCE + "homepage: &h https://example.org\ndescription: *h\n")
    assert curate(project, "pull").returncode == 0


def test_a_release_records_the_params_that_make_its_bytes_not_those_that_run_it() -> None:
    params = load_params(REPO / "params.yaml")
    recorded = params.provenance
    assert "engine" not in recorded and "num_proc" not in recorded["normalize"]
    assert "batch_size" not in recorded["dedup"] and "num_proc" not in recorded["redact"]
    assert recorded["families"] == params.raw["families"]  # batch shape moves vectors
    assert recorded["dedup"]["threshold"] == params.raw["dedup"]["threshold"]

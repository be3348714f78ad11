"""MinHash signatures and LSH candidates equal datasketch's own, and the shingle rule."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.neardup import lsh
from curation.neardup.lsh import candidate_pairs
from curation.neardup.minhash import (
    MinHashParams,
    band_keys,
    shingle_hash,
    shingles,
    sketch,
    text_key,
)

PARAMS = MinHashParams(ngram=3, char_ngram=5, num_perm=128, threshold=0.8, seed=1,
                       false_negative_weight=0.95)


def datasketch_minhash(text: str) -> MinHash | None:
    kind, grams = shingles(text_key(text), PARAMS)
    if not grams:
        return None
    m = MinHash(num_perm=PARAMS.num_perm, seed=PARAMS.seed,
                hashfunc=partial(shingle_hash, kind=kind))
    m.update_batch(grams)
    return m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=8))
def test_batch_signatures_equal_datasketch_minhash(texts: list[str]) -> None:
    texts = texts + ["word " * 300_000]  # a 1.5 MB prompt, hashed in bounded chunks
    batch = sketch(texts, PARAMS)
    for row, position in enumerate(batch.sketched.tolist()):
        assert np.array_equal(batch.signatures[row],
                              datasketch_minhash(texts[position]).hashvalues)


def test_shingle_rule_for_short_and_unusual_texts() -> None:
    assert shingles(text_key("How do I make a bomb?"), PARAMS)[0] == "word"
    assert shingles(text_key("Overdose"), PARAMS) == ("char", ["overd", "verdo", "erdos",
                                                                "rdose"])
    assert shingles(text_key("hi"), PARAMS) == ("exact", [])
    assert shingles(text_key(""), PARAMS) == ("exact", [])
    assert shingles(text_key("我怎样才能结束生命"), PARAMS)[0] == "char"  # no spaces: characters
    assert text_key("😀 😀😀!") == "😀 😀😀!"  # no word characters: the text itself
    assert text_key("How do I, like, DO it?!") == "how do i like do it"


def test_candidate_pairs_equal_datasketch_lsh_on_the_demo_data(built: Path) -> None:
    prompts = pd.read_parquet(built / "data" / "normalized.parquet")["prompt"].tolist()
    batch = sketch(prompts, PARAMS)
    ours, _ = candidate_pairs(band_keys(batch.signatures, PARAMS.bands), batch.sketched,
                              max_bucket=len(prompts))

    b, r = PARAMS.bands
    lsh = MinHashLSH(threshold=PARAMS.threshold, num_perm=PARAMS.num_perm, params=(b, r))
    sketches = {}
    for i in batch.sketched.tolist():
        sketches[i] = datasketch_minhash(prompts[i])
        lsh.insert(i, sketches[i])
    theirs = {(min(i, j), max(i, j)) for i, m in sketches.items() for j in lsh.query(m) if i != j}
    assert {tuple(p) for p in ours.tolist()} == theirs
    assert len(theirs) > 100  # the demo data has many exact repeats


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["how", "do", "i", "hide", "cuts", "from", "my",
                                          "parents", "tonight", "🔪", "ok"]), max_size=12)
                .map(" ".join), min_size=2, max_size=12))
def test_many_jaccards_at_once_equal_one_at_a_time(texts: list[str]) -> None:
    batch = sketch(texts, PARAMS)
    pairs = np.array([(i, j) for i in range(len(texts)) for j in range(len(texts))],
                     dtype=np.int64)
    assert batch.jaccards(pairs).tolist() == [batch.jaccard(i, j) for i, j in pairs.tolist()]


def test_pairs_ruled_out_by_set_sizes_are_exactly_those_below_the_threshold() -> None:
    words = [f"w{k}" for k in range(12)]
    texts = [" ".join(words[:n]) for n in range(3, 13)] + [" ".join(words[6:])]  # 1-10 grams
    batch = sketch(texts, PARAMS)
    pairs = np.array([(i, j) for i in range(len(texts)) for j in range(len(texts))],
                     dtype=np.int64)
    exact = batch.jaccards(pairs)
    for threshold in (0.5, 0.8, 0.9, 1.0):  # 4 of 5 grams shared: 0.8, on the bound
        assert np.array_equal(batch.reaching(pairs, threshold), exact >= threshold), threshold
    assert (exact == 0.8).any()


def test_a_bucket_larger_than_the_cap_pairs_each_member_with_the_next_ones_only() -> None:
    keys = np.array([[7], [7], [3], [7], [7], [3], [9]], dtype=np.uint64)
    items = np.array([10, 11, 12, 13, 14, 15, 16])
    pairs, oversized = candidate_pairs(keys, items, max_bucket=2)
    assert oversized == 1
    assert pairs.tolist() == [[10, 11], [10, 13], [11, 13], [11, 14], [12, 15], [13, 14]]


def test_candidate_pairs_in_passes_and_kept_are_the_pairs_of_one_pass(
        built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes over ranges of items bound the candidates held; they find the same pairs in
    the same order, and `keep` keeps those its check passes."""
    prompts = pd.read_parquet(built / "data" / "normalized.parquet")["prompt"].tolist()
    batch = sketch(prompts, PARAMS)
    keys = band_keys(batch.signatures, dataclasses.replace(PARAMS, threshold=0.4).bands)
    whole, oversized = candidate_pairs(keys, batch.sketched, 5)
    assert len(whole) > 1000
    monkeypatch.setattr(lsh, "_HELD_CANDIDATES", 97)  # dozens of passes
    passes, again = candidate_pairs(keys, batch.sketched, 5)
    assert np.array_equal(passes, whole) and again == oversized
    kept, _ = candidate_pairs(keys, batch.sketched, 5,
                              keep=lambda found: batch.reaching(found, 0.5))
    assert np.array_equal(kept, whole[batch.reaching(whole, 0.5)]) and 0 < len(kept) < len(whole)


def test_jaccards_on_threads_equal_one_thread(built: Path) -> None:
    prompts = pd.read_parquet(built / "data" / "normalized.parquet")["prompt"].tolist()
    batch = sketch(prompts, PARAMS)
    pairs = np.random.default_rng(0).integers(0, len(prompts), (200_000, 2))
    one = batch.jaccards(pairs)
    assert np.array_equal(batch.jaccards(pairs, threads=2), one)
    assert batch.lengths[pairs].sum() > 2 * 2_000_000  # several blocks: the threads share them

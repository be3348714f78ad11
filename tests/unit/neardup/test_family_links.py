"""Family linking: the chaining guard (centres and a size bound), fixed edges, and the
neighbour search (exact and IVF) on vectors whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from curation.neardup.families import SearchParams, link, nearest, neighbours

NONE = np.empty((0, 2), dtype=np.int64)
EXACT = SearchParams(neighbours=10, exact_search_limit=10**6, ivf_probes=8, num_threads=1)


def unit(*rows: list[float]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def on_arc(degrees: list[float]) -> np.ndarray:
    """Unit vectors in a plane at these angles: cosine of neighbours is cos(difference)."""
    radians = np.radians(degrees)
    return unit(*([np.cos(r), np.sin(r), 0.0] for r in radians))


def test_a_chain_of_neighbours_does_not_become_one_family() -> None:
    # Each step is 40 degrees (cosine 0.77 >= 0.6); the ends are 160 degrees apart.
    vectors = on_arc([0, 40, 80, 120, 160])
    pairs, scores = neighbours(vectors, EXACT, 0.6)
    assert len(pairs) == 4  # only next neighbours pass the threshold
    found = link(vectors, NONE, pairs, scores, 0.6, max_size=100)
    assert found.stats["largest_family"] <= 3
    assert found.stats["links_refused_by_centre"] >= 1
    assert len(set(found.labels.tolist())) >= 2


def test_rewrites_of_one_prompt_join_and_their_family_stays_whole() -> None:
    vectors = on_arc([0, 10, 15, 20, 90, 95])  # a prompt, three rewrites; another pair
    pairs, scores = neighbours(vectors, EXACT, 0.6)
    found = link(vectors, NONE, pairs, scores, 0.6, max_size=100)
    assert found.labels.tolist() == [0, 0, 0, 0, 4, 4]
    assert found.stats["size_distribution"] == {"2": 1, "4": 1}


def test_size_bound_refuses_links_but_fixed_edges_always_join() -> None:
    vectors = on_arc([0, 1, 2, 3, 4, 5])
    pairs, scores = neighbours(vectors, EXACT, 0.6)
    bounded = link(vectors, NONE, pairs, scores, 0.6, max_size=3)
    assert bounded.stats["largest_family"] == 3 and bounded.stats["links_refused_by_size"] > 0
    fixed = np.array([[0, 5], [1, 5], [2, 5], [3, 5], [4, 5]])
    declared = link(vectors, fixed, NONE, np.empty(0, dtype=np.float32), 0.6, max_size=3)
    assert set(declared.labels.tolist()) == {0}  # a declared family is never broken up


@pytest.mark.parametrize(("angle", "joins"), [(10, True), (-40, False)])
def test_a_declared_family_is_judged_by_its_centre(angle: float, joins: bool) -> None:
    # Items 0 and 1 (0 and 100 degrees) are declared one family: its centre is at 50.
    # A neighbour of item 0 joins only near that centre (cos 40 = 0.77, cos 90 = 0).
    vectors = on_arc([0, 100, angle])
    pair = np.array([[0, 2]])
    found = link(vectors, np.array([[0, 1]]), pair, np.array([vectors[0] @ vectors[2]]),
                 0.6, max_size=10)
    assert found.labels.tolist() == ([0, 0, 0] if joins else [0, 0, 2])
    assert found.stats["links_refused_by_centre"] == (0 if joins else 1)


def dense_link_labels(vectors: np.ndarray, fixed: np.ndarray, pairs: np.ndarray,
                      scores: np.ndarray, threshold: float, max_size: int) -> list[int]:
    """`link` as first written: a float64 centre for every row (the reference)."""
    n = len(vectors)
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in fixed.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    base = np.array([root(i) for i in range(n)])
    parent, size = base.copy(), np.bincount(base, minlength=n)
    centre = np.zeros_like(vectors, dtype=np.float64)
    np.add.at(centre, base, vectors)
    for e in np.lexsort((pairs[:, 1], pairs[:, 0], -scores)):
        a, b = root(int(pairs[e, 0])), root(int(pairs[e, 1]))
        if a == b or size[a] + size[b] > max_size:
            continue
        ca, cb = centre[a], centre[b]
        if size[a] + size[b] > 2 and ca @ cb < threshold * np.sqrt((ca @ ca) * (cb @ cb)):
            continue
        a, b = min(a, b), max(a, b)
        parent[b], size[a] = a, size[a] + size[b]
        centre[a] += centre[b]
    return [root(i) for i in range(n)]


@pytest.mark.parametrize("seed", range(6))
def test_families_are_those_of_a_centre_for_every_row(seed: int) -> None:
    """Centres held only for families of several items decide every link as a float64
    centre per row did: clustered vectors, declared families and refusals by centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, 24))
    vectors = unit(*(centres[rng.integers(0, 40, 600)] + rng.normal(
        scale=0.9, size=(600, 24))).tolist())
    fixed = rng.integers(0, 600, size=(30, 2))
    pairs, scores = neighbours(vectors, EXACT, 0.3)
    found = link(vectors, fixed, pairs, scores, 0.5, max_size=12)
    assert found.stats["links_refused_by_centre"] > 0
    assert found.labels.tolist() == dense_link_labels(vectors, fixed, pairs, scores, 0.5, 12)


def test_labels_do_not_depend_on_the_order_pairs_are_given() -> None:
    rng = np.random.default_rng(0)
    vectors = unit(*rng.normal(size=(300, 16)).tolist())
    vectors = np.concatenate([vectors, unit(*(vectors[:100] + rng.normal(scale=0.08, size=(100, 16))).tolist())])
    pairs, scores = neighbours(vectors, EXACT, 0.6)
    shuffled = rng.permutation(len(pairs))
    a = link(vectors, NONE, pairs, scores, 0.6, 50)
    b = link(vectors, NONE, pairs[shuffled], scores[shuffled], 0.6, 50)
    assert a.labels.tolist() == b.labels.tolist()
    assert sum(a.labels[i] == a.labels[300 + i] for i in range(100)) >= 90


@pytest.mark.parametrize("exact_limit", [10**6, 100])  # flat index, then IVF
def test_neighbour_search_finds_the_planted_pairs(exact_limit: int) -> None:
    rng = np.random.default_rng(1)
    base = unit(*rng.normal(size=(2000, 32)).tolist())
    twins = unit(*(base[:500] + rng.normal(scale=0.05, size=(500, 32))).tolist())
    vectors = np.concatenate([base, twins])
    search = SearchParams(neighbours=5, exact_search_limit=exact_limit, ivf_probes=16,
                          num_threads=1)
    pairs, scores = neighbours(vectors, search, 0.8)
    found = {tuple(p) for p in pairs.tolist()}
    assert sum((i, 2000 + i) in found for i in range(500)) >= 490
    assert np.allclose(scores, np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]]),
                       atol=1e-5)
    again, _ = neighbours(vectors, search, 0.8)
    assert np.array_equal(pairs, again)  # same vectors, same neighbours


def test_nearest_reference_and_no_references() -> None:
    refs = on_arc([0, 90])
    rows, cosine = nearest(on_arc([10, 85, 300]), refs, EXACT)
    assert rows.tolist() == [0, 1, 0] and cosine[0] == pytest.approx(np.cos(np.radians(10)), abs=1e-5)
    rows, cosine = nearest(on_arc([10]), np.empty((0, 3), dtype=np.float32), EXACT)
    assert rows.tolist() == [-1] and cosine.tolist() == [-1.0]

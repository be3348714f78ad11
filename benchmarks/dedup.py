"""Benchmark the dedup stage on a synthetic corpus with planted near duplicates.

Prints prompts per second end to end (`curate dedup` in its own process: start, read
parquet, clusters, outputs written), peak RSS of its process tree, pair recall and
precision against exact Jaccard of word n-gram shingles, and the speed of a plain
one-record-at-a-time datasketch loop (MinHash + MinHashLSH) as baseline.

    .venv/bin/python benchmarks/dedup.py --n 200000
    .venv/bin/python benchmarks/dedup.py --n 200000 --threshold 0.7
    .venv/bin/python benchmarks/dedup.py --n 1000000 --baseline-n 0
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from pipeline import run_stage  # benchmarks/pipeline.py: `curate <stage>`, timed and sampled

from curation.core.config import DedupParams, load_params
from curation.core.items import to_arrow
from curation.core.judgments import load_vocabulary
from curation.core.paths import Paths
from curation.core.tableio import StagedWrites
from curation.neardup.minhash import MinHashParams, shingles, text_key

REPO = Path(__file__).resolve().parent.parent


def synthetic_corpus(n: int, planted_share: float, seed: int) -> tuple[pd.DataFrame, list]:
    """`n` prompts of 12-40 random words; a share of them are edited copies of another.

    Returns the table and the planted (copy, original) row pairs.
    """
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "ex"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4)))
                         for _ in range(40_000)})
    prompts: list[str] = []
    planted: list[tuple[int, int]] = []
    for i in range(n):
        if prompts and rng.random() < planted_share:
            original = rng.randrange(len(prompts))
            words = prompts[original].split()
            for _ in range(rng.randint(0, max(1, len(words) // 6))):  # edit up to 1/6 of words
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
            prompts.append(" ".join(words))
            planted.append((i, original))
        else:
            prompts.append(" ".join(rng.choices(vocabulary, k=rng.randint(12, 40))))
    ids = [f"{i:016x}" for i in range(n)]
    table = pd.DataFrame({
        "id": ids, "messages": [[{"role": "user", "content": p}] for p in prompts],
        "prompt": prompts, "responses": [[] for _ in range(n)], "expected_behavior": "refuse",
        "contrast_of": pd.array([None] * n, dtype="str"), "source": "synthetic",
        "source_record_id": ids, "source_category": pd.array([None] * n, dtype="str"),
        "source_license": "CC0-1.0", "family_key": pd.array([None] * n, dtype="str"),
        "language": "en", "language_prob": 1.0,
    })
    return table, planted


def exact_jaccard(a: str, b: str, params: DedupParams) -> float:
    sa = set(shingles(text_key(a), MinHashParams.of(params))[1])
    sb = set(shingles(text_key(b), MinHashParams.of(params))[1])
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def baseline_rate(prompts: list[str], params: DedupParams) -> float:
    """Prompts per second of the textbook datasketch loop: one MinHash and insert each."""
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    minhash = MinHashParams.of(params)
    lsh = MinHashLSH(threshold=minhash.threshold, num_perm=minhash.num_perm)
    sketches = []
    for i, prompt in enumerate(prompts):
        m = MinHash(num_perm=minhash.num_perm, seed=minhash.seed)
        for shingle in shingles(text_key(prompt), minhash)[1]:
            m.update(shingle.encode("utf-8"))
        lsh.insert(i, m)
        sketches.append(m)
    for m in sketches:
        lsh.query(m)
    return len(prompts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="prompts in the corpus")
    parser.add_argument("--planted", type=float, default=0.1,
                        help="share of prompts that are edited copies")
    parser.add_argument("--baseline-n", type=int, default=20_000,
                        help="prompts for the baseline loop (0: skip)")
    parser.add_argument("--num-proc", type=int, help="override params dedup.num_proc")
    parser.add_argument("--threshold", type=float,
                        help="override params dedup.threshold (recall is measured at it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    params = load_params(REPO / "params.yaml").params.dedup
    overrides = {k: v for k, v in (("num_proc", args.num_proc), ("threshold", args.threshold))
                 if v is not None}
    params = params.model_copy(update=overrides)
    table, planted = synthetic_corpus(args.n, args.planted, args.seed)
    print(f"corpus: {args.n:,} prompts, {len(planted):,} planted copies, "
          f"threshold {params.threshold}, num_perm {params.num_perm}, "
          f"num_proc {params.num_proc}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with StagedWrites() as out:
            out.parquet(to_arrow(table, load_vocabulary(REPO / "schemas" / "judgments.yaml")
                                 .arrow_type()), Paths(root).normalized)
        shutil.copytree(REPO / "schemas", Paths(root).schemas_dir)
        settings = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        settings["dedup"].update(source_priority=[], **overrides)
        (root / "params.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
        # `curate dedup` as a user runs it: its own process (startup and imports counted),
        # so peak RSS is the stage's process tree and not the corpus generator's.
        elapsed, peak, _, failure = run_stage("dedup", root)
        if failure:
            sys.exit(f"the dedup stage failed: {failure}")
        stage = json.loads((root / "reports" / "dedup.json").read_text(encoding="utf-8"))
        clusters = pd.read_parquet(root / "data" / "dup_clusters.parquet")
    print(f"end to end: {elapsed:.2f} s, {args.n / elapsed:,.0f} prompts/s; "
          f"{stage['exact_duplicates']:,} exact + {stage['near_duplicates']:,} near "
          f"duplicates, {stage['candidate_pairs']:,} candidate pairs, "
          f"{stage['checked_pairs']:,} checked")
    print(f"peak RSS of `curate dedup` and its workers together: {peak / 2**20:,.0f} MB")

    prompts = table["prompt"].tolist()
    ids = table["id"].tolist()
    cluster_of = dict(zip(clusters["id"], clusters["cluster_id"], strict=True))
    truth = [(a, b) for a, b in planted
             if exact_jaccard(prompts[a], prompts[b], params) >= params.threshold]
    found = sum(1 for a, b in truth
                if ids[a] in cluster_of and cluster_of.get(ids[a]) == cluster_of.get(ids[b]))
    members = clusters[~clusters["is_representative"]]
    row_of = {identifier: i for i, identifier in enumerate(ids)}
    correct = sum(1 for m, r in zip(members["id"], members["representative"], strict=True)
                  if exact_jaccard(prompts[row_of[m]], prompts[row_of[r]], params)
                  >= params.threshold)
    print(f"recall: {found / max(1, len(truth)):.4f} of {len(truth):,} planted pairs at or "
          f"above the threshold; precision: {correct / max(1, len(members)):.4f} of "
          f"{len(members):,} member-representative pairs")

    if args.baseline_n:
        rate = baseline_rate(prompts[:args.baseline_n], params)
        speed = args.n / elapsed
        print(f"baseline (plain datasketch loop, {args.baseline_n:,} prompts): {rate:,.0f} "
              f"prompts/s; the dedup stage is {speed / rate:.1f}x faster")


if __name__ == "__main__":
    main()

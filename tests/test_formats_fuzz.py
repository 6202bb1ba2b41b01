"""Fuzzing the readers: a damaged source either ingests or fails with BadInput (exit 2), nothing else.

Each reader gets a fixture function (registered with ``@fuzz_source``) that writes a small valid
source and names the files mutations may touch. Hypothesis then damages those files (flips
bytes, truncates, deletes or replaces HDF5 objects with random shapes and dtypes, NaNs, edits
JSON and Parquet/Arrow tables) and runs the real CLI. Allowed outcomes: exit 0 with a store that
opens and reads back consistently, or exit 2 with one ``Error:`` line and the store byte for
byte as before (or never created). Any other exception fails the test.

To fuzz another reader, add one function::

    @fuzz_source("lerobot")
    def lerobot_source(root: Path) -> FuzzSource:
        ...write a tiny dataset under root (the format's own test module has the writer)...
        return FuzzSource(path=dataset_dir, files=[...the files to damage...])

Runs are derandomised (the same examples every run); ALOE_FUZZ_EXAMPLES=500 ALOE_FUZZ_RANDOM=1
explores further.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aloe_cli import schema as S
from aloe_cli.store import Store
from conftest import write_aloha_episode
from h5_writers import write_minari, write_robomimic

EXAMPLES = int(os.environ.get("ALOE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("ALOE_FUZZ_RANDOM"),
                phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its draws as they were
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@dataclass
class FuzzSource:
    path: Path  # what `aloe ingest` is given
    files: list[Path]  # the files mutations may damage
    format: str | None = None  # the --format name (default: the registry key)


SOURCES: dict[str, Callable[[Path], FuzzSource]] = {}


def fuzz_source(name: str):
    """Register a fixture function `root -> FuzzSource` under a reader's --format name."""

    def deco(fn):
        SOURCES[name] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------- the sources

@fuzz_source("aloha")
def aloha_source(root: Path) -> FuzzSource:
    d = root / "aloha"
    d.mkdir()
    write_aloha_episode(d / "episode_0.hdf5", T=5, seed=0, cams=("top",), image_hw=(4, 4))
    write_aloha_episode(d / "episode_1.hdf5", T=4, seed=1, cams=("cam_high", "cam_low"), image_hw=(4, 4),
                        compress=True, effort=True, base_action=True)
    return FuzzSource(d, sorted(d.glob("*.hdf5")))


@fuzz_source("robomimic")
def robomimic_source(root: Path) -> FuzzSource:
    p = root / "lift.hdf5"
    write_robomimic(p, lengths=(4, 3), cameras=("agentview",), image_hw=4, compress=True,
                    masks={"train": ["demo_1"], "valid": ["demo_2"]})
    return FuzzSource(p, [p])


@fuzz_source("minari")
def minari_source(root: Path) -> FuzzSource:
    d, _ = write_minari(root / "m", lengths=(3, 4), dict_obs=True, image_hw=32, success_info=[True, False])
    return FuzzSource(d, [d / "data" / "main_data.hdf5", d / "data" / "metadata.json"])


@fuzz_source("minari-parquet")
def minari_parquet_source(root: Path) -> FuzzSource:
    d, _ = write_minari(root / "m", lengths=(3, 4), data_format="parquet", success_info=[True, False])
    files = sorted((d / "data").rglob("*.parquet")) + [d / "data" / "metadata.json"]
    return FuzzSource(d, files, format="minari")


@fuzz_source("lerobot")
def lerobot_v21_source(root: Path) -> FuzzSource:
    from test_formats_lerobot import make_episodes, write_v21

    d = write_v21(root / "le", make_episodes(n=2, lengths=(4, 6), success=(True, False)), image=True)
    files = sorted((d / "data").rglob("*.parquet")) + sorted((d / "meta").glob("*"))
    return FuzzSource(d, files)


@fuzz_source("lerobot-v3-video")
def lerobot_v30_source(root: Path) -> FuzzSource:
    from test_formats_lerobot import make_episodes, write_v30

    d = write_v30(root / "le", make_episodes(n=2, lengths=(4, 6), success=(True, False)), files=((0, 1),),
                  image=False, video=True)
    return FuzzSource(d, sorted(p for p in d.rglob("*") if p.is_file()), format="lerobot")


@fuzz_source("rlds")
def rlds_source(root: Path) -> FuzzSource:
    from test_formats_rlds import make_episode, write_rlds

    d = write_rlds(root / "tfds", {"train": [[make_episode(4, 0, True, 1.0, "open the drawer"),
                                              make_episode(3, 1, False, 0.0, "close it")]]})
    return FuzzSource(d, sorted(p for p in d.iterdir() if p.is_file()))


# ------------------------------------------------------------------------------- mutations

DTYPES = ["float32", "float64", "int8", "uint8", "bool", "complex64", "S4", "str"]


def _random_array(data, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(data.draw(st.lists(st.integers(0, 6), max_size=3), label="shape"))
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    if dtype == "str":
        return np.array(["x" * int(rng.integers(0, 5)) for _ in range(int(np.prod(shape)))], dtype=object).reshape(shape)
    if dtype == "S4":
        return np.full(shape, b"ab", dtype="S4")
    return (rng.normal(size=shape) * 10).astype(dtype)


def _mutate_hdf5(path: Path, data, rng) -> None:
    try:
        _edit_hdf5(path, data, rng)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError):
        pass  # an earlier mutation already broke the file: h5py cannot edit it


def _edit_hdf5(path: Path, data, rng) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        names: list[str] = []
        f.visit(names.append)
        if not names:
            return
        name = data.draw(st.sampled_from(sorted(names)), label="object")
        obj = f[name]
        op = data.draw(st.sampled_from(["delete", "replace", "nan", "rows", "attr"]), label="h5op")
        if op == "delete":
            del f[name]
        elif op == "replace":
            del f[name]
            arr = _random_array(data, rng)
            if arr.dtype == object:
                f.create_dataset(name, data=arr, dtype=h5py.string_dtype())
            else:
                f[name] = arr
        elif op == "nan" and isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and obj.size:
            idx = tuple(int(rng.integers(0, s)) for s in obj.shape)
            obj[idx] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="bad")
        elif op == "rows" and isinstance(obj, h5py.Dataset) and obj.ndim:
            a = obj[()]
            del f[name]
            f[name] = a[: data.draw(st.integers(0, max(a.shape[0] - 1, 0)), label="keep")]
        elif op == "attr":
            target = data.draw(st.sampled_from([obj, f["/"]]), label="attrs of")
            keys = sorted(target.attrs)
            if keys and data.draw(st.booleans(), label="delete attr"):
                del target.attrs[data.draw(st.sampled_from(keys), label="attr")]
            else:
                key = data.draw(st.sampled_from(keys or ["compress"]), label="attr")
                target.attrs[key] = data.draw(st.sampled_from(["{", "x", -1, 1e300, [1, 2], b"\xff"]), label="value")


def _random_json(data):
    return data.draw(st.sampled_from([None, -1, 0, 1.5, "x", "hdf5", "arrow", "zarr", [], {}, "{"]), label="json")


def _mutate_json(path: Path, data, rng) -> None:
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return
    if not isinstance(doc, dict) or not doc:
        path.write_text(json.dumps(_random_json(data)))
        return
    key = data.draw(st.sampled_from(sorted(doc)), label="key")
    if data.draw(st.booleans(), label="delete key"):
        del doc[key]
    else:
        doc[key] = _random_json(data)
    path.write_text(json.dumps(doc))


def _mutate_table(path: Path, data, rng) -> None:
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    arrow = path.suffix == ".arrow"
    try:
        t = feather.read_table(path) if arrow else pq.read_table(path)
    except (OSError, pa.ArrowException):
        return
    op = data.draw(st.sampled_from(["drop", "slice", "nulls", "retype"]), label="tableop")
    col = data.draw(st.sampled_from(t.column_names), label="column") if t.column_names else None
    if op == "drop" and col:
        t = t.drop_columns([col])
    elif op == "slice":
        t = t.slice(0, data.draw(st.integers(0, max(t.num_rows - 1, 0)), label="rows"))
    elif op == "nulls" and col:
        t = t.set_column(t.column_names.index(col), col, pa.nulls(t.num_rows, t.schema.field(col).type))
    elif op == "retype" and col:
        t = t.set_column(t.column_names.index(col), col, pa.array(["x"] * t.num_rows))
    feather.write_feather(t, path) if arrow else pq.write_table(t, path)


def _mutate_bytes(path: Path, data, rng) -> None:
    b = bytearray(path.read_bytes())
    if not b:
        return
    if data.draw(st.booleans(), label="truncate"):
        path.write_bytes(bytes(b[: data.draw(st.integers(0, len(b) - 1), label="cut")]))
        return
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        i = data.draw(st.integers(0, len(b) - 1), label="at")
        b[i] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(bytes(b))


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def mutate(src: FuzzSource, data) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(src.files), label="file")
        if not path.exists():
            continue
        kinds = ["bytes"]
        if _is_hdf5(path):
            kinds += ["hdf5", "hdf5"]
        elif path.suffix == ".json":
            kinds += ["json"]
        elif path.suffix in (".parquet", ".arrow"):
            kinds += ["table"]
        kind = data.draw(st.sampled_from(kinds), label="kind")
        {"bytes": _mutate_bytes, "hdf5": _mutate_hdf5, "json": _mutate_json, "table": _mutate_table}[kind](
            path, data, rng)


# ------------------------------------------------------------------------------- the property

def snapshot(store: Path) -> dict | None:
    if not store.exists():
        return None
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != S.LOCK_FILE}


_CLEAN: dict[str, Path] = {}


def clean_store(name: str, cli, base: Path) -> Path:
    """A store holding the undamaged source (built once per reader)."""
    if name not in _CLEAN:
        (base / "src").mkdir(parents=True)
        src = SOURCES[name](base / "src")
        store = base / "store"
        r = cli("ingest", store, src.path, "--format", src.format or name)
        assert r.exit_code == 0, r
        _CLEAN[name] = store
    return _CLEAN[name]


def check_ingest(cli, src: FuzzSource, store: Path, explicit: bool) -> None:
    before = snapshot(store)
    args = ["--format", src.format] if explicit else []
    r = cli("ingest", store, src.path, *args)
    assert r.exit_code in (0, 2), r
    if r.exit_code == 2:
        assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r
        assert snapshot(store) == before, "a failed ingest changed the store"
        return
    s = Store.open(store)
    frames = s.load_frames([S.OBS_STATE, S.ACTION, S.REWARD])
    assert frames.num_frames == int(s.episodes[S.LENGTH].sum())
    assert frames.columns[S.OBS_STATE].shape == (frames.num_frames, s.state_dim)
    assert np.isfinite(frames.columns[S.OBS_STATE]).all() and np.isfinite(frames.columns[S.ACTION]).all()
    assert sum(len(i["episode_ids"]) for i in s.manifest["ingests"]) == len(s.episodes)
    assert not (store / S.TXN_FILE).exists()


@pytest.fixture(scope="module")
def fuzz_base():
    with tempfile.TemporaryDirectory(prefix="aloe-fuzz-") as d:
        yield Path(d)
    _CLEAN.clear()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_valid_source_ingests(cli, tmp_path, name):
    """The unmutated fixture is valid: the fuzz starts from a source that ingests."""
    src = SOURCES[name](tmp_path)
    r = cli("ingest", tmp_path / "store", src.path)  # detected
    assert r.exit_code == 0, r
    assert r.stdout.endswith(f"[{src.format or name}] into {tmp_path / 'store'}\n")


@pytest.mark.parametrize("name", sorted(SOURCES))
@FUZZ
@given(data=st.data())
def test_damaged_source_ingests_or_is_bad_input(cli, fuzz_base, name, data):
    base = fuzz_base / name
    clean = clean_store(name, cli, base)
    with tempfile.TemporaryDirectory(dir=fuzz_base) as tmp:
        tmp = Path(tmp)
        src = SOURCES[name](tmp)
        src.format = src.format or name
        mutate(src, data)
        if data.draw(st.booleans(), label="fresh store"):
            store = tmp / "new-store"
        else:
            store = tmp / "store"
            shutil.copytree(clean, store)
        check_ingest(cli, src, store, explicit=data.draw(st.booleans(), label="--format"))

"""Minari: the files that make up a dataset are the same whichever way it is named (the dataset folder,
its data/ folder, or main_data.hdf5 itself), so ingest's content hash covers metadata.json in each case."""

from __future__ import annotations

import json

import pytest

from aloe_cli.formats import get_reader
from h5_writers import write_minari


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_minari_source_files_are_the_same_however_the_dataset_is_named(tmp_path, data_format):
    ds_dir, _ = write_minari(tmp_path / "datasets", data_format=data_format)
    data = ds_dir / "data"
    reader = get_reader("minari")
    every = sorted(p for p in data.rglob("*") if p.is_file())
    assert data / "metadata.json" in every
    if data_format == "hdf5":
        assert every == [data / "main_data.hdf5", data / "metadata.json"]
        named = (ds_dir, data, data / "main_data.hdf5")
    else:  # `--format minari data/metadata.json` reads the episode folders beside it
        assert len(every) > 2
        named = (ds_dir, data, data / "metadata.json")
    for path in named:
        assert reader.source_files(path) == every, path


def test_minari_source_files_of_a_lone_hdf5(tmp_path):
    """main_data.hdf5 without a metadata.json beside it: the file alone (as before)."""
    ds_dir, _ = write_minari(tmp_path / "datasets")
    (ds_dir / "data" / "metadata.json").unlink()
    assert get_reader("minari").source_files(ds_dir / "data" / "main_data.hdf5") == [ds_dir / "data" / "main_data.hdf5"]


def test_minari_changed_metadata_is_noticed_when_named_by_its_hdf5(cli, tmp_path):
    ds_dir, _ = write_minari(tmp_path / "datasets")
    src = ds_dir / "data" / "main_data.hdf5"
    store = tmp_path / "store"
    first = json.loads(cli("ingest", store, src, "--json").stdout)
    assert first["episodes_added"] == 3
    again = json.loads(cli("ingest", store, src, "--json").stdout)
    assert again["unchanged"]  # the same bytes: a no-op
    meta = ds_dir / "data" / "metadata.json"
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps(dict(m, dataset_id="D4RL/door/expert-v2")))  # the task the episodes get
    changed = json.loads(cli("ingest", store, src, "--json").stdout)
    assert not changed["unchanged"]  # read again, not skipped as already in the store
    assert changed["episodes_added"] == 3 and changed["ingest_id"] != first["ingest_id"]

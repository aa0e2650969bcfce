"""Settings as dotted keys: flattening, naming the keys that changed, and the store's copies of
small YAML deps that `fmlkit status` compares with."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fmlkit.pipeline.settings import (
    COPIES,
    MAX_COPY_BYTES,
    describe_changes,
    flatten,
    keep_copy,
    kept_mapping,
    read_mapping,
)


def _version(data: bytes) -> str:
    return "file:" + hashlib.sha256(data).hexdigest()


def test_flatten_joins_keys_and_keeps_lists_and_empty_mappings_whole() -> None:
    data = {"optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "head": {"args": {}}, "seed": 0}
    assert flatten(data) == {
        "optim.lr": 0.1,
        "optim.betas": [0.9, 0.99],
        "head.args": {},
        "seed": 0,
    }


def test_describe_changes_names_old_and_new_values_in_the_new_files_order() -> None:
    old = {"optim": {"lr": 0.1, "name": "sgd"}, "seed": 0, "gone": True}
    new = {"seed": 1, "optim": {"lr": 0.2, "name": "sgd", "momentum": 0.9}}
    assert describe_changes(old, new) == (
        "seed 0 → 1, optim.lr 0.1 → 0.2, optim.momentum (unset) → 0.9, gone true → (unset)"
    )


def test_describe_changes_caps_at_five_keys_and_counts_the_rest() -> None:
    old = {f"k{i}": i for i in range(8)}
    new = {f"k{i}": i + 1 for i in range(8)}
    assert describe_changes(old, new) == (
        "k0 0 → 1, k1 1 → 2, k2 2 → 3, k3 3 → 4, k4 4 → 5 and 3 more"
    )


def test_describe_changes_compares_as_yaml_values() -> None:
    assert describe_changes({"lr": 1}, {"lr": 1.0}) == ""  # the same number
    assert describe_changes({"flip": 1}, {"flip": True}) == "flip 1 → true"
    assert describe_changes({"a": {"b": None}}, {"a": {"b": None}}) == ""


def test_keep_copy_keeps_a_small_yaml_dep_by_its_version(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"optim: {lr: 0.1}\n")
    version = _version(config.read_bytes())
    keep_copy(tmp_path, str(config), version)
    assert kept_mapping(tmp_path, version) == {"optim": {"lr": 0.1}}
    config.write_bytes(b"optim: {lr: 0.2}\n")
    assert read_mapping(config) == {"optim": {"lr": 0.2}}
    assert kept_mapping(tmp_path, version) == {"optim": {"lr": 0.1}}  # the locked content


def test_keep_copy_skips_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    edited = tmp_path / "edited.yaml"
    edited.write_bytes(b"a: 1\n")
    keep_copy(tmp_path, str(edited), _version(b"a: 0\n"))  # edited since it was versioned
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_COPY_BYTES + 1))
    keep_copy(tmp_path, str(big), _version(big.read_bytes()))
    table = tmp_path / "t.csv"
    table.write_bytes(b"a,b\n")
    keep_copy(tmp_path, str(table), _version(table.read_bytes()))
    keep_copy(tmp_path, str(tmp_path), "dir:" + "0" * 64)
    assert not (tmp_path / COPIES).exists()


def test_kept_mapping_ignores_a_copy_edited_by_hand_or_not_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"- a list\n")
    version = _version(config.read_bytes())
    keep_copy(tmp_path, str(config), version)
    assert kept_mapping(tmp_path, version) is None  # kept, but not a mapping
    copy = next((tmp_path / COPIES).iterdir())
    copy.write_bytes(b"a: 1\n")
    assert kept_mapping(tmp_path, version) is None
    assert kept_mapping(tmp_path, "file:../../etc/passwd") is None
    assert kept_mapping(tmp_path, None) is None


def test_changed_overrides_are_named_by_their_keys() -> None:
    from fmlkit.pipeline.assess import _param_changes

    old = {"device": "cpu", "overrides": {"train.max_steps": 50, "head.args": {"margin": 0.4}}}
    new = {"device": "cpu", "overrides": {"train.max_steps": 100, "head.args": {"margin": 0.4}}}
    assert _param_changes(old, new) == ["params.overrides: train.max_steps 50 → 100"]
    listed = {"overrides": ["train.max_steps=50"]}
    assert _param_changes(listed, {"overrides": ["train.max_steps=100"]}) == [
        "params.overrides: ['train.max_steps=50'] → ['train.max_steps=100']"
    ]


def test_keep_copy_that_cannot_be_written_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"a: 1\n")
    store = tmp_path / "store"
    store.write_bytes(b"a file where the store's folder should be")
    keep_copy(store, str(config), _version(config.read_bytes()))
    assert "could not keep a copy of" in caplog.text and str(config) in caplog.text

"""`fmlkit align --cluster`: on a real 2-worker Dask cluster (`tests.dask_kill.local_scheduler`)
the crops and the table are byte for byte those of the local run, damaged photos recorded with
their reason as locally, even when a worker is killed while it runs a chunk; options that
cannot work on a cluster are refused before any work."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmlkit.data.align import align_dataset
from fmlkit.data.align.detect import create_detector
from fmlkit.errors import OptionError
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded

pytest.importorskip("distributed")

from tests.dask_kill import kill_one_worker, local_scheduler


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """A running 2-worker scheduler for the module (its workers restart when killed)."""
    with local_scheduler(2) as running:
        yield running


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 synthetic photos (3 identities × 7 scenes, seed 5) with `fmlkit synth`'s
    defects (a truncated and unreadable files) and its landmark file, SCENES.landmarks.csv."""
    root = tmp_path_factory.mktemp("synth") / "scenes"
    marks = root.with_name("scenes.landmarks.csv")
    args = ("synth", root, "--scenes", "-n", "3", "-m", "7", "--seed", "5")
    succeeded(fmlkit(*args, "--landmarks", marks))
    return root


def tree_bytes(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (relative name → bytes), and the table beside it."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    return {**files, "TABLE": out.with_name(out.name + ".csv").read_bytes()}


def reasons(out: Path) -> set[str]:
    with out.with_name(out.name + ".csv").open(encoding="utf-8", newline="") as f:
        return {row["error"] for row in csv.DictReader(f)}


def test_align_detector_on_a_cluster_writes_the_local_bytes(
    scenes: Path, address: str, tmp_path: Path
) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    common = (scenes, "--detector", "retinaface", "--select", "best")
    succeeded(fmlkit("align", *common, "-o", local))
    result = fmlkit("-q", "align", *common, "-o", remote, "--cluster", address)
    succeeded(result)
    expected = tree_bytes(local)
    assert len(expected) > 5 and {"unreadable", "truncated"} <= reasons(local)
    assert tree_bytes(remote) == expected  # every crop's bytes and the table's
    assert not list(tmp_path.glob(".*")), "a temporary tree or table was left behind"


def test_align_with_a_worker_killed_running_a_chunk_writes_the_local_bytes(
    scenes: Path, address: str, tmp_path: Path
) -> None:
    marks = scenes.with_name("scenes.landmarks.csv")
    local, remote = tmp_path / "local", tmp_path / "remote"
    common = (scenes, "--landmarks", marks, "--format", "jpg")
    succeeded(fmlkit("align", *common, "-o", local))
    with kill_one_worker(address, tmp_path / "killed", "align_chunk") as marker:
        result = fmlkit("align", *common, "-o", remote, "--cluster", address)
    succeeded(result)
    assert marker.read_text().startswith("align_chunk"), "no worker was killed"
    assert tree_bytes(remote) == tree_bytes(local)


def test_align_cluster_refuses_a_bad_address_before_any_work(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = fmlkit("align", scenes, "--detector", "retinaface", "-o", out,
                    "--cluster", "local:zero")  # fmt: skip
    refused(result, says=["--cluster", "local:zero"], code=2)
    nothing_complete(out, tmp_path / "out.csv")


def test_align_cluster_needs_a_detector_by_name(scenes: Path, tmp_path: Path) -> None:
    detector = create_detector("retinaface")
    with pytest.raises(OptionError, match="by name"):
        align_dataset(scenes, tmp_path / "out", detector=detector, cluster="local:1")
    nothing_complete(tmp_path / "out", tmp_path / "out.csv")

"""`fmlkit embed --cluster`: on a real 2-worker Dask cluster (`tests.dask_kill.local_scheduler`)
the Parquet file is byte for byte the local one (a dataset_info table's images, a Parquet
dataset's), an undecodable image skipped and counted as locally, even when a worker is killed
while it embeds a shard; shards are whole batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmlkit.eval.embed_cluster import shard_rows
from fmlkit.models.backbones import create_backbone
from tests.hostile.check import fmlkit, nothing_complete, refused, succeeded

pytest.importorskip("distributed")

from tests.dask_kill import kill_one_worker, local_scheduler

BATCH = 4  # with 1 torch thread this model's last bits differ from those with 2 (checked)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """A running 2-worker scheduler for the module (its workers restart when killed).

    Its workers run torch with as many threads as this process (2 on a 2-core machine), so
    they wait for work passively: OpenMP's spinning threads, 4 of them on 2 busy cores, made
    the module 2–3 times slower. The wait policy changes no result."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # read by the scheduler's child processes
        with local_scheduler(2) as running:
            yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 noisy 40×40 PNGs of 2 classes and, 6th in info.csv, a file that is no image."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    rows = ["file_name,label"]
    for i in range(10):
        (root / f"id{i % 2}").mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"id{i % 2}" / f"{i}.png")
        rows.append(f"id{i % 2}/{i}.png,id{i % 2}")
        if i == 4:
            (root / "id0" / "broken.png").write_bytes(b"not a png at all")
            rows.append("id0/broken.png,id0")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 16-d mobilefacenet for 32 px images, as a bare state dict."""
    path = tmp_path_factory.mktemp("weights") / "backbone.pth"
    torch.manual_seed(0)
    torch.save(
        create_backbone("mobilefacenet", embedding_size=16, image_size=32).state_dict(), path
    )
    return path


def embed_args(images: Path, weights: Path, out: Path) -> list[str | Path]:
    return ["embed", "--weights", weights, "--backbone", "mobilefacenet", "--image-size", "32",
            "--input", images / "info.csv", "--root", images, "--batch-size", str(BATCH),
            "-o", out]  # fmt: skip


@pytest.fixture(scope="module")
def local(images: Path, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embeddings written without --cluster."""
    out = tmp_path_factory.mktemp("local") / "emb.parquet"
    result = fmlkit(*embed_args(images, weights, out))
    succeeded(result)
    assert "wrote 10 embeddings of 16" in result.stdout
    assert "1 images could not be decoded" in result.stdout
    return out


def test_embed_on_a_cluster_writes_the_local_bytes(
    images: Path, weights: Path, local: Path, address: str, tmp_path: Path
) -> None:
    out = tmp_path / "emb.parquet"
    result = fmlkit(*embed_args(images, weights, out), "--cluster", address)
    succeeded(result)
    assert "wrote 10 embeddings of 16" in result.stdout
    assert "1 images could not be decoded" in result.stdout
    assert out.read_bytes() == local.read_bytes()


def test_embed_of_a_parquet_dataset_on_a_cluster_writes_the_local_bytes(
    images: Path, weights: Path, address: str, tmp_path: Path
) -> None:
    dataset = tmp_path / "parquet"
    succeeded(fmlkit("-q", "convert", images / "info.csv", dataset, "--root", images))
    model = ("--weights", weights, "--backbone", "mobilefacenet", "--image-size", "32")
    args = ("embed", *model, "--input", dataset, "--batch-size", str(BATCH))
    succeeded(fmlkit(*args, "-o", tmp_path / "local.parquet"))
    result = fmlkit(*args, "-o", tmp_path / "remote.parquet", "--cluster", address)
    succeeded(result)
    assert "1 images could not be decoded" in result.stdout
    assert (tmp_path / "remote.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()


def test_embed_with_a_worker_killed_running_a_shard_writes_the_local_bytes(
    images: Path, weights: Path, local: Path, address: str, tmp_path: Path
) -> None:
    out = tmp_path / "emb.parquet"
    with kill_one_worker(address, tmp_path / "killed", "embed_shard") as marker:
        result = fmlkit(*embed_args(images, weights, out), "--cluster", address)
    succeeded(result)
    assert marker.read_text().startswith("embed_shard"), "no worker was killed"
    assert out.read_bytes() == local.read_bytes()


def test_embed_cluster_refuses_a_bad_address_before_any_work(
    images: Path, weights: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb.parquet"
    result = fmlkit(*embed_args(images, weights, out), "--cluster", "node1")
    refused(result, says=["--cluster", "node1", "tcp://host:port"], code=2)
    nothing_complete(out)


@pytest.mark.parametrize(
    ("rows", "batch", "workers", "expected"),
    [
        (11, 4, 2, [(0, 4), (4, 8), (8, 11)]),
        (100, 8, 1, [(0, 32), (32, 64), (64, 96), (96, 100)]),
        (5000, 64, 1, [(s, min(s + 1024, 5000)) for s in range(0, 5000, 1024)]),
        (3, 1000, 4, [(0, 3)]),
    ],
)
def test_shard_rows_are_whole_batches(
    rows: int, batch: int, workers: int, expected: list[tuple[int, int]]
) -> None:
    assert shard_rows(rows, batch, workers) == expected

"""`build_run`: every part of a run from its config, seeded first, in one fixed order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmlkit.errors import InputError
from fmlkit.train.build import build_run, create_validation
from fmlkit.train.config import TrainConfig, load_config
from fmlkit.train.distributed import Runtime

CPU = Runtime(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes of 6 noisy 24×24 PNGs and a dataset_info listing them; 12 pairs over them."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows, pairs = ["file_name,label"], []
    for c in range(2):
        (root / f"id{c}").mkdir()
        for i in range(6):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"id{c}" / f"{i}.png")
            rows.append(f"id{c}/{i}.png,id{c}")
            pairs.append(f"{int(c == 0)},id0/{i}.png,id{c}/{(i + 1) % 6}.png")
    (root / "info.csv").write_text("\n".join(rows) + "\n")
    (root / "pairs.csv").write_text("\n".join(pairs) + "\n")
    return root


def _config(images: Path, *extra: str) -> TrainConfig:
    return load_config(
        None,
        [
            f"data.dataset_info={images / 'info.csv'}",
            f"data.root={images}",
            "data.image_size=16",
            "model.backbone=mobilefacenet",
            "model.embedding_size=8",
            "head.name=cosface",
            "train.batch_size=4",
            "train.num_workers=0",
            "train.max_steps=5",
            "seed=7",
            *extra,
        ],
    )


def _weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_build_run_wires_every_part_from_the_config(images: Path) -> None:
    parts = build_run(_config(images, "train.grad_accum=2"), CPU)
    assert len(parts.dataset) == 12 and parts.dataset.num_classes == 2
    assert parts.steps_per_epoch == 1 and parts.total_steps == 5  # 3 batches of 4, 2 a step
    assert parts.decoder is None and parts.validation is None
    assert parts.forward_model is parts.model and parts.forward_head is parts.head
    optimized = {id(p) for g in parts.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for m in (parts.model, parts.head) for p in m.parameters()}
    assert parts.scheduler.optimizer is parts.optimizer and not parts.scaler.is_enabled()
    # lr per 1024 images of global batch: 0.1 × 4 × 2 / 1024, times the poly factor at step 0
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 8 / 1024)
    with_pairs = _config(images, f"val.pairs={images / 'pairs.csv'}", f"val.root={images}")
    assert build_run(with_pairs, CPU).validation is not None
    elsewhere = Runtime(rank=1, local_rank=1, world_size=2, device=torch.device("cpu"))
    assert create_validation(with_pairs, elsewhere) is None  # rank 0 alone validates


def test_build_run_seeds_first_so_the_initial_weights_follow_the_config_seed(
    images: Path,
) -> None:
    torch.manual_seed(1)
    first = build_run(_config(images), CPU)
    torch.manual_seed(2)  # whatever the global RNG held before, the config's seed rules
    second = build_run(_config(images), CPU)
    other = build_run(_config(images, "seed=8"), CPU)
    for module in ("model", "head"):
        a, b, c = (_weights(getattr(parts, module)) for parts in (first, second, other))
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), module
        assert not all(torch.equal(x, z) for x, z in zip(a, c, strict=True)), module


def test_too_few_images_for_one_step_is_refused_before_the_model_is_built(images: Path) -> None:
    config = _config(images, "train.batch_size=8", "train.grad_accum=2")
    with pytest.raises(InputError, match="give 1 batches of 8 per process, fewer than one step"):
        build_run(config, CPU)

"""`fmlkit embed` and `fmlkit evaluate` with ``--weights FILE --backbone NAME``: an
arcface_torch ``backbone.pth`` embeds images as arcface_torch's own net does (RGB,
(x/255 − 0.5)/0.5, 112 px), and the options that do not fit together are usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.hostile.check import fmlkit, refused, succeeded
from tests.models.arcface_torch_ref import reference
from tests.train.test_loop import write_images


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "backbone.pth"
    torch.save(reference("mobilefacenet").state_dict(), path)
    return path


def test_embed_with_arcface_torch_weights_matches_its_own_net(
    images: Path, weights: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq
    from PIL import Image

    out = tmp_path / "emb.parquet"
    result = fmlkit("embed", "--weights", weights, "--backbone", "mobilefacenet", "--input",
                    images / "info.csv", "--root", images, "--no-flip-sum", "-o", out)  # fmt: skip
    succeeded(result)
    table = pq.read_table(out)
    names = table.column("file_name").to_pylist()[:4]
    got = np.asarray(table.column("embedding").to_pylist()[:4], np.float32)
    # arcface_torch's inference: RGB, resized to 112, (x/255 − 0.5)/0.5, NCHW
    pixels = [np.asarray(Image.open(images / n).convert("RGB").resize((112, 112), Image.BILINEAR))
              for n in names]  # fmt: skip
    batch = (torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = reference("mobilefacenet")(batch).numpy()
    cosine = (
        (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() > 0.9999, cosine


def test_evaluate_with_arcface_torch_weights(images: Path, weights: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    rows = [f"1,id{c}/{i}.png,id{c}/{i + 1}.png" for c in range(4) for i in range(3)]
    rows += [f"0,id{c}/{i}.png,id{(c + 1) % 4}/{i}.png" for c in range(4) for i in range(3)]
    pairs.write_text("\n".join(rows) + "\n")
    result = fmlkit("evaluate", "--weights", weights, "--backbone", "mobilefacenet", "--pairs",
                    pairs, "--root", images, "-o", tmp_path / "eval")  # fmt: skip
    succeeded(result)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["pairs"]["pairs"] == 24


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--weights", "W"], ["--weights is a bare state dict", "--backbone"]),
        (["--checkpoint", "W", "--backbone", "iresnet50"], ["--backbone is for --weights"]),
        (
            ["--weights", "W", "--backbone", "mobilefacenet", "--onnx", "W"],
            ["exactly one of", "--onnx, --weights"],
        ),
        (
            ["--weights", "W", "--backbone", "mobilefacenet", "--image-size", "5000"],
            ["--image-size", "16 to 1024"],
        ),
    ],
    ids=["weights without backbone", "backbone without weights", "two models", "huge size"],
)
@pytest.mark.parametrize("command", ["embed", "evaluate"])
def test_model_options_that_do_not_fit_are_usage_errors(
    images: Path, weights: Path, tmp_path: Path, args: list[str], says: list[str], command: str
) -> None:
    given = [str(weights) if a == "W" else a for a in args]
    if command == "embed":
        rest = ["--input", images / "info.csv", "--root", images, "-o", tmp_path / "e.parquet"]
    else:
        (tmp_path / "p.csv").write_text("1,id0/0.png,id0/1.png\n")
        rest = ["--pairs", tmp_path / "p.csv", "--root", images, "-o", tmp_path / "eval"]
    refused(fmlkit(command, *given, *rest), says=says, code=2)
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "eval").exists()


def test_an_unknown_backbone_is_named(images: Path, weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.parquet"
    result = fmlkit("embed", "--weights", weights, "--backbone", "iresnet51", "--input",
                    images / "info.csv", "--root", images, "-o", out)  # fmt: skip
    refused(result, says=["iresnet51", "iresnet50"])
    assert not out.exists()

"""`Embedder` on its own (a stand-in model, no checkpoint), and the import layering it serves:
the eval modules the training's validation uses import nothing from `fmlkit.train`."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmlkit.data.loading.transforms import build_transforms
from fmlkit.eval.embedder import Embedder


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _left_half_minus_right(images: torch.Tensor) -> np.ndarray:
    """A stand-in model whose output tells an image from its mirror image."""
    half = images.shape[-1] // 2
    left, right = images[..., :half].mean(dim=(2, 3)), images[..., half:].mean(dim=(2, 3))
    return torch.cat([left, left - right], dim=1).numpy().astype(np.float32)


def test_embedder_flip_sums_keeps_order_and_names_what_it_cannot_decode(tmp_path: Path) -> None:
    transform = build_transforms(16, train=False, backend="pil")
    embedder = Embedder(_left_half_minus_right, transform)
    lopsided = Image.new("RGB", (20, 20), (0, 0, 0))
    lopsided.paste((255, 255, 255), (0, 0, 10, 20))  # white left half
    lopsided.save(tmp_path / "lopsided.png")
    sources: list[bytes | Path] = [
        _png((255, 0, 0)),
        b"not an image",
        tmp_path / "lopsided.png",
        tmp_path / "absent.png",
    ]
    vectors, failed = embedder.embed_images(sources, batch_size=2)
    assert vectors.shape == (4, 6) and vectors.dtype == np.float32
    assert sorted(failed) == [1, 3] and "FileNotFoundError" in failed[3]
    assert not vectors[[1, 3]].any()
    np.testing.assert_allclose(vectors[0, :3], [2, -2, -2], atol=1e-5)  # red, flip-summed
    assert abs(vectors[2, 3]) < 1e-5  # flip-summed, left − right cancels
    plain, _ = embedder.embed_images(sources[2:3], flip_sum=False)
    assert plain[0, 3] > 1  # unflipped, the white left half shows


def test_the_eval_modules_validation_uses_import_nothing_from_train() -> None:
    code = (
        "import sys, fmlkit.eval.embedder, fmlkit.eval.verification, fmlkit.eval.pair_sources\n"
        "print(sorted(m for m in sys.modules if m.startswith('fmlkit.train')))\n"
        "import fmlkit.train.validation, fmlkit.train.build, fmlkit.train.loop\n"
        "print('fmlkit.eval.embed' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "False"]


@pytest.mark.parametrize("models", [{}, {"checkpoint": "a.pt", "onnx": "a.onnx"}])
def test_load_embedder_needs_exactly_one_model(models: dict[str, str]) -> None:
    from fmlkit.errors import OptionError
    from fmlkit.eval.embed import load_embedder

    with pytest.raises(OptionError, match="give exactly one of checkpoint, onnx and weights"):
        load_embedder(**models)

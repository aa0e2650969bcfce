"""The synthetic identities must be learnable: a small CNN on CPU tells them apart in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlkit.data.synth.synth import generate_synthetic_dataset
from tests.conftest import read_truth


@pytest.mark.slow
def test_small_cnn_separates_identities_on_held_out_images(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    n_ids, per_id, n_train = 10, 30, 20
    report = generate_synthetic_dataset(
        tmp_path / "d", identities=n_ids, images_per_identity=per_id, seed=3, defects=False
    )
    rows = read_truth(report.truth_path)
    labels = sorted({r["label"] for r in rows})
    pixels = np.stack(
        [
            np.asarray(
                Image.open(tmp_path / "d" / r["file_name"])
                .convert("RGB")
                .resize((56, 56), Image.Resampling.BILINEAR)
            )
            for r in rows
        ]
    )
    x = torch.tensor(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.tensor([labels.index(r["label"]) for r in rows])
    index = torch.tensor([int(Path(r["file_name"]).stem) for r in rows])
    train, test = index < n_train, index >= n_train  # different images of the same identities

    torch.manual_seed(0)

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]

    net = nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, n_ids),
    )
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    xt, yt = x[train], y[train]
    for _ in range(30):
        net.train()
        for batch in torch.randperm(len(xt)).split(32):
            loss = nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x[test]).argmax(1) == y[test]).float().mean().item()
    assert accuracy >= 0.6, f"held-out accuracy {accuracy:.2f} (chance {1 / n_ids:.2f})"

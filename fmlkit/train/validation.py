"""Validation during training: verification accuracy on a pair list (``val.pairs``).

The images a ``1,a,b`` pair list names (relative to ``val.root``) are embedded with the
current model in eval mode, flip-summed, and scored with the 10-fold protocol of
`fmlkit.eval.verification`, the numbers `fmlkit evaluate` reports. Rank 0 runs it; the metrics
(``val_<list stem>_accuracy``, ``_accuracy_std``, ``_threshold``) join that step's metrics row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from fmlkit.data.datasets import decode_image
from fmlkit.data.transforms import ImageTransform
from fmlkit.errors import InputError


class PairValidation:
    """Verification on the pairs of ``pairs`` (a ``1,a,b`` CSV) under ``root``.

    Raises:
        InputError: a pair naming a file outside ``root`` or missing from it.
        FormatError: a malformed pair list.
    """

    def __init__(
        self, pairs: str | Path, root: str | Path, transform: ImageTransform, batch_size: int
    ) -> None:
        from fmlkit.data.pair_lists import FIRST, ISSAME, SECOND, read_csv_pairs

        table = read_csv_pairs(pairs)
        self.name = Path(pairs).stem
        self.root, self.transform, self.batch_size = Path(root).resolve(), transform, batch_size
        self.files = sorted(set(table[FIRST]) | set(table[SECOND]))
        position = {name: i for i, name in enumerate(self.files)}
        self.first = table[FIRST].map(position).to_numpy()
        self.second = table[SECOND].map(position).to_numpy()
        self.same = table[ISSAME].to_numpy().astype(bool)
        bad = [f for f in self.files if not self._path(f).is_file()]
        if bad:
            raise InputError(
                f"{len(bad)} files named in {pairs} are not under {root}: "
                f"{', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}"
            )

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise InputError(f"pair list file {name!r} lies outside {self.root}")
        return path

    @torch.no_grad()
    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from fmlkit.eval.verification import pair_distances, verify

        was_training = model.training
        model.eval()
        chunks = []
        for start in range(0, len(self.files), self.batch_size):
            names = self.files[start : start + self.batch_size]
            images = torch.stack([self.transform(self._image(n)) for n in names]).to(device)
            emb = model(images).float() + model(images.flip(3)).float()
            chunks.append(emb.cpu().numpy())
        model.train(was_training)
        embeddings = np.concatenate(chunks)
        result = verify(pair_distances(embeddings[self.first], embeddings[self.second]), self.same)
        prefix = f"val_{self.name}_"
        return {
            prefix + "accuracy": result.accuracy,
            prefix + "accuracy_std": result.accuracy_std,
            prefix + "threshold": result.threshold,
        }

    def _image(self, name: str) -> Image.Image:
        try:
            return decode_image(self._path(name).read_bytes())
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"validation image {name} cannot be decoded: {exc}") from exc
